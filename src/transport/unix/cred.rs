//! The credentials of the process at the other end of a Unix socket.

use std::os::fd::{AsRawFd, BorrowedFd};

use crate::transport::PeerCredentials;

/// `SO_PEERCRED`: pid, uid and gid of the peer when it connected (or created the pair).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(super) fn peer_credentials(fd: BorrowedFd<'_>) -> Option<PeerCredentials> {
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
pub(super) fn peer_credentials(fd: BorrowedFd<'_>) -> Option<PeerCredentials> {
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
pub(super) fn peer_credentials(_fd: BorrowedFd<'_>) -> Option<PeerCredentials> {
    None
}
