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
        Kind::from_tag(tag).map(|kind| Stream::new(fd, kind))
    }

    /// Sends the single byte `byte` with the descriptor `fd` attached.
    pub(crate) fn send_fd(&self, byte: u8, fd: BorrowedFd<'_>, deadline: Option<Instant>) -> io::Result<()> {
        wait_fd(self.fd.as_raw_fd(), libc::POLLOUT, deadline)?;
        let mut data = [byte];
        let mut iov = libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: 1 };
        // SAFETY: CMSG_SPACE is a pure size computation.
        let space = unsafe { libc::CMSG_SPACE(size_of::<RawFd>() as u32) } as usize;
        let mut cbuf = vec![0u64; space.div_ceil(8)];
        // SAFETY: msghdr is plain data; every pointer set below outlives the sendmsg call, and
        // the control buffer is large enough (CMSG_SPACE) and aligned (u64) for one descriptor.
        unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = cbuf.as_mut_ptr().cast();
            msg.msg_controllen = space as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as _;
            libc::CMSG_DATA(cmsg).cast::<RawFd>().write_unaligned(fd.as_raw_fd());
            loop {
                let n = libc::sendmsg(self.fd.as_raw_fd(), &msg, libc::MSG_NOSIGNAL);
                if n == 1 {
                    return Ok(());
                }
                let e = io::Error::last_os_error();
                if n < 0 && e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(if n < 0 { e } else { io::ErrorKind::WriteZero.into() });
            }
        }
    }

    /// Receives exactly one byte and the descriptor attached to it, if any (`None` when the
    /// byte came without one). End of stream is `UnexpectedEof`.
    pub(crate) fn recv_fd(&self, deadline: Option<Instant>) -> io::Result<(u8, Option<OwnedFd>)> {
        wait_fd(self.fd.as_raw_fd(), libc::POLLIN, deadline)?;
        let mut data = [0u8];
        let mut iov = libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: 1 };
        // SAFETY: CMSG_SPACE is a pure size computation.
        let space = unsafe { libc::CMSG_SPACE(size_of::<RawFd>() as u32) } as usize;
        let mut cbuf = vec![0u64; space.div_ceil(8)];
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let flags = libc::MSG_CMSG_CLOEXEC;
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let flags = 0;
        // SAFETY: as send_fd; the kernel writes at most msg_controllen bytes of control data,
        // and a descriptor it delivers is new and ours to own.
        unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = cbuf.as_mut_ptr().cast();
            msg.msg_controllen = space as _;
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
