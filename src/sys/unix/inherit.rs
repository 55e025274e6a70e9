//! Descriptors handed to a child process across `exec`, named in its environment as
//! `FD:KIND:PARENT_PID`, and adopted there once.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::{Arc, Mutex};

/// What a passed descriptor is; its tag travels with it (in the environment, or with one sent
/// over a socket), so that the receiver makes the same kind of stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FdKind {
    Unix,
    Tcp,
    PipeRead,
    PipeWrite,
    /// The region of a shared-memory stream (a memory file), passed beside its socket.
    Memory,
}

impl FdKind {
    pub(crate) fn tag(self) -> &'static str {
        match self {
            FdKind::Unix => "unix",
            FdKind::Tcp => "tcp",
            FdKind::PipeRead => "pipe-r",
            FdKind::PipeWrite => "pipe-w",
            FdKind::Memory => "memory",
        }
    }

    pub(crate) fn from_tag(s: &str) -> Option<FdKind> {
        [FdKind::Unix, FdKind::Tcp, FdKind::PipeRead, FdKind::PipeWrite, FdKind::Memory]
            .into_iter()
            .find(|k| k.tag() == s)
    }

    pub(crate) fn is_socket(self) -> bool {
        matches!(self, FdKind::Unix | FdKind::Tcp)
    }
}

/// Makes a duplicate of `fd` inheritable by `cmd`'s child only, and names it in the child's
/// environment variable `var` as `FD:KIND:PARENT_PID`.
///
/// The duplicate is owned by the command (through its `pre_exec` hook), so it stays valid
/// however long the caller waits before spawning, and it is closed in the parent when the
/// command is dropped.
pub(crate) fn pass_to_child(fd: &OwnedFd, kind: FdKind, cmd: &mut Command, var: &str) -> io::Result<()> {
    let dup = Arc::new(fd.try_clone()?);
    let raw = dup.as_raw_fd();
    cmd.env(var, format!("{raw}:{}:{}", kind.tag(), std::process::id()));
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

/// Adopts a descriptor passed with [`pass_to_child`].
///
/// Taking ownership of a descriptor by number is only sound if nothing else owns it. The
/// checks: the value names our parent's pid (a grandchild that inherited the variable is
/// refused), the descriptor is open, of the named kind, and inheritable (every descriptor
/// Rust opens is close-on-exec, so one this process already owns is refused), and each
/// number is adopted once.
pub(crate) fn adopt_from_env(var: &str) -> io::Result<(OwnedFd, FdKind)> {
    static ADOPTED: Mutex<Vec<RawFd>> = Mutex::new(Vec::new());
    let bad = |why: String| io::Error::new(io::ErrorKind::InvalidInput, why);
    let value = std::env::var(var).map_err(|_| bad(format!("environment variable {var} is not set")))?;
    let mut parts = value.split(':');
    let (Some(fd), Some(tag), Some(ppid), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad(format!("{var}={value:?} is not FD:KIND:PARENT_PID")));
    };
    let fd: RawFd = fd
        .parse()
        .ok()
        .filter(|&fd| fd >= 0)
        .ok_or_else(|| bad(format!("{var}={value:?}: bad descriptor number")))?;
    let kind = FdKind::from_tag(tag).ok_or_else(|| bad(format!("{var}={value:?}: unknown kind")))?;
    // SAFETY: getppid has no preconditions.
    if ppid.parse::<i64>().ok() != Some(i64::from(unsafe { libc::getppid() })) {
        return Err(bad(format!("{var}={value:?} was passed to another process (our parent is not {ppid})")));
    }
    let mut adopted = ADOPTED.lock().unwrap_or_else(|p| p.into_inner());
    if adopted.contains(&fd) {
        return Err(bad(format!("descriptor {fd} from {var} was already adopted")));
    }
    // SAFETY: fcntl(F_GETFD) and fstat on any integer are safe; they fail with EBADF for a
    // descriptor that is not open.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags == -1 {
        return Err(bad(format!("descriptor {fd} from {var} is not open: {}", io::Error::last_os_error())));
    }
    if flags & libc::FD_CLOEXEC != 0 {
        return Err(bad(format!("descriptor {fd} from {var} was not inherited (it is close-on-exec)")));
    }
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } == -1 {
        return Err(bad(format!("descriptor {fd} from {var}: {}", io::Error::last_os_error())));
    }
    let want = match kind {
        FdKind::Memory => libc::S_IFREG,
        k if k.is_socket() => libc::S_IFSOCK,
        _ => libc::S_IFIFO,
    };
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
    Ok((owned, kind))
}
