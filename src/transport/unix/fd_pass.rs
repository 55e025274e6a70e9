//! Handing descriptors to the process at the other end of a Unix socket (`SCM_RIGHTS`).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Instant;

use super::Stream;
use crate::sys::{FdKind as Kind, wait_fd};

impl Stream {
    /// Whether descriptors can travel over this stream (a Unix domain socket).
    pub(crate) fn can_pass_fds(&self) -> bool {
        self.kind == Kind::Unix
    }

    /// A duplicate of the descriptor and the tag of its kind, to hand to another process.
    pub(crate) fn dup_for_passing(&self) -> io::Result<(OwnedFd, &'static str)> {
        Ok((self.fd.try_clone()?, self.kind.tag()))
    }

    /// A stream adopted from a descriptor received with its kind's tag.
    pub(crate) fn from_passed(fd: OwnedFd, tag: &str) -> Option<Stream> {
        Kind::from_tag(tag).filter(|k| *k != Kind::Memory).map(|kind| Stream::new(fd, kind))
    }

    /// Sends the single byte `byte` with the descriptor `fd` attached.
    pub(crate) fn send_fd(&self, byte: u8, fd: BorrowedFd<'_>, deadline: Option<Instant>) -> io::Result<()> {
        self.send_fd_with(&[byte], fd, deadline)
    }

    /// Sends `data` (not empty) with the descriptor `fd` attached to its first byte, in one
    /// call as long as the socket takes it all: a reader that takes a short read for "no more
    /// for now" (tokio does) then finds all of it in its first read.
    pub(crate) fn send_fd_with(
        &self,
        data: &[u8],
        fd: BorrowedFd<'_>,
        deadline: Option<Instant>,
    ) -> io::Result<()> {
        assert!(!data.is_empty(), "a descriptor travels with at least one byte");
        wait_fd(self.fd.as_raw_fd(), libc::POLLOUT, deadline)?;
        let mut iov = libc::iovec { iov_base: data.as_ptr().cast_mut().cast(), iov_len: data.len() };
        let mut cbuf = control_buffer();
        let msg = header(&mut iov, &mut cbuf);
        // SAFETY: `data`, `iov` and `cbuf`, which `msg` points into, outlive the sendmsg call
        // (which only reads `data`), and the control buffer is large enough (CMSG_SPACE) and
        // aligned (u64) for one descriptor.
        let sent = unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as _;
            libc::CMSG_DATA(cmsg).cast::<RawFd>().write_unaligned(fd.as_raw_fd());
            loop {
                let n = libc::sendmsg(self.fd.as_raw_fd(), &msg, libc::MSG_NOSIGNAL);
                if n > 0 {
                    break n as usize;
                }
                let e = io::Error::last_os_error();
                if n < 0 && e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(if n < 0 { e } else { io::ErrorKind::WriteZero.into() });
            }
        };
        // The descriptor went with the first byte; the rest, if the socket took only part.
        let mut done = sent;
        while done < data.len() {
            match self.write_vectored(&[io::IoSlice::new(&data[done..])], deadline)? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => done += n,
            }
        }
        Ok(())
    }

    /// Receives exactly one byte and the descriptor attached to it, if any (`None` when the
    /// byte came without one). End of stream is `UnexpectedEof`.
    pub(crate) fn recv_fd(&self, deadline: Option<Instant>) -> io::Result<(u8, Option<OwnedFd>)> {
        wait_fd(self.fd.as_raw_fd(), libc::POLLIN, deadline)?;
        let mut data = [0u8];
        let mut iov = libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: 1 };
        let mut cbuf = control_buffer();
        let mut msg = header(&mut iov, &mut cbuf);
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let flags = libc::MSG_CMSG_CLOEXEC;
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let flags = 0;
        // SAFETY: as send_fd; the kernel writes at most msg_controllen bytes of control data,
        // and a descriptor it delivers is new and ours to own.
        unsafe {
            let n = loop {
                let n = libc::recvmsg(self.fd.as_raw_fd(), &mut msg, flags);
                if n >= 0 {
                    break n;
                }
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            };
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let mut got = None;
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                    let bytes = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                    let fds = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                    for i in 0..bytes / size_of::<RawFd>() {
                        let fd = fds.add(i).read_unaligned();
                        let owned = OwnedFd::from_raw_fd(fd);
                        #[cfg(not(any(target_os = "linux", target_os = "android")))]
                        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                        // One descriptor is sent at a time: any extra a peer attached is closed.
                        got.get_or_insert(owned);
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
            if msg.msg_flags & libc::MSG_CTRUNC != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "descriptors were cut off in transit",
                ));
            }
            Ok((data[0], got))
        }
    }
}

/// The size of the control message of one descriptor.
fn one_fd_space() -> usize {
    // SAFETY: CMSG_SPACE is a pure size computation.
    unsafe { libc::CMSG_SPACE(size_of::<RawFd>() as u32) as usize }
}

/// A control buffer with room for one descriptor, aligned for a `cmsghdr` (u64).
fn control_buffer() -> Vec<u64> {
    vec![0u64; one_fd_space().div_ceil(8)]
}

/// The header of a message of the one buffer `iov`, with `cbuf` (from [`control_buffer`]) for
/// its control data; the caller keeps both, and what `iov` points to, alive while it is used.
fn header(iov: &mut libc::iovec, cbuf: &mut [u64]) -> libc::msghdr {
    // SAFETY: msghdr is plain data, for which all zeroes is an empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = one_fd_space() as _;
    msg
}
