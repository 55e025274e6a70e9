//! The Windows byte stream: a nonblocking TCP socket, or a message pipe seen as a stream of
//! frames.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::windows::io::OwnedHandle;
use std::process::Command;
use std::time::{Duration, Instant};

use socket2::{SockAddr, Socket};
use windows_sys::Win32::Networking::WinSock::{POLLRDNORM, POLLWRNORM};

use super::msg_pipe::{Dir, MsgPipe, uninit_view};
use super::poll::{poll_sockets, pollfd, retry_socket};
use crate::{Address, Error, Result};

const CHILD_UNSUPPORTED: &str = "passing connections to children on Windows is not supported yet";

/// A connected stream: a TCP socket, or a named pipe adapted to a stream of frames.
#[derive(Debug)]
pub(crate) struct Stream {
    pub(super) inner: Inner,
}

#[derive(Debug)]
pub(super) enum Inner {
    Tcp(Socket),
    Pipe(MsgPipe),
}

impl Stream {
    pub(super) fn tcp(s: Socket) -> io::Result<Stream> {
        // Nonblocking for good: the receiving and the sending half share the socket, and each
        // waits with WSAPoll on its own terms (a per-call flag like MSG_DONTWAIT does not exist).
        s.set_nonblocking(true)?;
        s.set_tcp_nodelay(true)?;
        Ok(Stream { inner: Inner::Tcp(s) })
    }

    pub(super) fn pipe(handle: OwnedHandle, dir: Dir) -> io::Result<Stream> {
        Ok(Stream { inner: Inner::Pipe(MsgPipe::new(handle, dir)?) })
    }

    pub(super) fn socket(&self) -> Option<&Socket> {
        match &self.inner {
            Inner::Tcp(s) => Some(s),
            Inner::Pipe(_) => None,
        }
    }

    pub(crate) fn can_read(&self) -> bool {
        match &self.inner {
            Inner::Tcp(_) => true,
            Inner::Pipe(p) => p.can_read(),
        }
    }

    pub(crate) fn can_write(&self) -> bool {
        match &self.inner {
            Inner::Tcp(_) => true,
            Inner::Pipe(p) => p.can_write(),
        }
    }

    /// Reads into `buf`; 0 means end of stream; `TimedOut` when `deadline` passes first.
    pub(crate) fn read(&self, buf: &mut [u8], deadline: Option<Instant>) -> io::Result<usize> {
        self.read_uninit(uninit_view(buf), deadline)
    }

    /// Reads into `buf` without zeroing it; the first `n` bytes are initialised when it
    /// returns `Ok(n)`.
    pub(crate) fn read_uninit(
        &self,
        buf: &mut [MaybeUninit<u8>],
        deadline: Option<Instant>,
    ) -> io::Result<usize> {
        match &self.inner {
            Inner::Tcp(s) => retry_socket(s, POLLRDNORM, deadline, |s| s.recv(buf)),
            Inner::Pipe(p) => p.read(buf, deadline),
        }
    }

    /// Writes some of `bufs`; `TimedOut` when `deadline` passes first. On a pipe, the bytes must
    /// be frames: each payload becomes one message.
    pub(crate) fn write_vectored(
        &self,
        bufs: &[IoSlice<'_>],
        deadline: Option<Instant>,
    ) -> io::Result<usize> {
        match &self.inner {
            Inner::Tcp(s) => retry_socket(s, POLLWRNORM, deadline, |s| s.send_vectored(bufs)),
            Inner::Pipe(p) => p.write_frames(bufs, deadline),
        }
    }

    /// Whether data (or end of stream) can be read now, waiting up to `timeout` (`None`: forever).
    pub(crate) fn wait_readable(&self, timeout: Option<Duration>) -> io::Result<bool> {
        // A timeout too long to add is as good as none.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        match &self.inner {
            Inner::Tcp(s) => Ok(poll_sockets(&mut [pollfd(s, POLLRDNORM)], deadline)? > 0),
            Inner::Pipe(p) => p.wait_readable(deadline),
        }
    }

    /// Readable now, for the polling loop of [`wait_any`]. An error counts as ready: the read
    /// that follows reports it for this stream alone.
    pub(super) fn probe(&self) -> bool {
        !matches!(self.wait_readable(Some(Duration::ZERO)), Ok(false))
    }

    pub(crate) fn local_addr(&self) -> Option<Address> {
        self.socket().and_then(|s| s.local_addr().ok()).and_then(to_address)
    }

    pub(crate) fn peer_addr(&self) -> Option<Address> {
        self.socket().and_then(|s| s.peer_addr().ok()).and_then(to_address)
    }

    /// Windows has no uid and gid to report; see `Connection::peer_credentials`.
    pub(crate) fn peer_credentials(&self) -> Option<crate::transport::PeerCredentials> {
        None
    }

    /// Enables TCP keepalive probes after `idle` (sockets only; a no-op for pipes).
    pub(crate) fn set_keepalive(&self, idle: Option<Duration>) -> io::Result<()> {
        let Some(s) = self.socket() else {
            return Ok(());
        };
        match idle {
            None => s.set_keepalive(false),
            Some(t) => s.set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(t).with_interval(t)),
        }
    }

    /// Not supported on Windows yet: always an `Unsupported` error.
    pub(crate) fn pass_to_child(&self, _cmd: &mut Command, _var: &str) -> io::Result<()> {
        Err(io::Error::new(io::ErrorKind::Unsupported, CHILD_UNSUPPORTED))
    }

    /// Not supported on Windows yet: always an `Unsupported` error.
    pub(crate) fn from_env(var: &str) -> Result<Stream> {
        Err(Error::Io(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("cannot adopt the connection named by {var}: {CHILD_UNSUPPORTED}"),
        )))
    }
}

pub(super) fn to_address(sa: SockAddr) -> Option<Address> {
    sa.as_socket().map(Address::tcp)
}
