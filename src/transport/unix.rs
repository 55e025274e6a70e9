//! Unix transports: Unix domain sockets (path and Linux abstract names), TCP through socket2,
//! and OS pipes for one-way `pipe()`. All I/O is plain blocking `read`/`sendmsg`/`writev` on
//! the descriptor; deadlines are kept with `poll(2)` before the call.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, SockRef, Socket, Type};

use crate::connection::PeerCredentials;
use crate::{Address, Error, Family, Result};

pub(crate) const DEFAULT_FAMILY: Family = Family::Unix;

/// Unanswered keepalive probes after which a TCP connection counts as lost.
const KEEPALIVE_PROBES: u32 = 3;

/// A new directory only the owner can enter (mode 0700).
pub(crate) fn private_tempdir() -> io::Result<PathBuf> {
    Ok(tempfile::Builder::new()
        .prefix("procwire-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()?
        .keep())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Unix,
    Tcp,
    PipeRead,
    PipeWrite,
}

impl Kind {
    fn tag(self) -> &'static str {
        match self {
            Kind::Unix => "unix",
            Kind::Tcp => "tcp",
            Kind::PipeRead => "pipe-r",
            Kind::PipeWrite => "pipe-w",
        }
    }

    fn from_tag(s: &str) -> Option<Kind> {
        [Kind::Unix, Kind::Tcp, Kind::PipeRead, Kind::PipeWrite].into_iter().find(|k| k.tag() == s)
    }

    fn is_socket(self) -> bool {
        matches!(self, Kind::Unix | Kind::Tcp)
    }
}

/// A connected byte stream: a socket, or one end of an OS pipe.
#[derive(Debug)]
pub(crate) struct Stream {
    fd: OwnedFd,
    kind: Kind,
}

/// Waits until `fd` is ready for `events` or `deadline` passes (then `TimedOut`).
fn wait_fd(fd: RawFd, events: libc::c_short, deadline: Option<Instant>) -> io::Result<()> {
    let mut p = [libc::pollfd { fd, events, revents: 0 }];
    if poll(&mut p, deadline)? == 0 {
        return Err(io::ErrorKind::TimedOut.into());
    }
    Ok(())
}

/// poll(2) with a deadline, restarted on EINTR; returns the number of ready descriptors.
fn poll(fds: &mut [libc::pollfd], deadline: Option<Instant>) -> io::Result<usize> {
    loop {
        let timeout_ms = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                // Round up so that a sub-millisecond remainder still waits instead of spinning.
                left.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int
            }
        };
        // SAFETY: fds is a valid, exclusively borrowed array of pollfd for the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn cvt(n: isize) -> io::Result<usize> {
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
}

impl Stream {
    fn new(fd: OwnedFd, kind: Kind) -> Stream {
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

    /// Makes a duplicate of the descriptor inheritable by `cmd`'s child only, and names it in
    /// the child's environment variable `var` as `FD:KIND:PARENT_PID`.
    ///
    /// The duplicate is owned by the command (through its `pre_exec` hook), so it stays valid
    /// however long the caller waits before spawning, and it is closed in the parent when the
    /// command is dropped.
    pub(crate) fn pass_to_child(&self, cmd: &mut Command, var: &str) -> io::Result<()> {
        let dup = std::sync::Arc::new(self.fd.try_clone()?);
        let fd = dup.as_raw_fd();
        cmd.env(var, format!("{fd}:{}:{}", self.kind.tag(), std::process::id()));
        // SAFETY: the closure only calls fcntl, which is async-signal-safe, on a descriptor the
        // closure itself keeps open.
        unsafe {
            cmd.pre_exec(move || {
                if libc::fcntl(dup.as_raw_fd(), libc::F_SETFD, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(())
    }

    /// Adopts a descriptor passed with [`pass_to_child`](Stream::pass_to_child).
    ///
    /// Taking ownership of a descriptor by number is only sound if nothing else owns it. The
    /// checks: the value names our parent's pid (a grandchild that inherited the variable is
    /// refused), the descriptor is open, of the named kind, and inheritable (every descriptor
    /// Rust opens is close-on-exec, so one this process already owns is refused), and each
    /// number is adopted once.
    pub(crate) fn from_env(var: &str) -> Result<Stream> {
        static ADOPTED: Mutex<Vec<RawFd>> = Mutex::new(Vec::new());
        let bad = |why: String| Error::Io(io::Error::new(io::ErrorKind::InvalidInput, why));
        let value = std::env::var(var).map_err(|_| bad(format!("environment variable {var} is not set")))?;
        let mut parts = value.split(':');
        let (Some(fd), Some(tag), Some(ppid), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad(format!("{var}={value:?} is not FD:KIND:PARENT_PID")));
        };
        let fd: RawFd = fd
            .parse()
            .ok()
            .filter(|&fd| fd >= 0)
            .ok_or_else(|| bad(format!("{var}={value:?}: bad descriptor number")))?;
        let kind = Kind::from_tag(tag).ok_or_else(|| bad(format!("{var}={value:?}: unknown kind")))?;
        // SAFETY: getppid has no preconditions.
        if ppid.parse::<i64>().ok() != Some(i64::from(unsafe { libc::getppid() })) {
            return Err(bad(format!(
                "{var}={value:?} was passed to another process (our parent is not {ppid})"
            )));
        }
        let mut adopted = ADOPTED.lock().unwrap_or_else(|p| p.into_inner());
        if adopted.contains(&fd) {
            return Err(bad(format!("descriptor {fd} from {var} was already adopted")));
        }
        // SAFETY: fcntl(F_GETFD) and fstat on any integer are safe; they fail with EBADF for a
        // descriptor that is not open.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags == -1 {
            return Err(bad(format!(
                "descriptor {fd} from {var} is not open: {}",
                io::Error::last_os_error()
            )));
        }
        if flags & libc::FD_CLOEXEC != 0 {
            return Err(bad(format!("descriptor {fd} from {var} was not inherited (it is close-on-exec)")));
        }
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(fd, &mut st) } == -1 {
            return Err(bad(format!("descriptor {fd} from {var}: {}", io::Error::last_os_error())));
        }
        let want = if kind.is_socket() { libc::S_IFSOCK } else { libc::S_IFIFO };
        if st.st_mode & libc::S_IFMT != want {
            return Err(bad(format!("descriptor {fd} from {var} is not a {}", kind.tag())));
        }
        adopted.push(fd);
        // SAFETY: the descriptor is open, of the expected type, was inherited across exec from
        // the parent named in the value (so nothing in this process opened it), and is adopted
        // at most once.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        // Keep it from leaking further into our own children.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        Ok(Stream::new(owned, kind))
    }
}

/// Handing descriptors to the process at the other end of a Unix socket (`SCM_RIGHTS`).
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

/// The connection's socket or pipe descriptor.
///
/// # Panics
///
/// An in-process connection ([`crate::dummy::pipe`], `inproc:` addresses) has no descriptor:
/// asking for one panics. [`Connection::is_in_process`](crate::Connection::is_in_process) tells.
impl AsRawFd for crate::Connection {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

/// As [`AsRawFd`] for [`Connection`](crate::Connection): panics for an in-process connection.
impl AsFd for crate::Connection {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self.stream() {
            super::Stream::Os(s) => s.fd.as_fd(),
            super::Stream::Mem(_) => panic!("an in-process connection has no file descriptor"),
        }
    }
}

fn to_address(sa: SockAddr) -> Option<Address> {
    if let Some(s) = sa.as_socket() {
        return Some(Address::tcp(s));
    }
    if let Some(p) = sa.as_pathname() {
        return Some(Address::Unix(p.to_path_buf()));
    }
    sa.as_abstract_namespace().map(|n| Address::UnixAbstract(String::from_utf8_lossy(n).into_owned()))
}

/// sun_path holds this many bytes including the terminating NUL.
const SUN_PATH_LEN: usize = {
    // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
    let s: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    s.sun_path.len()
};

fn unix_sockaddr(addr: &Address) -> Result<SockAddr> {
    match addr {
        Address::Unix(path) => {
            let len = path.as_os_str().len();
            if len >= SUN_PATH_LEN {
                return Err(addr.invalid(format!(
                    "the socket path is {len} bytes; this OS allows at most {} (use a shorter directory, \
                     or an abstract name on Linux)",
                    SUN_PATH_LEN - 1
                )));
            }
            Ok(SockAddr::unix(path)?)
        }
        Address::UnixAbstract(name) => abstract_sockaddr(addr, name),
        _ => unreachable!("unix_sockaddr called with a non-unix address"),
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_sockaddr(addr: &Address, name: &str) -> Result<SockAddr> {
    let mut bytes = vec![0u8];
    bytes.extend_from_slice(name.as_bytes());
    if bytes.len() > SUN_PATH_LEN {
        return Err(addr.invalid(format!("abstract names are limited to {} bytes", SUN_PATH_LEN - 1)));
    }
    use std::os::unix::ffi::OsStrExt;
    Ok(SockAddr::unix(std::ffi::OsStr::from_bytes(&bytes))?)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_sockaddr(addr: &Address, _name: &str) -> Result<SockAddr> {
    Err(addr.invalid("abstract Unix socket names exist only on Linux"))
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
        Address::Unix(_) | Address::UnixAbstract(_) => {
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
            for sa in super::resolve(addr, host, *port)? {
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

/// A bound, listening socket.
#[derive(Debug)]
pub(crate) struct RawListener {
    sock: Socket,
    kind: Kind,
    /// The socket file we created and its identity, removed on drop if still ours.
    owned_path: Option<(PathBuf, u64, u64)>,
}

/// Options that matter when binding.
pub(crate) struct BindOptions {
    pub(crate) backlog: i32,
    pub(crate) mode: u32,
}

impl RawListener {
    pub(crate) fn bind(addr: &Address, opts: &BindOptions) -> Result<RawListener> {
        match addr {
            Address::Unix(path) => {
                let sa = unix_sockaddr(addr)?;
                let sock = Socket::new(Domain::UNIX, Type::STREAM, None)?;
                // Linux creates the socket file with the socket's own mode less the umask: set
                // on the descriptor, the file never has more than the requested bits. Should
                // the kernel refuse, the mode is still made exact below, before listen().
                #[cfg(any(target_os = "linux", target_os = "android"))]
                // SAFETY: fchmod on a descriptor we own, with no pointers involved.
                let _ = unsafe { libc::fchmod(sock.as_raw_fd(), (opts.mode & 0o7777) as libc::mode_t) };
                if let Err(e) = sock.bind(&sa) {
                    if e.kind() != io::ErrorKind::AddrInUse {
                        return Err(bind_error(addr, e));
                    }
                    reclaim_stale(addr, path)?;
                    sock.bind(&sa).map_err(|e| bind_error(addr, e))?;
                }
                let meta = std::fs::symlink_metadata(path)?;
                let owned_path = Some((path.clone(), meta.dev(), meta.ino()));
                let listener = RawListener { sock, kind: Kind::Unix, owned_path };
                // The exact mode, before listen() (nobody can connect before then). On Linux
                // it is already set unless the umask took bits away.
                if meta.mode() & 0o7777 != opts.mode & 0o7777 {
                    chmod_socket_file(path, opts.mode)?;
                }
                listener.sock.listen(opts.backlog)?;
                listener.sock.set_nonblocking(true)?;
                Ok(listener)
            }
            Address::UnixAbstract(_) => {
                let sa = unix_sockaddr(addr)?;
                let sock = Socket::new(Domain::UNIX, Type::STREAM, None)?;
                sock.bind(&sa).map_err(|e| bind_error(addr, e))?;
                sock.listen(opts.backlog)?;
                sock.set_nonblocking(true)?;
                Ok(RawListener { sock, kind: Kind::Unix, owned_path: None })
            }
            Address::Tcp { host, port } => {
                let mut last = None;
                for sa in super::resolve(addr, host, *port)? {
                    let sock =
                        Socket::new(Domain::for_address(sa), Type::STREAM, Some(socket2::Protocol::TCP))?;
                    // Lets a restarted server bind while old connections sit in TIME_WAIT.
                    sock.set_reuse_address(true)?;
                    if sa.is_ipv6() {
                        sock.set_only_v6(true)?;
                    }
                    // Accepted sockets inherit it on Linux; elsewhere it is set on each.
                    #[cfg(any(target_os = "linux", target_os = "android"))]
                    sock.set_tcp_nodelay(true)?;
                    match sock.bind(&sa.into()) {
                        Ok(()) => {
                            sock.listen(opts.backlog)?;
                            sock.set_nonblocking(true)?;
                            return Ok(RawListener { sock, kind: Kind::Tcp, owned_path: None });
                        }
                        Err(e) => last = Some(bind_error(addr, e)),
                    }
                }
                Err(last.unwrap_or_else(|| addr.invalid("no address to bind")))
            }
            Address::Pipe(_) => Err(addr.invalid("named pipes exist only on Windows")),
            Address::InProc(_) => Err(addr.invalid("in-process addresses have no OS socket")),
        }
    }

    /// The bound address (the real port after binding port 0).
    pub(crate) fn local_addr(&self) -> io::Result<Address> {
        to_address(self.sock.local_addr()?).ok_or_else(|| io::Error::other("listener has no address"))
    }

    /// One accept attempt without waiting: `Ok(None)` when no connection is queued.
    pub(crate) fn try_accept(&self) -> io::Result<Option<(Stream, Option<Address>)>> {
        loop {
            match self.sock.accept() {
                Ok((s, sa)) => {
                    // Accepted sockets inherit O_NONBLOCK on BSDs (not on Linux, where accept4
                    // makes them blocking); ours are blocking.
                    #[cfg(not(any(target_os = "linux", target_os = "android")))]
                    {
                        s.set_nonblocking(false)?;
                        // Linux copies TCP_NODELAY from the listening socket (set in bind).
                        if self.kind == Kind::Tcp {
                            s.set_tcp_nodelay(true)?;
                        }
                    }
                    return Ok(Some((Stream::new(s.into(), self.kind), to_address(sa))));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                // A client that gave up before we got to it: not our error.
                Err(e)
                    if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// `SO_PEERCRED`: pid, uid and gid of the peer when it connected (or created the pair).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn peer_credentials(fd: BorrowedFd<'_>) -> Option<PeerCredentials> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, which is that large and
    // exclusively borrowed; `len` is a valid pointer too.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        )
    };
    // A socket without a peer reports uid and gid -1.
    if r != 0 || len as usize != std::mem::size_of::<libc::ucred>() || cred.uid == libc::uid_t::MAX {
        return None;
    }
    Some(PeerCredentials {
        pid: u32::try_from(cred.pid).ok().filter(|&p| p > 0),
        uid: cred.uid,
        gid: cred.gid,
    })
}

/// `getpeereid`: the peer's effective uid and gid (these systems give no pid with it).
#[cfg(any(
    target_vendor = "apple",
    target_os = "freebsd",
    target_os = "openbsd",
    target_os = "netbsd",
    target_os = "dragonfly"
))]
fn peer_credentials(fd: BorrowedFd<'_>) -> Option<PeerCredentials> {
    let (mut uid, mut gid): (libc::uid_t, libc::gid_t) = (0, 0);
    // SAFETY: getpeereid writes one uid_t and one gid_t through valid, exclusive pointers.
    if unsafe { libc::getpeereid(fd.as_raw_fd(), &mut uid, &mut gid) } != 0 {
        return None;
    }
    Some(PeerCredentials { pid: None, uid, gid })
}

/// Systems where procwire does not ask for peer credentials.
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_vendor = "apple",
    target_os = "freebsd",
    target_os = "openbsd",
    target_os = "netbsd",
    target_os = "dragonfly"
)))]
fn peer_credentials(_fd: BorrowedFd<'_>) -> Option<PeerCredentials> {
    None
}

/// Sets the mode of the socket file at `path` without following a symbolic link: someone who
/// can write the directory could have swapped one in since `bind`. A path that is not a socket
/// (a link, or any other file) is an error and keeps its mode.
///
/// On Linux the check and the change apply to one opened inode (an `O_PATH` descriptor,
/// changed through `/proc/self/fd`). Elsewhere the type is checked by path and the change uses
/// `fchmodat` with `AT_SYMLINK_NOFOLLOW`, which never follows a link; a swap between the two
/// can only put another socket there.
fn chmod_socket_file(path: &Path, mode: u32) -> io::Result<()> {
    let not_socket = || {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} is no longer our socket (not changing its mode)", path.display()),
        )
    };
    let mode = (mode & 0o7777) as libc::mode_t;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use std::os::unix::ffi::OsStrExt;
        let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())?;
        // SAFETY: open with a NUL-terminated path; the descriptor is owned right after.
        let fd = unsafe { libc::open(c_path.as_ptr(), libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: fstat into a zeroed stat, a plain C struct, with a valid descriptor.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fd is valid and st is a valid, exclusively borrowed stat.
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
            return Err(not_socket());
        }
        // An O_PATH descriptor cannot be fchmod-ed; its /proc link names the inode opened.
        let proc = std::ffi::CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
        // SAFETY: chmod with a NUL-terminated path.
        if unsafe { libc::chmod(proc.as_ptr(), mode) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        use std::os::unix::ffi::OsStrExt;
        if !std::fs::symlink_metadata(path)?.file_type().is_socket() {
            return Err(not_socket());
        }
        let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())?;
        // SAFETY: fchmodat with a NUL-terminated path, relative to the working directory.
        if unsafe { libc::fchmodat(libc::AT_FDCWD, c_path.as_ptr(), mode, libc::AT_SYMLINK_NOFOLLOW) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

fn bind_error(addr: &Address, e: io::Error) -> Error {
    Error::Io(io::Error::new(e.kind(), format!("cannot bind {addr}: {e}")))
}

/// Handles a path that is already taken: a socket nobody listens on (left by a dead process)
/// is removed; a live listener's socket or any other file is left alone and is an error.
///
/// The probe is a nonblocking connect, so a live listener with a full backlog counts as live
/// instead of blocking us. A socket that is bound but not listening yet also refuses
/// connections, so a refusal is checked again after a short pause before the file is removed.
fn reclaim_stale(addr: &Address, path: &Path) -> Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.file_type().is_socket() {
        return Err(Error::Io(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("cannot bind {addr}: the path exists and is not a socket (not removing it)"),
        )));
    }
    let live = || {
        Error::Io(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("cannot bind {addr}: a live listener is using it"),
        ))
    };
    for pause in [Duration::ZERO, Duration::from_millis(50)] {
        std::thread::sleep(pause);
        let probe = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        probe.set_nonblocking(true)?;
        match probe.connect(&SockAddr::unix(path)?) {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
            // Connected, in progress, or a full backlog: someone is listening.
            Ok(()) => return Err(live()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINPROGRESS | libc::EAGAIN)) => {
                return Err(live());
            }
            Err(e) => return Err(bind_error(addr, e)),
        }
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(bind_error(addr, e)),
        _ => Ok(()),
    }
}

impl Drop for RawListener {
    fn drop(&mut self) {
        if let Some((path, dev, ino)) = &self.owned_path {
            // Only remove the file if it is still the socket we created.
            if let Ok(m) = std::fs::symlink_metadata(path)
                && m.dev() == *dev
                && m.ino() == *ino
            {
                let _ = std::fs::remove_file(path);
            }
            if let Some(dir) = path.parent() {
                super::remove_fresh_dir(dir);
            }
        }
    }
}

/// Waits until the listener has a connection queued or one of `streams` is readable, or
/// `deadline` passes. Returns whether the listener is ready and the indices of ready streams.
pub(crate) fn wait_any(
    listener: Option<&RawListener>,
    streams: &[&Stream],
    deadline: Option<Instant>,
) -> io::Result<(bool, Vec<usize>)> {
    let mut fds = Vec::with_capacity(streams.len() + 1);
    // A negative descriptor is ignored by poll(2): the listener sits this round out.
    let lfd = listener.map_or(-1, |l| l.sock.as_raw_fd());
    fds.push(libc::pollfd { fd: lfd, events: libc::POLLIN, revents: 0 });
    fds.extend(streams.iter().map(|s| libc::pollfd {
        fd: s.fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }));
    if poll(&mut fds, deadline)? == 0 {
        return Ok((false, Vec::new()));
    }
    let ready = fds[1..].iter().enumerate().filter(|(_, p)| p.revents != 0).map(|(i, _)| i).collect();
    Ok((fds[0].revents != 0, ready))
}

/// Something `wait_ready` can watch: a stream, or a listening socket.
pub(crate) enum Pollable<'a> {
    Stream(&'a Stream),
    Listener(&'a RawListener),
}

/// Readiness of a child process's exit: the read end of a pipe whose only write end the child
/// holds. The kernel closes it when the child exits (however it dies), so the read end turns
/// readable (end of file) then; until then nothing is ever written to it.
#[derive(Debug)]
pub(crate) struct Sentinel {
    fd: OwnedFd,
}

impl Sentinel {
    /// Whether the child has exited, waiting until `deadline` (`None`: forever).
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> io::Result<bool> {
        match wait_fd(self.fd.as_raw_fd(), libc::POLLIN, deadline) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Waits until at least one of `items` is readable (a listener: has a connection queued), or a
/// child behind `sentinels` has exited, or `deadline` passes; returns the indices of the ready
/// ones (empty after the deadline), counting `items` first, then `sentinels`. One poll(2) call
/// over all of them, so there is no limit on their number.
pub(crate) fn wait_ready_with(
    items: &[Pollable<'_>],
    sentinels: &[&Sentinel],
    deadline: Option<Instant>,
) -> io::Result<Vec<usize>> {
    let mut fds: Vec<libc::pollfd> = items
        .iter()
        .map(|p| match p {
            Pollable::Stream(s) => s.fd.as_raw_fd(),
            Pollable::Listener(l) => l.sock.as_raw_fd(),
        })
        .chain(sentinels.iter().map(|s| s.fd.as_raw_fd()))
        .map(|fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 })
        .collect();
    if poll(&mut fds, deadline)? == 0 {
        return Ok(Vec::new());
    }
    Ok(fds.iter().enumerate().filter(|(_, p)| p.revents != 0).map(|(i, _)| i).collect())
}

/// Makes the child that `cmd` spawns hold the write end of a new sentinel pipe, named in its
/// environment variable `var` (adopted there by [`keep_sentinel`]); with `daemon`, arranges
/// for the child to die with this process. Returns the parent's read end.
pub(crate) fn prepare_child(cmd: &mut Command, var: &str, daemon: bool) -> io::Result<Sentinel> {
    let (r, w) = pipe(false)?;
    w.pass_to_child(cmd, var)?;
    if daemon {
        die_with_parent(cmd)?;
    }
    Ok(Sentinel { fd: r.fd })
}

/// In a child: adopts the sentinel's write end named in `var` and keeps it open until exit.
/// Missing or foreign values are ignored (the parent then just sees the exit later, by pid).
pub(crate) fn keep_sentinel(var: &str) {
    if let Ok(s) = Stream::from_env(var) {
        // Never closed: the kernel closes it when this process exits, which is the signal.
        std::mem::forget(s);
    }
}

/// Linux: `PR_SET_PDEATHSIG` set between fork and exec, then a check that the parent did not
/// die before that (the child would have been adopted by another process and never get the
/// signal). The signal follows the *thread* that forked, so daemons are spawned from a
/// thread that lives as long as the process (see [`spawn`]).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn die_with_parent(cmd: &mut Command) -> io::Result<()> {
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: prctl, getppid and _exit are async-signal-safe; nothing is allocated.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) == -1 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    Ok(())
}

/// Elsewhere: a watchdog thread in the child reads a lifeline pipe whose write end only this
/// process holds (for its whole life); end of file there means the parent is gone.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn die_with_parent(cmd: &mut Command) -> io::Result<()> {
    static LIFELINE: Mutex<Option<(Stream, Stream)>> = Mutex::new(None);
    let mut lifeline = LIFELINE.lock().unwrap_or_else(|p| p.into_inner());
    if lifeline.is_none() {
        *lifeline = Some(pipe(false)?);
    }
    match &*lifeline {
        Some((r, _)) => r.pass_to_child(cmd, LIFELINE_VAR),
        None => Err(io::ErrorKind::Other.into()),
    }
}

/// The environment variable naming the lifeline of a daemon child (not on Linux).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const LIFELINE_VAR: &str = "PROCWIRE_PROCESS_LIFELINE";

/// In a daemon child (not on Linux): starts the watchdog that ends this process when the
/// parent's lifeline reaches end of file.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn watch_parent() {
    let Ok(s) = Stream::from_env(LIFELINE_VAR) else { return };
    let _ = std::thread::Builder::new().name("procwire-lifeline".into()).spawn(move || {
        let mut b = [0u8; 1];
        loop {
            match s.read(&mut b, None) {
                Ok(0) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
                Ok(_) => {}
            }
        }
        // SAFETY: kill on our own pid has no preconditions.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    });
}

/// On Linux the parent-death signal does the work; nothing to watch.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn watch_parent() {}

/// Spawns `cmd` and returns the child's pid. Daemons on Linux are forked from one thread that
/// lives as long as the process, because their parent-death signal fires when the forking
/// thread ends (not the process).
pub(crate) fn spawn(mut cmd: Command, daemon: bool) -> io::Result<u32> {
    if !daemon || !cfg!(any(target_os = "linux", target_os = "android")) {
        return cmd.spawn().map(|c| c.id());
    }
    type Job = (Command, std::sync::mpsc::Sender<io::Result<u32>>);
    static SPAWNER: Mutex<Option<std::sync::mpsc::Sender<Job>>> = Mutex::new(None);
    let tx = {
        let mut spawner = SPAWNER.lock().unwrap_or_else(|p| p.into_inner());
        match &*spawner {
            Some(tx) => tx.clone(),
            None => {
                let (tx, rx) = std::sync::mpsc::channel::<Job>();
                std::thread::Builder::new().name("procwire-spawner".into()).spawn(move || {
                    for (mut cmd, reply) in rx {
                        let r = cmd.spawn().map(|c| c.id());
                        // Closes the parent's copies of the descriptors passed to the child.
                        drop(cmd);
                        let _ = reply.send(r);
                    }
                })?;
                spawner.insert(tx).clone()
            }
        }
    };
    let (reply_tx, reply_rx) = std::sync::mpsc::channel();
    tx.send((cmd, reply_tx)).map_err(|_| io::Error::other("the procwire spawner thread is gone"))?;
    reply_rx.recv().map_err(|_| io::Error::other("the procwire spawner thread is gone"))?
}

/// The exit code of a wait status: the code of a normal exit, minus the signal number of a
/// death by signal (as CPython's `Process.exitcode`).
fn exit_code(status: libc::c_int) -> i32 {
    if libc::WIFSIGNALED(status) { -libc::WTERMSIG(status) } else { libc::WEXITSTATUS(status) }
}

/// Reaps child `pid` if it has exited (`block`: waiting for it to) and returns its exit code.
pub(crate) fn reap(pid: u32, block: bool) -> io::Result<Option<i32>> {
    let flags = if block { 0 } else { libc::WNOHANG };
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid pointer to an int.
        let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, flags) };
        if r == 0 {
            return Ok(None);
        }
        if r > 0 {
            return Ok(Some(exit_code(status)));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Sends SIGKILL (`kill`) or SIGTERM to child `pid`, which the caller has not reaped yet (so
/// the pid cannot have been reused).
pub(crate) fn signal(pid: u32, kill: bool) -> io::Result<()> {
    let sig = if kill { libc::SIGKILL } else { libc::SIGTERM };
    // SAFETY: kill has no memory preconditions.
    if unsafe { libc::kill(pid as libc::pid_t, sig) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes every running thread of this process execute a full memory barrier (Linux
/// `membarrier`, private expedited), so that the other side of a store-then-load handshake
/// can do with a compiler fence. The first call registers the process; `false` (every call)
/// where the kernel cannot, and then both sides need real fences.
#[cfg(target_os = "linux")]
pub(crate) fn process_barrier() -> bool {
    use std::sync::OnceLock;
    const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
    const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    // SAFETY: membarrier takes two integer arguments and touches no memory of ours.
    let membarrier =
        |cmd: libc::c_long| unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0 as libc::c_long) == 0 };
    *REGISTERED.get_or_init(|| membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED))
        && membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)
}

/// No process-wide barrier here: both sides of a handshake use real fences.
#[cfg(not(target_os = "linux"))]
pub(crate) fn process_barrier() -> bool {
    false
}

/// The parent's process id.
pub(crate) fn parent_id() -> u32 {
    std::os::unix::process::parent_id()
}

/// fork(2), with a sentinel for the child's exit: in the parent the child's pid and sentinel,
/// in the child `None`.
///
/// # Safety
///
/// As `procwire::process::create`: the calling process must be single-threaded, and the child
/// must end with `std::process::exit` rather than return into the parent's code.
pub(crate) unsafe fn fork() -> io::Result<Option<(u32, Sentinel)>> {
    let (r, w) = pipe(false)?;
    // SAFETY: the caller guarantees the process is single-threaded, so the child starts with
    // every lock free and every structure consistent.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            drop(r);
            std::mem::forget(w);
            Ok(None)
        }
        pid => Ok(Some((pid as u32, Sentinel { fd: r.fd }))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mode is never set through a symbolic link: a link to a file, where the socket
    /// should be, is an error and the file keeps its mode. (The race it guards against, a link
    /// swapped in between `bind` and the change of mode, cannot be staged reliably; this
    /// shows what the change does when it meets one.)
    #[test]
    fn chmod_socket_file_does_not_follow_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, b"precious").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join("link.sock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(chmod_socket_file(&link, 0o666).is_err());
        assert!(chmod_socket_file(&target, 0o666).is_err(), "not a socket either");
        assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o7777, 0o600);
        // A socket is changed.
        let sock = dir.path().join("real.sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        chmod_socket_file(&sock, 0o640).unwrap();
        assert_eq!(std::fs::symlink_metadata(&sock).unwrap().permissions().mode() & 0o7777, 0o640);
    }

    const LIMIT: Duration = Duration::from_secs(10);

    #[test]
    fn both_ends_of_a_tcp_connection_have_nodelay() {
        let opts = BindOptions { backlog: 8, mode: 0o600 };
        let l = RawListener::bind(&"tcp:127.0.0.1:0".parse().unwrap(), &opts).unwrap();
        let deadline = Instant::now() + LIMIT;
        let client = connect(&l.local_addr().unwrap(), Some(deadline)).unwrap();
        let server = loop {
            if let Some((s, _)) = l.try_accept().unwrap() {
                break s;
            }
            assert!(wait_any(Some(&l), &[], Some(deadline)).unwrap().0, "no connection to accept");
        };
        for s in [&client, &server] {
            assert!(SockRef::from(&s.fd).tcp_nodelay().unwrap());
        }
    }

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
