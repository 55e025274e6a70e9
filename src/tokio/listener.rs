//! [`Listener`] and [`ListenerBuilder`]: accepting connections, each handshake in its own task.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use ::tokio::task::{AbortHandle, JoinSet};
use ::tokio::time::{Instant, Sleep};
use futures_core::Stream;

use super::Connection;
use super::stream::{Acceptor, Socket};
use crate::auth::Role;
use crate::listener::{EndpointOptions, hung_up, with_peer};
use crate::{Address, Error, Result, ToAddress};

/// How long the listening socket rests after the OS refused an accept for lack of resources.
const RESOURCE_REST: Duration = Duration::from_millis(100);

/// Options for [`Listener::bind`]; get one from [`Listener::builder`]. The same options as
/// the blocking [`ListenerBuilder`](crate::ListenerBuilder), with the same defaults.
#[derive(Clone, Debug)]
pub struct ListenerBuilder {
    endpoint: EndpointOptions,
    backlog: i32,
    max_pending: usize,
    mode: u32,
}

impl Default for ListenerBuilder {
    fn default() -> Self {
        ListenerBuilder { endpoint: EndpointOptions::default(), backlog: 128, max_pending: 1024, mode: 0o600 }
    }
}

impl ListenerBuilder {
    crate::listener::listener_setters!();

    /// How many handshakes may be under way at once (default 1024). A new connection that
    /// finds that many is still taken: the handshake that started first is dropped for it and
    /// reported by [`accept`](Listener::accept) as an [`Error::Timeout`], so silent peers
    /// cannot hold the table until their handshake timeout.
    pub fn max_pending_handshakes(mut self, n: usize) -> Self {
        self.max_pending = n.max(1);
        self
    }

    /// Encrypts every connection, keyed by the [`authkey`](Self::authkey) (required): the
    /// blocking [`ListenerBuilder::encrypt`](crate::ListenerBuilder::encrypt), with the same
    /// handshake and messages, so either face's encrypting client connects. A plain or
    /// CPython client is refused at once (it receives a hello it rejects).
    ///
    /// ```no_run
    /// use procwire::tokio::{Client, Listener};
    /// # async fn run() -> procwire::Result<()> {
    /// let mut listener = Listener::builder().authkey("key").encrypt(true).bind("tcp:127.0.0.1:0").await?;
    /// let addr = listener.address().clone();
    /// let client = tokio::spawn(Client::builder().authkey("key").encrypt(true).connect(addr));
    /// let mut server_side = listener.accept().await?;
    /// let mut client_side = client.await.expect("the client task")?;
    /// assert!(client_side.is_encrypted());
    /// client_side.send_bytes(b"private").await?;
    /// assert_eq!(server_side.recv_bytes().await?, b"private");
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "encrypt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "encrypt")))]
    pub fn encrypt(mut self, on: bool) -> Self {
        self.endpoint.encrypt = on;
        self
    }

    /// Binds and listens on `addr` (Unix sockets, TCP, Windows named pipes; an `inproc:`
    /// address is an [`Error::InvalidAddress`]). Must be called inside a tokio runtime.
    pub async fn bind(self, addr: impl ToAddress) -> Result<Listener> {
        let addr = &addr.to_address()?;
        self.endpoint.check_keyless(addr, "listen on", "ListenerBuilder")?;
        let (acceptor, address) =
            Acceptor::bind(addr, crate::transport::BindOptions { backlog: self.backlog, mode: self.mode })
                .await?;
        Ok(Listener {
            acceptor,
            address,
            max_pending: self.max_pending,
            endpoint: Arc::new(self.endpoint),
            handshakes: JoinSet::new(),
            started: VecDeque::new(),
            rest: None,
        })
    }
}

/// What one handshake task ends with: a connection, a refusal, or nothing (a peer that hung
/// up without a word: a liveness probe, a port scan).
type Outcome = Option<Result<Connection>>;

/// Accepts connections, the async twin of [`procwire::Listener`](crate::Listener).
///
/// Every accepted socket's handshake runs in its own task on the runtime, with its own
/// deadline: [`accept`](Listener::accept) returns whichever connection is authenticated
/// first, and a client that connects and stays silent delays no one.
pub struct Listener {
    acceptor: Acceptor,
    address: Address,
    max_pending: usize,
    endpoint: Arc<EndpointOptions>,
    handshakes: JoinSet<Outcome>,
    /// The handshakes in the order they started, to drop the oldest when the table is full.
    started: VecDeque<AbortHandle>,
    /// After the OS refused an accept for lack of resources, the socket rests until this fires.
    rest: Option<Pin<Box<Sleep>>>,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("address", &self.address)
            .field("authkey", &self.endpoint.key.is_some())
            .field("handshakes", &self.handshakes.len())
            .finish()
    }
}

impl Listener {
    /// Options for binding: authkey, backlog, timeouts, limits.
    pub fn builder() -> ListenerBuilder {
        ListenerBuilder::default()
    }

    /// Binds `addr` with default options and **no authentication**; TCP is refused.
    pub async fn bind(addr: impl ToAddress) -> Result<Listener> {
        Listener::builder().bind(addr).await
    }

    /// The address the listener is bound to: the real port after binding TCP port 0.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Waits for the next connection that completes its handshake.
    ///
    /// An error concerns one client only (wrong key: [`Error::AuthenticationFailed`]; a
    /// stalled handshake: [`Error::Timeout`]), except an [`Error::Io`] from the listening
    /// socket itself (out of descriptors: the socket then rests 100 ms). Keep calling it to
    /// serve everyone. Cancel-safe: handshakes go on in their tasks, and a finished one waits
    /// for the next call.
    pub async fn accept(&mut self) -> Result<Connection> {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// An endless [`Stream`] of [`accept`](Listener::accept) results, the async twin of the
    /// blocking [`Listener::incoming`](crate::Listener::incoming): an error concerns one
    /// client (or the listening socket, which then rests) and is an item; the stream goes on.
    /// Cancel-safe as `accept` is.
    ///
    /// ```no_run
    /// use futures_core::Stream;
    /// use procwire::tokio::Listener;
    /// # async fn run() -> procwire::Result<()> {
    /// let mut listener = Listener::builder().authkey("secret").bind("tcp:127.0.0.1:0").await?;
    /// let mut incoming = listener.incoming();
    /// while let Some(conn) = std::future::poll_fn(|cx| std::pin::Pin::new(&mut incoming).poll_next(cx)).await {
    ///     match conn {
    ///         Ok(mut c) => c.send_bytes(b"hi").await?,
    ///         Err(e) => eprintln!("client refused: {e}"),
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn incoming(&mut self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<Result<Connection>> {
        loop {
            if let Poll::Ready(Some(done)) = self.handshakes.poll_join_next(cx) {
                match done {
                    Ok(Some(r)) => return Poll::Ready(r),
                    Ok(None) => continue,
                    Err(e) if e.is_cancelled() => {
                        return Poll::Ready(Err(Error::Timeout(format!(
                            "in the handshake: dropped for a new connection, as {} handshakes were \
                             pending (max_pending_handshakes) and this one had started first",
                            self.max_pending
                        ))));
                    }
                    Err(e) => std::panic::resume_unwind(e.into_panic()),
                }
            }
            if let Some(rest) = &mut self.rest {
                if rest.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.rest = None;
            }
            match self.acceptor.poll_accept(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(socket)) => self.start(socket),
                Poll::Ready(Err(e)) => {
                    self.rest = Some(Box::pin(::tokio::time::sleep(RESOURCE_REST)));
                    return Poll::Ready(Err(Error::Io(crate::error::io_context(
                        e,
                        format_args!("accept failed, pausing for {RESOURCE_REST:?}"),
                    ))));
                }
            }
        }
    }

    /// Starts the handshake of a new connection in its own task.
    fn start(&mut self, socket: Socket) {
        while self.started.front().is_some_and(AbortHandle::is_finished) {
            self.started.pop_front();
        }
        if self.handshakes.len() >= self.max_pending
            && let Some(oldest) = self.started.pop_front()
        {
            oldest.abort();
        }
        let endpoint = self.endpoint.clone();
        // A shared-memory client without a key can knock only where shm: addresses lie over:
        // a Unix path socket, or a named pipe on Windows.
        let shm_knocks = matches!(self.address, Address::Unix(_) | Address::Pipe(_));
        let handle = self.handshakes.spawn(accept_one(socket, endpoint, shm_knocks));
        self.started.push_back(handle);
    }
}

/// The stream of accepted connections; see [`Listener::incoming`].
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a mut Listener,
}

impl Stream for Incoming<'_> {
    type Item = Result<Connection>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Connection>>> {
        self.get_mut().listener.poll_accept(cx).map(Some)
    }
}

/// Authenticates one accepted connection (or takes it as it is, without a key: then, with
/// `shm_knocks`, its first message is refused if it is a shared-memory client's hello).
async fn accept_one(socket: Socket, endpoint: Arc<EndpointOptions>, shm_knocks: bool) -> Outcome {
    let peer = socket.peer_addr();
    if let Some(idle) = endpoint.keepalive
        && let Err(e) = socket.set_keepalive(idle)
    {
        return Some(Err(Error::Io(e)));
    }
    let mut conn = Connection::for_handshake(socket);
    if let Some(key) = &endpoint.key {
        let deadline = Instant::now() + endpoint.handshake_timeout;
        let mut heard = false;
        let mut hs = match super::handshake::new(Role::Listener, key, endpoint.legacy, endpoint.encrypt) {
            Ok(hs) => hs,
            Err(e) => return Some(Err(e)),
        };
        match super::handshake::run(&mut conn, &mut hs, deadline, &mut heard).await {
            Ok(()) => {}
            Err(e) if hung_up(&e) && !heard => return None,
            Err(e) => {
                let e = if hung_up(&e) {
                    Error::AuthenticationFailed(format!(
                        "the client hung up during the handshake ({e}) while {}",
                        hs.waiting_for()
                    ))
                } else {
                    e
                };
                crate::trace::event!(WARN, error = %e, "handshake failed");
                return Some(Err(with_peer(e, &peer, None)));
            }
        }
        conn = match super::handshake::finish(hs, conn) {
            Ok(conn) => conn,
            Err(e) => return Some(Err(with_peer(e, &peer, None))),
        };
    } else if shm_knocks {
        conn.parts().1.refuse_shm_hello = true;
    }
    conn.finish_handshake(&endpoint.conn);
    Some(Ok(conn))
}
