//! Shared memory on Unix: an anonymous memory file (`memfd_create`, Linux) mapped shared, and
//! a process-shared robust mutex placed in it. Other processes open the file through
//! `/proc/PID/fd/FD` of a process that holds it, so there is never a name to clean up.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;

use crate::error::io_context;

/// A shared, writable mapping of a whole memory file.
#[derive(Debug)]
pub(crate) struct Mapping {
    fd: OwnedFd,
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory shared with other processes; every access to it goes
// through raw pointers whose synchronisation is the caller's (a mutex in the memory, atomics).
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

/// The seals of every memory file: its size is fixed for good.
#[cfg(any(target_os = "linux", target_os = "android"))]
const SEALS: libc::c_int = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;

impl Mapping {
    /// A new zero-filled memory file of `len` bytes, mapped.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) fn create(len: usize) -> io::Result<Mapping> {
        use std::os::fd::FromRawFd;
        // SAFETY: the name is a NUL-terminated string; the flags are valid.
        let fd = cvt(unsafe {
            libc::memfd_create(c"procwire-shared".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
        })?;
        // SAFETY: memfd_create returned a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let size = libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: a valid descriptor and size.
        cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), size) })?;
        // Every process that opens the file maps all of it: a holder that could shrink it
        // would turn the others' next access into SIGBUS. Seals can never be removed.
        // SAFETY: a valid descriptor; F_ADD_SEALS takes an int.
        cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, SEALS) })?;
        Mapping::map(fd, len)
    }

    /// Without memfd there is no file without a name, and without robust mutexes a holder's
    /// death would block the others for good: not supported (macOS and the BSDs).
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    pub(crate) fn create(_len: usize) -> io::Result<Mapping> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "shared memory is supported on Linux (memfd_create) and Windows only",
        ))
    }

    /// Opens the memory file that process `pid` holds as descriptor `fd`, and maps it.
    ///
    /// Only a memory file made by [`create`](Mapping::create) is opened: the numbers come from
    /// another process, and opening whatever they name (a FIFO would block, a device could
    /// act) is not something a peer should be able to make us do.
    pub(crate) fn open(pid: u32, fd: i32) -> io::Result<Mapping> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = format!("/proc/{pid}/fd/{fd}");
        let target = std::fs::read_link(&path).map_err(|e| {
            io_context(e, format_args!("cannot open the shared memory of process {pid} ({path})"))
        })?;
        if !target.to_string_lossy().starts_with("/memfd:procwire-shared") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("descriptor {fd} of process {pid} is not procwire shared memory"),
            ));
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| {
                io_context(e, format_args!("cannot open the shared memory of process {pid} ({path})"))
            })?;
        // Checked on the descriptor we opened (the link may have changed since it was read):
        // only a sealed memory file keeps its size while we map it.
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            // SAFETY: a valid descriptor; F_GET_SEALS takes no argument.
            let seals = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS) };
            if seals == -1 || seals & libc::F_SEAL_SHRINK == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("descriptor {fd} of process {pid} is not sealed procwire shared memory"),
                ));
            }
        }
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "shared memory too large"))?;
        Mapping::map(file.into(), len)
    }

    /// A new zero-filled region of `len` bytes, mapped, whose descriptor another process can
    /// receive over a Unix socket and map ([`Mapping::adopt`]): a sealed memory file on Linux;
    /// elsewhere a POSIX shared memory object whose random name is unlinked at once, so
    /// nothing is left behind.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) fn create_passable(len: usize) -> io::Result<Mapping> {
        Mapping::create(len)
    }

    /// Elsewhere than Linux and Apple's systems a peer could shrink the object under our
    /// mapping (no seals, and POSIX shared memory may be resized), turning our next access
    /// into SIGBUS: shared-memory connections are refused there.
    #[cfg(not(any(target_os = "linux", target_os = "android", target_vendor = "apple")))]
    pub(crate) fn create_passable(_len: usize) -> io::Result<Mapping> {
        Err(unsealable())
    }

    /// See the Linux version. Apple's systems refuse to resize a POSIX shared memory object
    /// once its size is set, so the peer cannot shrink it.
    #[cfg(target_vendor = "apple")]
    pub(crate) fn create_passable(len: usize) -> io::Result<Mapping> {
        use std::os::fd::FromRawFd;
        let mut random = [0u8; 8];
        crate::util::fill_random(&mut random).map_err(io::Error::other)?;
        let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let name = std::ffi::CString::new(format!("/procwire-{hex}")).map_err(io::Error::other)?;
        let flags = libc::O_RDWR | libc::O_CREAT | libc::O_EXCL;
        // SAFETY: a NUL-terminated name; the mode is the variadic argument O_CREAT takes.
        let fd = unsafe { libc::shm_open(name.as_ptr(), flags, 0o600 as libc::c_uint) };
        if fd == -1 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: shm_open returned a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: the name made above; the descriptor keeps the object alive.
        unsafe { libc::shm_unlink(name.as_ptr()) };
        let size = libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: a valid descriptor and size.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size) } == -1 {
            return Err(io::Error::last_os_error());
        }
        Mapping::map(fd, len)
    }

    /// Maps a region another process made with [`Mapping::create_passable`] and sent us. On
    /// Linux only a memory file sealed against shrinking is taken: the sender could otherwise
    /// shrink it under our mapping and turn our next access into SIGBUS.
    pub(crate) fn adopt(fd: OwnedFd) -> io::Result<Mapping> {
        #[cfg(not(any(target_os = "linux", target_os = "android", target_vendor = "apple")))]
        return Err(unsealable());
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            // SAFETY: a valid descriptor; F_GET_SEALS takes no argument.
            let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
            if seals == -1 || seals & libc::F_SEAL_SHRINK == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the shared memory received is not sealed",
                ));
            }
            // Sealed against writing, it cannot be mapped writable: said here as the sender's
            // fault, instead of a bare "operation not permitted" from mmap.
            if seals & (libc::F_SEAL_WRITE | libc::F_SEAL_FUTURE_WRITE) != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the shared memory received is sealed against writing",
                ));
            }
        }
        let file = std::fs::File::from(fd);
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "shared memory too large"))?;
        Mapping::map(file.into(), len)
    }

    /// The descriptor, to send to another process.
    pub(crate) fn share_fd(&self) -> io::Result<std::os::fd::BorrowedFd<'_>> {
        Ok(std::os::fd::AsFd::as_fd(&self.fd))
    }

    fn map(fd: OwnedFd, len: usize) -> io::Result<Mapping> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "an empty shared memory file"));
        }
        // SAFETY: mapping a descriptor we own, shared, for its whole length.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Mapping { fd, ptr, len })
    }

    pub(crate) fn ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The two numbers a handle carries: this process's pid and the descriptor.
    pub(crate) fn origin(&self) -> (u32, i32) {
        (std::process::id(), self.fd.as_raw_fd())
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what map() mapped; nothing borrows it past the owner.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Bytes reserved for a mutex in shared memory.
pub(crate) const MUTEX_SPACE: usize = 64;
const _: () = assert!(std::mem::size_of::<libc::pthread_mutex_t>() <= MUTEX_SPACE);

/// The lock of one mapping: a process-shared, error-checking mutex inside it, robust where the
/// OS has it (a holder that dies leaves it to the next locker with a flag, never held forever).
#[derive(Debug)]
pub(crate) struct Lock {
    at: usize,
}

impl Lock {
    /// Initialises the mutex in the `MUTEX_SPACE` bytes at offset `at` of `map`.
    ///
    /// # Safety
    /// Those bytes lie inside `map`, suitably aligned, and nobody uses them yet.
    pub(crate) unsafe fn create(map: &Mapping, at: usize) -> io::Result<Lock> {
        // SAFETY: inside the mapping (the caller's contract).
        let m = unsafe { map.ptr().add(at) }.cast::<libc::pthread_mutex_t>();
        // SAFETY: attr is initialised by pthread_mutexattr_init before use and destroyed after.
        unsafe {
            let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
            check(libc::pthread_mutexattr_init(attr.as_mut_ptr()))?;
            let attr = attr.as_mut_ptr();
            let r = (|| {
                check(libc::pthread_mutexattr_setpshared(attr, libc::PTHREAD_PROCESS_SHARED))?;
                // A relock by the holder is EDEADLK instead of a wait that never ends.
                check(libc::pthread_mutexattr_settype(attr, libc::PTHREAD_MUTEX_ERRORCHECK))?;
                #[cfg(any(target_os = "linux", target_os = "android"))]
                check(libc::pthread_mutexattr_setrobust(attr, libc::PTHREAD_MUTEX_ROBUST))?;
                check(libc::pthread_mutex_init(m, attr))
            })();
            libc::pthread_mutexattr_destroy(attr);
            r?;
        }
        Ok(Lock { at })
    }

    /// The mutex another process initialised at offset `at` of `map`.
    ///
    /// # Safety
    /// As [`Lock::create`], except that the bytes hold the mutex.
    pub(crate) unsafe fn open(_map: &Mapping, at: usize) -> io::Result<Lock> {
        Ok(Lock { at })
    }

    fn mutex(&self, map: &Mapping) -> *mut libc::pthread_mutex_t {
        // SAFETY: inside the mapping (the contract of create and open).
        unsafe { map.ptr().add(self.at) }.cast()
    }

    /// Locks the mutex, waiting at most `timeout` when one is given; `true` when its previous
    /// holder died holding it (the data it guards may be half-updated). A wait that ran out is
    /// a `TimedOut` error without an OS error code.
    ///
    /// # Safety
    /// `map` is the mapping this lock was made or opened with.
    pub(crate) unsafe fn lock(
        &self,
        map: &Mapping,
        timeout: Option<std::time::Duration>,
    ) -> io::Result<bool> {
        let m = self.mutex(map);
        let r = match timeout {
            // SAFETY: an initialised mutex in a live mapping (the caller's contract).
            None => unsafe { libc::pthread_mutex_lock(m) },
            Some(t) => timed_lock(m, t)?,
        };
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if r == libc::EOWNERDEAD {
            // SAFETY: we hold the mutex now; marking it consistent makes it usable again (the
            // caller records the death in the memory, where every later locker sees it).
            check(unsafe { libc::pthread_mutex_consistent(m) })?;
            return Ok(true);
        }
        if r == libc::ETIMEDOUT {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "the lock stayed held"));
        }
        check(r).map(|()| false)
    }

    /// Unlocks the mutex, which this thread holds.
    ///
    /// # Safety
    /// As [`Lock::lock`], and this thread holds the mutex.
    pub(crate) unsafe fn unlock(&self, map: &Mapping) {
        // SAFETY: the caller guarantees it holds the initialised mutex.
        unsafe { libc::pthread_mutex_unlock(self.mutex(map)) };
    }
}

/// `pthread_mutex_timedlock` with a deadline `t` from now. The deadline is on the realtime
/// clock (what the function takes; the monotonic `pthread_mutex_clocklock` is not in every
/// libc), so a clock step while waiting shortens or lengthens the wait.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn timed_lock(m: *mut libc::pthread_mutex_t, t: std::time::Duration) -> io::Result<libc::c_int> {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid clock and a timespec to write.
    cvt(unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) })?;
    let nanos = now.tv_nsec as u64 + u64::from(t.subsec_nanos());
    let secs = libc::time_t::try_from(t.as_secs())
        .ok()
        .and_then(|s| s.checked_add(now.tv_sec))
        .and_then(|s| s.checked_add((nanos / 1_000_000_000) as libc::time_t))
        .unwrap_or(libc::time_t::MAX);
    let deadline = libc::timespec { tv_sec: secs, tv_nsec: (nanos % 1_000_000_000) as _ };
    // SAFETY: an initialised mutex in a live mapping (the contract of Lock::lock), a valid
    // timespec.
    Ok(unsafe { libc::pthread_mutex_timedlock(m, &deadline) })
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn timed_lock(_m: *mut libc::pthread_mutex_t, _t: std::time::Duration) -> io::Result<libc::c_int> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "a timed lock needs Linux"))
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(r)) }
}

/// Why a shared-memory connection is refused where a region cannot be protected.
#[cfg(not(any(target_os = "linux", target_os = "android", target_vendor = "apple")))]
fn unsealable() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "shared-memory connections need Linux (sealed memory files) or macOS: here a peer could shrink the region",
    )
}
