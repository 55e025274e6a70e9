//! [`Connection`]: whole messages over a transport stream, as bytes or as CBOR-encoded values;
//! and [`pipe`], a connected pair.
//!
//! Receiving reads as much as the socket has into a buffer (64 KiB) and takes frames out of it,
//! so many small messages cost one `read`; a message larger than the buffer, or of 32 KiB or
//! more and not all arrived yet, is read straight into its own allocation of exactly its size
//! (after a message like that, a read into the empty buffer takes only the next header, so a
//! run of large messages is never copied twice). Sending copies a small frame (header and
//! payload) into one `write`, and sends a large one with a vectored write that does not copy
//! the payload; into a shared-memory ring, header and payload are copied straight in. With [`set_batching`](Connection::set_batching), small frames queue until a
//! limit, a [`flush`](Connection::flush), or a receive.

mod pipe;
mod recv;
#[cfg(feature = "encrypt")]
mod sealed;
mod send;
mod split;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::transport::Stream;
pub use crate::transport::{DEFAULT_SHM_RING, PeerCredentials};
use crate::util::{COPY_PIECE, deadline_of};
use crate::{Address, Error, Result};

pub(crate) use pipe::pipe_in_process;
pub use pipe::{PipeKind, pipe, pipe_with};
use recv::Reader;
pub(crate) use recv::decode;
use send::Writer;
pub use split::{Receiver, Sender};

/// The default largest message a connection accepts: 64 MiB. Change it with
/// [`Connection::set_max_message_size`] or the builders' `max_message_size`.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 64 << 20;

/// Receive buffer size: frames up to this size are read together with their neighbours.
const READ_BUFFER: usize = 64 << 10;
/// Default batching limit of [`Connection::set_batching`].
pub const DEFAULT_BATCH: usize = 64 << 10;

/// Appends `src` to `dst` (one exact reservation, then [`COPY_PIECE`]-sized copies).
#[inline]
fn append(dst: &mut Vec<u8>, src: &[u8]) {
    dst.reserve(src.len());
    for piece in src.chunks(COPY_PIECE) {
        dst.extend_from_slice(piece);
    }
}

/// A connection that sends and receives whole messages.
///
/// Messages are byte strings ([`send_bytes`](Connection::send_bytes),
/// [`recv_bytes`](Connection::recv_bytes)), or any serde value encoded as CBOR
/// ([`send`](Connection::send), [`recv`](Connection::recv)). Byte messages are exactly what
/// CPython's `Connection.send_bytes`/`recv_bytes` exchange.
///
/// A `Connection` is `Send`: one thread at a time owns it. To receive on one thread while
/// sending on another, [`split`](Connection::split) it.
///
/// ```
/// let (mut a, mut b) = procwire::pipe(true)?;
/// a.send_bytes(b"hello")?;
/// assert_eq!(b.recv_bytes()?, b"hello");
/// b.send(&(1u32, "two"))?;
/// let (n, s): (u32, String) = a.recv()?;
/// assert_eq!((n, s.as_str()), (1, "two"));
/// # Ok::<(), procwire::Error>(())
/// ```
pub struct Connection {
    tx: Sender,
    rx: Receiver,
}

// The stream once, then each side's counts and settings (never buffered bytes).
impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("stream", &*self.rx.stream)
            .field("rx", &self.rx.reader)
            .field("tx", &self.tx.writer)
            .finish()
    }
}

impl Connection {
    pub(crate) fn from_stream(stream: Stream, max: u64) -> Connection {
        Connection::with_buffer(stream, READ_BUFFER, max)
    }

    fn with_buffer(stream: Stream, capacity: usize, max: u64) -> Connection {
        let stream = Arc::new(stream);
        Connection {
            tx: Sender { stream: stream.clone(), writer: Writer::new() },
            rx: Receiver { stream, reader: Reader::new(capacity, max), scratch: Vec::new() },
        }
    }

    /// A connection for a handshake: a small buffer and the handshake's message cap, until
    /// [`finish_handshake`](Connection::finish_handshake).
    pub(crate) fn for_handshake(stream: Stream) -> Connection {
        Connection::with_buffer(stream, 512, crate::auth::MAX_HANDSHAKE_MESSAGE)
    }

    pub(crate) fn finish_handshake(&mut self, opts: &ConnOptions) {
        self.rx.reader.capacity = READ_BUFFER;
        opts.apply(self);
    }

    pub(crate) fn stream(&self) -> &Stream {
        &self.rx.stream
    }

    /// Whether this connection is in-process (from [`crate::dummy::pipe`] or an `inproc:`
    /// address): its bytes move in memory between threads, with no descriptor or handle, so it
    /// cannot be passed to another process.
    ///
    /// ```
    /// let (a, _b) = procwire::dummy::pipe(true)?;
    /// assert!(a.is_in_process());
    /// let (c, _d) = procwire::pipe(true)?;
    /// assert!(!c.is_in_process());
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn is_in_process(&self) -> bool {
        matches!(*self.rx.stream, Stream::Mem(_))
    }

    /// Whether the connection's bytes move through memory shared with another process of this
    /// host (an `shm:` address, [`PipeKind::SharedMemory`]), with its socket as doorbell.
    ///
    /// ```
    /// # #[cfg(target_os = "linux")] {
    /// let (a, _b) = procwire::pipe_with(procwire::PipeKind::SharedMemory)?;
    /// assert!(a.is_shared_memory());
    /// let (c, _d) = procwire::pipe(true)?;
    /// assert!(!c.is_shared_memory());
    /// # }
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn is_shared_memory(&self) -> bool {
        self.rx.stream.is_shared_memory()
    }

    /// Whether the connection is encrypted (`encrypt(true)` on the builders, feature `encrypt`).
    pub fn is_encrypted(&self) -> bool {
        #[cfg(feature = "encrypt")]
        return matches!(*self.rx.stream, Stream::Sealed(_));
        #[cfg(not(feature = "encrypt"))]
        false
    }

    /// Whether a receive can make progress without the socket (buffered data, or an error).
    pub(crate) fn has_buffered(&self) -> bool {
        self.rx.has_buffered()
    }

    /// The bytes received and not yet taken as messages, for handing the connection to
    /// another process; `None` when a large message is half-read (its state cannot travel).
    pub(crate) fn unread(&self) -> Option<&[u8]> {
        let r = &self.rx.reader;
        (r.partial.is_none() && r.broken.is_none()).then(|| r.fb.buffered())
    }

    /// Puts bytes another process had received and not read in front of what this
    /// connection will read.
    pub(crate) fn prime(&mut self, mut bytes: &[u8]) {
        let fb = &mut self.rx.reader.fb;
        fb.grow_to(bytes.len().max(READ_BUFFER));
        while !bytes.is_empty() {
            let spare = fb.spare();
            let n = spare.len().min(bytes.len());
            spare[..n].copy_from_slice(&bytes[..n]);
            fb.filled(n);
            bytes = &bytes[n..];
        }
    }

    pub(crate) fn refuse_challenge(&mut self) {
        self.rx.reader.refuse_challenge = true;
    }

    /// For a keyless plain listener's connection: refuses a shared-memory client's hello.
    pub(crate) fn refuse_shm_hello(&mut self) {
        self.rx.reader.refuse_shm_hello = true;
    }

    /// Sends `payload` as one message.
    pub fn send_bytes(&mut self, payload: &[u8]) -> Result<()> {
        self.tx.send_bytes(payload)
    }

    /// Sends `value` as one CBOR-encoded message.
    pub fn send<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.tx.send(value)
    }

    /// Sends one message of `len` bytes that `fill` writes in place: the connection's send
    /// buffer is the message (zeroed, then filled; what `fill` returns is returned), so the
    /// caller needs no buffer of its own. It goes out as [`send_bytes`](Connection::send_bytes)
    /// would send those bytes, batching included, on every transport.
    ///
    /// On a shared-memory connection the bytes are still copied once into the ring: `fill`
    /// never gets memory the peer process can write to, since the peer could change the bytes
    /// under `fill`'s `&mut` (in Rust's terms a data race, undefined behaviour here).
    ///
    /// ```
    /// let (mut a, mut b) = procwire::pipe(true)?;
    /// let sum = a.send_with(4, |buf| {
    ///     buf.copy_from_slice(&[1, 2, 3, 4]);
    ///     buf.iter().map(|&x| u32::from(x)).sum::<u32>()
    /// })?;
    /// assert_eq!(sum, 10);
    /// assert_eq!(b.recv_with(|bytes| bytes.to_vec())?, [1, 2, 3, 4]);
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn send_with<R>(&mut self, len: usize, fill: impl FnOnce(&mut [u8]) -> R) -> Result<R> {
        self.tx.send_with(len, fill)
    }

    /// Receives one message and hands its bytes to `f`, returning what `f` returns: without
    /// copying them out of the receive buffer when they are there (small messages), or from
    /// the connection's own allocation a large message is read into (reused from one message
    /// to the next), so the caller allocates nothing. Errors as
    /// [`recv_bytes`](Connection::recv_bytes).
    ///
    /// On a shared-memory connection the bytes are copied once out of the ring first: `f`
    /// never sees memory the peer process can write to, so a peer that scribbles on the ring
    /// cannot change the bytes while `f` looks at them.
    pub fn recv_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        self.flush_before_receive(None);
        let r = self.rx.recv_with(f);
        self.answer_refusal(r)
    }

    /// Receives one message as a new vector (allocated once, of exactly its size).
    ///
    /// Errors: [`Error::Closed`] when the peer closed at a message boundary,
    /// [`Error::Truncated`] when it closed mid-message, [`Error::Timeout`] after the read
    /// timeout (nothing is lost: the next call continues), [`Error::MessageTooLarge`] for a
    /// message over the maximum (refused before allocating).
    pub fn recv_bytes(&mut self) -> Result<Vec<u8>> {
        self.flush_before_receive(None);
        let r = self.rx.recv_bytes();
        self.answer_refusal(r)
    }

    /// Receives one message into `buf` (replacing its content, reusing its allocation) and
    /// returns its length. On an error the content of `buf` is unspecified.
    ///
    /// ```
    /// let (mut a, mut b) = procwire::pipe(true)?;
    /// let mut buf = Vec::with_capacity(1024);
    /// for word in ["ab", "cde"] {
    ///     a.send_bytes(word.as_bytes())?;
    ///     let n = b.recv_bytes_into(&mut buf)?;
    ///     assert_eq!(&buf[..n], word.as_bytes());
    /// }
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn recv_bytes_into(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        if self.tx.writer.buf.is_empty()
            && let Some(payload) = self.rx.reader.take_buffered()
        {
            buf.clear();
            append(buf, payload);
            return Ok(buf.len());
        }
        self.flush_before_receive(None);
        let r = self.rx.recv_bytes_into(buf);
        self.answer_refusal(r)
    }

    /// Receives one CBOR-encoded message as a `T`. A message that is not valid CBOR for `T`
    /// is an [`Error::Decode`] and is consumed (the connection stays usable).
    pub fn recv<T: DeserializeOwned>(&mut self) -> Result<T> {
        self.flush_before_receive(None);
        let r = self.rx.recv();
        self.answer_refusal(r)
    }

    /// Sends what batching queued before waiting for an answer to it (waiting at most the
    /// write timeout, and `limit` if given). A failure does not fail the receive: the data
    /// stays queued and the next send or flush reports the error.
    fn flush_before_receive(&mut self, limit: Option<Instant>) {
        if self.tx.writer.buf.is_empty() {
            return;
        }
        let deadline = match (deadline_of(self.tx.writer.timeout), limit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let _ = self.tx.writer.flush_until(&self.tx.stream, deadline);
    }

    /// After a keyless side refused a first message (a challenge, a shared-memory offer or
    /// hello), tells the peer why (best effort).
    fn answer_refusal<T>(&mut self, r: Result<T>) -> Result<T> {
        if let Some(answer) = self.rx.reader.owed.take() {
            let _ = self.tx.send_bytes(answer);
        }
        r
    }

    /// Receives a message, waiting until `deadline` whatever the read timeout says.
    pub(crate) fn recv_bytes_until(&mut self, deadline: Option<Instant>) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        self.rx.reader.recv_into(&self.rx.stream, &mut v, deadline)?;
        Ok(v)
    }

    /// Takes a complete frame already buffered (no I/O); for handshakes driven by readiness.
    pub(crate) fn buffered_frame(&mut self) -> Result<Option<Vec<u8>>> {
        let r = &mut self.rx.reader;
        r.fb.next_frame().map_err(|e| r.fail(e.into()))
    }

    /// Reads once into the receive buffer (the caller knows data is ready); `false` at EOF.
    pub(crate) fn fill_ready(&mut self) -> Result<bool> {
        let r = &mut self.rx.reader;
        let n = self.rx.stream.read(r.fb.spare(), Some(Instant::now()))?;
        r.fb.filled(n);
        Ok(n > 0)
    }

    /// Whether a message can be received without blocking, looking without waiting (as
    /// CPython's `poll()`). As in CPython, a closed peer also counts as readable: the next
    /// receive reports it.
    ///
    /// ```
    /// use std::time::Duration;
    /// let (mut a, mut b) = procwire::pipe(true)?;
    /// assert!(!b.poll()?);
    /// a.send_bytes(b"x")?;
    /// assert!(b.poll_timeout(Duration::from_secs(5))?);
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn poll(&mut self) -> Result<bool> {
        self.poll_timeout(Duration::ZERO)
    }

    /// As [`poll`](Connection::poll), waiting up to `timeout` for a message (CPython's
    /// `poll(timeout)`); `Duration::MAX` waits as long as it takes (CPython's `poll(None)`).
    pub fn poll_timeout(&mut self, timeout: Duration) -> Result<bool> {
        self.flush_before_receive(deadline_of(Some(timeout)));
        self.rx.poll_timeout(timeout)
    }

    /// The size of each ring (one per direction) of a shared-memory connection (`shm:`,
    /// [`PipeKind::SharedMemory`]), as the side that made the region declared it; `None` for
    /// other connections.
    pub fn shm_ring_size(&self) -> Option<usize> {
        self.stream().shm_ring_size()
    }

    /// Sets how long a side of a shared-memory connection ([`PipeKind::SharedMemory`], `shm:`
    /// addresses) that finds nothing to read, or no room to write, spins before it sleeps
    /// (default 50 µs): a longer window answers a busy peer sooner, at the cost of CPU time
    /// while it waits; zero sleeps at once. No effect on other connections. Both halves of
    /// the connection share the setting.
    ///
    /// A side that only receives, while messages keep coming as fast as it reads them, looks
    /// at the ring once every 4 µs within the window rather than continuously, and a look that
    /// finds less than 1 KiB waits up to 4 µs more (never beyond the window) before it takes
    /// it: it then takes several messages at once, which moves a stream of small messages
    /// several times faster between two cores, for up to 4 µs more latency on such a one-way
    /// stream. A side that sent since it last received (a request waiting for its reply)
    /// always looks at once.
    pub fn set_spin_window(&mut self, window: Duration) {
        self.rx.stream.set_spin(window);
    }

    /// Sets how long a receive may wait (`None`: forever, the default). A receive that times
    /// out returns [`Error::Timeout`] and loses nothing: the next receive continues.
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.rx.set_read_timeout(timeout);
    }

    /// The read timeout.
    pub fn read_timeout(&self) -> Option<Duration> {
        self.rx.reader.timeout
    }

    /// Sets how long a send or flush may wait for the peer to make room (`None`: forever).
    /// A send that times out returns [`Error::Timeout`]; what was not written stays queued
    /// and goes out first with the next send or flush.
    pub fn set_write_timeout(&mut self, timeout: Option<Duration>) {
        self.tx.set_write_timeout(timeout);
    }

    /// The write timeout.
    pub fn write_timeout(&self) -> Option<Duration> {
        self.tx.writer.timeout
    }

    /// Sets the largest message this side accepts. A larger one is refused with
    /// [`Error::MessageTooLarge`] before anything is allocated for it, and the receiving side
    /// is unusable afterwards (the rest of that message is still in the stream).
    pub fn set_max_message_size(&mut self, max: u64) {
        self.rx.set_max_message_size(max);
    }

    /// The largest message this side accepts.
    pub fn max_message_size(&self) -> u64 {
        self.rx.reader.fb.max()
    }

    /// Batches small messages: with `Some(limit)`, sends queue in memory and leave in one write
    /// when `limit` bytes are queued, on [`flush`](Connection::flush), before any receive or
    /// poll on this connection, when a message over 16 KiB is sent (it goes out after the
    /// queue, in order), and when the connection is dropped (waiting at most the write
    /// timeout, or 10 s without one). `None` (the default) writes every message at once.
    ///
    /// ```
    /// let (mut a, mut b) = procwire::pipe(true)?;
    /// a.set_batching(Some(procwire::connection::DEFAULT_BATCH));
    /// for i in 0..1000u32 {
    ///     a.send(&i)?;
    /// }
    /// a.flush()?;
    /// for i in 0..1000u32 {
    ///     assert_eq!(b.recv::<u32>()?, i);
    /// }
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn set_batching(&mut self, limit: Option<usize>) {
        self.tx.set_batching(limit);
    }

    /// Writes out every queued message.
    pub fn flush(&mut self) -> Result<()> {
        self.tx.flush()
    }

    /// Flushes and closes the connection, reporting a flush error (dropping it closes too,
    /// but silently). An encrypted connection then sends its end message (SPEC.md §13.3),
    /// waiting at most 10 seconds for the peer to make room for it; dropping one sends it only
    /// if the socket takes it at once, and a split one sends it once both halves are gone.
    pub fn close(mut self) -> Result<()> {
        let r = self.tx.flush();
        // Reported here; dropping must not wait for the same data again.
        self.tx.writer.buf.clear();
        #[cfg(feature = "encrypt")]
        if let Stream::Sealed(s) = &*self.rx.stream {
            s.send_end(Instant::now() + crate::transport::sealed::CLOSE_LIMIT);
        }
        r
    }

    /// The local address, where the transport has one (not for pipes or unnamed sockets).
    pub fn local_addr(&self) -> Option<Address> {
        self.stream().local_addr()
    }

    /// The peer's address, where the transport has one.
    pub fn peer_addr(&self) -> Option<Address> {
        self.stream().peer_addr()
    }

    /// Who is at the other end of a Unix-socket connection, as the kernel recorded it when the
    /// connection was made (`SO_PEERCRED` on Linux, `getpeereid` on macOS and the BSDs, which
    /// give no pid). A server can use it to authorize local peers by uid. `None` for TCP,
    /// OS pipes, in-process connections, Windows named pipes, and where the OS cannot tell.
    /// For a pair from [`pipe`] it is the process that created the pair.
    ///
    /// ```
    /// # #[cfg(unix)] {
    /// use procwire::{Address, Client, Family, Listener};
    /// let listener = Listener::bind(&Address::fresh(Family::Unix)?)?;
    /// let _client = Client::connect(listener.address())?;
    /// let server_side = listener.accept()?;
    /// let who = server_side.peer_credentials().expect("a Unix socket");
    /// # #[cfg(target_os = "linux")]
    /// assert_eq!(who.pid, Some(std::process::id()));
    /// # }
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn peer_credentials(&self) -> Option<PeerCredentials> {
        self.stream().peer_credentials()
    }

    /// Turns TCP keepalive on with probes after `idle` of silence, so that a peer that vanished
    /// without closing (host down, link cut) is eventually reported by a receive: an
    /// [`Error::Io`] of kind `TimedOut` (not [`Error::Timeout`], which is a deadline of ours).
    /// On Linux and macOS the loss is reported after 3 unanswered probes `idle` apart, about
    /// 4 × `idle` after the peer fell silent, and on Linux a send whose data stays
    /// unacknowledged that long fails too (`TCP_USER_TIMEOUT`); elsewhere the OS default number
    /// of probes applies. `None` turns it off. No-op on other transports.
    pub fn set_keepalive(&self, idle: Option<Duration>) -> Result<()> {
        Ok(self.stream().set_keepalive(idle)?)
    }

    /// Splits the connection into a sending and a receiving half that can move to different
    /// threads. Buffered data and settings go with the half they belong to.
    ///
    /// ```
    /// let (a, mut b) = procwire::pipe(true)?;
    /// let (mut tx, mut rx) = a.split();
    /// let t = std::thread::spawn(move || rx.recv_bytes());
    /// tx.send_bytes(b"ping")?;
    /// let got = b.recv_bytes()?;
    /// b.send_bytes(&got)?;
    /// assert_eq!(t.join().unwrap()?, b"ping");
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn split(self) -> (Sender, Receiver) {
        (self.tx, self.rx)
    }

    /// Makes this connection available to the child that `cmd` will spawn, and names it in the
    /// child's environment variable `var`; the child calls [`Connection::from_env`].
    ///
    /// `cmd` keeps a duplicate of the descriptor (so this connection may be dropped at any
    /// time) until `cmd` itself is dropped: drop both this connection and `cmd` after spawning,
    /// or the parent still holds the child's end open and never sees it close. Only the one
    /// child spawned from `cmd` inherits it.
    ///
    /// On Windows nothing is inherited: the duplicate is a handle of this process that the
    /// child takes (closing it here) when it calls `from_env`; a child that never does leaves
    /// it open here. Only named-pipe connections can be passed this way there (hand a TCP
    /// connection over a pipe with [`handles::send_connection`](crate::handles::send_connection)).
    ///
    /// ```no_run
    /// let (mut parent_end, child_end) = procwire::pipe(true)?;
    /// let mut cmd = std::process::Command::new("my-worker");
    /// child_end.pass_to_child(&mut cmd, "WORKER_CONN")?;
    /// let child = cmd.spawn()?;
    /// drop((cmd, child_end));
    /// // In the worker: let mut conn = procwire::Connection::from_env("WORKER_CONN")?;
    /// parent_end.send(&"job")?;
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn pass_to_child(&self, cmd: &mut std::process::Command, var: &str) -> Result<()> {
        if self.rx.reader.has_data() || !self.tx.writer.buf.is_empty() {
            return Err(Error::InvalidInput(
                "this connection has buffered data; pass it to the child before using it".into(),
            ));
        }
        Ok(self.stream().pass_to_child(cmd, var)?)
    }

    /// In a child process: adopts the connection its parent passed with
    /// [`pass_to_child`](Connection::pass_to_child) under `var`. Works once per variable.
    pub fn from_env(var: &str) -> Result<Connection> {
        Ok(Connection::from_stream(Stream::from_env(var)?, DEFAULT_MAX_MESSAGE_SIZE))
    }
}

/// Settings applied to every connection a listener accepts or a client makes.
#[derive(Clone, Debug)]
pub(crate) struct ConnOptions {
    pub(crate) max_message_size: u64,
    pub(crate) read_timeout: Option<Duration>,
    pub(crate) write_timeout: Option<Duration>,
}

impl Default for ConnOptions {
    fn default() -> Self {
        ConnOptions { max_message_size: DEFAULT_MAX_MESSAGE_SIZE, read_timeout: None, write_timeout: None }
    }
}

impl ConnOptions {
    pub(crate) fn apply(&self, c: &mut Connection) {
        c.set_max_message_size(self.max_message_size);
        c.set_read_timeout(self.read_timeout);
        c.set_write_timeout(self.write_timeout);
    }
}

/// The connection's socket or pipe descriptor.
///
/// For a shared-memory connection (`shm:`, [`PipeKind::SharedMemory`](crate::PipeKind)) it is
/// the doorbell socket, which is readable only while a receive, [`poll_timeout`](Connection::poll_timeout)
/// or [`wait`](crate::wait()) of this connection waits: messages arrive in memory, not on it.
/// A poll loop of your own would miss them; wait for such connections with [`crate::wait()`].
///
/// # Panics
///
/// An in-process connection ([`crate::dummy::pipe`], `inproc:` addresses) has no descriptor:
/// asking for one panics. [`Connection::is_in_process`] tells.
#[cfg(unix)]
impl std::os::fd::AsRawFd for Connection {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.stream().as_raw_fd()
    }
}

/// As [`AsRawFd`](std::os::fd::AsRawFd) for [`Connection`]: panics for an in-process connection.
#[cfg(unix)]
impl std::os::fd::AsFd for Connection {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.stream().as_fd()
    }
}
