//! Handing open files, sockets, pipe ends and whole [`Connection`]s to the process at the other
//! end of a Unix-socket connection (`SCM_RIGHTS`), like CPython's
//! `multiprocessing.reduction.send_handle`/`recv_handle`. Unix only.
//!
//! The exchange, on the carrier connection (SPEC.md §9.3): the sender sends the message
//! `#HANDLE#` followed by the kind of what it hands over, a NUL byte and (for a connection)
//! the bytes it had received and not read, the receiver answers `#READY#`, and
//! the sender then sends one byte with the descriptor attached. The receiver has nothing else
//! buffered at that moment (the sender waits for `#READY#`), so the byte that carries the
//! descriptor is read on its own and the descriptor cannot be lost in a read-ahead.
//!
//! ```
//! use std::io::{Read, Seek, Write};
//! use procwire::handles::{recv_fd, send_fd};
//!
//! let (mut a, mut b) = procwire::pipe(true)?;
//! let mut file = tempfile::tempfile()?;
//! file.write_all(b"shared file")?;
//! let t = std::thread::spawn(move || send_fd(&mut a, &file));
//! let mut got = std::fs::File::from(recv_fd(&mut b)?);
//! t.join().unwrap()?;
//! let mut text = String::new();
//! got.rewind()?;
//! got.read_to_string(&mut text)?;
//! assert_eq!(text, "shared file");
//! # Ok::<(), procwire::Error>(())
//! ```

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use crate::connection::{DEFAULT_MAX_MESSAGE_SIZE, deadline_of};
use crate::transport::Stream;
use crate::{Connection, Error, Result};

const OFFER: &[u8] = b"#HANDLE#";
const READY: &[u8] = b"#READY#";
/// The kind named for a plain descriptor (not a connection).
const PLAIN: &str = "fd";
/// The byte that carries the descriptor.
const CARRIER: u8 = b'H';

fn check_carrier(conn: &Connection) -> Result<()> {
    if conn.stream().can_pass_fds() {
        Ok(())
    } else {
        Err(Error::Io(io::Error::new(
            io::ErrorKind::Unsupported,
            "handles can only be passed over a Unix domain socket connection (not TCP or a pipe)",
        )))
    }
}

/// Offers a handle: `#HANDLE#`, its kind, and for a connection a NUL and the bytes it had
/// received and not read (they go on in the receiving process).
fn send(conn: &mut Connection, fd: std::os::fd::BorrowedFd<'_>, kind: &str, unread: &[u8]) -> Result<()> {
    check_carrier(conn)?;
    conn.send_bytes(&[OFFER, kind.as_bytes(), b"\0", unread].concat())?;
    conn.flush()?;
    let answer = conn.recv_bytes()?;
    if answer != READY {
        return Err(Error::Protocol("the peer did not get ready to receive a handle".into()));
    }
    let deadline = deadline_of(conn.write_timeout());
    conn.stream()
        .send_fd(CARRIER, fd, deadline)
        .map_err(|e| Error::from_io_waiting(e, || "passing a handle".into()))
}

fn recv(conn: &mut Connection) -> Result<(OwnedFd, String, Vec<u8>)> {
    check_carrier(conn)?;
    let offer = conn.recv_bytes()?;
    let Some((kind, unread)) = offer.strip_prefix(OFFER).and_then(|rest| {
        let nul = rest.iter().position(|&b| b == 0)?;
        Some((&rest[..nul], &rest[nul + 1..]))
    }) else {
        return Err(Error::Protocol("expected a handle, got another message".into()));
    };
    let kind = String::from_utf8(kind.to_vec())
        .map_err(|_| Error::Protocol("a handle of an unreadable kind".into()))?;
    let unread = unread.to_vec();
    if conn.has_buffered() {
        return Err(Error::Protocol("the peer sent more data right behind its handle offer".into()));
    }
    conn.send_bytes(READY)?;
    conn.flush()?;
    let deadline = deadline_of(conn.read_timeout());
    let (byte, fd) = conn
        .stream()
        .recv_fd(deadline)
        .map_err(|e| Error::from_io_waiting(e, || "waiting for a handle".into()))?;
    match (byte, fd) {
        (CARRIER, Some(fd)) => Ok((fd, kind, unread)),
        _ => Err(Error::Protocol("the handle's byte came without a descriptor".into())),
    }
}

/// Sends a duplicate of `fd` (an open file, a socket, a pipe end) to the process at the other
/// end of `conn`, which must be a Unix-socket connection; the peer calls [`recv_fd`]. The
/// caller keeps its own descriptor. Blocks until the peer is ready, waiting at most the
/// connection's read timeout.
pub fn send_fd(conn: &mut Connection, fd: impl AsFd) -> Result<()> {
    send(conn, fd.as_fd(), PLAIN, &[])
}

/// Receives a descriptor sent with [`send_fd`] (or a connection's, from
/// [`send_connection`]) as a new descriptor of this process.
pub fn recv_fd(conn: &mut Connection) -> Result<OwnedFd> {
    recv(conn).map(|(fd, _, _)| fd)
}

/// Hands `passed` to the process at the other end of `conn` (a Unix-socket connection), which
/// takes it with [`recv_connection`] and then uses it as its own; this side's copy is closed
/// when `passed` is dropped here, so only the receiver goes on with it. What `passed` queued
/// is written first, and what it received and did not read yet goes along (a client's first
/// request often arrives with the handshake). Refused only in the middle of a large message.
///
/// ```
/// use procwire::handles::{recv_connection, send_connection};
///
/// let (mut here, mut there) = procwire::pipe(true)?;   // the carrier
/// let (mut mine, theirs) = procwire::pipe(true)?;      // the connection handed over
/// let t = std::thread::spawn(move || send_connection(&mut here, theirs));
/// let mut got = recv_connection(&mut there)?;
/// t.join().unwrap()?;
/// mine.send_bytes(b"through the handed-over connection")?;
/// assert_eq!(got.recv_bytes()?, b"through the handed-over connection");
/// # Ok::<(), procwire::Error>(())
/// ```
pub fn send_connection(conn: &mut Connection, mut passed: Connection) -> Result<()> {
    passed.flush()?;
    let Some(unread) = passed.unread() else {
        return Err(Error::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            "this connection is in the middle of receiving a large message (or broken); finish it first",
        )));
    };
    let (fd, kind) = passed.stream().dup_for_passing()?;
    send(conn, fd.as_fd(), kind, unread)
}

/// Receives a connection sent with [`send_connection`], ready to use (default limits and no
/// timeouts, as a new connection).
pub fn recv_connection(conn: &mut Connection) -> Result<Connection> {
    let (fd, kind, unread) = recv(conn)?;
    let stream = Stream::from_passed(fd, &kind)
        .ok_or_else(|| Error::Protocol(format!("received a handle of kind {kind:?}, not a connection")))?;
    let mut c = Connection::from_stream(stream, DEFAULT_MAX_MESSAGE_SIZE);
    c.prime(&unread);
    Ok(c)
}
