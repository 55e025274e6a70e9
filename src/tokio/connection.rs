//! [`Connection`]: a [`Sender`] and a [`Receiver`] over one socket, used from one task, or
//! split to be used from two.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use futures_sink::Sink;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::fast::{FastPath, First, Step};
use super::recv::{copy_into, decode};
use super::stream::Socket;
use super::timed;
use super::{Receiver, Sender};
use crate::connection::ConnOptions;
use crate::{Address, Error, Result};

/// A connection that sends and receives whole messages, the async twin of
/// [`procwire::Connection`](crate::Connection), with the same messages on the wire.
///
/// Receives are cancel-safe and sends never leave half a message in front of another: see the
/// [module documentation](super#cancel-safety). It is also a [`Stream`] and a [`Sink`] of
/// byte messages; [`into_split`](Connection::into_split) gives halves for two tasks.
pub struct Connection {
    tx: Sender,
    rx: Receiver,
    peer: Option<Address>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.peer)
            .field("rx", &self.rx)
            .field("tx", &self.tx)
            .finish()
    }
}

impl Connection {
    /// A connection for a handshake: a small buffer and the handshake's message cap.
    pub(super) fn for_handshake(socket: Socket) -> Connection {
        let peer = socket.peer_addr();
        let (r, w) = socket.into_split();
        Connection { tx: Sender::new(w), rx: Receiver::new(r, 512, crate::auth::MAX_HANDSHAKE_MESSAGE), peer }
    }

    pub(super) fn finish_handshake(&mut self, opts: &ConnOptions) {
        self.rx.finish_handshake(opts.max_message_size, opts.read_timeout);
        self.tx.set_write_timeout(opts.write_timeout);
    }

    /// The same connection, from now on carried in `session`'s transport messages: the
    /// handshake's last step. What it read past its last message is the first ciphertext.
    #[cfg(feature = "encrypt")]
    pub(super) fn seal(self, session: crate::secure::Session) -> Connection {
        use super::stream::{ReadHalf, WriteHalf};
        let Connection { tx, rx, peer } = self;
        let (r, unread) = rx.into_socket();
        let (r, w) = super::sealed::seal(r, tx.into_socket(), session, &unread);
        let rx = Receiver::new(ReadHalf::Sealed(Box::new(r)), 512, crate::auth::MAX_HANDSHAKE_MESSAGE);
        Connection { tx: Sender::new(WriteHalf::Sealed(Box::new(w))), rx, peer }
    }

    /// Whether the connection is encrypted (see the builders' `encrypt`, feature `encrypt`).
    pub fn is_encrypted(&self) -> bool {
        self.tx.is_encrypted()
    }

    pub(super) fn parts(&mut self) -> (&mut Sender, &mut Receiver) {
        (&mut self.tx, &mut self.rx)
    }

    /// Receives with `poll`, moving batched sends out meanwhile; after a keyless client
    /// refused a challenge, tells the listener why (best effort).
    async fn recv_with<T>(
        &mut self,
        mut poll: impl FnMut(&mut Receiver, &mut Context<'_>) -> Poll<Result<T>>,
    ) -> Result<T> {
        let (tx, rx) = (&mut self.tx, &mut self.rx);
        let r = timed(
            rx.read_timeout(),
            "receiving a message",
            std::future::poll_fn(|cx| {
                tx.push_queue(cx);
                poll(rx, cx)
            }),
        )
        .await;
        if let Some(answer) = self.rx.owed.take() {
            self.tx.push_frame(answer);
            std::future::poll_fn(|cx| {
                self.tx.push_queue(cx);
                Poll::Ready(())
            })
            .await;
        }
        r
    }

    /// Sends `payload` as one message.
    #[inline]
    pub fn send_bytes<'a>(&'a mut self, payload: &'a [u8]) -> impl Future<Output = Result<()>> + Send + 'a {
        self.tx.send_bytes(payload)
    }

    /// Sends `value` as one CBOR-encoded message.
    pub async fn send<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.tx.send(value).await
    }

    /// Receives one message as a new vector. Errors: [`Error::Closed`] when the peer closed at
    /// a message boundary, [`Error::Truncated`] when it closed mid-message,
    /// [`Error::Timeout`] after the read timeout (nothing lost), [`Error::MessageTooLarge`]
    /// for a message over the maximum (refused before allocating). Cancel-safe.
    #[inline]
    pub fn recv_bytes(&mut self) -> impl Future<Output = Result<Vec<u8>>> + Send + '_ {
        FastPath::new(self)
    }

    /// The first step of [`recv_bytes`](Self::recv_bytes): a message already buffered, and
    /// nothing queued to send first.
    #[inline(always)]
    fn recv_bytes_first(&mut self) -> Step<'_, Vec<u8>> {
        if self.tx.is_idle()
            && let Some(payload) = self.rx.take_buffered()
        {
            return Step::Done(payload.to_vec());
        }
        self.recv_bytes_wait()
    }

    /// The general future of [`recv_bytes`](Self::recv_bytes), out of line.
    #[inline(never)]
    fn recv_bytes_wait(&mut self) -> Step<'_, Vec<u8>> {
        Step::Wait(Box::pin(self.recv_with(|rx, cx| rx.poll_recv_bytes(cx))))
    }

    /// Receives one message into `buf` (replacing its content, reusing its allocation) and
    /// returns its length. Cancel-safe; on an error the content of `buf` is unspecified.
    #[inline]
    pub fn recv_bytes_into<'a>(
        &'a mut self,
        buf: &'a mut Vec<u8>,
    ) -> impl Future<Output = Result<usize>> + Send + 'a {
        FastPath::new((self, buf))
    }

    /// The first step of [`recv_bytes_into`](Self::recv_bytes_into): a message already
    /// buffered, and nothing queued to send first.
    #[inline(always)]
    fn recv_into_first<'a>(&'a mut self, buf: &'a mut Vec<u8>) -> Step<'a, usize> {
        if self.tx.is_idle()
            && let Some(payload) = self.rx.take_buffered()
        {
            return Step::Done(copy_into(buf, payload));
        }
        self.recv_into_wait(buf)
    }

    /// The general future of [`recv_bytes_into`](Self::recv_bytes_into), out of line.
    #[inline(never)]
    fn recv_into_wait<'a>(&'a mut self, buf: &'a mut Vec<u8>) -> Step<'a, usize> {
        Step::Wait(Box::pin(self.recv_with(|rx, cx| rx.poll_recv_into(cx, buf))))
    }

    /// Receives one CBOR-encoded message as a `T`. A message that is not valid CBOR for `T`
    /// is an [`Error::Decode`] and is consumed (the connection stays usable). Cancel-safe.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<T> {
        self.recv_with(|rx, cx| rx.poll_with(cx, |bytes, owned| decode(bytes, owned))).await?
    }

    /// Batches small messages; see [`Sender::set_batching`]. A receive on the whole
    /// connection sends the queue out while it waits.
    pub fn set_batching(&mut self, limit: Option<usize>) {
        self.tx.set_batching(limit);
    }

    /// Writes out every queued message.
    pub async fn flush(&mut self) -> Result<()> {
        self.tx.flush().await
    }

    /// Flushes and shuts the sending direction down (the peer's receive then reports
    /// [`Error::Closed`]); dropping the connection closes it without flushing.
    pub async fn close(mut self) -> Result<()> {
        self.tx.close().await
    }

    /// Sets how long a receive may wait; see [`Receiver::set_read_timeout`].
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.rx.set_read_timeout(timeout);
    }

    /// Sets how long a send or flush may wait; see [`Sender::set_write_timeout`].
    pub fn set_write_timeout(&mut self, timeout: Option<Duration>) {
        self.tx.set_write_timeout(timeout);
    }

    /// Sets the largest message accepted; see [`Receiver::set_max_message_size`].
    pub fn set_max_message_size(&mut self, max: u64) {
        self.rx.set_max_message_size(max);
    }

    /// The largest message accepted.
    pub fn max_message_size(&self) -> u64 {
        self.rx.max_message_size()
    }

    /// The peer's address, where the transport has one (TCP, named Unix sockets).
    pub fn peer_addr(&self) -> Option<&Address> {
        self.peer.as_ref()
    }

    /// Splits the connection into a sending and a receiving half, owned, for two tasks.
    /// Buffered data and settings go with the half they belong to; queued batched messages
    /// stay with the sender (flush it).
    ///
    /// ```no_run
    /// # async fn f(conn: procwire::tokio::Connection) -> procwire::Result<()> {
    /// let (mut tx, mut rx) = conn.into_split();
    /// let reader = tokio::spawn(async move { rx.recv_bytes().await });
    /// tx.send_bytes(b"ping").await?;
    /// let pong = reader.await.unwrap()?;
    /// # let _ = pong; Ok(()) }
    /// ```
    pub fn into_split(self) -> (Sender, Receiver) {
        (self.tx, self.rx)
    }
}

impl<'a> First<'a> for &'a mut Connection {
    type Output = Vec<u8>;

    #[inline(always)]
    fn first(self) -> Step<'a, Vec<u8>> {
        self.recv_bytes_first()
    }
}

impl<'a> First<'a> for (&'a mut Connection, &'a mut Vec<u8>) {
    type Output = usize;

    #[inline(always)]
    fn first(self) -> Step<'a, usize> {
        self.0.recv_into_first(self.1)
    }
}

/// Messages as they arrive, as [`Receiver`]'s stream; batched sends go out while it waits.
impl Stream for Connection {
    type Item = Result<Vec<u8>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Vec<u8>>>> {
        let this = self.get_mut();
        this.tx.push_queue(cx);
        Pin::new(&mut this.rx).poll_next(cx)
    }
}

/// Messages out, as [`Sender`]'s sink.
impl<B: AsRef<[u8]>> Sink<B> for Connection {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        <Sender as Sink<B>>::poll_ready(Pin::new(&mut self.get_mut().tx), cx)
    }

    fn start_send(self: Pin<&mut Self>, item: B) -> Result<()> {
        Pin::new(&mut self.get_mut().tx).start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        <Sender as Sink<B>>::poll_flush(Pin::new(&mut self.get_mut().tx), cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        <Sender as Sink<B>>::poll_close(Pin::new(&mut self.get_mut().tx), cx)
    }
}
