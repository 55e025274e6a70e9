//! The one error type of the crate, [`Error`], its [`Result`] alias, and [`RemoteKind`].

use std::io;

mod cbor;
mod context;
mod remote;

pub(crate) use cbor::{decode_error, describe_decode, describe_encode, encode_error};
pub(crate) use context::io_context;
pub use remote::RemoteKind;

/// Everything that can go wrong in procwire.
///
/// Every failure a peer can cause maps to one of these kinds, with a message that says what
/// happened and, where there is one, the likely cause. The message includes the cause's text, so
/// printing the error (`{e}`) says it all; for code that looks closer, an [`Error::Io`] has its
/// [`io::Error`] as [`source()`](std::error::Error::source), and an OS error code stays
/// reachable through [`raw_os_error`](Error::raw_os_error) even where procwire added what it was
/// doing to the message. An `Error` converts into an [`io::Error`] (see the `From` impl) for
/// code that returns `io::Result`.
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
    /// A get found the queue empty after someone called
    /// [`Queue::finish`](crate::queue::generic::Queue::finish): no more items will come. A
    /// queue's [`iter`](crate::queue::generic::Queue::iter) ends here.
    #[error("the queue is finished and empty: no more items will come")]
    Finished,
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
    /// A message of an encrypted connection failed its integrity check: it was altered,
    /// replayed, reordered or dropped on the way (or the stream was cut inside one), or the
    /// stream ended without the peer's end message (cut by someone in the middle, or the peer
    /// died without closing). Nothing of it is returned, and the receiving side is unusable
    /// afterwards.
    #[error("integrity error: {0}")]
    Integrity(String),
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
    /// An error raised by the remote side of a request: a manager's object, a pool task, a
    /// child process's function, a queue server. Match on its [`RemoteKind`].
    ///
    /// ```
    /// use procwire::{Error, RemoteKind};
    /// let e = Error::Remote { kind: RemoteKind::Index, message: "pop from empty list".into() };
    /// assert_eq!(e.to_string(), "remote error: index: pop from empty list");
    /// assert_eq!(e.remote_kind(), Some(&RemoteKind::Index));
    /// ```
    #[error("remote error: {kind}: {message}")]
    Remote {
        /// The kind of the remote error.
        kind: RemoteKind,
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
    /// The call cannot be made this way: an argument out of range, or an object in the wrong
    /// state for it (a process started twice, work for a closed pool, a connection in the
    /// middle of a message, a TCP endpoint without an authkey, ...). The text says what is
    /// wrong or what to do instead. Errors of kind
    /// [`io::ErrorKind::InvalidInput`] that come from the OS stay [`Error::Io`].
    #[error("{0}")]
    InvalidInput(String),
    /// An operating-system (or I/O) error; the [`io::Error`] is the
    /// [`source()`](std::error::Error::source), and the message is its message.
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl Error {
    /// True for [`Error::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout(_))
    }

    /// True when the peer is gone: [`Error::Closed`] (it closed at a message boundary),
    /// [`Error::Truncated`] (the stream ended inside a message), or an [`Error::Io`] of kind
    /// [`BrokenPipe`](io::ErrorKind::BrokenPipe), [`ConnectionReset`](io::ErrorKind::ConnectionReset),
    /// [`ConnectionAborted`](io::ErrorKind::ConnectionAborted) or
    /// [`UnexpectedEof`](io::ErrorKind::UnexpectedEof) (it closed or died while we wrote, or
    /// before it read what we had sent).
    pub fn is_closed(&self) -> bool {
        use io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
        match self {
            Error::Closed | Error::Truncated { .. } => true,
            Error::Io(e) => {
                matches!(e.kind(), BrokenPipe | ConnectionReset | ConnectionAborted | UnexpectedEof)
            }
            _ => false,
        }
    }

    /// True for [`Error::Remote`].
    pub fn is_remote(&self) -> bool {
        matches!(self, Error::Remote { .. })
    }

    /// The kind of an [`Error::Remote`], else `None`.
    pub fn remote_kind(&self) -> Option<&RemoteKind> {
        match self {
            Error::Remote { kind, .. } => Some(kind),
            _ => None,
        }
    }

    /// The [`io::Error`] of an [`Error::Io`], else `None`.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }

    /// The OS error code (`errno`, or `GetLastError` on Windows) behind an [`Error::Io`]: of
    /// its [`io::Error`], or of the original error where procwire added what it was doing to
    /// the message. `None` for every other kind.
    ///
    /// ```
    /// # #[cfg(unix)] {
    /// use procwire::{Address, Client};
    /// let missing: Address = "unix:/nonexistent-dir/x.sock".parse()?;
    /// let e = Client::connect(&missing).unwrap_err();
    /// assert_eq!(e.raw_os_error(), Some(2)); // ENOENT
    /// # }
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn raw_os_error(&self) -> Option<i32> {
        self.io_error().and_then(|e| context::raw_os_error_in(e))
    }

    /// An I/O error as ours: an error of ours that crossed an `io::Result` comes back as it
    /// was; any other is an [`Error::Io`].
    pub(crate) fn from_io(e: io::Error) -> Error {
        if !e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            return Error::Io(e);
        }
        match e.into_inner().map(|inner| inner.downcast::<Error>()) {
            Some(Ok(inner)) => *inner,
            _ => Error::Protocol("an error lost on its way up".into()),
        }
    }

    /// Maps an I/O error raised while waiting on a deadline to [`Error::Timeout`] with `what`.
    ///
    /// Only our own deadlines become `Timeout`: they are errors made here, without an OS error
    /// code. `ETIMEDOUT` from the OS means the connection itself is lost (TCP keepalive probes
    /// or retransmissions went unanswered), as do `EHOSTUNREACH` and `ENETUNREACH` (the OS gave
    /// up on the way to the peer): they stay I/O errors of their kind, saying so.
    pub(crate) fn from_io_waiting(e: io::Error, what: impl FnOnce() -> String) -> Error {
        use io::ErrorKind::{HostUnreachable, NetworkUnreachable, TimedOut, WouldBlock};
        // An error of ours carried up by a transport (a corrupt shared-memory ring, the
        // encrypted stream) keeps its kind.
        if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            return Error::from_io(e);
        }
        match (e.kind(), e.raw_os_error()) {
            (TimedOut, None) | (WouldBlock, _) => Error::Timeout(what()),
            (TimedOut | HostUnreachable | NetworkUnreachable, Some(_)) => Error::Io(io_context(
                e,
                "connection lost: the peer stopped answering (TCP keepalive or retransmission)",
            )),
            _ => Error::Io(e),
        }
    }
}

/// For code that returns `io::Result`: an [`Error::Io`] becomes its `io::Error`; every other
/// kind an `io::Error` whose [`get_ref`](io::Error::get_ref)/`into_inner`
/// is the `Error`, of kind [`TimedOut`](io::ErrorKind::TimedOut) for a timeout,
/// [`UnexpectedEof`](io::ErrorKind::UnexpectedEof) for [`Error::Closed`], [`Error::Truncated`]
/// and [`Error::Finished`] (each is the end of a stream where a message was expected),
/// [`InvalidInput`](io::ErrorKind::InvalidInput) for misuse, an address or a value that
/// cannot be encoded, [`InvalidData`](io::ErrorKind::InvalidData) for what a peer sent that
/// does not fit (too large, malformed, undecodable),
/// [`PermissionDenied`](io::ErrorKind::PermissionDenied) for a failed handshake, and
/// [`Other`](io::ErrorKind::Other) for the rest.
///
/// ```
/// use std::io;
/// let e: io::Error = procwire::Error::Closed.into();
/// assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
/// assert!(matches!(e.get_ref().and_then(|e| e.downcast_ref()), Some(procwire::Error::Closed)));
/// ```
impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        use io::ErrorKind as K;
        if let Error::Io(io) = e {
            return io;
        }
        let kind = match &e {
            Error::Timeout(_) => K::TimedOut,
            Error::Closed | Error::Truncated { .. } | Error::Finished => K::UnexpectedEof,
            Error::InvalidInput(_) | Error::InvalidAddress { .. } | Error::Encode(_) => K::InvalidInput,
            Error::MessageTooLarge { .. } | Error::Protocol(_) | Error::Decode(_) | Error::Integrity(_) => {
                K::InvalidData
            }
            Error::AuthenticationFailed(_) => K::PermissionDenied,
            Error::Remote { .. } | Error::PreviousOwnerDied | Error::Io(_) => K::Other,
        };
        io::Error::new(kind, e)
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
