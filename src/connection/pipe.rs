//! [`pipe`]: a connected pair of connections.

use super::{Connection, DEFAULT_MAX_MESSAGE_SIZE};
use crate::transport::DEFAULT_SHM_RING;
use crate::{Error, Result};

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

/// The kind of pair [`pipe_with`] makes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PipeKind {
    /// A Unix socket pair (a named pipe pair on Windows), as `pipe(true)`.
    #[default]
    Socket,
    /// Memory shared by the two ends, one ring per direction, with a Unix socket pair (a named
    /// pipe pair on Windows) as doorbell and liveness signal: no system call per message while
    /// both sides are busy. Either end can be handed to a child
    /// process with [`Connection::pass_to_child`](crate::Connection::pass_to_child).
    SharedMemory,
    /// As [`SharedMemory`](PipeKind::SharedMemory), with rings of this many bytes each way
    /// instead of [`DEFAULT_SHM_RING`](crate::connection::DEFAULT_SHM_RING): a power of two
    /// from 4 KiB to 1 GiB (another size is an [`Error::InvalidInput`](crate::Error::InvalidInput)).
    ///
    /// ```
    /// use procwire::{PipeKind, pipe_with};
    /// let (a, _b) = pipe_with(PipeKind::SharedMemoryRing(64 << 10))?;
    /// assert_eq!(a.shm_ring_size(), Some(64 << 10));
    /// assert!(pipe_with(PipeKind::SharedMemoryRing(100_000)).is_err());
    /// # Ok::<(), procwire::Error>(())
    /// ```
    SharedMemoryRing(usize),
}

impl PipeKind {
    /// [`SharedMemory`](PipeKind::SharedMemory) when `shared_memory` asks for it and it works
    /// on this platform, else [`Socket`](PipeKind::Socket): for the crate's consumers, which
    /// use shared memory where they can.
    pub(crate) fn local(shared_memory: bool) -> PipeKind {
        if shared_memory && crate::transport::SHARED_MEMORY {
            PipeKind::SharedMemory
        } else {
            PipeKind::Socket
        }
    }
}

/// A connected duplex pair of `kind`.
///
/// ```
/// use procwire::{PipeKind, pipe_with};
/// let (mut a, mut b) = pipe_with(PipeKind::SharedMemory)?;
/// a.send_bytes(b"through memory")?;
/// assert_eq!(b.recv_bytes()?, b"through memory");
/// # Ok::<(), procwire::Error>(())
/// ```
pub fn pipe_with(kind: PipeKind) -> Result<(Connection, Connection)> {
    let (a, b) = match kind {
        PipeKind::Socket => crate::transport::pipe(true)?,
        PipeKind::SharedMemory => crate::transport::pipe_shared_memory(DEFAULT_SHM_RING)?,
        PipeKind::SharedMemoryRing(ring) if crate::transport::valid_shm_ring(ring) => {
            crate::transport::pipe_shared_memory(ring)?
        }
        PipeKind::SharedMemoryRing(ring) => {
            return Err(Error::InvalidInput(format!(
                "PipeKind::SharedMemoryRing({ring}): a ring size is a power of two from 4 KiB to 1 GiB"
            )));
        }
    };
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
