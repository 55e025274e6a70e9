//! [`Steps`]: the handshake a connection runs, plain (CPython's) or encrypted.

use crate::auth::{AuthKey, CHALLENGE_RANDOM_LEN, Handshake, Role, Status};
use crate::util::fill_random;
use crate::{Connection, Result};

/// One side's handshake: the plain HMAC one, or the encrypted one (feature `encrypt`).
pub(crate) enum Steps {
    Plain(Handshake),
    /// Boxed: the Noise state is large, and most handshakes are plain.
    #[cfg(feature = "encrypt")]
    Sealed(Box<crate::secure::Handshake>),
}

impl Steps {
    /// A handshake for `role` with fresh randomness; `encrypt` picks the encrypted one.
    /// `mark` may change the random part of a plain challenge (the shared-memory mark).
    pub(crate) fn new(
        role: Role,
        key: &AuthKey,
        legacy: bool,
        encrypt: bool,
        mark: impl FnOnce(&mut [u8]),
    ) -> Result<Steps> {
        #[cfg(feature = "encrypt")]
        if encrypt {
            let mut random = [0u8; 64];
            fill_random(&mut random)?;
            return Ok(Steps::Sealed(Box::new(crate::secure::Handshake::new(role, key, random))));
        }
        let _ = encrypt;
        let mut random = [0u8; CHALLENGE_RANDOM_LEN];
        fill_random(&mut random)?;
        mark(&mut random);
        Ok(Steps::Plain(Handshake::with_challenge(role, key.clone(), random).allow_legacy_md5(legacy)))
    }

    /// The opening message (the listener's).
    pub(crate) fn start(&mut self) -> Result<Option<Vec<u8>>> {
        match self {
            Steps::Plain(hs) => hs.start(),
            #[cfg(feature = "encrypt")]
            Steps::Sealed(hs) => Ok(hs.start()),
        }
    }

    /// The reply to one message of the peer.
    pub(crate) fn on_message(&mut self, msg: &[u8]) -> Result<Option<Vec<u8>>> {
        match self {
            Steps::Plain(hs) => Ok(hs.on_message(msg)?.send),
            #[cfg(feature = "encrypt")]
            Steps::Sealed(hs) => hs.on_message(msg),
        }
    }

    /// The plain client's challenge sent along with its answer (see
    /// [`Handshake::challenge_early`]).
    pub(crate) fn challenge_early(&mut self) -> Result<Option<Vec<u8>>> {
        match self {
            Steps::Plain(hs) => hs.challenge_early(),
            #[cfg(feature = "encrypt")]
            Steps::Sealed(_) => Ok(None),
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        match self {
            Steps::Plain(hs) => hs.status() == Status::Done,
            #[cfg(feature = "encrypt")]
            Steps::Sealed(hs) => hs.is_done(),
        }
    }

    pub(crate) fn waiting_for(&self) -> &'static str {
        match self {
            Steps::Plain(hs) => hs.waiting_for(),
            #[cfg(feature = "encrypt")]
            Steps::Sealed(hs) => hs.waiting_for(),
        }
    }

    pub(crate) fn failure_message(&mut self) -> Option<Vec<u8>> {
        match self {
            Steps::Plain(hs) => hs.failure_message(),
            #[cfg(feature = "encrypt")]
            Steps::Sealed(hs) => hs.failure_message(),
        }
    }

    /// The connection after a finished handshake: as it is, or encrypted from now on.
    pub(crate) fn finish(self, conn: Connection) -> Result<Connection> {
        match self.into_session()? {
            None => Ok(conn),
            #[cfg(feature = "encrypt")]
            Some(session) => conn.seal(session),
            #[cfg(not(feature = "encrypt"))]
            Some(never) => match never {},
        }
    }

    /// The transport keys of a finished encrypted handshake; `None` for a plain one.
    #[cfg(feature = "encrypt")]
    pub(crate) fn into_session(self) -> Result<Option<crate::secure::Session>> {
        match self {
            Steps::Plain(_) => Ok(None),
            Steps::Sealed(hs) => (*hs).into_session().map(Some),
        }
    }

    /// A plain handshake has no keys (a build without feature `encrypt`).
    #[cfg(not(feature = "encrypt"))]
    pub(crate) fn into_session(self) -> Result<Option<std::convert::Infallible>> {
        Ok(None)
    }
}
