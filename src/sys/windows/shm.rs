//! Shared memory on Windows: a named file mapping backed by the paging file, and a named mutex
//! object for its lock; or an unnamed one, reachable only through a handle to it (the region of
//! a shared-memory connection, see [`Mapping::create_passable`]).
//!
//! The mapping is named `Local\procwire-shm-PID-ID` (the creator's pid and 32 random bits; the
//! creator retries with another ID if the name exists), so a process that gets a handle opens it
//! with `OpenFileMappingW`: no access to another process is needed, only that some process
//! still has it open. Windows drops an object's name when its last handle closes (so every
//! [`Mapping`] keeps one) and destroys the object when its last handle and view are gone,
//! whoever closes them and however their process ended: nothing is ever left behind, and a
//! handle to memory that has been freed fails to open with a clear error. The objects get the default security descriptor of the creator's token (its user,
//! SYSTEM and administrators), and `Local\` names are seen within one logon session.
//!
//! The lock is the mutex object `Local\procwire-shm-PID-ID-lock`. A thread that ends (or whose
//! process ends) holding it abandons it, and the next waiter gets it with `WAIT_ABANDONED`:
//! reported as the previous owner's death, as a robust mutex's `EOWNERDEAD` on Linux (the
//! caller records it in the shared memory, since Windows reports it to one waiter only). A Windows
//! mutex is recursive; here a thread that locks again what it holds gets an error instead (two
//! guards would alias the data), recognised by the holder's id kept next to the data.

use std::io;
use std::os::windows::io::{AsHandle, AsRawHandle, BorrowedHandle, FromRawHandle, OwnedHandle};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use windows_sys::Win32::Foundation::{
    ERROR_ALREADY_EXISTS, ERROR_FILE_NOT_FOUND, GetLastError, HANDLE, INVALID_HANDLE_VALUE, WAIT_ABANDONED,
    WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, FILE_MAP_READ, FILE_MAP_WRITE, MEMORY_BASIC_INFORMATION, MEMORY_MAPPED_VIEW_ADDRESS,
    MapViewOfFile, OpenFileMappingW, PAGE_READWRITE, UnmapViewOfFile, VirtualQuery,
};
use windows_sys::Win32::System::Threading::{
    CreateMutexW, GetCurrentThreadId, INFINITE, MUTEX_MODIFY_STATE, OpenMutexW, ReleaseMutex,
    WaitForSingleObject,
};

use crate::error::io_context;

/// `SYNCHRONIZE`, the right to wait on an object.
const SYNCHRONIZE: u32 = 0x0010_0000;
/// Names that exist already are tried again with another ID this many times.
const CREATE_ATTEMPTS: usize = 16;

/// A shared, writable view of a whole named file mapping, and a handle to it.
#[derive(Debug)]
pub(crate) struct Mapping {
    /// Kept open for the name: Windows drops an object's name with its last handle, even while
    /// views of it remain. An unnamed mapping is handed to other processes through it.
    handle: OwnedHandle,
    view: *mut u8,
    len: usize,
    creator: u32,
    id: u32,
}

// SAFETY: the view is plain memory shared with other processes; every access to it goes through
// raw pointers whose synchronisation is the caller's (the lock, atomics).
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain([0]).collect()
}

fn mapping_name(creator: u32, id: u32) -> String {
    format!(r"Local\procwire-shm-{creator}-{id:08x}")
}

fn owned(h: HANDLE) -> io::Result<OwnedHandle> {
    if h.is_null() || h == INVALID_HANDLE_VALUE {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new handle that nothing else owns.
    Ok(unsafe { OwnedHandle::from_raw_handle(h) })
}

/// A new section of `size` bytes backed by the paging file, named `name` or not: its handle,
/// and whether an object of that name existed already (then the handle is to that one).
fn new_section(size: u64, name: Option<&str>) -> io::Result<(OwnedHandle, bool)> {
    let name = name.map(wide);
    // SAFETY: the paging file (INVALID_HANDLE_VALUE), default security, a NUL-terminated name or
    // none; the size is split into its high and low halves.
    let h = unsafe {
        CreateFileMappingW(
            INVALID_HANDLE_VALUE,
            std::ptr::null(),
            PAGE_READWRITE,
            (size >> 32) as u32,
            size as u32,
            name.as_ref().map_or(std::ptr::null(), |n| n.as_ptr()),
        )
    };
    // Read before anything else can change the thread's last error.
    // SAFETY: no preconditions.
    let existed = unsafe { GetLastError() } == ERROR_ALREADY_EXISTS;
    Ok((owned(h)?, existed))
}

impl Mapping {
    /// A new zero-filled mapping of `len` bytes with a fresh name, mapped.
    pub(crate) fn create(len: usize) -> io::Result<Mapping> {
        let creator = std::process::id();
        let size = u64::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        for _ in 0..CREATE_ATTEMPTS {
            let mut id = [0u8; 4];
            getrandom::fill(&mut id).map_err(|e| io::Error::other(e.to_string()))?;
            let id = u32::from_ne_bytes(id);
            let (handle, existed) = new_section(size, Some(&mapping_name(creator, id)))?;
            if existed {
                // Someone else's object with this name: never share it.
                continue;
            }
            return Mapping::map(handle, Some(len), creator, id);
        }
        Err(io::Error::new(io::ErrorKind::AlreadyExists, "no free name for a shared memory mapping"))
    }

    /// A new zero-filled mapping of `len` bytes with no name, mapped: another process gets it
    /// only from a handle duplicated into it ([`Mapping::share_handle`]). A section's size is
    /// fixed when it is made, so no holder can shrink it under another's view.
    pub(crate) fn create_passable(len: usize) -> io::Result<Mapping> {
        let size = u64::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        Mapping::map(new_section(size, None)?.0, Some(len), 0, 0)
    }

    /// Maps all of the section `handle` (one a peer made with
    /// [`create_passable`](Mapping::create_passable) and handed over): as many bytes as the
    /// view turns out to be, which the caller checks against what it expects.
    pub(crate) fn adopt(handle: OwnedHandle) -> io::Result<Mapping> {
        Mapping::map(handle, None, 0, 0)
    }

    /// The handle to hand to another process (duplicated there), which keeps the memory alive.
    pub(crate) fn share_handle(&self) -> BorrowedHandle<'_> {
        self.handle.as_handle()
    }

    /// Opens the mapping made by process `creator` with ID `id` (the numbers of a handle), and
    /// maps it.
    pub(crate) fn open(creator: u32, id: i32) -> io::Result<Mapping> {
        let id = id as u32;
        let name = mapping_name(creator, id);
        // SAFETY: a NUL-terminated name; the handle is not inherited.
        let h = unsafe { OpenFileMappingW(FILE_MAP_READ | FILE_MAP_WRITE, 0, wide(&name).as_ptr()) };
        let handle = owned(h).map_err(|e| {
            if e.raw_os_error() == Some(ERROR_FILE_NOT_FOUND as i32) {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "the shared memory {name} no longer exists: every process that had it has closed it"
                    ),
                )
            } else {
                io_context(e, format_args!("cannot open the shared memory {name}"))
            }
        })?;
        Mapping::map(handle, None, creator, id)
    }

    /// Maps all of `handle`: `len` bytes when known, else as much as the view turns out to be.
    fn map(handle: OwnedHandle, len: Option<usize>, creator: u32, id: u32) -> io::Result<Mapping> {
        // SAFETY: a file mapping handle with read and write access; 0 maps all of it.
        let view = unsafe { MapViewOfFile(handle.as_raw_handle(), FILE_MAP_READ | FILE_MAP_WRITE, 0, 0, 0) };
        if view.Value.is_null() {
            return Err(io::Error::last_os_error());
        }
        let mut mapping = Mapping { handle, view: view.Value.cast(), len: 0, creator, id };
        mapping.len = match len {
            Some(len) => len,
            None => {
                // SAFETY: MEMORY_BASIC_INFORMATION is plain data, written by VirtualQuery.
                let mut info: MEMORY_BASIC_INFORMATION = unsafe { std::mem::zeroed() };
                // SAFETY: a query about our own view into a buffer of the right size.
                let n = unsafe {
                    VirtualQuery(mapping.view.cast(), &mut info, size_of::<MEMORY_BASIC_INFORMATION>())
                };
                if n == 0 {
                    return Err(io::Error::last_os_error());
                }
                // The view's size in whole pages: all of it is mapped and readable.
                info.RegionSize
            }
        };
        Ok(mapping)
    }

    pub(crate) fn ptr(&self) -> *mut u8 {
        self.view
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The two numbers a handle carries: the creator's pid and the mapping's ID (both 0 for an
    /// unnamed mapping).
    pub(crate) fn origin(&self) -> (u32, i32) {
        (self.creator, self.id as i32)
    }

    fn lock_name(&self) -> Vec<u16> {
        wide(&format!("{}-lock", mapping_name(self.creator, self.id)))
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping the view map() made; nothing borrows it past the owner. The handle
        // closes after this; the object goes with the last handle and view of it, in whichever
        // process that is.
        unsafe { UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS { Value: self.view.cast() }) };
    }
}

/// Bytes reserved for the lock in shared memory: the id of the thread that holds it.
pub(crate) const MUTEX_SPACE: usize = 64;

/// The lock of one mapping, as this process holds it: a handle to its mutex object.
#[derive(Debug)]
pub(crate) struct Lock {
    mutex: OwnedHandle,
    at: usize,
}

/// This thread, as the holder id stored next to the data: process and thread id.
fn me() -> u64 {
    // SAFETY: no preconditions.
    let tid = unsafe { GetCurrentThreadId() };
    (u64::from(std::process::id()) << 32) | u64::from(tid)
}

impl Lock {
    /// Makes the lock of `map`, whose `MUTEX_SPACE` bytes at offset `at` it uses.
    ///
    /// # Safety
    /// Those bytes lie inside `map`, 8-byte aligned, and nothing else uses them.
    pub(crate) unsafe fn create(map: &Mapping, at: usize) -> io::Result<Lock> {
        // SAFETY: default security, not owned, a NUL-terminated name.
        let h = unsafe { CreateMutexW(std::ptr::null(), 0, map.lock_name().as_ptr()) };
        // SAFETY: no preconditions.
        let existed = unsafe { GetLastError() } == ERROR_ALREADY_EXISTS;
        let mutex = owned(h)?;
        if existed {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "another process made a mutex with the name of this shared memory's lock",
            ));
        }
        let lock = Lock { mutex, at };
        lock.holder(map).store(0, Ordering::Relaxed);
        Ok(lock)
    }

    /// Opens the lock that the creator of `map` made with [`Lock::create`].
    ///
    /// # Safety
    /// As [`Lock::create`], except that the bytes are the lock's.
    pub(crate) unsafe fn open(map: &Mapping, at: usize) -> io::Result<Lock> {
        // SAFETY: a NUL-terminated name; the rights to wait on and release it.
        let h = unsafe { OpenMutexW(SYNCHRONIZE | MUTEX_MODIFY_STATE, 0, map.lock_name().as_ptr()) };
        let mutex = owned(h).map_err(|e| io_context(e, "cannot open the shared memory's lock"))?;
        Ok(Lock { mutex, at })
    }

    fn holder<'a>(&self, map: &'a Mapping) -> &'a AtomicU64 {
        // SAFETY: 8 aligned bytes inside the mapping (create's contract), which outlives the
        // reference; only ever used as an atomic.
        unsafe { &*map.ptr().add(self.at).cast::<AtomicU64>() }
    }

    /// Takes the lock, waiting for other threads and processes (at most `timeout` when one is
    /// given); `true` when its previous holder ended holding it (the data it guards may be
    /// half-updated). A wait that ran out is a `TimedOut` error without an OS error code.
    ///
    /// # Safety
    /// `map` is the mapping this lock was made or opened with.
    pub(crate) unsafe fn lock(&self, map: &Mapping, timeout: Option<Duration>) -> io::Result<bool> {
        // Whole milliseconds, rounded up so that a short timeout still waits; a wait of about
        // 49 days or more is cut to just under INFINITE.
        let ms = timeout.map_or(INFINITE, |t| {
            let ms = t.as_nanos().div_ceil(1_000_000);
            u32::try_from(ms).unwrap_or(INFINITE - 1).min(INFINITE - 1)
        });
        // SAFETY: a mutex handle we own.
        let r = unsafe { WaitForSingleObject(self.mutex.as_raw_handle(), ms) };
        let abandoned = match r {
            WAIT_OBJECT_0 => false,
            WAIT_ABANDONED => true,
            WAIT_TIMEOUT => return Err(io::Error::new(io::ErrorKind::TimedOut, "the lock stayed held")),
            _ => return Err(io::Error::last_os_error()),
        };
        let holder = self.holder(map);
        if !abandoned && holder.load(Ordering::Relaxed) == me() {
            // The mutex let its holder in again: undo that.
            // SAFETY: this thread holds the mutex (twice, now).
            unsafe { ReleaseMutex(self.mutex.as_raw_handle()) };
            return Err(io::Error::new(
                io::ErrorKind::Deadlock,
                "this thread holds this shared memory's lock already",
            ));
        }
        holder.store(me(), Ordering::Relaxed);
        Ok(abandoned)
    }

    /// Releases the lock, which this thread holds.
    ///
    /// # Safety
    /// As [`Lock::lock`], and this thread holds the lock.
    pub(crate) unsafe fn unlock(&self, map: &Mapping) {
        self.holder(map).store(0, Ordering::Relaxed);
        // SAFETY: this thread holds the mutex.
        unsafe { ReleaseMutex(self.mutex.as_raw_handle()) };
    }
}
