//! [`Client`] and [`ClientBuilder`]: connecting, with retries, and the client's handshake.

use std::io;
use std::time::{Duration, Instant};

#[cfg(doc)]
use super::Listener;
use super::steps::Steps;
use super::{DEFAULT_CONNECT_TIMEOUT, EndpointOptions, HANDSHAKE_BATCH, hung_up, with_peer};
use crate::auth::{AuthKey, Role};
use crate::error::io_context;
use crate::transport::Stream;
use crate::{Address, Connection, Error, Result, ToAddress};

/// Options for [`Client::connect`]; get one from [`Client::builder`].
///
/// ```no_run
/// use std::time::Duration;
/// use procwire::Client;
/// let conn = Client::builder()
///     .authkey(procwire::AuthKey::from_file("/etc/myapp/key")?)
///     .connect_timeout(Duration::from_secs(5))
///     .wait_for_listener(Duration::from_secs(30))
///     .connect("tcp:10.0.0.5:7000")?;
/// # Ok::<(), procwire::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    pub(crate) endpoint: EndpointOptions,
    pub(crate) connect_timeout: Duration,
    /// How long to retry while nothing listens yet (`None`: no retry).
    pub(crate) wait: Option<Duration>,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            endpoint: EndpointOptions::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            wait: None,
        }
    }
}

impl ClientBuilder {
    crate::listener::client_setters!();

    /// Encrypts the connection, keyed by the [`authkey`](Self::authkey) (required): a Noise
    /// handshake instead of CPython's, then every byte sealed (see [`crate::secure`]). The
    /// listener must set [`ListenerBuilder::encrypt`](super::ListenerBuilder::encrypt) too;
    /// a plain or CPython listener is refused at once, with an error that says so.
    #[cfg(feature = "encrypt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "encrypt")))]
    pub fn encrypt(self, on: bool) -> Self {
        self.encrypt_if(on)
    }

    /// [`encrypt`](Self::encrypt) for the crate's managers and queues, which carry the flag
    /// in every build: without the feature, `true` makes connecting or binding fail.
    pub(crate) fn encrypt_if(mut self, on: bool) -> Self {
        self.endpoint.encrypt = on;
        self
    }

    /// Keeps retrying for up to `t` while nothing listens at the address yet (connection
    /// refused, socket file missing, backlog full), for a listener that is still starting.
    pub fn wait_for_listener(mut self, t: Duration) -> Self {
        self.wait = Some(t);
        self
    }

    /// Connects to `addr` and runs the handshake.
    ///
    /// A TCP address without an authkey is an [`Error::InvalidInput`] unless
    /// [`allow_unauthenticated_tcp`](Self::allow_unauthenticated_tcp) was set.
    pub fn connect(self, addr: impl ToAddress) -> Result<Connection> {
        let addr = &addr.to_address()?;
        self.check_keyless(addr)?;
        let stream = self.open(addr)?;
        if let Some(idle) = self.endpoint.keepalive {
            stream.set_keepalive(Some(idle))?;
        }
        let mut conn = Connection::for_handshake(stream);
        let mut listener_marked = None;
        match &self.endpoint.key {
            Some(key) => {
                (conn, listener_marked) = self.handshake(conn, key, addr).inspect_err(|e| {
                    crate::trace::event!(WARN, address = %addr, error = %e, "client handshake failed");
                    let _ = e;
                })?;
                crate::trace::event!(INFO, address = %addr, "connected (handshake succeeded)");
            }
            None => conn.refuse_challenge(),
        }
        let deadline = Instant::now().checked_add(self.endpoint.handshake_timeout);
        let mut conn =
            super::shm::finish(conn, addr, false, listener_marked, self.endpoint.shm_ring, deadline)?;
        conn.finish_handshake(&self.endpoint.conn);
        Ok(conn)
    }

    /// Refuses a TCP address without a key unless that was allowed, and a ring size no ring
    /// can have.
    pub(crate) fn check_keyless(&self, addr: &Address) -> Result<()> {
        self.endpoint.check_keyless(addr, "connect to", "ClientBuilder")?;
        self.endpoint.check_shm_ring("ClientBuilder")
    }

    /// Asks an `shm:` listener for rings of `bytes` each way (a power of two from 4 KiB to
    /// 1 GiB; checked when connecting): the listener makes them this large or larger (its own
    /// [`shm_ring_size`](super::ListenerBuilder::shm_ring_size), if larger; a listener grants
    /// wishes up to 64 MiB), and a smaller ring is refused. The wish travels in the handshake: without an authkey there is none,
    /// so the client gets the listener's size and refuses it if smaller. A larger ring lets a
    /// large message through with fewer waits for the reader. No effect on other addresses.
    ///
    /// ```
    /// use procwire::{Address, Client, Family, Listener};
    /// let listener = Listener::builder().authkey("k").bind(Address::fresh(Family::Shm)?)?;
    /// let addr = listener.address().clone();
    /// let t = std::thread::spawn(move || {
    ///     Client::builder().authkey("k").shm_ring_size(4 << 20).connect(&addr)
    /// });
    /// let server_side = listener.accept()?;
    /// assert_eq!(server_side.shm_ring_size(), Some(4 << 20));
    /// assert_eq!(t.join().unwrap()?.shm_ring_size(), Some(4 << 20));
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn shm_ring_size(mut self, bytes: usize) -> Self {
        self.endpoint.shm_ring = Some(bytes);
        self
    }

    fn open(&self, addr: &Address) -> Result<Stream> {
        let give_up = self.wait.and_then(|w| Instant::now().checked_add(w));
        let mut pause = Duration::from_millis(5);
        loop {
            let attempt = Instant::now().checked_add(self.connect_timeout);
            match crate::transport::connect(addr, attempt) {
                Ok(s) => return Ok(s),
                Err(Error::Io(e)) => {
                    let not_up = matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionRefused
                            | io::ErrorKind::NotFound
                            | io::ErrorKind::WouldBlock
                    );
                    if not_up && give_up.is_some_and(|g| Instant::now() + pause < g) {
                        std::thread::sleep(pause);
                        pause = (pause * 2).min(Duration::from_millis(100));
                        continue;
                    }
                    if e.kind() == io::ErrorKind::TimedOut {
                        return Err(Error::Timeout(format!("connecting to {addr}")));
                    }
                    return Err(Error::Io(io_context(e, format_args!("cannot connect to {addr}"))));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs the client's side of the handshake; returns the connection (encrypted from now on
    /// with [`encrypt`](Self::encrypt)) and what the listener's challenge said about shared
    /// memory.
    fn handshake(
        &self,
        mut conn: Connection,
        key: &AuthKey,
        addr: &Address,
    ) -> Result<(Connection, Option<super::shm::Peer>)> {
        let ep = &self.endpoint;
        let mut hs = Steps::new(Role::Client, key, ep.legacy, ep.encrypt, |random| {
            super::shm::mark(addr, ep.shm_ring, random)
        })?;
        let mut marked = None;
        let deadline = Instant::now().checked_add(self.endpoint.handshake_timeout);
        conn.set_write_timeout(Some(self.endpoint.handshake_timeout));
        let peer = Some(addr.clone());
        while !hs.is_done() {
            let msg = conn.recv_bytes_until(deadline).map_err(|e| match e {
                Error::Timeout(_) => {
                    with_peer(Error::Timeout(format!("in the handshake, {}", hs.waiting_for())), &peer, None)
                }
                // A listener that refuses us closes with our early challenge unread, which
                // some systems turn into a reset that overtakes its #FAILURE#.
                e if hung_up(&e) => with_peer(
                    Error::AuthenticationFailed(format!(
                        "the listener closed the connection during the handshake ({e})"
                    )),
                    &peer,
                    None,
                ),
                e => with_peer(e, &peer, None),
            })?;
            marked = marked.or(super::shm::marked(&msg));
            match hs.on_message(&msg) {
                Ok(out) => match (out, hs.challenge_early()?) {
                    // Our challenge rides with our answer, in one write: a round trip saved.
                    (Some(reply), Some(challenge)) => {
                        conn.set_batching(Some(HANDSHAKE_BATCH));
                        let sent = conn.send_bytes(&reply).and_then(|()| conn.send_bytes(&challenge));
                        conn.set_batching(None);
                        match sent.and_then(|()| conn.flush()) {
                            // A listener that refused our answer may close before our challenge
                            // is written (a Windows pipe sends the two one by one); its verdict
                            // can still be read, and the next receive reports it.
                            Err(e) if hung_up(&e) => {}
                            r => r?,
                        }
                    }
                    (Some(reply), None) => conn.send_bytes(&reply)?,
                    (None, _) => {}
                },
                Err(e) => {
                    if let Some(f) = hs.failure_message() {
                        let _ = conn.send_bytes(&f);
                    }
                    return Err(with_peer(e, &peer, None));
                }
            }
        }
        Ok((hs.finish(conn)?, marked))
    }
}

/// Connects to a [`Listener`], like CPython's `multiprocessing.connection.Client`.
///
/// ```no_run
/// let mut conn = procwire::Client::builder().authkey("secret").connect("unix:/run/app.sock")?;
/// conn.send_bytes(b"hello")?;
/// # Ok::<(), procwire::Error>(())
/// ```
#[derive(Debug)]
pub struct Client;

impl Client {
    /// Options for connecting: authkey, timeouts, retry, limits.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Connects to `addr` with default options and **no authentication**. A TCP address is
    /// refused (see [`ClientBuilder::allow_unauthenticated_tcp`]).
    pub fn connect(addr: impl ToAddress) -> Result<Connection> {
        Client::builder().connect(addr)
    }
}
