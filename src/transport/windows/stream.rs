//! The Windows byte stream: a nonblocking TCP socket, or a message pipe seen as a stream of
//! frames.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::windows::io::{AsHandle, OwnedHandle};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use socket2::{SockAddr, Socket};
use windows_sys::Win32::Networking::WinSock::{POLLRDNORM, POLLWRNORM};

use super::msg_pipe::{Dir, MsgPipe, uninit_view};
use super::poll::{poll_sockets, pollfd, retry_socket};
use crate::{Address, Error, Result, sys};

/// A connected stream: a TCP socket, or a named pipe adapted to a stream of frames.
#[derive(Debug)]
pub(crate) struct Stream {
    pub(super) inner: Inner,
    /// The process this pipe end's peer end was handed to, which Windows does not record
    /// (see `handles.rs`); set by the parent of a child it started. 0 (no process has that id
    /// but the idle process): not set.
    pub(super) peer: AtomicU32,
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
        Ok(Stream { inner: Inner::Tcp(s), peer: AtomicU32::new(0) })
    }

    pub(super) fn pipe(handle: OwnedHandle, dir: Dir) -> io::Result<Stream> {
        Ok(Stream { inner: Inner::Pipe(MsgPipe::new(handle, dir)?), peer: AtomicU32::new(0) })
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

    /// Hands a duplicate of this pipe end to the child that `cmd` spawns, named in its
    /// environment variable `var` (see [`sys::pass_to_child`]). A TCP socket cannot go this way:
    /// Windows shares a socket only with a process whose pid is known, and it is not yet.
    pub(crate) fn pass_to_child(&self, cmd: &mut Command, var: &str) -> io::Result<()> {
        match &self.inner {
            Inner::Pipe(p) => sys::pass_to_child(p.handle.as_handle(), dir_tag(p.dir()), cmd, var),
            Inner::Tcp(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "on Windows only named-pipe connections can be passed to a child at its start \
                 (a socket is shared with a known process: use procwire::handles over a pipe)",
            )),
        }
    }

    /// Takes the pipe end a parent passed with [`pass_to_child`](Stream::pass_to_child), after
    /// the checks of [`sys::adopt_from_env`].
    pub(crate) fn from_env(var: &str) -> Result<Stream> {
        let (h, tag) = sys::adopt_from_env(var)?;
        let dir = dir_of_tag(&tag).ok_or_else(|| {
            Error::Io(io::Error::new(io::ErrorKind::InvalidInput, format!("{var}: unknown kind {tag:?}")))
        })?;
        Ok(Stream::pipe(h, dir)?)
    }

    /// Notes that the peer end of this pipe was handed to process `pid`.
    pub(crate) fn handed_to(&self, pid: u32) {
        self.peer.store(pid, Ordering::Relaxed);
    }
}

/// The tag that names a pipe end's directions where it is handed over.
pub(super) fn dir_tag(dir: Dir) -> &'static str {
    match dir {
        Dir::Duplex => "pipe",
        Dir::RecvOnly => "pipe-r",
        Dir::SendOnly => "pipe-w",
    }
}

pub(super) fn dir_of_tag(tag: &str) -> Option<Dir> {
    [Dir::Duplex, Dir::RecvOnly, Dir::SendOnly].into_iter().find(|&d| dir_tag(d) == tag)
}

pub(super) fn to_address(sa: SockAddr) -> Option<Address> {
    sa.as_socket().map(Address::tcp)
}
