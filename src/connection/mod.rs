//! [`Connection`]: whole messages over a transport stream, as bytes or as CBOR-encoded values;
//! and [`pipe`], a connected pair.
//!
//! Receiving reads as much as the socket has into a buffer (64 KiB) and takes frames out of it,
//! so many small messages cost one `read`; a message larger than the buffer, or of 32 KiB or
//! more and not all arrived yet, is read straight into its own allocation of exactly its size
//! (after a message like that, a read into the empty buffer takes only the next header, so a
//! run of large messages is never copied twice). Sending copies a small frame (header and
//! payload) into one `write`, and sends a large one with a vectored write that does not copy
//! the payload. With [`set_batching`](Connection::set_batching), small frames queue until a
//! limit, a [`flush`](Connection::flush), or a receive.

use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{FrameBuf, Peek, SHORT_HEADER_LEN, encode_header};
pub use crate::transport::PeerCredentials;
use crate::transport::Stream;
use crate::util::deadline_of;
use crate::{Address, Error, Result};

/// The default largest message a connection accepts: 64 MiB. Change it with
/// [`Connection::set_max_message_size`] or the builders' `max_message_size`.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 64 << 20;

/// Receive buffer size: frames up to this size are read together with their neighbours.
const READ_BUFFER: usize = 64 << 10;
/// Frames up to this size are copied next to their header and sent with one plain write.
const COPY_LIMIT: usize = 16 << 10;
/// Default batching limit of [`Connection::set_batching`].
pub const DEFAULT_BATCH: usize = 64 << 10;
/// The longest a drop waits to flush batched data when no write timeout is set.
const DROP_FLUSH_LIMIT: Duration = Duration::from_secs(10);

/// Messages up to this size get their whole buffer at once; a larger announced length only
/// gets this much up front and grows as its bytes actually arrive, so a lying length prefix
/// (within a generous max) cannot make us reserve more than this.
const EAGER_ALLOC: usize = 64 << 20;

/// Copies are made in pieces of this size: small enough that glibc's `memcpy` moves each with
/// vector instructions instead of `rep movsb` (used from a few KiB up), which some AMD CPUs run
/// over ten times slower when the destination lies just past the source modulo 64 bytes.
const COPY_PIECE: usize = 2 << 10;
/// Messages from this size up that are not all in the buffer yet are read into their own
/// allocation: copying them out of the buffer would cost more than the read it saves.
const DIRECT_MIN: usize = 32 << 10;

/// Appends `src` to `dst` (one exact reservation, then [`COPY_PIECE`]-sized copies).
#[inline]
fn append(dst: &mut Vec<u8>, src: &[u8]) {
    dst.reserve(src.len());
    for piece in src.chunks(COPY_PIECE) {
        dst.extend_from_slice(piece);
    }
}

fn no_memory(len: usize) -> Error {
    Error::Io(io::Error::new(
        io::ErrorKind::OutOfMemory,
        format!("cannot allocate {len} bytes for a message"),
    ))
}

/// The receiving state of a connection.
#[derive(Debug)]
struct Reader {
    fb: FrameBuf,
    /// A large frame that timed out half-way: the payload so far, its full length, and the
    /// length of its header (for error reports).
    partial: Option<(Vec<u8>, usize, usize)>,
    timeout: Option<Duration>,
    /// Set after a framing error: the stream position is lost, receiving is over.
    broken: Option<String>,
    /// Keyless clients: a first message that is a challenge means the listener wants a key.
    refuse_challenge: bool,
    /// Such a challenge arrived; the connection owes the listener a [`crate::auth::NO_KEY`].
    challenge_seen: bool,
    /// The capacity the buffer grows to before its next read: a connection that never reads
    /// after its handshake never allocates (and zeroes) the full buffer.
    capacity: usize,
    /// The last frame was large and read into its own allocation: the next read into an empty
    /// buffer takes only a header (a run of large messages goes without copies).
    direct: bool,
}

/// Where [`Reader::next`] left the frame.
enum Got {
    /// In the frame buffer at `start..start+len`; consume `start+len` when done.
    Buffered { start: usize, len: usize },
    /// In the caller's vector.
    InVec,
}

impl Reader {
    fn new(capacity: usize, max: u64) -> Reader {
        Reader {
            fb: FrameBuf::new(capacity, max),
            partial: None,
            timeout: None,
            broken: None,
            refuse_challenge: false,
            challenge_seen: false,
            capacity,
            direct: false,
        }
    }

    fn has_data(&self) -> bool {
        !self.fb.is_empty() || self.partial.is_some()
    }

    fn fail(&mut self, e: Error) -> Error {
        self.broken = Some(e.to_string());
        e
    }

    /// Reads the next frame; small ones stay in the buffer, large ones go into `out`.
    fn next(&mut self, stream: &Stream, out: &mut Vec<u8>, deadline: Option<Instant>) -> Result<Got> {
        if let Some(why) = &self.broken {
            return Err(Error::Protocol(format!("connection unusable after an earlier error ({why})")));
        }
        if !stream.can_read() {
            return Err(Error::Io(io::Error::new(
                io::ErrorKind::Unsupported,
                "this end of a one-way pipe only sends",
            )));
        }
        let got = self.next_frame(stream, out, deadline)?;
        if self.refuse_challenge {
            self.refuse_challenge = false;
            let first: &[u8] = match got {
                Got::Buffered { start, len } => &self.fb.buffered()[start..start + len],
                Got::InVec => out,
            };
            if first.starts_with(crate::auth::CHALLENGE) {
                self.challenge_seen = true;
                return Err(self.fail(Error::AuthenticationFailed(
                    "the listener sent an authentication challenge, but this client has no authkey".into(),
                )));
            }
        }
        Ok(got)
    }

    fn next_frame(&mut self, stream: &Stream, out: &mut Vec<u8>, deadline: Option<Instant>) -> Result<Got> {
        if let Some((data, len, header_len)) = self.partial.take() {
            *out = data;
            return self.finish_large(stream, out, len, header_len, deadline);
        }
        if self.fb.capacity() < self.capacity {
            self.fb.grow_to(self.capacity);
        }
        loop {
            let h = match self.fb.peek() {
                Err(e) => return Err(self.fail(e.into())),
                Ok(Peek::Complete(h)) => {
                    self.direct = false;
                    return Ok(Got::Buffered { start: h.header_len, len: h.payload_len as usize });
                }
                // Larger than the buffer, or large and not all here yet: straight into `out`.
                Ok(Peek::Partial(h)) if !self.fb.fits(h) || h.payload_len >= DIRECT_MIN as u64 => h,
                Ok(Peek::Partial(_) | Peek::NeedHeader) => {
                    // In a run of large messages, an empty buffer takes only the next header,
                    // so that the payload is read into its own allocation instead of copied.
                    let header_only = self.direct && self.fb.is_empty();
                    let spare = self.fb.spare();
                    let want = if header_only { SHORT_HEADER_LEN.min(spare.len()) } else { spare.len() };
                    let n = match stream.read(&mut spare[..want], deadline) {
                        Ok(n) => n,
                        Err(e) => {
                            return Err(Error::from_io_waiting(e, || "waiting for a message".into()));
                        }
                    };
                    if n == 0 {
                        return Err(self.end_of_stream());
                    }
                    self.fb.filled(n);
                    continue;
                }
            };
            // Larger than the buffer: one allocation of exactly the payload size, then read
            // the rest straight into it. The length was checked against the max already.
            let len = usize::try_from(h.payload_len).map_err(|_| {
                self.fail(Error::MessageTooLarge { len: h.payload_len, max: usize::MAX as u64 })
            })?;
            out.clear();
            if out.try_reserve_exact(len.min(EAGER_ALLOC)).is_err() {
                return Err(self.fail(no_memory(len)));
            }
            append(out, &self.fb.buffered()[h.header_len..]);
            let all = self.fb.buffered().len();
            self.fb.consume(all);
            self.direct = true;
            return self.finish_large(stream, out, len, h.header_len, deadline);
        }
    }

    fn finish_large(
        &mut self,
        stream: &Stream,
        out: &mut Vec<u8>,
        len: usize,
        header_len: usize,
        deadline: Option<Instant>,
    ) -> Result<Got> {
        while out.len() < len {
            if out.len() == out.capacity() {
                // Only past EAGER_ALLOC: double what arrived, never beyond the announced length.
                let more = out.len().min(len - out.len());
                if out.try_reserve_exact(more).is_err() {
                    return Err(self.fail(no_memory(len)));
                }
            }
            match stream.read_spare(out, len - out.len(), deadline) {
                Ok(0) => {
                    // A length near u64::MAX (no maximum set) must not overflow the sum.
                    let received = (header_len + out.len()) as u64;
                    let expected = (header_len as u64).saturating_add(len as u64);
                    return Err(self.fail(Error::Truncated { received, expected }));
                }
                Ok(_) => {}
                Err(e) => {
                    // Keep what arrived: the next receive carries on where this one stopped.
                    self.partial = Some((std::mem::take(out), len, header_len));
                    return Err(Error::from_io_waiting(e, || "in the middle of a large message".into()));
                }
            }
        }
        Ok(Got::InVec)
    }

    fn end_of_stream(&mut self) -> Error {
        if self.fb.is_empty() {
            return Error::Closed;
        }
        let buffered = self.fb.buffered();
        let received = buffered.len() as u64;
        let expected = match self.fb.peek() {
            Ok(Peek::Partial(h)) => (h.header_len as u64).saturating_add(h.payload_len),
            // Cut inside the header: at least the header was due.
            _ if buffered.starts_with(&[0xff; 4]) => crate::codec::LONG_HEADER_LEN as u64,
            _ => crate::codec::SHORT_HEADER_LEN as u64,
        };
        self.fail(Error::Truncated { received, expected })
    }

    /// Receives one message and hands its bytes to `f` without copying them when they are
    /// already in the buffer.
    fn recv_with<R>(
        &mut self,
        stream: &Stream,
        scratch: &mut Vec<u8>,
        deadline: Option<Instant>,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        match self.next(stream, scratch, deadline)? {
            Got::Buffered { start, len } => {
                let r = f(&self.fb.buffered()[start..start + len]);
                self.fb.consume(start + len);
                Ok(r)
            }
            Got::InVec => Ok(f(scratch)),
        }
    }

    /// The next frame, if it is complete in the buffer and nothing unusual is pending (a
    /// partial large frame, an earlier error, a keyless client's first message): the common
    /// case of a stream of small messages, without the general path's checks and moves.
    #[inline]
    fn take_buffered(&mut self) -> Option<&[u8]> {
        if self.partial.is_some() || self.broken.is_some() || self.refuse_challenge {
            return None;
        }
        self.fb.take_complete_short()
    }

    fn recv_into(&mut self, stream: &Stream, out: &mut Vec<u8>, deadline: Option<Instant>) -> Result<usize> {
        if let Some(payload) = self.take_buffered() {
            out.clear();
            append(out, payload);
            return Ok(out.len());
        }
        match self.next(stream, out, deadline)? {
            Got::Buffered { start, len } => {
                out.clear();
                append(out, &self.fb.buffered()[start..start + len]);
                self.fb.consume(start + len);
            }
            Got::InVec => {}
        }
        Ok(out.len())
    }

    fn poll(&self, stream: &Stream, timeout: Option<Duration>) -> Result<bool> {
        if self.has_data() || self.broken.is_some() {
            return Ok(true);
        }
        Ok(stream.wait_readable(timeout)?)
    }
}

/// The sending state of a connection.
#[derive(Debug)]
struct Writer {
    /// Frames not yet written: queued by batching, or left over from a write that timed out.
    buf: Vec<u8>,
    batch: Option<usize>,
    timeout: Option<Duration>,
}

impl Writer {
    fn new() -> Writer {
        Writer { buf: Vec::new(), batch: None, timeout: None }
    }

    fn check(stream: &Stream) -> Result<()> {
        if stream.can_write() {
            Ok(())
        } else {
            Err(Error::Io(io::Error::new(
                io::ErrorKind::Unsupported,
                "this end of a one-way pipe only receives",
            )))
        }
    }

    fn should_flush(&self) -> bool {
        self.batch.is_none_or(|limit| self.buf.len() >= limit)
    }

    fn send(&mut self, stream: &Stream, payload: &[u8]) -> Result<()> {
        Self::check(stream)?;
        if 4 + payload.len() <= COPY_LIMIT {
            // Well under 2 GiB: the short header, copied in front of the payload.
            self.buf.reserve(4 + payload.len());
            self.buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            append(&mut self.buf, payload);
            return if self.should_flush() { self.flush(stream) } else { Ok(()) };
        }
        let header = encode_header(payload.len() as u64);
        let queued = std::mem::take(&mut self.buf);
        let r = self.write_all(stream, &[&queued, header.as_bytes(), payload], deadline_of(self.timeout));
        self.recycle(queued);
        r
    }

    fn send_value<T: Serialize + ?Sized>(&mut self, stream: &Stream, value: &T) -> Result<()> {
        Self::check(stream)?;
        // Encode straight after a placeholder header, then patch the header in.
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        if let Err(e) = ciborium::into_writer(value, &mut self.buf) {
            self.buf.truncate(start);
            return Err(Error::Encode(e.to_string()));
        }
        let len = (self.buf.len() - start - 4) as u64;
        let header = encode_header(len);
        if header.as_bytes().len() == 4 {
            self.buf[start..start + 4].copy_from_slice(header.as_bytes());
        } else {
            // Over 2 GiB of CBOR: make room for the long header.
            self.buf.splice(start..start + 4, header.as_bytes().iter().copied());
        }
        if self.should_flush() || len as usize > COPY_LIMIT { self.flush(stream) } else { Ok(()) }
    }

    fn flush(&mut self, stream: &Stream) -> Result<()> {
        self.flush_until(stream, deadline_of(self.timeout))
    }

    fn flush_until(&mut self, stream: &Stream, deadline: Option<Instant>) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let queued = std::mem::take(&mut self.buf);
        let r = self.write_all(stream, &[&queued], deadline);
        self.recycle(queued);
        r
    }

    /// Gives a written-out queue's allocation back for the next frames (unless a write left
    /// something queued, or a huge message inflated it).
    fn recycle(&mut self, mut written: Vec<u8>) {
        if self.buf.is_empty() && written.capacity() <= 4 * DEFAULT_BATCH {
            written.clear();
            self.buf = written;
        }
    }

    /// Writes all of `parts`. If it stops early (timeout, error), whatever was not written is
    /// kept in `self.buf` so the next send or flush completes the frame: the stream never
    /// carries half a frame followed by another frame.
    fn write_all(&mut self, stream: &Stream, parts: &[&[u8]], deadline: Option<Instant>) -> Result<()> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let mut done = 0;
        while done < total {
            let mut slices = [IoSlice::new(&[]); 3];
            let mut n = 0;
            let mut skip = done;
            for p in parts {
                if skip >= p.len() {
                    skip -= p.len();
                    continue;
                }
                slices[n] = IoSlice::new(&p[skip..]);
                skip = 0;
                n += 1;
            }
            match stream.write_vectored(&slices[..n], deadline) {
                Ok(0) => {
                    self.keep_unwritten(parts, done);
                    return Err(Error::Io(io::ErrorKind::WriteZero.into()));
                }
                Ok(w) => done += w,
                Err(e) => {
                    self.keep_unwritten(parts, done);
                    return Err(Error::from_io_waiting(e, || {
                        "sending a message (the rest is queued; flush to retry)".into()
                    }));
                }
            }
        }
        Ok(())
    }

    fn keep_unwritten(&mut self, parts: &[&[u8]], mut done: usize) {
        let mut rest = Vec::new();
        for p in parts {
            let skip = done.min(p.len());
            done -= skip;
            rest.extend_from_slice(&p[skip..]);
        }
        rest.append(&mut self.buf);
        self.buf = rest;
    }

    fn flush_on_drop(&mut self, stream: &Stream) {
        if !self.buf.is_empty() && stream.can_write() {
            self.timeout = Some(self.timeout.unwrap_or(DROP_FLUSH_LIMIT));
            let _ = self.flush(stream);
        }
    }
}

pub(crate) fn decode<T: DeserializeOwned>(mut bytes: &[u8]) -> Result<T> {
    let v = ciborium::from_reader(&mut bytes).map_err(|e| Error::Decode(e.to_string()))?;
    if !bytes.is_empty() {
        return Err(Error::Decode(format!("{} bytes left over after the CBOR value", bytes.len())));
    }
    Ok(v)
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
#[derive(Debug)]
pub struct Connection {
    tx: Sender,
    rx: Receiver,
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

    /// Sends `payload` as one message.
    pub fn send_bytes(&mut self, payload: &[u8]) -> Result<()> {
        self.tx.send_bytes(payload)
    }

    /// Sends `value` as one CBOR-encoded message.
    pub fn send<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.tx.send(value)
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

    /// After a keyless client refused a challenge, tells the listener why (best effort).
    fn answer_refusal<T>(&mut self, r: Result<T>) -> Result<T> {
        if std::mem::take(&mut self.rx.reader.challenge_seen) {
            let _ = self.tx.send_bytes(crate::auth::NO_KEY);
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

    /// Whether a message can be received without blocking, waiting up to `timeout`
    /// (`None`: wait forever; `Some(Duration::ZERO)`: just look). As in CPython, a closed
    /// peer also counts as readable: the next receive reports it.
    ///
    /// ```
    /// use std::time::Duration;
    /// let (mut a, mut b) = procwire::pipe(true)?;
    /// assert!(!b.poll(Some(Duration::ZERO))?);
    /// a.send_bytes(b"x")?;
    /// assert!(b.poll(Some(Duration::from_secs(5)))?);
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn poll(&mut self, timeout: Option<Duration>) -> Result<bool> {
        // A timeout too long to represent is the same as none.
        let deadline = deadline_of(timeout);
        self.flush_before_receive(deadline);
        self.rx.poll(deadline.map(|d| d.saturating_duration_since(Instant::now())))
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
    /// but silently).
    pub fn close(mut self) -> Result<()> {
        let r = self.tx.flush();
        // Reported here; dropping must not wait for the same data again.
        self.tx.writer.buf.clear();
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
            return Err(Error::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "this connection has buffered data; pass it to the child before using it",
            )));
        }
        Ok(self.stream().pass_to_child(cmd, var)?)
    }

    /// In a child process: adopts the connection its parent passed with
    /// [`pass_to_child`](Connection::pass_to_child) under `var`. Works once per variable.
    pub fn from_env(var: &str) -> Result<Connection> {
        Ok(Connection::from_stream(Stream::from_env(var)?, DEFAULT_MAX_MESSAGE_SIZE))
    }
}

/// The sending half of a [`Connection`], from [`Connection::split`].
#[derive(Debug)]
pub struct Sender {
    stream: Arc<Stream>,
    writer: Writer,
}

impl Sender {
    /// As [`Connection::send_bytes`].
    pub fn send_bytes(&mut self, payload: &[u8]) -> Result<()> {
        self.writer.send(&self.stream, payload)
    }

    /// As [`Connection::send`].
    pub fn send<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.writer.send_value(&self.stream, value)
    }

    /// As [`Connection::flush`].
    pub fn flush(&mut self) -> Result<()> {
        self.writer.flush(&self.stream)
    }

    /// As [`Connection::set_batching`] (a receive on the other half does not flush this one).
    pub fn set_batching(&mut self, limit: Option<usize>) {
        self.writer.batch = limit;
    }

    /// As [`Connection::set_write_timeout`].
    pub fn set_write_timeout(&mut self, timeout: Option<Duration>) {
        self.writer.timeout = timeout;
    }

    /// Writes `frames`, bytes that are already whole frames (headers included), after anything
    /// queued. What a timeout leaves unwritten stays queued, as for a send.
    pub(crate) fn write_frames(&mut self, frames: &[u8], deadline: Option<Instant>) -> Result<()> {
        Writer::check(&self.stream)?;
        let queued = std::mem::take(&mut self.writer.buf);
        let r = self.writer.write_all(&self.stream, &[&queued, frames], deadline);
        self.writer.recycle(queued);
        r
    }

    /// Writes what is queued, waiting until `deadline` at most.
    pub(crate) fn flush_until(&mut self, deadline: Option<Instant>) -> Result<()> {
        self.writer.flush_until(&self.stream, deadline)
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.writer.flush_on_drop(&self.stream);
    }
}

/// The receiving half of a [`Connection`], from [`Connection::split`].
#[derive(Debug)]
pub struct Receiver {
    stream: Arc<Stream>,
    reader: Reader,
    scratch: Vec<u8>,
}

impl Receiver {
    pub(crate) fn stream(&self) -> &Stream {
        &self.stream
    }

    pub(crate) fn has_buffered(&self) -> bool {
        self.reader.has_data() || self.reader.broken.is_some()
    }
    /// As [`Connection::recv_bytes`].
    pub fn recv_bytes(&mut self) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        self.recv_bytes_into(&mut v)?;
        Ok(v)
    }

    /// As [`Connection::recv_bytes_into`].
    pub fn recv_bytes_into(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        let deadline = deadline_of(self.reader.timeout);
        self.reader.recv_into(&self.stream, buf, deadline)
    }

    /// As [`Connection::recv`].
    pub fn recv<T: DeserializeOwned>(&mut self) -> Result<T> {
        let deadline = deadline_of(self.reader.timeout);
        self.reader.recv_with(&self.stream, &mut self.scratch, deadline, decode)?
    }

    /// As [`Connection::poll`].
    pub fn poll(&mut self, timeout: Option<Duration>) -> Result<bool> {
        self.reader.poll(&self.stream, timeout)
    }

    /// As [`Connection::set_read_timeout`].
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.reader.timeout = timeout;
    }

    /// As [`Connection::set_max_message_size`].
    pub fn set_max_message_size(&mut self, max: u64) {
        self.reader.fb.set_max(max);
    }

    /// Receives one message, waiting until `deadline`, then every further message already
    /// complete in the buffer, handing each to `f` in order (without copying buffered ones).
    /// Stops at the first error of `f`.
    pub(crate) fn recv_batch(
        &mut self,
        deadline: Option<Instant>,
        f: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        self.reader.recv_with(&self.stream, &mut self.scratch, deadline, &mut *f)??;
        while let Some(frame) = self.reader.take_buffered() {
            f(frame)?;
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Address, Client, Family, Listener};

    #[test]
    fn the_receive_buffer_grows_to_full_size_at_the_first_read_after_the_handshake() {
        let listener =
            Listener::builder().authkey("k").bind(&Address::fresh(Family::default()).unwrap()).unwrap();
        let addr = listener.address().clone();
        let t = std::thread::spawn(move || Client::builder().authkey("k").connect(&addr));
        let mut server = listener.accept().unwrap();
        let mut client = t.join().unwrap().unwrap();
        // Connected and authenticated: neither side has allocated its full buffer yet.
        assert!(server.rx.reader.fb.capacity() < READ_BUFFER);
        assert!(client.rx.reader.fb.capacity() < READ_BUFFER);
        // Frames bigger than the handshake buffer still travel through the full one.
        let msg = vec![7u8; 4 << 10];
        for _ in 0..3 {
            client.send_bytes(&msg).unwrap();
        }
        assert_eq!(server.recv_bytes().unwrap(), msg);
        assert_eq!(server.rx.reader.fb.capacity(), READ_BUFFER);
        // One read took all three from the Unix socket (a Windows pipe gives one per read).
        #[cfg(unix)]
        assert_eq!(server.rx.reader.fb.buffered().len(), 2 * (4 + msg.len()));
    }

    #[test]
    fn runs_of_large_and_small_messages_arrive_whole_and_in_order() {
        // Large ones read straight into their own allocation, with a header-only read between
        // them, mixed with small ones taken from the buffer.
        let sizes = [70_000, 40_000, 5, 0, 33_000, 1 << 20, 16, DIRECT_MIN, DIRECT_MIN - 1, 65_532, 3];
        let (mut a, mut b) = pipe(true).unwrap();
        let t = std::thread::spawn(move || {
            for (i, &n) in sizes.iter().enumerate() {
                a.send_bytes(&vec![i as u8; n]).unwrap();
            }
            a
        });
        for (i, &n) in sizes.iter().enumerate() {
            let m = b.recv_bytes().unwrap();
            assert_eq!(m.len(), n, "message {i}");
            assert!(m.iter().all(|&x| x == i as u8), "message {i}");
        }
        drop(t.join().unwrap());
        assert!(matches!(b.recv_bytes(), Err(Error::Closed)));
    }

    #[test]
    fn a_large_message_whose_payload_comes_late_survives_a_read_timeout() {
        let (a, mut b) = pipe(true).unwrap();
        let write = |bytes: &[u8]| {
            let mut done = 0;
            while done < bytes.len() {
                done += a.stream().write_vectored(&[IoSlice::new(&bytes[done..])], None).unwrap();
            }
        };
        let big = vec![1u8; 100_000];
        let mut frame = (big.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&big);
        let got = std::thread::scope(|s| {
            s.spawn(|| write(&frame));
            b.recv_bytes().unwrap()
        });
        assert_eq!(got, big);
        // The next message: its header alone, then nothing for longer than the read timeout.
        let late = vec![2u8; DIRECT_MIN + 10];
        write(&(late.len() as u32).to_be_bytes());
        b.set_read_timeout(Some(Duration::from_millis(50)));
        assert!(matches!(b.recv_bytes(), Err(Error::Timeout(_))));
        write(&late[..1000]);
        assert!(matches!(b.recv_bytes(), Err(Error::Timeout(_))));
        write(&late[1000..]);
        assert_eq!(b.recv_bytes().unwrap(), late);
        write(&[0, 0, 0, 1, 9]);
        assert_eq!(b.recv_bytes().unwrap(), [9]);
    }
}
