//! A descriptor that is readable while any of a set of descriptors is: an epoll instance on
//! Linux and Android, a kqueue elsewhere. Level-triggered, read interest only.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// The set; its own descriptor is what a caller's poll loop watches.
#[derive(Debug)]
pub(crate) struct PollSet {
    fd: OwnedFd,
}

fn cvt(n: libc::c_int) -> io::Result<libc::c_int> {
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n) }
}

impl AsFd for PollSet {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
impl PollSet {
    pub(crate) fn new() -> io::Result<PollSet> {
        // SAFETY: epoll_create1 takes no pointers; a non-negative result is a new descriptor
        // that nobody else owns.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `fd` was just created and is owned by nothing else.
        Ok(PollSet { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd) -> io::Result<()> {
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: fd as u64 };
        // SAFETY: both descriptors are open (the caller's is borrowed for the call); `ev` is a
        // valid event for the duration of the call.
        cvt(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) }).map(drop)
    }

    /// Watches `fd` for readability until it is closed or [`remove`](Self::remove)d.
    pub(crate) fn add(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd.as_raw_fd())
    }

    /// Stops watching `fd` (which stays open elsewhere).
    pub(crate) fn remove(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd.as_raw_fd())
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
impl PollSet {
    pub(crate) fn new() -> io::Result<PollSet> {
        // SAFETY: kqueue takes no arguments; a non-negative result is a new descriptor.
        let fd = cvt(unsafe { libc::kqueue() })?;
        // SAFETY: `fd` was just created and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: fcntl on a descriptor we own, with no pointers.
        cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) })?;
        Ok(PollSet { fd })
    }

    fn change(&self, fd: RawFd, flags: u16) -> io::Result<()> {
        // SAFETY: kevent is plain data; all-zero is a valid value that is filled in below.
        let mut ev: libc::kevent = unsafe { std::mem::zeroed() };
        ev.ident = fd as _;
        ev.filter = libc::EVFILT_READ;
        ev.flags = flags;
        // SAFETY: one valid change record, no event list, no timeout pointer needed as
        // nothing is waited for.
        let n =
            unsafe { libc::kevent(self.fd.as_raw_fd(), &ev, 1, std::ptr::null_mut(), 0, std::ptr::null()) };
        cvt(n).map(drop)
    }

    /// Watches `fd` for readability until it is closed or [`remove`](Self::remove)d.
    pub(crate) fn add(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.change(fd.as_raw_fd(), libc::EV_ADD)
    }

    /// Stops watching `fd` (which stays open elsewhere).
    pub(crate) fn remove(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.change(fd.as_raw_fd(), libc::EV_DELETE)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    use super::*;

    fn readable(fd: BorrowedFd<'_>) -> bool {
        let mut p = [libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
        crate::sys::poll(&mut p, Some(std::time::Instant::now())).unwrap() == 1
    }

    #[test]
    fn readable_while_a_member_is() {
        let set = PollSet::new().unwrap();
        let (mut a, b) = UnixStream::pair().unwrap();
        set.add(b.as_fd()).unwrap();
        assert!(!readable(set.as_fd()));
        a.write_all(b"x").unwrap();
        assert!(readable(set.as_fd()));
        set.remove(b.as_fd()).unwrap();
        assert!(!readable(set.as_fd()));
    }
}
