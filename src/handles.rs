//! Handing open files, sockets, pipe ends and whole [`Connection`]s to the process at the other
//! end of a connection, like CPython's `multiprocessing.reduction.send_handle`/`recv_handle`.
//!
//! - Unix: over a Unix-socket connection, with `SCM_RIGHTS`: `send_fd`/`recv_fd` for any
//!   descriptor.
//! - Windows: over a named-pipe connection, whose other process Windows knows: the receiver
//!   duplicates the sender's handle into itself (`DuplicateHandle`), and a socket goes as
//!   `WSADuplicateSocketW` information made for the receiver. `send_handle`/`recv_handle` for
//!   files, pipe ends and other kernel handles, `send_socket`/`recv_socket` for sockets (Winsock
//!   wants sockets shared its own way). A pipe end that was itself handed to another process
//!   cannot carry handles: Windows keeps naming the processes the pipe was made by, and the
//!   exchange refuses rather than take from or give to a third process.
//!
//! [`send_connection`]/[`recv_connection`] are the same on both. Over TCP (or an in-process
//! connection) every function fails with an `Unsupported` error: the other process is not known.
//!
//! The exchange, on the carrier connection, is in spec/handles.md. On Unix the sender sends the
//! message `#HANDLE#` followed by the kind of what it hands over, a NUL byte and (for a
//! connection) the bytes it had received and not read, the receiver answers `#READY#`, and the
//! sender then sends one byte with the descriptor attached. The receiver has nothing else
//! buffered at that moment (the sender waits for `#READY#`), so the byte that carries the
//! descriptor is read on its own and the descriptor cannot be lost in a read-ahead. On Windows
//! the offer carries what the receiver needs to take the handle, the receiver takes it and
//! answers `#TAKEN#` (or `#REFUSED#` and why), and the sender keeps its handle open until then.
//!
//! ```
//! use procwire::handles::{recv_connection, send_connection};
//!
//! let (mut here, mut there) = procwire::pipe(true)?;   // the carrier
//! let (mut mine, theirs) = procwire::pipe(true)?;      // the connection handed over
//! let t = std::thread::spawn(move || send_connection(&mut here, theirs));
//! let mut got = recv_connection(&mut there)?;
//! t.join().unwrap()?;
//! mine.send_bytes(b"through the handed-over connection")?;
//! assert_eq!(got.recv_bytes()?, b"through the handed-over connection");
//! # Ok::<(), procwire::Error>(())
//! ```

use crate::connection::DEFAULT_MAX_MESSAGE_SIZE;
use crate::{Connection, Error, Result};

const OFFER: &[u8] = b"#HANDLE#";

/// Splits an offer into its kind and the rest.
fn parse_offer(offer: &[u8]) -> Result<(String, &[u8])> {
    let Some((kind, rest)) = offer.strip_prefix(OFFER).and_then(|rest| {
        let nul = rest.iter().position(|&b| b == 0)?;
        Some((&rest[..nul], &rest[nul + 1..]))
    }) else {
        return Err(Error::Protocol("expected a handle, got another message".into()));
    };
    let kind = String::from_utf8(kind.to_vec())
        .map_err(|_| Error::Protocol("a handle of an unreadable kind".into()))?;
    Ok((kind, rest))
}

/// Refuses to hand over a connection that is half-way through a large message.
fn unread_of(passed: &Connection) -> Result<&[u8]> {
    passed.unread().ok_or_else(|| {
        Error::InvalidInput(
            "this connection is in the middle of receiving a large message (or broken); finish it first"
                .into(),
        )
    })
}

#[cfg(unix)]
pub use self::unix::{recv_connection, recv_fd, send_connection, send_fd};
#[cfg(windows)]
pub use self::windows::{
    recv_connection, recv_handle, recv_socket, send_connection, send_handle, send_socket,
};

#[cfg(unix)]
mod unix {
    use std::io;
    use std::os::fd::{AsFd, OwnedFd};

    use super::{DEFAULT_MAX_MESSAGE_SIZE, OFFER, parse_offer, unread_of};
    use crate::transport::Stream;
    use crate::util::deadline_of;
    use crate::{Connection, Error, Result};

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
        let (kind, unread) = parse_offer(&offer)?;
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

    /// Sends a duplicate of `fd` (an open file, a socket, a pipe end) to the process at the
    /// other end of `conn`, which must be a Unix-socket connection; the peer calls [`recv_fd`].
    /// The caller keeps its own descriptor. Blocks until the peer is ready, waiting at most the
    /// connection's read timeout. Unix only (on Windows: `send_handle` and `send_socket`).
    ///
    /// ```
    /// use std::io::{Read, Seek, Write};
    /// use procwire::handles::{recv_fd, send_fd};
    ///
    /// let (mut a, mut b) = procwire::pipe(true)?;
    /// let mut file = tempfile::tempfile()?;
    /// file.write_all(b"shared file")?;
    /// let t = std::thread::spawn(move || send_fd(&mut a, &file));
    /// let mut got = std::fs::File::from(recv_fd(&mut b)?);
    /// t.join().unwrap()?;
    /// let mut text = String::new();
    /// got.rewind()?;
    /// got.read_to_string(&mut text)?;
    /// assert_eq!(text, "shared file");
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn send_fd(conn: &mut Connection, fd: impl AsFd) -> Result<()> {
        send(conn, fd.as_fd(), PLAIN, &[])
    }

    /// Receives a descriptor sent with [`send_fd`] (or a connection's, from
    /// [`send_connection`]) as a new descriptor of this process. Unix only.
    pub fn recv_fd(conn: &mut Connection) -> Result<OwnedFd> {
        recv(conn).map(|(fd, _, _)| fd)
    }

    /// Hands `passed` to the process at the other end of `conn` (a Unix-socket connection on
    /// Unix, a named-pipe connection on Windows), which takes it with [`recv_connection`] and
    /// then uses it as its own; this side's copy is closed when `passed` is dropped here, so
    /// only the receiver goes on with it. What `passed` queued is written first, and what it
    /// received and did not read yet goes along (a client's first request often arrives with
    /// the handshake). Refused only in the middle of a large message.
    pub fn send_connection(conn: &mut Connection, mut passed: Connection) -> Result<()> {
        passed.flush()?;
        let unread = unread_of(&passed)?;
        let (fd, kind) = passed.stream().dup_for_passing()?;
        send(conn, fd.as_fd(), kind, unread)
    }

    /// Receives a connection sent with [`send_connection`], ready to use (default limits and
    /// no timeouts, as a new connection).
    pub fn recv_connection(conn: &mut Connection) -> Result<Connection> {
        let (fd, kind, unread) = recv(conn)?;
        let stream = Stream::from_passed(fd, &kind).ok_or_else(|| {
            Error::Protocol(format!("received a handle of kind {kind:?}, not a connection"))
        })?;
        let mut c = Connection::from_stream(stream, DEFAULT_MAX_MESSAGE_SIZE);
        c.prime(&unread);
        Ok(c)
    }
}

#[cfg(windows)]
mod windows {
    use std::io;
    use std::os::windows::io::{AsHandle, AsSocket, OwnedHandle, OwnedSocket};

    use super::{DEFAULT_MAX_MESSAGE_SIZE, OFFER, parse_offer, unread_of};
    use crate::transport::Stream;
    use crate::{Connection, Error, Result};

    const TAKEN: &[u8] = b"#TAKEN#";
    const REFUSED: &[u8] = b"#REFUSED#";
    /// The kinds named for a plain handle and a plain socket (not a connection).
    const HANDLE: &str = "handle";
    const SOCKET: &str = "socket";
    /// The kinds of connections that are sockets (the others are pipe handles).
    const SOCKET_STREAMS: &[&str] = &["tcp"];

    fn check_carrier(conn: &Connection) -> Result<()> {
        conn.stream().peer_process().map(drop).map_err(Error::Io)
    }

    /// Offers a handle: `#HANDLE#`, its kind, a NUL, the length of what the receiver needs to
    /// take it (4 bytes, little-endian) and that, then the bytes a connection had received and
    /// not read. Returns when the receiver has taken it (or refused): until then the caller
    /// keeps the handle open.
    fn send(conn: &mut Connection, kind: &str, shared: &[u8], unread: &[u8]) -> Result<()> {
        let len =
            u32::try_from(shared.len()).map_err(|_| Error::Protocol("handle information too long".into()))?;
        conn.send_bytes(&[OFFER, kind.as_bytes(), b"\0", &len.to_le_bytes(), shared, unread].concat())?;
        conn.flush()?;
        let answer = conn.recv_bytes()?;
        if answer == TAKEN {
            return Ok(());
        }
        match answer.strip_prefix(REFUSED) {
            Some(why) => Err(Error::Io(io::Error::other(format!(
                "the peer could not take the handle: {}",
                String::from_utf8_lossy(why)
            )))),
            None => Err(Error::Protocol("the peer did not answer a handle offer".into())),
        }
    }

    /// What a receiver asks for.
    #[derive(Clone, Copy, PartialEq)]
    enum Want {
        Handle,
        Socket,
        Connection,
    }

    /// What a receiver took.
    enum Taken {
        Handle(OwnedHandle),
        Socket(OwnedSocket),
        Stream(Box<Stream>),
    }

    fn mismatch(kind: &str, want: Want) -> io::Error {
        let want = match want {
            Want::Handle => "a handle (recv_handle)",
            Want::Socket => "a socket (recv_socket)",
            Want::Connection => "a connection (recv_connection)",
        };
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the peer sent a {kind:?}, and this side receives {want}"),
        )
    }

    /// Takes what the offer describes, if it is what is wanted. A socket that is not wanted is
    /// taken and closed all the same: sharing one leaves a copy for this process to claim.
    fn take(carrier: &Stream, kind: &str, shared: &[u8], want: Want) -> io::Result<Taken> {
        let is_socket = kind == SOCKET || SOCKET_STREAMS.contains(&kind);
        let fits = match want {
            Want::Handle => !is_socket,
            Want::Socket => is_socket,
            Want::Connection => kind != HANDLE && kind != SOCKET,
        };
        if !fits {
            if is_socket {
                drop(carrier.take_socket(shared));
            }
            return Err(mismatch(kind, want));
        }
        match want {
            Want::Handle => carrier.take_handle(shared).map(Taken::Handle),
            Want::Socket => carrier.take_socket(shared).map(Taken::Socket),
            Want::Connection => match carrier.take_stream(shared, kind)? {
                Some(s) => Ok(Taken::Stream(Box::new(s))),
                None => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("received a handle of kind {kind:?}, not a connection"),
                )),
            },
        }
    }

    fn recv(conn: &mut Connection, want: Want) -> Result<(Taken, Vec<u8>)> {
        check_carrier(conn)?;
        let offer = conn.recv_bytes()?;
        let (kind, rest) = parse_offer(&offer)?;
        let (len, rest) =
            rest.split_at_checked(4).ok_or_else(|| Error::Protocol("a handle offer cut short".into()))?;
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let (shared, unread) =
            rest.split_at_checked(len).ok_or_else(|| Error::Protocol("a handle offer cut short".into()))?;
        match take(conn.stream(), &kind, shared, want) {
            Ok(taken) => {
                conn.send_bytes(TAKEN)?;
                conn.flush()?;
                Ok((taken, unread.to_vec()))
            }
            Err(e) => {
                conn.send_bytes(&[REFUSED, e.to_string().as_bytes()].concat())?;
                conn.flush()?;
                Err(Error::Io(e))
            }
        }
    }

    /// Sends `h` (an open file, a pipe end, any kernel handle but a socket) to the process at
    /// the other end of `conn`, which must be a named-pipe connection; the peer calls
    /// [`recv_handle`] and gets its own handle to the same object with the same access. The
    /// caller keeps its handle. Blocks until the peer has taken it, waiting at most the
    /// connection's read timeout. Windows only (on Unix: `send_fd`).
    ///
    /// ```
    /// use std::io::{Read, Seek, Write};
    /// use procwire::handles::{recv_handle, send_handle};
    ///
    /// let (mut a, mut b) = procwire::pipe(true)?;
    /// let mut file = tempfile::tempfile()?;
    /// file.write_all(b"shared file")?;
    /// let t = std::thread::spawn(move || send_handle(&mut a, &file));
    /// let mut got = std::fs::File::from(recv_handle(&mut b)?);
    /// t.join().unwrap()?;
    /// let mut text = String::new();
    /// got.rewind()?;
    /// got.read_to_string(&mut text)?;
    /// assert_eq!(text, "shared file");
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn send_handle(conn: &mut Connection, h: impl AsHandle) -> Result<()> {
        let shared = conn.stream().share_handle(h.as_handle())?;
        send(conn, HANDLE, &shared, &[])
    }

    /// Receives a handle sent with [`send_handle`] (or a pipe connection's, from
    /// [`send_connection`]) as a new handle of this process. Windows only.
    pub fn recv_handle(conn: &mut Connection) -> Result<OwnedHandle> {
        match recv(conn, Want::Handle)? {
            (Taken::Handle(h), _) => Ok(h),
            _ => Err(Error::Protocol("a handle was expected".into())),
        }
    }

    /// Sends socket `s` (a `TcpStream`, `TcpListener`, `UdpSocket`, ...) to the process at the
    /// other end of `conn`, a named-pipe connection; the peer calls [`recv_socket`]. The caller
    /// keeps its socket. Windows only (on Unix: `send_fd`).
    pub fn send_socket(conn: &mut Connection, s: impl AsSocket) -> Result<()> {
        let shared = conn.stream().share_socket(s.as_socket())?;
        send(conn, SOCKET, &shared, &[])
    }

    /// Receives a socket sent with [`send_socket`] (or a TCP connection's, from
    /// [`send_connection`]) as a new socket of this process. Windows only.
    pub fn recv_socket(conn: &mut Connection) -> Result<OwnedSocket> {
        match recv(conn, Want::Socket)? {
            (Taken::Socket(s), _) => Ok(s),
            _ => Err(Error::Protocol("a socket was expected".into())),
        }
    }

    /// Hands `passed` (a named-pipe or TCP connection) to the process at the other end of
    /// `conn` (a named-pipe connection), which takes it with [`recv_connection`] and then uses
    /// it as its own; this side's copy is closed when `passed` is dropped here, so only the
    /// receiver goes on with it. What `passed` queued is written first, and what it received
    /// and did not read yet goes along (a client's first request often arrives with the
    /// handshake). Refused in the middle of a large message.
    pub fn send_connection(conn: &mut Connection, mut passed: Connection) -> Result<()> {
        passed.flush()?;
        let unread = unread_of(&passed)?;
        let (shared, kind, pending) = passed.stream().share_stream(conn.stream())?;
        // The connection's buffer holds what the stream handed up before what it still holds.
        send(conn, kind, &shared, &[unread, &pending].concat())
    }

    /// Receives a connection sent with [`send_connection`], ready to use (default limits and
    /// no timeouts, as a new connection).
    pub fn recv_connection(conn: &mut Connection) -> Result<Connection> {
        match recv(conn, Want::Connection)? {
            (Taken::Stream(stream), unread) => {
                let mut c = Connection::from_stream(*stream, DEFAULT_MAX_MESSAGE_SIZE);
                c.prime(&unread);
                Ok(c)
            }
            _ => Err(Error::Protocol("a connection was expected".into())),
        }
    }
}
