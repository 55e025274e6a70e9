//! Endpoints of `shm:` addresses: the mark a shared-memory side puts in its handshake
//! challenge, so that a mismatch (a plain peer at a shared-memory one, or the reverse) is a
//! clear error on both sides, and the move onto shared memory after the handshake.
//!
//! The mark takes the first bytes of the random part of the challenge: a CPython peer reads it
//! as random bytes, and the part left is still [`MARK`]'s length short of 40 random bytes.

use std::time::Instant;

use crate::auth::CHALLENGE;
use crate::connection::DEFAULT_MAX_MESSAGE_SIZE;
use crate::{Address, Connection, Error, Result};

/// The first bytes of the random part of a shared-memory side's challenge.
const MARK: &[u8] = b"procwire-shm-1:";

/// Marks `random`, the random part of our challenge, when `addr` is a shared-memory address.
pub(super) fn mark(addr: &Address, random: &mut [u8]) {
    if matches!(addr, Address::Shm(_)) {
        random[..MARK.len()].copy_from_slice(MARK);
    }
}

/// Whether handshake message `msg` is the challenge of a shared-memory side; `None` when it
/// is not a challenge.
pub(super) fn marked(msg: &[u8]) -> Option<bool> {
    let body = msg.strip_prefix(CHALLENGE)?;
    Some(body.strip_prefix(b"{sha256}".as_slice()).is_some_and(|random| random.starts_with(MARK)))
}

/// After the handshake on `addr`'s side: refuses a peer of the other kind (`peer_marked`, what
/// its challenge said; `None` without a handshake), and moves a shared-memory connection onto
/// its region (the listener makes it, the client takes it).
pub(super) fn finish(
    conn: Connection,
    addr: &Address,
    listener: bool,
    peer_marked: Option<bool>,
    deadline: Option<Instant>,
) -> Result<Connection> {
    let ours = matches!(addr, Address::Shm(_));
    match (ours, peer_marked, listener) {
        (true, Some(false), true) => Err(Error::Protocol(format!(
            "a client without shared memory connected to the shared-memory listener {addr}: clients \
             must connect to the shm: address"
        ))),
        (true, Some(false), false) => Err(Error::Protocol(format!(
            "the listener at {addr} does not serve shared memory: connect to it with unix:{}",
            addr.to_string().trim_start_matches("shm:")
        ))),
        (false, Some(true), true) => Err(Error::Protocol(format!(
            "a shared-memory client connected to {addr}, which does not serve shared memory"
        ))),
        (false, Some(true), false) => Err(Error::Protocol(format!(
            "the listener at {addr} serves shared memory: connect to it with shm:{}",
            addr.to_string().trim_start_matches("unix:")
        ))),
        (false, ..) => Ok(conn),
        (true, ..) => {
            let stream = crate::transport::upgrade_to_shm(conn.stream(), listener, addr, deadline).map_err(
                |e| match e.kind() {
                    std::io::ErrorKind::TimedOut => Error::Timeout(e.to_string()),
                    _ => Error::Io(e),
                },
            )?;
            Ok(Connection::from_stream(stream, DEFAULT_MAX_MESSAGE_SIZE))
        }
    }
}
