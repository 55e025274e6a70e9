//! Endpoints of `shm:` addresses: the mark a shared-memory side puts in its handshake
//! challenge, so that a mismatch (a plain peer at a shared-memory one, or the reverse) is a
//! clear error on both sides, and the move onto shared memory after the handshake.
//!
//! The mark takes the first bytes of the random part of the challenge: a CPython peer reads it
//! as random bytes, and the part left is still [`MARK`]'s length and one byte short of 40
//! random bytes. That byte is the base-2 logarithm of the ring size the side asks for (0: no
//! wish); the listener makes rings of the larger of its own size and the client's.
//!
//! Without a key there is no challenge: a shared-memory client says so in its first message
//! (`SHM_HELLO`), the listener's region comes in a message of its own (`SHM_OFFER`), and a
//! plain side refuses either when it reads it (see `connection::recv`).

use std::time::Instant;

use crate::auth::CHALLENGE;
use crate::connection::{DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_SHM_RING};
use crate::transport::SHM_HELLO;
use crate::transport::shm::PLAIN;
use crate::{Address, Connection, Error, Result};

/// The first bytes of the random part of a shared-memory side's challenge.
const MARK: &[u8] = b"procwire-shm-1:";

/// What a peer's challenge said about shared memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Peer {
    /// No mark: a plain peer (another procwire, or CPython).
    Plain,
    /// A shared-memory side, asking for rings of 2 to this power bytes (0: no wish).
    Shm(u8),
}

/// Marks `random`, the random part of our challenge, when `addr` is a shared-memory address,
/// asking for rings of `ring` bytes (a power of two) if given.
pub(super) fn mark(addr: &Address, ring: Option<usize>, random: &mut [u8]) {
    if matches!(addr, Address::Shm(_)) {
        random[..MARK.len()].copy_from_slice(MARK);
        random[MARK.len()] = ring.map_or(0, |r| r.trailing_zeros() as u8);
    }
}

/// What handshake message `msg` says about its sender, if it is a challenge.
pub(super) fn marked(msg: &[u8]) -> Option<Peer> {
    let body = msg.strip_prefix(CHALLENGE)?;
    let random = body.strip_prefix(b"{sha256}".as_slice());
    Some(match random.and_then(|r| r.strip_prefix(MARK)) {
        Some(rest) => Peer::Shm(rest.first().copied().unwrap_or(0)),
        None => Peer::Plain,
    })
}

/// The largest ring a client can make a listener map beyond the listener's own size: each
/// connection maps two, and a client with the key must not pin gigabytes of them.
const LARGEST_WISH: usize = 64 << 20;

/// The ring size a listener whose own is `own` makes for a client that asked for `wish` (see
/// [`Peer::Shm`]): the larger of the two, the wish counting up to [`LARGEST_WISH`] (a client
/// refuses rings smaller than it asked for, with an error that says so).
fn ring_for(own: usize, wish: u8) -> Result<usize> {
    if wish == 0 {
        return Ok(own);
    }
    match 1usize.checked_shl(u32::from(wish)).filter(|&r| crate::transport::valid_shm_ring(r)) {
        Some(r) => Ok(r.min(LARGEST_WISH).max(own)),
        None => Err(Error::Protocol(format!(
            "the client asked for shared-memory rings of 2^{wish} bytes: not from 4 KiB to 1 GiB"
        ))),
    }
}

/// After the handshake on `addr`'s side: refuses a peer of the other kind (`peer`, what its
/// challenge said; `None` without a handshake), and moves a shared-memory connection onto its
/// region (the listener makes it, with rings of `ring` bytes or the client's larger wish; the
/// client takes it, refusing rings smaller than `ring`).
pub(super) fn finish(
    mut conn: Connection,
    addr: &Address,
    listener: bool,
    peer: Option<Peer>,
    ring: Option<usize>,
    deadline: Option<Instant>,
) -> Result<Connection> {
    let ours = matches!(addr, Address::Shm(_));
    let peer_marked = peer.map(|p| p != Peer::Plain);
    match (ours, peer_marked, listener) {
        (true, Some(false), true) => Err(Error::Protocol(format!(
            "a client without shared memory connected to the shared-memory listener {addr}: clients \
             must connect to the shm: address"
        ))),
        (true, Some(false), false) => Err(Error::Protocol(format!(
            "the listener at {addr} does not serve shared memory: connect to it with {PLAIN}:{}",
            addr.to_string().trim_start_matches("shm:")
        ))),
        (false, Some(true), true) => Err(Error::Protocol(format!(
            "a shared-memory client connected to {addr}, which does not serve shared memory"
        ))),
        (false, Some(true), false) => Err(Error::Protocol(format!(
            "the listener at {addr} serves shared memory: connect to it with shm:{}",
            addr.to_string().trim_start_matches(PLAIN).trim_start_matches(':')
        ))),
        // Without a key a shared-memory client says so in its first message, which a plain
        // listener's connection refuses when it reads it.
        (false, None, true) if matches!(addr, Address::Unix(_) | Address::Pipe(_)) => {
            conn.refuse_shm_hello();
            Ok(conn)
        }
        (false, ..) => Ok(conn),
        (true, ..) => {
            let hello = peer.is_none();
            if hello && !listener {
                conn.send_bytes(SHM_HELLO)?;
            }
            let ring = match (listener, peer) {
                (true, Some(Peer::Shm(wish))) => ring_for(ring.unwrap_or(DEFAULT_SHM_RING), wish)?,
                (true, _) => ring.unwrap_or(DEFAULT_SHM_RING),
                // The client takes what the listener makes, if no smaller than it asked.
                (false, _) => ring.unwrap_or(0),
            };
            let stream =
                crate::transport::upgrade_to_shm(conn.stream(), listener, addr, ring, hello, deadline)
                    .map_err(|e| match e.kind() {
                        std::io::ErrorKind::TimedOut => Error::Timeout(format!("{e} ({addr})")),
                        std::io::ErrorKind::InvalidData => Error::Protocol(format!("{e} ({addr})")),
                        _ => Error::Io(e),
                    })?;
            Ok(Connection::from_stream(stream, DEFAULT_MAX_MESSAGE_SIZE))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clients_wish_counts_up_to_the_largest_wish_and_the_listeners_own_size_stands() {
        assert_eq!(ring_for(4 << 20, 0).unwrap(), 4 << 20);
        assert_eq!(ring_for(4 << 20, 12).unwrap(), 4 << 20);
        assert_eq!(ring_for(4 << 20, 24).unwrap(), 16 << 20);
        assert_eq!(ring_for(4 << 20, 30).unwrap(), LARGEST_WISH);
        assert_eq!(ring_for(1 << 30, 30).unwrap(), 1 << 30);
        assert!(matches!(ring_for(4 << 20, 31), Err(Error::Protocol(_))));
    }
}
