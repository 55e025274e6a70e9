//! The Windows side of a shared-memory stream's set-up (see `transport::shm`): its region is an
//! unnamed section, which the listener offers in one pipe message and shares in the next (its
//! handle value, duplicated by the client out of the listener's process, as `procwire::handles`
//! hands handles over); its doorbell rings with a one-byte message on the pipe.

use std::io::{self, IoSlice};
use std::os::windows::io::AsHandle;
use std::process::Command;
use std::time::Instant;

use super::Stream;
use super::stream::Inner;
use crate::sys::shm::Mapping;

/// The scheme of the plain address under an `shm:` one: a named pipe.
pub(crate) const PLAIN: &str = "pipe";

/// What one ring of the doorbell writes to the pipe: a frame of one byte, since a pipe takes
/// frames (each payload one message) and hands them up with their header.
pub(crate) const BELL: &[u8] = &[0, 0, 0, 1, 1];

/// The longest shared handle accepted (two pids and a handle value): a plain listener's
/// message is not read beyond this.
const SHARED_MAX: usize = 64;

/// A stream of its own on the pipe under `stream` (a duplicate handle), which must hold no
/// bytes read ahead.
pub(crate) fn own_copy(stream: &Stream) -> io::Result<Stream> {
    let Inner::Pipe(p) = &stream.inner else {
        return Err(io::Error::new(io::ErrorKind::Unsupported, "not a named pipe"));
    };
    if !p.pending_for_handover()?.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "the peer sent more than its handshake"));
    }
    Stream::pipe(p.handle.try_clone()?, p.dir())
}

/// Writes all of `frame` (a header and its payload: one message).
fn write_frame(pipe: &Stream, frame: &[u8], deadline: Option<Instant>) -> io::Result<()> {
    let mut at = 0;
    while at < frame.len() {
        match pipe.write_vectored(&[IoSlice::new(&frame[at..])], deadline)? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => at += n,
        }
    }
    Ok(())
}

/// Sends `offer` (a frame), then the section's handle as the peer takes it and a random token
/// written into the region's header. The peer takes the handle by its value in this process:
/// should this side drop the region first (a failed connection), that value may already name
/// the region of another connection, and the token tells them apart.
pub(crate) fn send_region(
    pipe: &Stream,
    map: &Mapping,
    offer: &[u8],
    deadline: Option<Instant>,
) -> io::Result<()> {
    let mut token = [0u8; TOKEN];
    getrandom::fill(&mut token).map_err(|e| io::Error::other(e.to_string()))?;
    crate::transport::shm::ring::set_token(map, words(&token));
    let shared = pipe.share_handle(map.share_handle())?;
    write_frame(pipe, offer, deadline)?;
    let body = [&((shared.len() + TOKEN) as u32).to_be_bytes()[..], &shared, &token].concat();
    write_frame(pipe, &body, deadline)
}

/// The length of a region's token.
const TOKEN: usize = 16;

fn words(token: &[u8; TOKEN]) -> [u64; 2] {
    let (a, b) = token.split_at(8);
    [u64::from_le_bytes(a.try_into().expect("8 bytes")), u64::from_le_bytes(b.try_into().expect("8 bytes"))]
}

/// Takes the region [`send_region`] sent; `None` when the peer sent something else.
pub(crate) fn take_region(
    pipe: &Stream,
    offer: &[u8],
    deadline: Option<Instant>,
) -> io::Result<Option<Mapping>> {
    let read = |b: &mut [u8]| pipe.read(b, deadline);
    let mut got = vec![0; offer.len()];
    // The header first: a plain listener's message is never read whole.
    if !crate::transport::shm::read_exact(read, &mut got[..4])? || got[..4] != offer[..4] {
        return Ok(None);
    }
    if !crate::transport::shm::read_exact(read, &mut got[4..])? || got != offer {
        return Ok(None);
    }
    let mut header = [0u8; 4];
    if !crate::transport::shm::read_exact(read, &mut header)? {
        return Ok(None);
    }
    let len = u32::from_be_bytes(header) as usize;
    if !(TOKEN..=SHARED_MAX + TOKEN).contains(&len) {
        return Ok(None);
    }
    let mut shared = vec![0; len];
    if !crate::transport::shm::read_exact(read, &mut shared)? {
        return Ok(None);
    }
    let (shared, token) = shared.split_at(len - TOKEN);
    let map = Mapping::adopt(pipe.take_handle(shared)?)?;
    let token: &[u8; TOKEN] = token.try_into().expect("TOKEN bytes");
    if crate::transport::shm::ring::capacity_of(&map).is_err()
        || !crate::transport::shm::ring::has_token(&map, words(token))
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the listener's region was gone before it could be taken (it dropped the connection)",
        ));
    }
    Ok(Some(map))
}

/// Hands the section to the child that `cmd` spawns, named in its environment as `var`.
pub(crate) fn pass_region(map: &Mapping, cmd: &mut Command, var: &str) -> io::Result<()> {
    crate::sys::pass_to_child(map.share_handle().as_handle(), crate::sys::MEMORY, cmd, var)
}

/// The section a parent passed as `var` with [`pass_region`].
pub(crate) fn region_from_env(var: &str) -> crate::Result<Mapping> {
    Ok(Mapping::adopt(crate::sys::adopt_memory_from_env(var)?)?)
}
