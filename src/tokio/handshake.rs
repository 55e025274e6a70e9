//! The handshake driven over an async [`Connection`], for either side: the same state machines
//! as the blocking endpoints (CPython's of [`crate::auth`], or the encrypted one of
//! `crate::secure`), only the waiting differs.

use ::tokio::time::{Instant, timeout_at};

use super::Connection;
use crate::auth::{AuthKey, Role};
use crate::listener::{Steps, hung_up};
use crate::{Error, Result};

/// A handshake for `role` with fresh random bytes from the OS: CPython's, or with `encrypt`
/// the encrypted one.
pub(super) fn new(role: Role, key: &AuthKey, legacy: bool, encrypt: bool) -> Result<Steps> {
    // The async face serves no shared-memory addresses, so no challenge carries their mark.
    Steps::new(role, key, legacy, encrypt, |_| {})
}

/// Runs `hs` to its end over `conn`, giving up at `deadline` with an [`Error::Timeout`] that
/// says what it was waiting for. `heard` records whether the peer said anything, so that a
/// listener can let a client that hung up without a word (a probe) go silently.
pub(super) async fn run(
    conn: &mut Connection,
    hs: &mut Steps,
    deadline: Instant,
    heard: &mut bool,
) -> Result<()> {
    match timeout_at(deadline, drive(conn, hs, heard)).await {
        Ok(r) => r,
        Err(_) => Err(Error::Timeout(format!("in the handshake, {}", hs.waiting_for()))),
    }
}

async fn drive(conn: &mut Connection, hs: &mut Steps, heard: &mut bool) -> Result<()> {
    if let Some(hello) = hs.start()? {
        conn.send_bytes(&hello).await?;
    }
    while !hs.is_done() {
        let msg = conn.recv_bytes().await?;
        *heard = true;
        let (tx, rx) = conn.parts();
        match hs.on_message(&msg) {
            Ok(out) => {
                // A client's early challenge rides with its answer; the replies to messages
                // that arrived together leave together too.
                if let Some(reply) = out {
                    tx.push_frame(&reply);
                }
                if let Some(challenge) = hs.challenge_early()? {
                    tx.push_frame(&challenge);
                }
                if hs.is_done() || !rx.has_frame() {
                    match tx.flush().await {
                        // A listener that refused our answer may close before our early
                        // challenge is written; its verdict is still read next.
                        Err(e) if hung_up(&e) && !hs.is_done() => {}
                        r => r?,
                    }
                }
            }
            Err(e) => {
                if let Some(f) = hs.failure_message() {
                    tx.push_frame(&f);
                    let _ = tx.flush().await;
                }
                return Err(e);
            }
        }
    }
    Ok(())
}

/// The connection after a finished handshake: as it is, or encrypted from now on.
pub(super) fn finish(hs: Steps, conn: Connection) -> Result<Connection> {
    match hs.into_session()? {
        None => Ok(conn),
        #[cfg(feature = "encrypt")]
        Some(session) => Ok(conn.seal(session)),
        #[cfg(not(feature = "encrypt"))]
        Some(never) => match never {},
    }
}
