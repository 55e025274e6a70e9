//! The sockets under the async face: one read half and one write half over a Unix socket,
//! TCP or a Windows named pipe (`pipe.rs`), or over such halves, encrypted (`sealed.rs`), and
//! a listening socket or pipe. Everything platform-specific of the async face is here and in
//! `pipe.rs`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use ::tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use ::tokio::net::{TcpListener, TcpStream, tcp};
#[cfg(unix)]
use ::tokio::net::{UnixListener, UnixStream, unix};

use crate::{Address, Error, Result};

/// Why an address cannot be used by the async face, or `None` if it can.
fn unsupported(addr: &Address) -> Option<Error> {
    let reason = match addr {
        #[cfg(not(windows))]
        Address::Pipe(_) => "Windows named pipes exist only on Windows",
        Address::InProc(_) => "in-process addresses have no socket for tokio to wait on",
        Address::Shm(_) => {
            "the tokio face does not serve shared-memory connections (shm:) yet; use unix: or tcp:"
        }
        #[cfg(not(unix))]
        Address::Unix(_) | Address::UnixAbstract(_) => "Unix sockets are not available here",
        _ => return None,
    };
    Some(addr.invalid(reason))
}

/// The receiving half of a connection's socket.
#[derive(Debug)]
pub(super) enum ReadHalf {
    Tcp(tcp::OwnedReadHalf),
    #[cfg(unix)]
    Unix(unix::OwnedReadHalf),
    #[cfg(windows)]
    Pipe(super::pipe::PipeReader),
    /// Boxed: the inbox is large, and most connections are plain.
    #[cfg(feature = "encrypt")]
    Sealed(Box<super::sealed::SealedRead>),
}

/// The sending half of a connection's socket.
#[derive(Debug)]
pub(super) enum WriteHalf {
    Tcp(tcp::OwnedWriteHalf),
    #[cfg(unix)]
    Unix(unix::OwnedWriteHalf),
    #[cfg(windows)]
    Pipe(super::pipe::PipeWriter),
    #[cfg(feature = "encrypt")]
    Sealed(Box<super::sealed::SealedWrite>),
}

impl AsyncRead for ReadHalf {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadHalf::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(unix)]
            ReadHalf::Unix(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(windows)]
            ReadHalf::Pipe(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(feature = "encrypt")]
            ReadHalf::Sealed(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl WriteHalf {
    /// Writes what the socket takes now, without waiting (`WouldBlock` if nothing).
    #[cfg(feature = "encrypt")]
    pub(super) fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            WriteHalf::Tcp(s) => s.try_write(buf),
            #[cfg(unix)]
            WriteHalf::Unix(s) => s.try_write(buf),
            #[cfg(windows)]
            WriteHalf::Pipe(s) => s.try_write(buf),
            WriteHalf::Sealed(_) => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(unix)]
            WriteHalf::Unix(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(windows)]
            WriteHalf::Pipe(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(feature = "encrypt")]
            WriteHalf::Sealed(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            #[cfg(unix)]
            WriteHalf::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            #[cfg(windows)]
            WriteHalf::Pipe(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            #[cfg(feature = "encrypt")]
            WriteHalf::Sealed(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Tcp(s) => Pin::new(s).poll_flush(cx),
            #[cfg(unix)]
            WriteHalf::Unix(s) => Pin::new(s).poll_flush(cx),
            #[cfg(windows)]
            WriteHalf::Pipe(s) => Pin::new(s).poll_flush(cx),
            #[cfg(feature = "encrypt")]
            WriteHalf::Sealed(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(unix)]
            WriteHalf::Unix(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(windows)]
            WriteHalf::Pipe(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(feature = "encrypt")]
            WriteHalf::Sealed(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

/// A connected socket, before it is split into halves.
pub(super) enum Socket {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(UnixStream),
    /// A named pipe, its threads started.
    #[cfg(windows)]
    Pipe(super::pipe::PipeReader, super::pipe::PipeWriter),
}

impl Socket {
    /// Turns TCP keepalive on (after `idle` of silence); no-op on Unix sockets.
    pub(super) fn set_keepalive(&self, idle: Duration) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => {
                socket2::SockRef::from(s).set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(idle))
            }
            #[cfg(unix)]
            Socket::Unix(_) => Ok(()),
            #[cfg(windows)]
            Socket::Pipe(..) => Ok(()),
        }
    }

    /// The peer's address, where it has one.
    pub(super) fn peer_addr(&self) -> Option<Address> {
        match self {
            Socket::Tcp(s) => s.peer_addr().ok().map(Address::from),
            #[cfg(unix)]
            Socket::Unix(s) => {
                let sa = s.peer_addr().ok()?;
                sa.as_pathname().map(|p| Address::Unix(p.to_path_buf()))
            }
            #[cfg(windows)]
            Socket::Pipe(..) => None,
        }
    }

    pub(super) fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Socket::Tcp(s) => {
                let (r, w) = s.into_split();
                (ReadHalf::Tcp(r), WriteHalf::Tcp(w))
            }
            #[cfg(unix)]
            Socket::Unix(s) => {
                let (r, w) = s.into_split();
                (ReadHalf::Unix(r), WriteHalf::Unix(w))
            }
            #[cfg(windows)]
            Socket::Pipe(r, w) => (ReadHalf::Pipe(r), WriteHalf::Pipe(w)),
        }
    }
}

/// Opens a connection to `addr` (one attempt; a pipe waits up to `timeout` for a free
/// instance).
pub(super) async fn connect(addr: &Address, timeout: Duration) -> Result<Socket> {
    if let Some(e) = unsupported(addr) {
        return Err(e);
    }
    match addr {
        Address::Tcp { host, port } => {
            let mut last = None;
            for sa in crate::transport::resolve(addr, host, *port)? {
                match TcpStream::connect(sa).await {
                    Ok(s) => {
                        s.set_nodelay(true)?;
                        return Ok(Socket::Tcp(s));
                    }
                    Err(e) => last = Some(e),
                }
            }
            Err(Error::Io(last.unwrap_or_else(|| io::Error::other("no address to connect to"))))
        }
        #[cfg(windows)]
        Address::Pipe(_) => {
            let (r, w) = super::pipe::connect(addr, timeout).await?;
            Ok(Socket::Pipe(r, w))
        }
        #[cfg(unix)]
        _ => {
            // Abstract names and path checks as the blocking transport makes them. A Unix
            // socket connects at once or fails; a full backlog (the listener is up but behind)
            // is retried here without blocking the runtime, until `connect_timeout` (the
            // caller's timeout around this future, so `timeout` is not needed here).
            let _ = timeout;
            let mut pause = Duration::from_millis(1);
            loop {
                match crate::transport::connect(addr, Some(std::time::Instant::now())) {
                    Ok(s) => {
                        let fd = std::os::fd::AsFd::as_fd(&s).try_clone_to_owned()?;
                        let std = std::os::unix::net::UnixStream::from(fd);
                        std.set_nonblocking(true)?;
                        return Ok(Socket::Unix(UnixStream::from_std(std)?));
                    }
                    Err(Error::Io(e)) if e.kind() == io::ErrorKind::TimedOut => {
                        ::tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_millis(20));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        #[cfg(not(unix))]
        _ => unreachable!("refused by `unsupported`"),
    }
}

/// A listening socket registered with the runtime.
#[derive(Debug)]
pub(super) enum Acceptor {
    Tcp(TcpListener),
    #[cfg(unix)]
    Unix {
        socket: UnixListener,
        /// The blocking transport's listener, kept for the socket file it removes on drop.
        _bound: crate::transport::RawListener,
    },
    #[cfg(windows)]
    Pipe(super::pipe::PipeAcceptor),
}

impl Acceptor {
    pub(super) async fn bind(
        addr: &Address,
        opts: crate::transport::BindOptions,
    ) -> Result<(Acceptor, Address)> {
        if let Some(e) = unsupported(addr) {
            return Err(e);
        }
        match addr {
            Address::Tcp { host, port } => {
                let mut last = None;
                for sa in crate::transport::resolve(addr, host, *port)? {
                    let sock = if sa.is_ipv4() {
                        ::tokio::net::TcpSocket::new_v4()?
                    } else {
                        ::tokio::net::TcpSocket::new_v6()?
                    };
                    #[cfg(unix)]
                    sock.set_reuseaddr(true)?;
                    match sock.bind(sa).and_then(|()| sock.listen(opts.backlog as u32)) {
                        Ok(l) => {
                            let bound = l.local_addr().map(Address::from).unwrap_or_else(|_| addr.clone());
                            return Ok((Acceptor::Tcp(l), bound));
                        }
                        Err(e) => last = Some(e),
                    }
                }
                Err(Error::Io(crate::error::io_context(
                    last.unwrap_or_else(|| io::Error::other("no address to bind")),
                    format_args!("cannot bind {addr}"),
                )))
            }
            #[cfg(windows)]
            Address::Pipe(_) => {
                let (acceptor, local) = super::pipe::PipeAcceptor::bind(addr, &opts)?;
                Ok((Acceptor::Pipe(acceptor), local))
            }
            #[cfg(unix)]
            _ => {
                // The blocking transport binds (stale socket files, the file's mode); the
                // runtime waits on a duplicate of its descriptor.
                let bound = crate::transport::RawListener::bind(addr, &opts)?;
                let local = bound.local_addr().unwrap_or_else(|_| addr.clone());
                let fd = bound.os_fd().ok_or_else(|| addr.invalid("no socket"))?.try_clone_to_owned()?;
                let std = std::os::unix::net::UnixListener::from(fd);
                std.set_nonblocking(true)?;
                Ok((Acceptor::Unix { socket: UnixListener::from_std(std)?, _bound: bound }, local))
            }
            #[cfg(not(unix))]
            _ => unreachable!("refused by `unsupported`"),
        }
    }

    /// The next connection the OS accepted; clients that gave up before it are skipped.
    pub(super) fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Socket>> {
        loop {
            let r = match self {
                Acceptor::Tcp(l) => l.poll_accept(cx).map_ok(|(s, _)| {
                    // Small messages leave at once, as from the blocking listener.
                    let _ = s.set_nodelay(true);
                    Socket::Tcp(s)
                }),
                #[cfg(unix)]
                Acceptor::Unix { socket, .. } => socket.poll_accept(cx).map_ok(|(s, _)| Socket::Unix(s)),
                #[cfg(windows)]
                Acceptor::Pipe(pipe) => pipe.poll_accept(cx).map_ok(|(r, w)| Socket::Pipe(r, w)),
            };
            match r {
                Poll::Ready(Err(e))
                    if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted) => {}
                r => return r,
            }
        }
    }
}
