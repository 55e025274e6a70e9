//! The memory of one value or array: its layout (header, poison word, lock, data), creating
//! it, and opening it from a handle after checking that the header matches what the handle
//! and the opener's type say.

use std::io;
use std::sync::atomic::AtomicU64;

use serde::{Deserialize, Serialize};

use super::{Pod, invalid};
use crate::sys::shm::{self, Lock, Mapping};
use crate::{Error, Result};

/// The header's magic; its last byte is the layout's version (2: the kind and the poison word).
const MAGIC: u64 = u64::from_be_bytes(*b"PWSHM\0\0\x02");
/// The poison word, after the header: non-zero once a holder of the lock died holding it.
const POISON_AT: usize = 56;
/// Where the mutex starts, and where the data starts (room for any mutex and alignment).
const MUTEX_AT: usize = 64;
const DATA_AT: usize = MUTEX_AT + shm::MUTEX_SPACE;

/// The header at the start of the memory: what it holds, so that a handle of the wrong type,
/// size or kind is refused. Written once by the creator, before any handle exists.
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct Header {
    magic: u64,
    token: u64,
    elem_size: u64,
    len: u64,
    type_hash: u64,
    kind: u64,
}
const _: () = assert!(size_of::<Header>() <= POISON_AT && POISON_AT + 8 <= MUTEX_AT);

/// What the memory is for; recorded in the header.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Kind {
    /// [`Value`] or [`Array`]: data behind the lock.
    Locked = 1,
    /// [`AtomicValue`] or [`AtomicArray`]: integers used only atomically, no lock.
    Atomic = 2,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Locked => "a Value or Array (behind a lock)",
            Kind::Atomic => "an AtomicValue or AtomicArray",
        }
    }
}

fn type_hash<T>() -> u64 {
    // FNV-1a of the type's name: both ends are normally the same program.
    std::any::type_name::<T>()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// The mapped memory of one value or array, and its lock (for [`Kind::Locked`]).
pub(super) struct Segment {
    pub(super) map: Mapping,
    header: Header,
    pub(super) lock: Option<Lock>,
}

impl Segment {
    pub(super) fn create<T: Pod>(len: usize, kind: Kind) -> Result<Segment> {
        check_align::<T>()?;
        let bytes = size_of::<T>()
            .checked_mul(len)
            .and_then(|b| b.checked_add(DATA_AT))
            .ok_or_else(|| invalid("shared memory size overflows".into()))?;
        let map = Mapping::create(bytes)?;
        let mut token = [0u8; 8];
        getrandom::fill(&mut token).map_err(|e| Error::Io(io::Error::other(e.to_string())))?;
        let header = Header {
            magic: MAGIC,
            token: u64::from_ne_bytes(token),
            elem_size: size_of::<T>() as u64,
            len: len as u64,
            type_hash: type_hash::<T>(),
            kind: kind as u64,
        };
        let lock = match kind {
            // SAFETY: the mutex space lies inside the new mapping, 64-byte aligned, unused.
            Kind::Locked => Some(unsafe { Lock::create(&map, MUTEX_AT)? }),
            Kind::Atomic => None,
        };
        // SAFETY: the header fits at the start of the mapping (page aligned); written last, so a
        // process that sees the magic sees an initialised mutex. The poison word is zero, as
        // all new memory.
        unsafe { map.ptr().cast::<Header>().write(header) };
        Ok(Segment { map, header, lock })
    }

    pub(super) fn open<T: Pod>(r: &HandleRef, kind: Kind) -> Result<Segment> {
        check_align::<T>()?;
        let map = Mapping::open(r.pid, r.fd)?;
        if map.len() < DATA_AT {
            return Err(invalid("not a procwire shared memory file (too short)".into()));
        }
        // SAFETY: the mapping is at least DATA_AT bytes long and page aligned; the creator wrote
        // the header before any handle existed and nothing writes it again.
        let header = unsafe { map.ptr().cast::<Header>().read() };
        if header.magic != MAGIC || header.token != r.token {
            return Err(invalid(format!(
                "the shared memory found for this handle (process {}, number {}) is not the shared \
                 memory it names (was it freed, or made by another procwire version?)",
                r.pid, r.fd
            )));
        }
        if header.kind != kind as u64 {
            let made = [Kind::Locked, Kind::Atomic].into_iter().find(|k| *k as u64 == header.kind);
            return Err(invalid(format!(
                "this shared memory was made as {}; it cannot be opened as {}",
                made.map_or("something unknown", Kind::name),
                kind.name()
            )));
        }
        let want = (size_of::<T>() as u64, type_hash::<T>());
        if (header.elem_size, header.type_hash) != want || header.elem_size != r.elem_size {
            return Err(invalid(format!(
                "shared memory holds elements of {} bytes of another type; this handle is for {} ({} bytes)",
                header.elem_size,
                std::any::type_name::<T>(),
                size_of::<T>()
            )));
        }
        if header.len != r.len {
            return Err(invalid(format!(
                "shared memory holds {} elements, the handle says {}",
                header.len, r.len
            )));
        }
        let needed = (header.elem_size.checked_mul(header.len))
            .and_then(|b| b.checked_add(DATA_AT as u64))
            .filter(|&b| b <= map.len() as u64);
        if needed.is_none() {
            return Err(invalid("shared memory shorter than its header says".into()));
        }
        let lock = match kind {
            // SAFETY: the mutex space of a checked header, initialised by the creator.
            Kind::Locked => Some(unsafe { Lock::open(&map, MUTEX_AT)? }),
            Kind::Atomic => None,
        };
        Ok(Segment { map, header, lock })
    }

    pub(super) fn data(&self) -> *mut u8 {
        // SAFETY: DATA_AT is inside the mapping (checked when created or opened).
        unsafe { self.map.ptr().add(DATA_AT) }
    }

    pub(super) fn poison(&self) -> &AtomicU64 {
        // SAFETY: 8 bytes inside the mapping (which is at least DATA_AT long) at an offset that
        // is a multiple of 8 from a page-aligned start, only ever used as this atomic, and
        // mapped while `self` lives.
        unsafe { &*self.map.ptr().add(POISON_AT).cast::<AtomicU64>() }
    }

    pub(super) fn handle(&self) -> HandleRef {
        let (pid, fd) = self.map.origin();
        HandleRef {
            pid,
            fd,
            token: self.header.token,
            elem_size: self.header.elem_size,
            len: self.header.len,
        }
    }
}

fn check_align<T>() -> Result<()> {
    if align_of::<T>() > MUTEX_AT {
        return Err(invalid(format!("{} needs an alignment over {MUTEX_AT}", std::any::type_name::<T>())));
    }
    Ok(())
}

/// What a handle serializes as. `pid` and `fd` are what the platform's [`Mapping::open`]
/// takes: a holder's pid and descriptor on Linux, the creator's pid and the mapping's ID on
/// Windows.
#[derive(Serialize, Deserialize)]
pub(super) struct HandleRef {
    pid: u32,
    fd: i32,
    token: u64,
    elem_size: u64,
    pub(super) len: u64,
}
