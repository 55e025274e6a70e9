//! [`Receiver`]: whole messages out of a socket's read half, as futures and as a [`Stream`].
//!
//! Every byte read is stored in the receiver before the read's future completes, and a frame
//! leaves the receiver only when it is whole: a receive dropped at any await point (a timeout,
//! a `select!` branch that lost) loses nothing, and the next one continues the same message.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use ::tokio::io::{AsyncRead, ReadBuf};
use futures_core::Stream;
use serde::de::DeserializeOwned;

use super::fast::{FastPath, First, Step};
use super::stream::ReadHalf;
use super::timed;
use crate::codec::{FrameBuf, Header, Peek, SHORT_HEADER_LEN};
use crate::{Error, Result};

/// Receive buffer size: frames up to this size are read together with their neighbours.
pub(super) const READ_BUFFER: usize = 64 << 10;
/// Messages from this size up that are not all in the buffer yet are read into their own
/// allocation: copying them out of the buffer would cost more than the read it saves.
const DIRECT_MIN: usize = 32 << 10;
/// How much of a large message's announced length is reserved before its bytes arrive, so
/// that a lying length prefix (within a generous max) cannot make us reserve it all.
const EAGER_ALLOC: usize = 64 << 20;

/// Where [`Receiver::poll_frame`] left the frame.
enum Got {
    /// In the frame buffer, after its header.
    Buffered(Header),
    /// In its own allocation.
    Owned(Vec<u8>),
}

/// The receiving half of an async [`Connection`](super::Connection), from
/// [`Connection::into_split`](super::Connection::into_split). It is also a [`Stream`] of
/// messages, which ends at the peer's orderly close.
pub struct Receiver {
    io: ReadHalf,
    fb: FrameBuf,
    /// A large frame being read into its own allocation: the payload so far and its length.
    partial: Option<(Vec<u8>, usize)>,
    /// The allocation a caller's buffer had before a large message replaced it, for the next
    /// large message: a run of them through `recv_bytes_into` allocates nothing.
    spare: Vec<u8>,
    /// The last frame was read into its own allocation: the next read into an empty buffer
    /// takes only a header, so a run of large messages is never copied twice.
    direct: bool,
    /// The capacity the buffer grows to before its next read (small during a handshake).
    capacity: usize,
    timeout: Option<Duration>,
    /// Set after a framing error or a truncated stream: the position is lost, receiving is over.
    broken: Option<String>,
    /// Keyless clients: a first message that is a challenge means the listener wants a key,
    /// one that is a shared-memory offer that it is an `shm:` listener.
    pub(super) refuse_challenge: bool,
    /// A keyless listener's connections on a Unix path: a first message that is a
    /// shared-memory client's hello is refused, as the blocking listener refuses it.
    pub(super) refuse_shm_hello: bool,
    /// Such a first message arrived (a challenge, or a shared-memory listener's offer); the
    /// connection owes the listener this answer.
    pub(super) owed: Option<&'static [u8]>,
}

// Counts and state only: never the bytes received.
impl fmt::Debug for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Receiver");
        d.field("socket", &self.io).field("buffered", &self.fb.buffered().len());
        if let Some((got, len)) = &self.partial {
            d.field("partial", &format_args!("{} of {len} bytes", got.len()));
        }
        d.field("max_message_size", &self.fb.max()).field("read_timeout", &self.timeout);
        if let Some(why) = &self.broken {
            d.field("broken", why);
        }
        d.finish()
    }
}

fn no_memory(len: usize) -> Error {
    Error::Io(io::Error::new(
        io::ErrorKind::OutOfMemory,
        format!("cannot allocate {len} bytes for a message"),
    ))
}

impl Receiver {
    pub(super) fn new(io: ReadHalf, capacity: usize, max: u64) -> Receiver {
        Receiver {
            io,
            fb: FrameBuf::new(capacity, max),
            partial: None,
            spare: Vec::new(),
            direct: false,
            capacity,
            timeout: None,
            broken: None,
            refuse_challenge: false,
            refuse_shm_hello: false,
            owed: None,
        }
    }

    /// The socket and the bytes read past the last whole message taken: a handshake's
    /// receiver, given up for an encrypted one.
    #[cfg(feature = "encrypt")]
    pub(super) fn into_socket(self) -> (ReadHalf, Vec<u8>) {
        let unread = self.fb.buffered().to_vec();
        (self.io, unread)
    }

    /// Leaves the handshake's limits for the connection's.
    pub(super) fn finish_handshake(&mut self, max: u64, timeout: Option<Duration>) {
        self.capacity = READ_BUFFER;
        self.fb.set_max(max);
        self.timeout = timeout;
    }

    /// Whether a whole frame is buffered (a receive would not wait).
    pub(super) fn has_frame(&self) -> bool {
        self.partial.as_ref().is_some_and(|(v, len)| v.len() == *len)
            || matches!(self.fb.peek(), Ok(Peek::Complete(_)))
    }

    fn fail(&mut self, e: Error) -> Error {
        self.broken = Some(e.to_string());
        e
    }

    /// Drives reads until a whole frame is here. Cancel-safe: all progress is in `self`.
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Result<Got>> {
        if let Some(why) = &self.broken {
            return Poll::Ready(Err(Error::Protocol(format!(
                "connection unusable after an earlier error ({why})"
            ))));
        }
        loop {
            if let Some((v, len)) = &mut self.partial {
                let (have, len) = (v.len(), *len);
                if have == len {
                    let (v, _) = self.partial.take().unwrap_or_default();
                    self.direct = true;
                    return Poll::Ready(Ok(Got::Owned(v)));
                }
                if v.capacity() == have && v.try_reserve_exact((len - have).min(EAGER_ALLOC)).is_err() {
                    return Poll::Ready(Err(self.fail(no_memory(len))));
                }
                let room = (v.capacity() - have).min(len - have);
                let mut dst = ReadBuf::uninit(&mut v.spare_capacity_mut()[..room]);
                let n = match ready!(Pin::new(&mut self.io).poll_read(cx, &mut dst)) {
                    Ok(()) => dst.filled().len(),
                    Err(e) => return Poll::Ready(Err(self.fail(Error::from_io(e)))),
                };
                if n == 0 {
                    let e = Error::Truncated { received: have as u64, expected: len as u64 };
                    return Poll::Ready(Err(self.fail(e)));
                }
                // SAFETY: the read initialized the first `n` bytes of the spare capacity.
                unsafe { v.set_len(have + n) };
                continue;
            }
            match self.fb.peek() {
                Err(e) => return Poll::Ready(Err(self.fail(e.into()))),
                Ok(Peek::Complete(h)) => return Poll::Ready(Ok(Got::Buffered(h))),
                Ok(Peek::Partial(h)) if h.payload_len >= DIRECT_MIN as u64 || !self.fb.fits(h) => {
                    let Ok(len) = usize::try_from(h.payload_len) else {
                        return Poll::Ready(Err(self.fail(no_memory(usize::MAX))));
                    };
                    let mut v = std::mem::take(&mut self.spare);
                    v.clear();
                    if v.try_reserve_exact(len.min(EAGER_ALLOC)).is_err() {
                        return Poll::Ready(Err(self.fail(no_memory(len))));
                    }
                    let buffered = self.fb.buffered();
                    v.extend_from_slice(&buffered[h.header_len..]);
                    let n = buffered.len();
                    self.fb.consume(n);
                    self.partial = Some((v, len));
                }
                Ok(_) => {
                    self.fb.grow_to(self.capacity);
                    let header_only = std::mem::take(&mut self.direct) && self.fb.is_empty();
                    let spare = self.fb.spare();
                    let room = if header_only { SHORT_HEADER_LEN } else { spare.len() };
                    let mut dst = ReadBuf::new(&mut spare[..room]);
                    let r = Pin::new(&mut self.io).poll_read(cx, &mut dst);
                    let n = dst.filled().len();
                    match r {
                        Poll::Pending => {
                            self.direct = header_only;
                            return Poll::Pending;
                        }
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(self.fail(Error::from_io(e)))),
                        Poll::Ready(Ok(())) => {}
                    }
                    if n == 0 {
                        let got = self.fb.buffered().len() as u64;
                        if got == 0 {
                            return Poll::Ready(Err(Error::Closed));
                        }
                        let expected = match self.fb.peek() {
                            Ok(Peek::Partial(h)) => h.header_len as u64 + h.payload_len,
                            _ => got.max(SHORT_HEADER_LEN as u64),
                        };
                        return Poll::Ready(Err(self.fail(Error::Truncated { received: got, expected })));
                    }
                    self.fb.filled(n);
                }
            }
        }
    }

    /// A small frame already buffered, the common case, taken without a future.
    #[inline]
    pub(super) fn take_buffered(&mut self) -> Option<&[u8]> {
        if self.partial.is_some() || self.broken.is_some() || self.refuse_challenge || self.refuse_shm_hello {
            return None;
        }
        self.fb.take_complete_short()
    }

    /// Drives reads until a message is whole and hands it to `take`, after the keyless check.
    pub(super) fn poll_with<R>(
        &mut self,
        cx: &mut Context<'_>,
        take: impl FnOnce(&[u8], Option<Vec<u8>>) -> R,
    ) -> Poll<Result<R>> {
        let got = ready!(self.poll_frame(cx))?;
        let (start, len) = match &got {
            Got::Buffered(h) => (h.header_len, h.payload_len as usize),
            Got::Owned(v) => (0, v.len()),
        };
        let client = std::mem::take(&mut self.refuse_challenge);
        if client || std::mem::take(&mut self.refuse_shm_hello) {
            let first = match &got {
                Got::Buffered(_) => &self.fb.buffered()[start..start + len],
                Got::Owned(v) => &v[..],
            };
            if !client && first == crate::transport::SHM_HELLO {
                self.owed = Some(crate::transport::SHM_REFUSED);
                return Poll::Ready(Err(self.fail(Error::Protocol(format!(
                    "a shared-memory client connected to this listener, which does not serve shared \
                         memory: clients must connect to its {}: address",
                    crate::transport::shm::PLAIN
                )))));
            }
            if client && first.starts_with(crate::auth::CHALLENGE) {
                self.owed = Some(crate::auth::NO_KEY);
                return Poll::Ready(Err(self.fail(Error::AuthenticationFailed(
                    "the listener sent an authentication challenge, but this client has no authkey".into(),
                ))));
            }
            if client && first == crate::transport::SHM_OFFER {
                self.owed = Some(crate::transport::SHM_REFUSED);
                return Poll::Ready(Err(self.fail(Error::Protocol(
                    "the listener serves shared memory, which the tokio face does not: connect to it \
                     with the blocking Client and its shm: address"
                        .into(),
                ))));
            }
        }
        Poll::Ready(Ok(match got {
            Got::Buffered(_) => {
                let r = take(&self.fb.buffered()[start..start + len], None);
                self.fb.consume(start + len);
                r
            }
            Got::Owned(v) => take(&[], Some(v)),
        }))
    }

    /// Polls for one message as a new vector.
    pub(super) fn poll_recv_bytes(&mut self, cx: &mut Context<'_>) -> Poll<Result<Vec<u8>>> {
        self.poll_with(cx, |bytes, owned| owned.unwrap_or_else(|| bytes.to_vec()))
    }

    /// Polls for one message into `buf`; its length.
    pub(super) fn poll_recv_into(&mut self, cx: &mut Context<'_>, buf: &mut Vec<u8>) -> Poll<Result<usize>> {
        let mut replaced = None;
        let n = ready!(self.poll_with(cx, |bytes, owned| match owned {
            Some(v) => {
                let n = v.len();
                replaced = Some(std::mem::replace(buf, v));
                n
            }
            None => copy_into(buf, bytes),
        }));
        if let Some(old) = replaced {
            self.spare = old;
        }
        Poll::Ready(n)
    }

    /// Receives one message as a new vector (allocated once, of exactly its size for large
    /// ones). Errors as [`Connection::recv_bytes`](crate::Connection::recv_bytes).
    /// Cancel-safe: see the [module documentation](super#cancel-safety).
    #[inline]
    pub fn recv_bytes(&mut self) -> impl Future<Output = Result<Vec<u8>>> + Send + '_ {
        FastPath::new(self)
    }

    /// The first step of [`recv_bytes`](Self::recv_bytes): a message already buffered.
    #[inline(always)]
    fn recv_bytes_first(&mut self) -> Step<'_, Vec<u8>> {
        match self.take_buffered() {
            Some(payload) => Step::Done(payload.to_vec()),
            None => self.recv_bytes_wait(),
        }
    }

    /// The general future of [`recv_bytes`](Self::recv_bytes), out of line.
    #[inline(never)]
    fn recv_bytes_wait(&mut self) -> Step<'_, Vec<u8>> {
        let timeout = self.timeout;
        let wait = std::future::poll_fn(|cx| self.poll_recv_bytes(cx));
        Step::Wait(Box::pin(timed(timeout, "receiving a message", wait)))
    }

    /// Receives one message into `buf` (replacing its content) and returns its length.
    /// Cancel-safe; on an error the content of `buf` is unspecified.
    #[inline]
    pub fn recv_bytes_into<'a>(
        &'a mut self,
        buf: &'a mut Vec<u8>,
    ) -> impl Future<Output = Result<usize>> + Send + 'a {
        FastPath::new((self, buf))
    }

    /// The first step of [`recv_bytes_into`](Self::recv_bytes_into): a message already
    /// buffered.
    #[inline(always)]
    fn recv_into_first<'a>(&'a mut self, buf: &'a mut Vec<u8>) -> Step<'a, usize> {
        match self.take_buffered() {
            Some(payload) => Step::Done(copy_into(buf, payload)),
            None => self.recv_into_wait(buf),
        }
    }

    /// The general future of [`recv_bytes_into`](Self::recv_bytes_into), out of line.
    #[inline(never)]
    fn recv_into_wait<'a>(&'a mut self, buf: &'a mut Vec<u8>) -> Step<'a, usize> {
        let timeout = self.timeout;
        let wait = std::future::poll_fn(|cx| self.poll_recv_into(cx, buf));
        Step::Wait(Box::pin(timed(timeout, "receiving a message", wait)))
    }

    /// Receives one CBOR-encoded message as a `T`; a message that is not valid CBOR for `T`
    /// is an [`Error::Decode`] and is consumed. Cancel-safe.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<T> {
        let timeout = self.timeout;
        let fut = std::future::poll_fn(|cx| self.poll_with(cx, |bytes, owned| decode(bytes, owned)));
        timed(timeout, "receiving a message", fut).await?
    }

    /// Sets how long a receive may wait (`None`: forever, the default). A receive that times
    /// out returns [`Error::Timeout`] and loses nothing: the next receive continues.
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// The read timeout.
    pub fn read_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Sets the largest message accepted; a larger one is refused with
    /// [`Error::MessageTooLarge`] before anything is allocated for it, and receiving is over.
    pub fn set_max_message_size(&mut self, max: u64) {
        self.fb.set_max(max);
    }

    /// The largest message accepted.
    pub fn max_message_size(&self) -> u64 {
        self.fb.max()
    }
}

impl<'a> First<'a> for &'a mut Receiver {
    type Output = Vec<u8>;

    #[inline(always)]
    fn first(self) -> Step<'a, Vec<u8>> {
        self.recv_bytes_first()
    }
}

impl<'a> First<'a> for (&'a mut Receiver, &'a mut Vec<u8>) {
    type Output = usize;

    #[inline(always)]
    fn first(self) -> Step<'a, usize> {
        self.0.recv_into_first(self.1)
    }
}

/// Replaces the content of `buf` with `bytes`; their length.
#[inline]
pub(super) fn copy_into(buf: &mut Vec<u8>, bytes: &[u8]) -> usize {
    buf.clear();
    buf.extend_from_slice(bytes);
    bytes.len()
}

/// Decodes a CBOR message that is either still in the buffer or in its own allocation.
pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8], owned: Option<Vec<u8>>) -> Result<T> {
    crate::connection::decode(owned.as_deref().unwrap_or(bytes))
}

/// Messages as they arrive; the stream ends when the peer closes at a message boundary
/// ([`Error::Closed`] is not an item), and every other error is an item.
impl Stream for Receiver {
    type Item = Result<Vec<u8>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Vec<u8>>>> {
        match ready!(self.get_mut().poll_recv_bytes(cx)) {
            Err(Error::Closed) => Poll::Ready(None),
            r => Poll::Ready(Some(r)),
        }
    }
}
