//! [`Value`] and [`Array`]: plain data in shared memory, like `multiprocessing.Value` and
//! `Array`, for when a server process is more than the data needs.
//!
//! The memory is freed when the last process that maps or holds it closes it, however the
//! processes end: nothing is ever left behind.
//!
//! - Linux: an anonymous memory file (`memfd_create`, sealed at its size). It never has a name
//!   in `/dev/shm`. A handle travels to other processes (as a
//!   [`Process`](crate::process::Process) argument, or any serde channel) as the sending
//!   process's pid and descriptor number; the receiver opens the file through
//!   `/proc/PID/fd/FD`, so the sender (the creator, or another holder that sent the handle on)
//!   must still be alive when a receiver first uses it, and the receiver must be allowed to
//!   read that process's descriptors (the same user, as for `ptrace` reads).
//! - Windows: a file mapping backed by the paging file, named `Local\procwire-shm-PID-ID` (the
//!   creator's pid and 32 random bits). A handle carries those two numbers, and the receiver
//!   opens the mapping by name: any process may have the handle from any holder, as long as
//!   some process still has the memory open (when none has, the name is gone and opening
//!   fails with a `NotFound` error). The mapping gets the default security of the creator
//!   (its user, SYSTEM, administrators), and `Local\` names reach the processes of one logon
//!   session.
//! - macOS and other Unix systems: not supported (no memory file without a name, no robust
//!   mutex); creation fails with an `Unsupported` error.
//!
//! Each value or array has a process-shared lock next to its data (unless made without one):
//! [`Value::lock`], [`Value::with_lock`], and `get`/`set` take it. It is robust: if a process
//! (or thread) dies holding it, the next locker gets it, with [`Guard::previous_owner_died`]
//! set. On Linux it is a robust process-shared pthread mutex in the memory (`EOWNERDEAD`); on
//! Windows a named mutex object (`Local\procwire-shm-PID-ID-lock`, `WAIT_ABANDONED`). Locking
//! again on the thread that holds the lock is a `Deadlock` error, not a wait. Integer values and
//! elements can also be used lock-free through their atomic type ([`Value::atomic`],
//! [`Array::atomic`]).
//!
//! Types are plain data: [`bytemuck::Pod`] (integers, floats, arrays of them, and
//! `#[repr(C)]` structs that derive it). A handle opened as another type, another element
//! size, or another length than it was made with is refused with an `InvalidData` error.
//!
//! ```
//! # #[cfg(any(target_os = "linux", windows))] {
//! use procwire::shared::Value;
//!
//! let counter = Value::new(0u64)?;
//! counter.with_lock(|n| *n += 1)?;
//! counter.atomic().fetch_add(1, std::sync::atomic::Ordering::SeqCst);
//! assert_eq!(counter.get()?, 2);
//! # }
//! # Ok::<(), procwire::Error>(())
//! ```

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{
    AtomicI8, AtomicI16, AtomicI32, AtomicI64, AtomicIsize, AtomicU8, AtomicU16, AtomicU32, AtomicU64,
    AtomicUsize,
};

pub use bytemuck::Pod;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::transport::shm::{self, Lock, Mapping};
use crate::{Error, Result};

const MAGIC: u64 = u64::from_be_bytes(*b"PWSHM\0\0\x01");
/// Where the mutex starts, and where the data starts (room for any mutex and alignment).
const MUTEX_AT: usize = 64;
const DATA_AT: usize = MUTEX_AT + shm::MUTEX_SPACE;

/// The header at the start of the memory: what it holds, so that a handle of the wrong type
/// or size is refused.
#[repr(C)]
#[derive(Clone, Copy)]
struct Header {
    magic: u64,
    token: u64,
    elem_size: u64,
    len: u64,
    type_hash: u64,
    has_lock: u64,
}

fn type_hash<T>() -> u64 {
    // FNV-1a of the type's name: both ends are normally the same program.
    std::any::type_name::<T>()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

fn invalid(why: String) -> Error {
    Error::Io(io::Error::new(io::ErrorKind::InvalidData, why))
}

/// The mapped memory of one value or array, and its lock.
struct Segment {
    map: Mapping,
    header: Header,
    lock: Option<Lock>,
}

impl Segment {
    fn create<T: Pod>(len: usize, lock: bool) -> Result<Segment> {
        if align_of::<T>() > MUTEX_AT {
            return Err(invalid(format!(
                "{} needs an alignment over {MUTEX_AT}",
                std::any::type_name::<T>()
            )));
        }
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
            has_lock: lock as u64,
        };
        let lock = if lock {
            // SAFETY: the mutex space lies inside the new mapping, 64-byte aligned, unused.
            Some(unsafe { Lock::create(&map, MUTEX_AT)? })
        } else {
            None
        };
        // SAFETY: the header fits at the start of the mapping (page aligned); written last, so a
        // process that sees the magic sees an initialised mutex.
        unsafe { map.ptr().cast::<Header>().write(header) };
        Ok(Segment { map, header, lock })
    }

    fn open<T: Pod>(r: &HandleRef) -> Result<Segment> {
        let map = Mapping::open(r.pid, r.fd)?;
        if map.len() < DATA_AT {
            return Err(invalid("not a procwire shared memory file (too short)".into()));
        }
        // SAFETY: the mapping is at least DATA_AT bytes long and page aligned.
        let header = unsafe { map.ptr().cast::<Header>().read() };
        if header.magic != MAGIC || header.token != r.token {
            return Err(invalid(format!(
                "the shared memory found for this handle (process {}, number {}) is not the shared \
                 memory it names (was it freed?)",
                r.pid, r.fd
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
        let lock = if header.has_lock != 0 {
            // SAFETY: the mutex space of a checked header, initialised by the creator.
            Some(unsafe { Lock::open(&map, MUTEX_AT)? })
        } else {
            None
        };
        Ok(Segment { map, header, lock })
    }

    fn data(&self) -> *mut u8 {
        // SAFETY: DATA_AT is inside the mapping (checked when created or opened).
        unsafe { self.map.ptr().add(DATA_AT) }
    }

    fn has_lock(&self) -> bool {
        self.lock.is_some()
    }

    fn handle(&self) -> HandleRef {
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

/// What a [`Value`] or [`Array`] handle serializes as. `pid` and `fd` are what the platform's
/// [`Mapping::open`] takes: a holder's pid and descriptor on Linux, the creator's pid and the
/// mapping's ID on Windows.
#[derive(Serialize, Deserialize)]
struct HandleRef {
    pid: u32,
    fd: i32,
    token: u64,
    elem_size: u64,
    len: u64,
}

/// Holds the lock of a [`Value`] or an [`Array`]; gives access to the data (`T` or `[T]`).
pub struct Guard<'a, D: ?Sized> {
    seg: &'a Segment,
    data: *mut D,
    owner_died: bool,
}

impl<D: ?Sized> Guard<'_, D> {
    /// Whether the previous holder of the lock died holding it: the data may be half-updated.
    pub fn previous_owner_died(&self) -> bool {
        self.owner_died
    }
}

impl<D: ?Sized> Deref for Guard<'_, D> {
    type Target = D;
    fn deref(&self) -> &D {
        // SAFETY: the pointer is into the mapping, which the guard keeps borrowed, and the
        // lock excludes other lockers.
        unsafe { &*self.data }
    }
}

impl<D: ?Sized> DerefMut for Guard<'_, D> {
    fn deref_mut(&mut self) -> &mut D {
        // SAFETY: as deref, exclusively.
        unsafe { &mut *self.data }
    }
}

impl<D: ?Sized> Drop for Guard<'_, D> {
    fn drop(&mut self) {
        if let Some(l) = &self.seg.lock {
            // SAFETY: this guard locked it, on this thread (a guard is not Send).
            unsafe { l.unlock(&self.seg.map) };
        }
    }
}

fn lock<'a, D: ?Sized>(seg: &'a Segment, data: *mut D) -> Result<Guard<'a, D>> {
    let owner_died = match &seg.lock {
        // SAFETY: the lock of the mapping that `seg` keeps alive.
        Some(l) => unsafe { l.lock(&seg.map)? },
        None => {
            return Err(Error::Io(io::Error::new(
                io::ErrorKind::Unsupported,
                "this shared memory was made without a lock",
            )));
        }
    };
    Ok(Guard { seg, data, owner_died })
}

/// Integer types with a lock-free atomic twin of the same size and alignment.
pub trait HasAtomic: Pod {
    /// The atomic type (`AtomicU64` for `u64`, ...).
    type Atomic;
}

macro_rules! has_atomic {
    ($($t:ty => $a:ty),*) => {$(
        impl HasAtomic for $t {
            type Atomic = $a;
        }
        const _: () = assert!(size_of::<$t>() == size_of::<$a>() && align_of::<$t>() <= align_of::<$a>());
    )*};
}
has_atomic!(u8 => AtomicU8, u16 => AtomicU16, u32 => AtomicU32, u64 => AtomicU64, usize => AtomicUsize,
    i8 => AtomicI8, i16 => AtomicI16, i32 => AtomicI32, i64 => AtomicI64, isize => AtomicIsize);

/// One `T` in shared memory, with a lock (see the [module docs](self)).
pub struct Value<T: Pod> {
    seg: Arc<Segment>,
    _t: PhantomData<T>,
}

impl<T: Pod> Clone for Value<T> {
    fn clone(&self) -> Self {
        Value { seg: self.seg.clone(), _t: PhantomData }
    }
}

impl<T: Pod> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value").field("type", &std::any::type_name::<T>()).finish_non_exhaustive()
    }
}

impl<T: Pod> Value<T> {
    /// A new value with a lock.
    pub fn new(value: T) -> Result<Self> {
        Value::make(value, true)
    }

    /// A new value without a lock: [`get`](Value::get) and [`set`](Value::set) copy without
    /// synchronisation (as CPython's `Value(..., lock=False)`), and [`lock`](Value::lock) fails.
    pub fn new_unlocked(value: T) -> Result<Self> {
        Value::make(value, false)
    }

    fn make(value: T, lock: bool) -> Result<Self> {
        let seg = Segment::create::<T>(1, lock)?;
        // SAFETY: the data area holds one T, aligned (DATA_AT is a multiple of 64).
        unsafe { seg.data().cast::<T>().write(value) };
        Ok(Value { seg: Arc::new(seg), _t: PhantomData })
    }

    fn ptr(&self) -> *mut T {
        self.seg.data().cast()
    }

    /// Locks the value (waiting for other processes) and gives access to it. A thread that
    /// holds the lock already gets a `Deadlock` error.
    ///
    /// ```
    /// # #[cfg(any(target_os = "linux", windows))] {
    /// use procwire::shared::Value;
    ///
    /// let v = Value::new(1u8)?;
    /// let mut g = v.lock()?;
    /// *g += 1;
    /// match v.lock() {
    ///     Err(procwire::Error::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::Deadlock),
    ///     _ => panic!("a second guard on the same thread"),
    /// }
    /// drop(g);
    /// assert_eq!(v.get()?, 2);
    /// # }
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn lock(&self) -> Result<Guard<'_, T>> {
        lock(&self.seg, self.ptr())
    }

    /// Runs `f` on the value under its lock.
    pub fn with_lock<R>(&self, f: impl FnOnce(&mut T) -> R) -> Result<R> {
        let mut g = self.lock()?;
        Ok(f(&mut g))
    }

    /// A copy of the value (under the lock, if it has one).
    pub fn get(&self) -> Result<T> {
        if self.seg.has_lock() {
            return self.with_lock(|v| *v);
        }
        // SAFETY: a valid, aligned T in the mapping; unsynchronised by the caller's choice.
        Ok(unsafe { self.ptr().read_volatile() })
    }

    /// Replaces the value (under the lock, if it has one).
    pub fn set(&self, value: T) -> Result<()> {
        if self.seg.has_lock() {
            return self.with_lock(|v| *v = value);
        }
        // SAFETY: as get.
        unsafe { self.ptr().write_volatile(value) };
        Ok(())
    }
}

impl<T: HasAtomic> Value<T> {
    /// The value as its atomic type, for lock-free access from any process.
    pub fn atomic(&self) -> &T::Atomic {
        // SAFETY: same size, alignment satisfied (the data is 64-byte aligned), and the
        // mapping lives as long as `self`.
        unsafe { &*self.ptr().cast::<T::Atomic>() }
    }
}

/// `len` values of `T` in shared memory, with one lock for all (see the [module docs](self)).
///
/// ```
/// # #[cfg(any(target_os = "linux", windows))] {
/// use procwire::shared::Array;
///
/// let a = Array::from_slice(&[1.5f64, 2.5, 3.0])?;
/// a.set(0, 0.5)?;
/// assert_eq!(a.to_vec()?, [0.5, 2.5, 3.0]);
/// assert_eq!(a.with_lock(|s| s.iter().sum::<f64>())?, 6.0);
/// assert!(a.set(3, 1.0).is_err(), "out of range");
/// # }
/// # Ok::<(), procwire::Error>(())
/// ```
pub struct Array<T: Pod> {
    seg: Arc<Segment>,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: Pod> Clone for Array<T> {
    fn clone(&self) -> Self {
        Array { seg: self.seg.clone(), len: self.len, _t: PhantomData }
    }
}

impl<T: Pod> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Array")
            .field("type", &std::any::type_name::<T>())
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<T: Pod> Array<T> {
    /// `len` zeroed elements, with a lock.
    pub fn new(len: usize) -> Result<Self> {
        Array::make(len, true)
    }

    /// A copy of `items`, with a lock.
    pub fn from_slice(items: &[T]) -> Result<Self> {
        let a = Array::make(items.len(), true)?;
        // SAFETY: the new array has room for exactly items.len() elements; nobody else has it.
        unsafe { std::ptr::copy_nonoverlapping(items.as_ptr(), a.ptr(), items.len()) };
        Ok(a)
    }

    /// `len` zeroed elements without a lock (see [`Value::new_unlocked`]).
    pub fn new_unlocked(len: usize) -> Result<Self> {
        Array::make(len, false)
    }

    fn make(len: usize, lock: bool) -> Result<Self> {
        let seg = Segment::create::<T>(len, lock)?;
        Ok(Array { seg: Arc::new(seg), len, _t: PhantomData })
    }

    fn ptr(&self) -> *mut T {
        self.seg.data().cast()
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Locks the array and gives access to all of it as a slice.
    pub fn lock(&self) -> Result<Guard<'_, [T]>> {
        lock(&self.seg, std::ptr::slice_from_raw_parts_mut(self.ptr(), self.len))
    }

    /// Runs `f` on the elements under the lock.
    pub fn with_lock<R>(&self, f: impl FnOnce(&mut [T]) -> R) -> Result<R> {
        let mut g = self.lock()?;
        Ok(f(&mut g))
    }

    fn check(&self, i: usize) -> Result<()> {
        if i < self.len {
            Ok(())
        } else {
            Err(Error::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("index {i} out of range for an array of {}", self.len),
            )))
        }
    }

    /// A copy of element `i` (under the lock, if there is one).
    pub fn get(&self, i: usize) -> Result<T> {
        self.check(i)?;
        if self.seg.has_lock() {
            return self.with_lock(|s| s[i]);
        }
        // SAFETY: i is in range; unsynchronised by the caller's choice.
        Ok(unsafe { self.ptr().add(i).read_volatile() })
    }

    /// Replaces element `i` (under the lock, if there is one).
    pub fn set(&self, i: usize, value: T) -> Result<()> {
        self.check(i)?;
        if self.seg.has_lock() {
            return self.with_lock(|s| s[i] = value);
        }
        // SAFETY: as get.
        unsafe { self.ptr().add(i).write_volatile(value) };
        Ok(())
    }

    /// A copy of all elements (under the lock, if there is one).
    pub fn to_vec(&self) -> Result<Vec<T>> {
        if self.seg.has_lock() {
            return self.with_lock(|s| s.to_vec());
        }
        // SAFETY: len elements in range; unsynchronised by the caller's choice.
        Ok((0..self.len).map(|i| unsafe { self.ptr().add(i).read_volatile() }).collect())
    }
}

impl<T: HasAtomic> Array<T> {
    /// Element `i` as its atomic type, for lock-free access; `None` out of range.
    pub fn atomic(&self, i: usize) -> Option<&T::Atomic> {
        // SAFETY: in range, same size, aligned (elements of a 64-byte aligned array of T, and
        // the atomic's alignment equals the size for these types), mapped while `self` lives.
        (i < self.len).then(|| unsafe { &*self.ptr().add(i).cast::<T::Atomic>() })
    }
}

impl<T: Pod> Serialize for Value<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.seg.handle().serialize(s)
    }
}

impl<'de, T: Pod> Deserialize<'de> for Value<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let r = HandleRef::deserialize(d)?;
        if r.len != 1 {
            return Err(serde::de::Error::custom("an Array handle where a Value was expected"));
        }
        let seg = Segment::open::<T>(&r).map_err(serde::de::Error::custom)?;
        Ok(Value { seg: Arc::new(seg), _t: PhantomData })
    }
}

impl<T: Pod> Serialize for Array<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.seg.handle().serialize(s)
    }
}

impl<'de, T: Pod> Deserialize<'de> for Array<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let r = HandleRef::deserialize(d)?;
        let seg = Segment::open::<T>(&r).map_err(serde::de::Error::custom)?;
        let len = usize::try_from(r.len).map_err(serde::de::Error::custom)?;
        Ok(Array { seg: Arc::new(seg), len, _t: PhantomData })
    }
}
