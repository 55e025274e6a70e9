//! [`Sender`]: whole messages into a socket's write half, as futures and as a [`Sink`].
//!
//! A frame is either queued whole in the sender's buffer or written straight from the caller's
//! payload; a send dropped half-way moves the unwritten rest of its frame into the buffer, and
//! the next send or flush writes it first. So the stream never carries half a frame followed by
//! another: the peer sees every message whole, or (if the sender is dropped without sending or
//! flushing again) a stream that ends inside a message ([`Error::Truncated`]).

use std::fmt;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use ::tokio::io::AsyncWrite;
use futures_sink::Sink;
use serde::Serialize;

use super::fast::{FastPath, First, Step};
use super::stream::WriteHalf;
use super::timed;
use crate::codec::{EncodedHeader, encode_header};
use crate::{Error, Result};

/// Frames up to this size are copied into the buffer and leave in one write; larger ones are
/// written from the caller's payload with a vectored write.
const COPY_LIMIT: usize = 16 << 10;
/// The default batching limit of [`Sender::set_batching`].
pub const DEFAULT_BATCH: usize = crate::connection::DEFAULT_BATCH;

/// The sending half of an async [`Connection`](super::Connection), from
/// [`Connection::into_split`](super::Connection::into_split). It is also a [`Sink`] of
/// messages (anything that is `AsRef<[u8]>`), which queues them in its buffer.
pub struct Sender {
    io: WriteHalf,
    /// Whole frames queued (batching, the sink), possibly with the rest of a dropped send in
    /// front; `buf[..written]` is already on the wire.
    buf: Vec<u8>,
    written: usize,
    batch: Option<usize>,
    timeout: Option<Duration>,
    /// Set after a write failed: what is on the wire is unknown, sending is over.
    broken: Option<String>,
}

// Counts and settings: never the bytes queued.
impl fmt::Debug for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("socket", &self.io)
            .field("queued", &(self.buf.len() - self.written))
            .field("batching", &self.batch)
            .field("write_timeout", &self.timeout)
            .finish()
    }
}

/// The part of a large frame a send has not written yet; dropped (the send cancelled or
/// failed), it moves into the sender's buffer so that the frame is finished by the next write.
struct Unsent<'a> {
    buf: &'a mut Vec<u8>,
    header: EncodedHeader,
    payload: &'a [u8],
    done: usize,
}

impl Unsent<'_> {
    fn total(&self) -> usize {
        self.header.as_bytes().len() + self.payload.len()
    }

    /// What is left of the header and of the payload.
    fn rest(&self) -> (&[u8], &[u8]) {
        let h = self.header.as_bytes();
        let in_header = self.done.min(h.len());
        (&h[in_header..], &self.payload[self.done - in_header..])
    }

    fn slices(&self) -> [IoSlice<'_>; 2] {
        let (h, p) = self.rest();
        [IoSlice::new(h), IoSlice::new(p)]
    }
}

impl Drop for Unsent<'_> {
    fn drop(&mut self) {
        if self.done < self.total() {
            let header = self.header;
            let in_header = self.done.min(header.as_bytes().len());
            self.buf.extend_from_slice(&header.as_bytes()[in_header..]);
            self.buf.extend_from_slice(&self.payload[self.done - in_header..]);
        }
    }
}

impl Sender {
    pub(super) fn new(io: WriteHalf) -> Sender {
        Sender { io, buf: Vec::new(), written: 0, batch: None, timeout: None, broken: None }
    }

    #[inline]
    fn check(&self) -> Result<()> {
        match &self.broken {
            None => Ok(()),
            Some(why) => Err(Error::Protocol(format!("connection unusable after an earlier error ({why})"))),
        }
    }

    fn fail(&mut self, e: io::Error) -> Error {
        self.broken = Some(e.to_string());
        Error::from_io(e)
    }

    /// The socket: a handshake's sender, which has written everything, given up for an
    /// encrypted one.
    #[cfg(feature = "encrypt")]
    pub(super) fn into_socket(self) -> WriteHalf {
        self.io
    }

    pub(super) fn is_encrypted(&self) -> bool {
        #[cfg(feature = "encrypt")]
        return matches!(self.io, WriteHalf::Sealed(_));
        #[cfg(not(feature = "encrypt"))]
        false
    }

    /// Nothing queued: a receive has nothing to send first.
    pub(super) fn is_idle(&self) -> bool {
        self.written == self.buf.len()
    }

    #[inline]
    fn queued(&self) -> usize {
        self.buf.len() - self.written
    }

    /// Appends one whole frame to the queue.
    pub(super) fn push_frame(&mut self, payload: &[u8]) {
        self.buf.extend_from_slice(encode_header(payload.len() as u64).as_bytes());
        self.buf.extend_from_slice(payload);
    }

    /// Writes the queue out, and the socket's own buffer (an encrypted one's ciphertext).
    /// Cancel-safe: what is written is recorded as it goes.
    pub(super) fn poll_flush_queue(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.check()?;
        while self.written < self.buf.len() {
            match ready!(Pin::new(&mut self.io).poll_write(cx, &self.buf[self.written..])) {
                Ok(0) => return Poll::Ready(Err(self.fail(io::ErrorKind::WriteZero.into()))),
                Ok(n) => self.written += n,
                Err(e) => return Poll::Ready(Err(self.fail(e))),
            }
        }
        self.buf.clear();
        self.written = 0;
        self.poll_flush_socket(cx)
    }

    /// Writes out what the socket took and holds (an encrypted socket's sealed bytes); a
    /// plain socket holds nothing.
    fn poll_flush_socket(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        match ready!(Pin::new(&mut self.io).poll_flush(cx)) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(self.fail(e))),
        }
    }

    /// Moves queued frames out while a receive waits: progress without waiting for it. An
    /// error stays for the next send or flush to report.
    pub(super) fn push_queue(&mut self, cx: &mut Context<'_>) {
        if self.queued() > 0 && self.broken.is_none() {
            let _ = self.poll_flush_queue(cx);
        }
    }

    /// Sends `payload` as one message. Cancel-safe in the sense of the
    /// [module documentation](super#cancel-safety): dropped half-way, the rest of the message
    /// goes out first with the next send or flush.
    #[inline]
    pub fn send_bytes<'a>(&'a mut self, payload: &'a [u8]) -> impl Future<Output = Result<()>> + Send + 'a {
        FastPath::new((self, payload))
    }

    /// The first step of a send: a small message is queued in place; the rest is out of line,
    /// so that this step stays small enough to be inlined into the caller.
    #[inline(always)]
    fn send_first<'a>(&'a mut self, payload: &'a [u8]) -> Step<'a, ()> {
        if self.broken.is_some() || payload.len() + 4 > COPY_LIMIT {
            return self.send_other(payload);
        }
        // Well under 2 GiB: the short header.
        self.buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        self.buf.extend_from_slice(payload);
        if self.batch.is_some_and(|limit| self.queued() < limit) {
            return Step::Done(());
        }
        self.flush_step()
    }

    /// A send on a broken sender, or of a large message.
    #[inline(never)]
    fn send_other<'a>(&'a mut self, payload: &'a [u8]) -> Step<'a, ()> {
        match self.check() {
            Err(e) => Step::Wait(Box::pin(std::future::ready(Err(e)))),
            Ok(()) => Step::Wait(Box::pin(self.send_large(payload))),
        }
    }

    /// A small message queued, the queue to write out.
    #[inline(never)]
    fn flush_step(&mut self) -> Step<'_, ()> {
        Step::Wait(Box::pin(self.flush()))
    }

    /// Sends a large message: the queue first, then the message from `payload`.
    async fn send_large(&mut self, payload: &[u8]) -> Result<()> {
        timed(self.timeout, "sending a message", async {
            std::future::poll_fn(|cx| self.poll_flush_queue(cx)).await?;
            self.write_large(payload).await
        })
        .await
    }

    /// Writes a large frame from `payload` without copying it (unless dropped half-way).
    async fn write_large(&mut self, payload: &[u8]) -> Result<()> {
        let Sender { io, buf, broken, .. } = self;
        let mut rest = Unsent { buf, header: encode_header(payload.len() as u64), payload, done: 0 };
        while rest.done < rest.total() {
            // Once the header is out, a plain write: tokio takes a short plain write as the
            // socket buffer being full and waits, where after a short vectored write it tries
            // again first, a write that fails with EAGAIN for every buffer-full of the message.
            let r = std::future::poll_fn(|cx| match rest.rest() {
                ([], payload) => Pin::new(&mut *io).poll_write(cx, payload),
                _ => Pin::new(&mut *io).poll_write_vectored(cx, &rest.slices()),
            })
            .await;
            match r {
                Ok(0) | Err(_) => {
                    let e = r.err().unwrap_or_else(|| io::ErrorKind::WriteZero.into());
                    // Broken: nothing more goes out, so nothing needs requeueing.
                    rest.done = rest.total();
                    *broken = Some(e.to_string());
                    return Err(Error::from_io(e));
                }
                Ok(n) => rest.done += n,
            }
        }
        drop(rest);
        std::future::poll_fn(|cx| self.poll_flush_socket(cx)).await
    }

    /// Sends `value` as one CBOR-encoded message.
    pub async fn send<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.check()?;
        let mut body = Vec::new();
        ciborium::into_writer(value, &mut body).map_err(|e| crate::error::encode_error(&e))?;
        self.send_bytes(&body).await
    }

    /// Writes out every queued message (within the write timeout). Cancel-safe.
    pub async fn flush(&mut self) -> Result<()> {
        let timeout = self.timeout;
        timed(timeout, "sending a message", std::future::poll_fn(|cx| self.poll_flush_queue(cx))).await
    }

    /// Batches small messages: with `Some(limit)`, sends of messages under 16 KiB queue in
    /// memory and leave in one write when `limit` bytes are queued, on
    /// [`flush`](Sender::flush), or (on a whole [`Connection`](super::Connection)) while a
    /// receive waits. `None` (the default) writes every message at once. Unlike the blocking
    /// connection, dropping an async sender does not flush: flush before dropping.
    pub fn set_batching(&mut self, limit: Option<usize>) {
        self.batch = limit;
    }

    /// Sets how long a send or flush may wait for the peer to make room (`None`: forever). A
    /// send that times out returns [`Error::Timeout`]; what was not written stays queued and
    /// goes out first with the next send or flush.
    pub fn set_write_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// The write timeout.
    pub fn write_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Flushes, then shuts the sending direction down: the peer's next receive after the
    /// messages sent so far reports [`Error::Closed`].
    pub async fn close(&mut self) -> Result<()> {
        self.flush().await?;
        std::future::poll_fn(|cx| Pin::new(&mut self.io).poll_shutdown(cx)).await.map_err(Error::Io)
    }
}

impl<'a> First<'a> for (&'a mut Sender, &'a [u8]) {
    type Output = ();

    #[inline(always)]
    fn first(self) -> Step<'a, ()> {
        self.0.send_first(self.1)
    }
}

/// Messages into the queue: `start_send` copies the message in, `poll_ready` writes the queue
/// out once it holds the batching limit (64 KiB without one), `poll_flush` writes it all.
impl<B: AsRef<[u8]>> Sink<B> for Sender {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let tx = self.get_mut();
        if tx.queued() >= tx.batch.unwrap_or(DEFAULT_BATCH) {
            ready!(tx.poll_flush_queue(cx))?;
        }
        Poll::Ready(tx.check())
    }

    fn start_send(self: Pin<&mut Self>, item: B) -> Result<()> {
        let tx = self.get_mut();
        tx.check()?;
        tx.push_frame(item.as_ref());
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_flush_queue(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let tx = self.get_mut();
        ready!(tx.poll_flush_queue(cx))?;
        Poll::Ready(ready!(Pin::new(&mut tx.io).poll_shutdown(cx)).map_err(Error::Io))
    }
}
