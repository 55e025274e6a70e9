//! The Unix side of a shared-memory stream's set-up (see `transport::shm`): its region is a
//! memory file whose descriptor rides on the first byte of the offer (`SCM_RIGHTS`), and its
//! doorbell rings with one byte on the socket.

use std::io;
use std::process::Command;
use std::time::Instant;

use super::Stream;
use crate::sys::shm::Mapping;

/// The scheme of the plain address under an `shm:` one: a Unix socket.
pub(crate) const PLAIN: &str = "unix";

/// What one ring of the doorbell writes to the socket.
pub(crate) const BELL: &[u8] = &[1];

/// A stream of its own on the socket under `stream` (a duplicate descriptor).
pub(crate) fn own_copy(stream: &Stream) -> io::Result<Stream> {
    let (fd, tag) = stream.dup_for_passing()?;
    Stream::from_passed(fd, tag).ok_or_else(|| io::Error::new(io::ErrorKind::Unsupported, "not a socket"))
}

/// Sends `offer` (a frame) with the region's descriptor on its first byte.
pub(crate) fn send_region(
    socket: &Stream,
    map: &Mapping,
    offer: &[u8],
    deadline: Option<Instant>,
) -> io::Result<()> {
    socket.send_fd_with(offer, map.share_fd()?, deadline)
}

/// Takes the region [`send_region`] sent; `None` when the peer sent something else.
pub(crate) fn take_region(
    socket: &Stream,
    offer: &[u8],
    deadline: Option<Instant>,
) -> io::Result<Option<Mapping>> {
    let (byte, fd) = socket.recv_fd(deadline)?;
    let Some(fd) = fd.filter(|_| byte == offer[0]) else {
        return Ok(None);
    };
    let mut rest = vec![0; offer.len() - 1];
    if !crate::transport::shm::read_exact(|b| socket.read(b, deadline), &mut rest)? || rest != offer[1..] {
        return Ok(None);
    }
    Mapping::adopt(fd).map(Some)
}

/// Makes the region inheritable by `cmd`'s child only, named in its environment as `var`.
pub(crate) fn pass_region(map: &Mapping, cmd: &mut Command, var: &str) -> io::Result<()> {
    let memory = map.share_fd()?.try_clone_to_owned()?;
    crate::sys::pass_to_child(&memory, crate::sys::FdKind::Memory, cmd, var)
}

/// The region a parent passed as `var` with [`pass_region`].
pub(crate) fn region_from_env(var: &str) -> crate::Result<Mapping> {
    let (fd, kind) = crate::sys::adopt_from_env(var)?;
    if kind != crate::sys::FdKind::Memory {
        return Err(
            io::Error::new(io::ErrorKind::InvalidInput, "the region passed is not shared memory").into()
        );
    }
    Ok(Mapping::adopt(fd)?)
}
