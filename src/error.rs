//! The one error type of the crate, [`Error`], and its [`Result`] alias.

use std::io;

/// Everything that can go wrong in procwire.
///
/// Every failure a peer can cause maps to one of these kinds, with a message that says what
/// happened and, where there is one, the likely cause.
///
/// ```
/// use procwire::Error;
/// let e = Error::MessageTooLarge { len: 10, max: 4 };
/// assert_eq!(e.to_string(), "message of 10 bytes exceeds the maximum of 4 bytes");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The handshake failed: wrong key, a peer without a key, or a malformed handshake message.
    #[error("authentication failed: {0}")]
    AuthenticationFailed(String),
    /// A frame announced a payload larger than the configured maximum. Nothing was allocated
    /// for it; the receiving side of the connection is unusable afterwards (the stream position
    /// inside the refused payload is lost).
    #[error("message of {len} bytes exceeds the maximum of {max} bytes")]
    MessageTooLarge {
        /// The length the peer announced (or the caller tried to send).
        len: u64,
        /// The configured maximum.
        max: u64,
    },
    /// An operation did not finish before its deadline. The text says what was being waited
    /// for and, for handshakes, the likely cause.
    #[error("timed out {0}")]
    Timeout(String),
    /// The peer closed the connection at a message boundary (orderly end of stream).
    #[error("connection closed by peer")]
    Closed,
    /// The stream ended inside a message: the peer died or closed mid-frame. The partial
    /// message is discarded, never returned.
    #[error("connection closed in the middle of a message ({received} of {expected} bytes received)")]
    Truncated {
        /// Bytes of the frame (header included) that arrived.
        received: u64,
        /// Bytes the frame should have had, as far as known.
        expected: u64,
    },
    /// The peer broke the framing rules (for example a negative length prefix), or the
    /// connection was used after such an error.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A typed message could not be decoded as CBOR into the requested type.
    #[error("could not decode message: {0}")]
    Decode(String),
    /// A value could not be encoded as CBOR.
    #[error("could not encode message: {0}")]
    Encode(String),
    /// An address string or value is not usable on this platform.
    #[error("invalid address {addr:?}: {reason}")]
    InvalidAddress {
        /// The address as given.
        addr: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// An error raised by the remote side of a request (used by consumers such as the manager).
    #[error("remote error: {kind}: {message}")]
    Remote {
        /// The kind of the remote error.
        kind: String,
        /// The remote error's message.
        message: String,
    },
    /// The lock of a [`shared::Value`](crate::shared::Value) or
    /// [`shared::Array`](crate::shared::Array) is poisoned: a process or thread died holding it
    /// (or a thread panicked holding a guard), so the data may be half-written. `get`, `set`,
    /// `with_lock` and `to_vec` refuse such data in every process until a holder of `lock()`
    /// looks at or repairs it and calls
    /// [`Guard::clear_poison`](crate::shared::Guard::clear_poison).
    #[error(
        "a holder of this shared memory's lock died (or panicked) holding it, so the data may be \
         half-written: lock() it, check or repair the data, then call Guard::clear_poison()"
    )]
    PreviousOwnerDied,
    /// An operating-system error.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl Error {
    /// True for [`Error::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout(_))
    }

    /// Maps an I/O error raised while waiting on a deadline to [`Error::Timeout`] with `what`.
    ///
    /// Only our own deadlines become `Timeout`: they are errors made here, without an OS error
    /// code. `ETIMEDOUT` from the OS means the connection itself is lost (TCP keepalive probes
    /// or retransmissions went unanswered), as do `EHOSTUNREACH` and `ENETUNREACH` (the OS gave
    /// up on the way to the peer): they stay I/O errors of their kind, saying so.
    pub(crate) fn from_io_waiting(e: io::Error, what: impl FnOnce() -> String) -> Error {
        use io::ErrorKind::{HostUnreachable, NetworkUnreachable, TimedOut, WouldBlock};
        match (e.kind(), e.raw_os_error()) {
            (TimedOut, None) | (WouldBlock, _) => Error::Timeout(what()),
            (kind @ (TimedOut | HostUnreachable | NetworkUnreachable), Some(_)) => Error::Io(io::Error::new(
                kind,
                format!("connection lost: the peer stopped answering (TCP keepalive or retransmission): {e}"),
            )),
            _ => Error::Io(e),
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
