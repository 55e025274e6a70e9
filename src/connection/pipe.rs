//! [`pipe`]: a connected pair of connections.

use super::{Connection, DEFAULT_MAX_MESSAGE_SIZE};
use crate::Result;

/// A connected pair of connections, like CPython's `Pipe(duplex)`.
///
/// With `duplex` both ends send and receive (a Unix socketpair; a named pipe pair on
/// Windows). Without it, the first end only receives and the second only sends (an OS pipe).
/// Either end can be handed to a child process with [`Connection::pass_to_child`].
///
/// ```
/// let (mut rx, mut tx) = procwire::pipe(false)?;
/// tx.send_bytes(b"one way")?;
/// assert_eq!(rx.recv_bytes()?, b"one way");
/// assert!(rx.send_bytes(b"no").is_err());
/// # Ok::<(), procwire::Error>(())
/// ```
pub fn pipe(duplex: bool) -> Result<(Connection, Connection)> {
    let (a, b) = crate::transport::pipe(duplex)?;
    Ok((
        Connection::from_stream(a, DEFAULT_MAX_MESSAGE_SIZE),
        Connection::from_stream(b, DEFAULT_MAX_MESSAGE_SIZE),
    ))
}

/// A connected pair of in-process connections (see [`crate::dummy::pipe`]).
pub(crate) fn pipe_in_process(duplex: bool) -> (Connection, Connection) {
    let (a, b) = crate::transport::pipe_in_process(duplex);
    (
        Connection::from_stream(a, DEFAULT_MAX_MESSAGE_SIZE),
        Connection::from_stream(b, DEFAULT_MAX_MESSAGE_SIZE),
    )
}
