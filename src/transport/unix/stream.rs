//! Unix byte streams: a connected socket (Unix domain or TCP) or one end of an OS pipe, read
//! and written with plain blocking calls on the descriptor; deadlines are kept with `poll(2)`
//! before the call. Also connecting to an address and making a connected pair.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::process::Command;
use std::time::{Duration, Instant};

use socket2::{Domain, SockRef, Socket, Type};

use super::addr::{to_address, unix_sockaddr};
use super::cred::peer_credentials;
use crate::sys::{self, FdKind as Kind, poll, wait_fd};
use crate::transport::PeerCredentials;
use crate::{Address, Error, Result};

/// Unanswered keepalive probes after which a TCP connection counts as lost.
const KEEPALIVE_PROBES: u32 = 3;

/// A connected byte stream: a socket, or one end of an OS pipe.
#[derive(Debug)]
pub(crate) struct Stream {
    pub(super) fd: OwnedFd,
    pub(super) kind: Kind,
}

fn cvt(n: isize) -> io::Result<usize> {
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
}

impl Stream {
    pub(super) fn new(fd: OwnedFd, kind: Kind) -> Stream {
        Stream { fd, kind }
    }

    pub(crate) fn can_read(&self) -> bool {
        self.kind != Kind::PipeWrite
    }

    pub(crate) fn can_write(&self) -> bool {
        self.kind != Kind::PipeRead
    }

    /// Reads at most `len` bytes into `ptr`; 0 means end of stream.
    ///
    /// With a deadline, the descriptor is polled first and a socket is then read with
    /// `MSG_DONTWAIT`, so a read never blocks past the deadline even if another holder of the
    /// descriptor took the data. Polling first costs one call more when the data is there
    /// already and one less when it is not, the usual case of a read with a deadline (an
    /// answer awaited). A deadline already passed means the caller knows the socket is
    /// readable: it is read at once. Pipes (no such flag) are always polled first.
    pub(crate) fn read_raw(&self, ptr: *mut u8, len: usize, deadline: Option<Instant>) -> io::Result<usize> {
        let fd = self.fd.as_raw_fd();
        let dontwait = deadline.is_some() && self.kind.is_socket();
        if deadline.is_some_and(|d| !dontwait || d > Instant::now()) {
            wait_fd(fd, libc::POLLIN, deadline)?;
        }
        loop {
            // SAFETY: the caller guarantees ptr..ptr+len is writable memory it owns.
            let r = cvt(unsafe {
                if dontwait {
                    libc::recv(fd, ptr.cast(), len, libc::MSG_DONTWAIT)
                } else {
                    libc::read(fd, ptr.cast(), len)
                }
            });
            match r {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A descriptor someone made nonblocking: wait for data, then try again.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_fd(fd, libc::POLLIN, deadline)?,
                r => return r,
            }
        }
    }

    /// Reads into `buf`; 0 means end of stream; `TimedOut` when `deadline` passes first.
    pub(crate) fn read(&self, buf: &mut [u8], deadline: Option<Instant>) -> io::Result<usize> {
        self.read_raw(buf.as_mut_ptr(), buf.len(), deadline)
    }

    /// Writes some of `bufs` (one `sendmsg`/`writev`); `TimedOut` when `deadline` passes first.
    pub(crate) fn write_vectored(
        &self,
        bufs: &[IoSlice<'_>],
        deadline: Option<Instant>,
    ) -> io::Result<usize> {
        let fd = self.fd.as_raw_fd();
        loop {
            let r = if self.kind.is_socket() {
                let mut flags = libc::MSG_NOSIGNAL;
                if deadline.is_some() {
                    flags |= libc::MSG_DONTWAIT;
                }
                SockRef::from(&self.fd).send_vectored_with_flags(bufs, flags)
            } else {
                let mut capped = [IoSlice::new(&[]); 4];
                let bufs = if deadline.is_some() {
                    // A pipe write of up to PIPE_BUF bytes does not block once poll says writable.
                    wait_fd(fd, libc::POLLOUT, deadline)?;
                    cap_slices(bufs, libc::PIPE_BUF, &mut capped)
                } else {
                    bufs
                };
                // SAFETY: IoSlice is ABI-compatible with iovec; the slices outlive the call.
                cvt(unsafe { libc::writev(fd, bufs.as_ptr().cast(), bufs.len().min(4) as libc::c_int) })
            };
            match r {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_fd(fd, libc::POLLOUT, deadline)?,
                r => return r,
            }
        }
    }

    /// Whether data (or end of stream) can be read now, waiting up to `timeout` (`None`: forever).
    pub(crate) fn wait_readable(&self, timeout: Option<Duration>) -> io::Result<bool> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        match wait_fd(self.fd.as_raw_fd(), libc::POLLIN, deadline) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub(crate) fn local_addr(&self) -> Option<Address> {
        self.kind
            .is_socket()
            .then(|| SockRef::from(&self.fd).local_addr().ok())
            .flatten()
            .and_then(to_address)
    }

    pub(crate) fn peer_addr(&self) -> Option<Address> {
        self.kind.is_socket().then(|| SockRef::from(&self.fd).peer_addr().ok()).flatten().and_then(to_address)
    }

    /// The credentials of the process at the other end of a Unix socket, as the kernel recorded
    /// them when the connection was made; `None` for other kinds or when the OS cannot tell.
    pub(crate) fn peer_credentials(&self) -> Option<PeerCredentials> {
        if self.kind != Kind::Unix {
            return None;
        }
        peer_credentials(self.fd.as_fd())
    }

    /// Enables TCP keepalive probes after `idle` (TCP only; a no-op elsewhere): on Linux and
    /// macOS [`KEEPALIVE_PROBES`] probes `idle` apart, and on Linux a `TCP_USER_TIMEOUT` that
    /// ends a connection whose sent data stays unacknowledged as long.
    pub(crate) fn set_keepalive(&self, idle: Option<Duration>) -> io::Result<()> {
        if self.kind != Kind::Tcp {
            return Ok(());
        }
        let s = SockRef::from(&self.fd);
        let Some(t) = idle else {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            s.set_tcp_user_timeout(None)?;
            return s.set_keepalive(false);
        };
        let ka = socket2::TcpKeepalive::new().with_time(t).with_interval(t);
        #[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
        let ka = ka.with_retries(KEEPALIVE_PROBES);
        s.set_tcp_keepalive(&ka)?;
        #[cfg(any(target_os = "linux", target_os = "android"))]
        s.set_tcp_user_timeout(t.checked_mul(KEEPALIVE_PROBES + 1))?;
        Ok(())
    }

    /// Makes a duplicate of the descriptor inheritable by `cmd`'s child only, named in the
    /// child's environment variable `var` (see [`sys::pass_to_child`]).
    pub(crate) fn pass_to_child(&self, cmd: &mut Command, var: &str) -> io::Result<()> {
        sys::pass_to_child(&self.fd, self.kind, cmd, var)
    }

    /// Adopts a descriptor passed with [`pass_to_child`](Stream::pass_to_child), after the
    /// checks of [`sys::adopt_from_env`].
    pub(crate) fn from_env(var: &str) -> Result<Stream> {
        let (fd, kind) = sys::adopt_from_env(var)?;
        if kind == sys::FdKind::Memory {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{var} names shared memory, not a stream"),
            )
            .into());
        }
        Ok(Stream::new(fd, kind))
    }
}

fn cap_slices<'b>(
    bufs: &'b [IoSlice<'_>],
    mut budget: usize,
    out: &'b mut [IoSlice<'b>; 4],
) -> &'b [IoSlice<'b>] {
    let mut n = 0;
    for b in bufs.iter().take(4) {
        if budget == 0 {
            break;
        }
        let take = b.len().min(budget);
        out[n] = IoSlice::new(&b[..take]);
        budget -= take;
        n += 1;
    }
    &out[..n]
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// An OS stream's descriptor (an encrypted one's: the socket under it); an in-process stream
/// has none (its connection says so, and asking panics, as documented on `Connection`'s `AsFd`).
impl AsFd for super::super::Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            super::super::Stream::Os(s) => s.fd.as_fd(),
            super::super::Stream::Mem(_) => panic!("an in-process connection has no file descriptor"),
            // The doorbell: readable when the peer rang or went away.
            super::super::Stream::Shm(s) => s.socket().fd.as_fd(),
            #[cfg(feature = "encrypt")]
            super::super::Stream::Sealed(s) => s.inner().as_fd(),
        }
    }
}

impl AsRawFd for super::super::Stream {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

/// A new stream socket in nonblocking mode (one system call where the OS allows it).
fn nonblocking_socket(domain: Domain, protocol: Option<socket2::Protocol>) -> io::Result<Socket> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        Socket::new(domain, Type::STREAM.nonblocking(), protocol)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let s = Socket::new(domain, Type::STREAM, protocol)?;
        s.set_nonblocking(true)?;
        Ok(s)
    }
}

/// Makes a socket blocking with one `ioctl` (socket2's `set_nonblocking` reads the flags first).
fn set_blocking(s: &Socket) -> io::Result<()> {
    let mut off: libc::c_int = 0;
    // SAFETY: FIONBIO takes a pointer to an int, valid for the duration of the call.
    if unsafe { libc::ioctl(s.as_raw_fd(), libc::FIONBIO, &mut off) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits for a nonblocking TCP connect in progress to finish, until `deadline` (`TimedOut`).
fn wait_connected(s: &Socket, deadline: Option<Instant>) -> io::Result<()> {
    let mut p = [libc::pollfd { fd: s.as_raw_fd(), events: libc::POLLOUT, revents: 0 }];
    if poll(&mut p, deadline)? == 0 {
        return Err(io::ErrorKind::TimedOut.into());
    }
    if p[0].revents & (libc::POLLERR | libc::POLLHUP) != 0 {
        return Err(s.take_error()?.unwrap_or_else(|| io::ErrorKind::ConnectionRefused.into()));
    }
    Ok(())
}

/// Connects to `addr`, giving up at `deadline`.
pub(crate) fn connect(addr: &Address, deadline: Option<Instant>) -> Result<Stream> {
    let timeout = |d: Instant| d.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    match addr {
        Address::Unix(_) | Address::UnixAbstract(_) | Address::Shm(_) => {
            let sa = unix_sockaddr(addr)?;
            // A nonblocking connect to a Unix socket completes at once unless the listener's
            // backlog is full; only then is it worth setting a timeout and waiting.
            let s = nonblocking_socket(Domain::UNIX, None)?;
            let r = s.connect(&sa);
            set_blocking(&s)?;
            match r {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // A blocking connect waits for room in the backlog; Linux bounds that wait
                    // by SO_SNDTIMEO and then says EAGAIN.
                    if let Some(d) = deadline {
                        s.set_write_timeout(Some(timeout(d)))?;
                    }
                    match s.connect(&sa) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock && deadline.is_some() => {
                            return Err(Error::Io(io::Error::new(
                                io::ErrorKind::TimedOut,
                                "the listener's backlog stayed full",
                            )));
                        }
                        Err(e) => return Err(Error::Io(e)),
                    }
                    s.set_write_timeout(None)?;
                }
                Err(e) => return Err(Error::Io(e)),
            }
            Ok(Stream::new(s.into(), Kind::Unix))
        }
        Address::Tcp { host, port } => {
            let mut last = None;
            for sa in crate::transport::resolve(addr, host, *port)? {
                let s = nonblocking_socket(Domain::for_address(sa), Some(socket2::Protocol::TCP))?;
                let r = match s.connect(&sa.into()) {
                    Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => wait_connected(&s, deadline),
                    r => r,
                };
                match r {
                    Ok(()) => {
                        set_blocking(&s)?;
                        s.set_tcp_nodelay(true)?;
                        return Ok(Stream::new(s.into(), Kind::Tcp));
                    }
                    Err(e) => last = Some(e),
                }
            }
            Err(Error::Io(last.unwrap_or_else(|| io::ErrorKind::NotFound.into())))
        }
        Address::Pipe(_) => Err(addr.invalid("named pipes exist only on Windows")),
        Address::InProc(_) => Err(addr.invalid("in-process addresses have no OS socket")),
    }
}

/// A connected pair: a socketpair when `duplex`, else an OS pipe as (read end, write end).
pub(crate) fn pipe(duplex: bool) -> io::Result<(Stream, Stream)> {
    if duplex {
        let (a, b) = std::os::unix::net::UnixStream::pair()?;
        Ok((Stream::new(a.into(), Kind::Unix), Stream::new(b.into(), Kind::Unix)))
    } else {
        let (r, w) = std::io::pipe()?;
        Ok((Stream::new(r.into(), Kind::PipeRead), Stream::new(w.into(), Kind::PipeWrite)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(10);

    #[test]
    fn a_read_with_a_deadline_waits_until_it_and_no_longer() {
        let (a, b) = pipe(true).unwrap();
        let mut buf = [0u8; 8];
        // A deadline already passed and nothing there: at once.
        let e = a.read(&mut buf, Some(Instant::now())).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        let start = Instant::now();
        let e = a.read(&mut buf, Some(start + Duration::from_millis(50))).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(start.elapsed() >= Duration::from_millis(50), "{:?}", start.elapsed());
        // Data already there is read even with a deadline already passed.
        b.write_vectored(&[IoSlice::new(b"hi")], None).unwrap();
        assert_eq!(a.read(&mut buf, Some(Instant::now())).unwrap(), 2);
        // Data that arrives before the deadline is read when it arrives.
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            b.write_vectored(&[IoSlice::new(b"x")], None).unwrap();
            b
        });
        assert_eq!(a.read(&mut buf, Some(Instant::now() + LIMIT)).unwrap(), 1);
        assert_eq!(&buf[..1], b"x");
        drop(t.join().unwrap());
        assert_eq!(a.read(&mut buf, Some(Instant::now() + LIMIT)).unwrap(), 0);
    }
}
