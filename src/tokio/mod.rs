//! The async face, for a tokio runtime (cargo feature `tokio`): [`Listener`], [`Client`] and
//! [`Connection`] as futures, speaking the same protocol as the blocking ones.
//!
//! The framing ([`crate::codec`]) and the handshake ([`crate::auth`]) are the very code the
//! blocking endpoints drive: only the waiting is different. So an async endpoint talks to a
//! blocking procwire one and to CPython's `multiprocessing.connection` with the same authkey,
//! with the same rules: keyless TCP refused unless allowed, handshake messages capped at 256
//! bytes, a maximum message size checked before anything is allocated, handshake and connect
//! timeouts, optional HMAC-MD5 for CPython 3.11 (`legacy-md5`). Typed messages are CBOR, as
//! [`send`](Connection::send) and [`recv`](Connection::recv) on the blocking side.
//!
//! ```no_run
//! use procwire::tokio::{Client, Listener};
//! # async fn run() -> procwire::Result<()> {
//! let mut listener = Listener::builder().authkey("secret").bind("unix:/tmp/app.sock").await?;
//! tokio::spawn(async move {
//!     while let Ok(mut conn) = listener.accept().await {
//!         tokio::spawn(async move {
//!             while let Ok(msg) = conn.recv_bytes().await {
//!                 if conn.send_bytes(&msg).await.is_err() {
//!                     break;
//!                 }
//!             }
//!         });
//!     }
//! });
//! let mut conn = Client::builder().authkey("secret").connect("unix:/tmp/app.sock").await?;
//! conn.send(&("add", 1, 2)).await?;
//! let echoed: (String, i32, i32) = conn.recv().await?;
//! # let _ = echoed; Ok(()) }
//! ```
//!
//! The listener runs each client's handshake in its own task: [`Listener::accept`] returns
//! whichever connection is authenticated first, so a client that connects and stays silent
//! delays no one; [`Listener::incoming`] is the same as a [`Stream`] of connections.
//! [`Connection::into_split`] gives an owned [`Sender`] and [`Receiver`] for
//! two tasks; a [`Connection`] or [`Receiver`] is also a `futures` [`Stream`] of messages,
//! and a [`Connection`] or [`Sender`] a [`Sink`] of them.
//!
//! Encrypted connections (feature `encrypt`): `encrypt(true)` on both builders runs the same
//! Noise handshake and seals the same messages as the blocking endpoints (see
//! [`crate::secure`]), so an encrypting async endpoint talks to an encrypting blocking one, and
//! a mismatch (one side encrypts, the other does not) is refused on both sides at once with the
//! blocking face's [`Error::AuthenticationFailed`]. Receives and sends keep the cancel safety
//! below: the ciphertext read is kept until its plaintext is taken, and sealed bytes not yet
//! written go out first with the next send or flush. [`Connection::close`] and
//! [`Sender::close`] send the end message (close-notify) before shutting the socket down;
//! dropping instead sends it only if the socket takes it at once (a drop cannot wait), and a
//! peer that sees the stream end without it reports an [`Error::Integrity`], as for a cut.
//!
//! Transports: Unix sockets (paths and Linux abstract names), TCP, and on Windows named pipes
//! (`pipe:` addresses, message mode, one frame per message without a length prefix, as the
//! blocking endpoints and CPython's `AF_PIPE`); `inproc:` addresses are an
//! [`Error::InvalidAddress`]. A pipe's receiver must see where each message ends, which
//! tokio's own named pipes (through mio) do not show: they report `ERROR_MORE_DATA` as an
//! ordinary read and split messages at their own read sizes (one message of 70,000 bytes and
//! three of 4,096, 65,536 and 368 bytes read the same), and an empty message never shows. So
//! a pipe connection runs the blocking transport's message pipe on two threads of its own,
//! one per direction, bridged to the task through buffers of at most 256 KiB; the threads
//! end with the connection. A pipe has no half-close: after [`Sender::close`] the peer sees
//! the end once the [`Receiver`] is dropped too ([`Connection::close`] drops both).
//!
//! # Cancel safety
//!
//! - **Receiving** ([`recv_bytes`](Connection::recv_bytes),
//!   [`recv_bytes_into`](Connection::recv_bytes_into), [`recv`](Connection::recv), the
//!   stream) is cancel-safe: every byte read is kept in the receiver, and a message leaves it
//!   only whole. A receive dropped half-way through a message (by `tokio::time::timeout`, a
//!   `select!`) loses nothing: the next receive returns the whole message.
//! - **Sending** never leaves half a message in front of another. A send dropped before it
//!   finished keeps the unwritten rest of its message in the sender; the next send or
//!   [`flush`](Connection::flush) writes that rest first, so the peer receives the message
//!   whole. Whether a dropped send's message goes out is therefore decided by what follows:
//!   a later send or flush completes it; dropping the connection instead leaves the peer a
//!   stream that ends inside a message ([`Error::Truncated`] there; on a named pipe, which
//!   carries whole messages only, the unfinished one is not sent and the peer sees the end).
//!   A failed write (an I/O error) ends sending on that connection.
//! - [`Listener::accept`] is cancel-safe: handshakes run in their own tasks, and one that
//!   finished waits for the next `accept`.
//!
//! [`Stream`]: futures_core::Stream
//! [`Sink`]: futures_sink::Sink

mod client;
mod connection;
mod fast;
mod handshake;
mod listener;
#[cfg(windows)]
mod pipe;
mod recv;
#[cfg(feature = "encrypt")]
mod sealed;
mod send;
mod stream;

use std::time::Duration;

pub use client::{Client, ClientBuilder};
pub use connection::Connection;
pub use listener::{Incoming, Listener, ListenerBuilder};
pub use recv::Receiver;
pub use send::{DEFAULT_BATCH, Sender};

use crate::{Error, Result};

/// Runs `fut` within `timeout`, an [`Error::Timeout`] saying `what` when it runs out. Every
/// future given here is cancel-safe, so nothing is lost when it does.
async fn timed<T>(timeout: Option<Duration>, what: &str, fut: impl Future<Output = Result<T>>) -> Result<T> {
    match timeout {
        None => fut.await,
        Some(t) => ::tokio::time::timeout(t, fut)
            .await
            .unwrap_or_else(|_| Err(Error::Timeout(format!("{what} (timeout {t:?})")))),
    }
}
