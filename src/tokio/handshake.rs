//! The handshake of [`crate::auth`] driven over an async [`Connection`], for either side: the
//! same state machine as the blocking endpoints, only the waiting differs.

use ::tokio::time::{Instant, timeout_at};

use super::Connection;
use crate::auth::{AuthKey, CHALLENGE_RANDOM_LEN, Handshake, Role, Status};
use crate::listener::hung_up;
use crate::util::fill_random;
use crate::{Error, Result};

/// A handshake for `role` with fresh random bytes from the OS.
pub(super) fn new(role: Role, key: &AuthKey, legacy: bool) -> Result<Handshake> {
    let mut random = [0u8; CHALLENGE_RANDOM_LEN];
    fill_random(&mut random)?;
    Ok(Handshake::with_challenge(role, key.clone(), random).allow_legacy_md5(legacy))
}

/// Runs `hs` to its end over `conn`, giving up at `deadline` with an [`Error::Timeout`] that
/// says what it was waiting for. `heard` records whether the peer said anything, so that a
/// listener can let a client that hung up without a word (a probe) go silently.
pub(super) async fn run(
    conn: &mut Connection,
    hs: &mut Handshake,
    deadline: Instant,
    heard: &mut bool,
) -> Result<()> {
    match timeout_at(deadline, drive(conn, hs, heard)).await {
        Ok(r) => r,
        Err(_) => Err(Error::Timeout(format!("in the handshake, {}", hs.waiting_for()))),
    }
}

async fn drive(conn: &mut Connection, hs: &mut Handshake, heard: &mut bool) -> Result<()> {
    if let Some(challenge) = hs.start()? {
        conn.send_bytes(&challenge).await?;
    }
    while hs.status() != Status::Done {
        let msg = conn.recv_bytes().await?;
        *heard = true;
        let (tx, rx) = conn.parts();
        match hs.on_message(&msg) {
            Ok(out) => {
                // A client's early challenge rides with its answer; the replies to messages
                // that arrived together leave together too.
                if let Some(reply) = out.send {
                    tx.push_frame(&reply);
                }
                if let Some(challenge) = hs.challenge_early()? {
                    tx.push_frame(&challenge);
                }
                if hs.status() == Status::Done || !rx.has_frame() {
                    match tx.flush().await {
                        // A listener that refused our answer may close before our early
                        // challenge is written; its verdict is still read next.
                        Err(e) if hung_up(&e) && hs.status() != Status::Done => {}
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
