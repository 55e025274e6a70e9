//! Listening sockets: bind (with the socket file's mode and stale files reclaimed), accept, and
//! removal of the socket file with the listener.

use std::io;
#[cfg(any(target_os = "linux", target_os = "android"))]
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use socket2::{Domain, SockAddr, Socket, Type};

use super::Stream;
use super::addr::{to_address, unix_sockaddr};
use crate::error::io_context;
use crate::sys::FdKind as Kind;
use crate::{Address, Error, Result};

/// A bound, listening socket.
#[derive(Debug)]
pub(crate) struct RawListener {
    pub(super) sock: Socket,
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
            Address::Unix(path) | Address::Shm(path) => {
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
                for sa in crate::transport::resolve(addr, host, *port)? {
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

impl std::os::fd::AsFd for RawListener {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.sock)
    }
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
    Error::Io(io_context(e, format_args!("cannot bind {addr}")))
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
                crate::sys::remove_fresh_dir(dir);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::time::Instant;

    use socket2::SockRef;

    use super::*;
    use crate::transport::unix::{connect, wait_any};

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
}
