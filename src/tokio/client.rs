//! [`Client`] and [`ClientBuilder`]: connecting, with retries, and the client's handshake.

use std::io;
use std::time::Duration;

use ::tokio::time::Instant;

use super::Connection;
use super::stream::{Socket, connect};
use crate::auth::Role;
use crate::listener::{EndpointOptions, hung_up, with_peer};
use crate::{Address, Error, Result, ToAddress};

/// Options for [`Client::connect`]; get one from [`Client::builder`]. The same options as
/// the blocking [`ClientBuilder`](crate::ClientBuilder), with the same defaults.
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    /// The key, the handshake's options and the connection's.
    endpoint: EndpointOptions,
    connect_timeout: Duration,
    wait: Option<Duration>,
}

// The blocking builder's defaults.
impl Default for ClientBuilder {
    fn default() -> Self {
        let crate::ClientBuilder { endpoint, connect_timeout, wait } = crate::ClientBuilder::default();
        ClientBuilder { endpoint, connect_timeout, wait }
    }
}

impl ClientBuilder {
    crate::listener::client_setters!();

    /// Encrypts the connection, keyed by the [`authkey`](Self::authkey) (required): the
    /// blocking [`ClientBuilder::encrypt`](crate::ClientBuilder::encrypt), with the same
    /// handshake and messages, so either face's encrypting listener accepts it. A listener
    /// that does not encrypt is refused at once with [`Error::AuthenticationFailed`].
    #[cfg(feature = "encrypt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "encrypt")))]
    pub fn encrypt(mut self, on: bool) -> Self {
        self.endpoint.encrypt = on;
        self
    }

    /// Keeps retrying for up to `t` while nothing listens at the address yet (connection
    /// refused, socket file missing), for a listener that is still starting.
    pub fn wait_for_listener(mut self, t: Duration) -> Self {
        self.wait = Some(t);
        self
    }

    /// Connects to `addr` and runs the handshake. A TCP address without an authkey is an
    /// [`Error::InvalidInput`] unless allowed; an `inproc:` address (and a `pipe:` one
    /// elsewhere than on Windows) is an [`Error::InvalidAddress`].
    pub async fn connect(self, addr: impl ToAddress) -> Result<Connection> {
        let addr = &addr.to_address()?;
        self.endpoint.check_keyless(addr, "connect to", "ClientBuilder")?;
        let socket = self.open(addr).await?;
        if let Some(idle) = self.endpoint.keepalive {
            socket.set_keepalive(idle)?;
        }
        let mut conn = Connection::for_handshake(socket);
        match &self.endpoint.key {
            Some(key) => {
                let peer = Some(addr.clone());
                let ep = &self.endpoint;
                let mut hs = super::handshake::new(Role::Client, key, ep.legacy, ep.encrypt)?;
                let deadline = Instant::now() + self.endpoint.handshake_timeout;
                super::handshake::run(&mut conn, &mut hs, deadline, &mut false).await.map_err(|e| {
                    // A listener that refuses us closes with our early challenge unread, which
                    // some systems turn into a reset that overtakes its #FAILURE#.
                    let e = if hung_up(&e) {
                        Error::AuthenticationFailed(format!(
                            "the listener closed the connection during the handshake ({e})"
                        ))
                    } else {
                        e
                    };
                    crate::trace::event!(WARN, address = %addr, error = %e, "client handshake failed");
                    with_peer(e, &peer, None)
                })?;
                conn = super::handshake::finish(hs, conn)?;
            }
            None => conn.parts().1.refuse_challenge = true,
        }
        conn.finish_handshake(&self.endpoint.conn);
        Ok(conn)
    }

    async fn open(&self, addr: &Address) -> Result<Socket> {
        let give_up = self.wait.map(|w| Instant::now() + w);
        let mut pause = Duration::from_millis(5);
        loop {
            let attempt =
                ::tokio::time::timeout(self.connect_timeout, connect(addr, self.connect_timeout)).await;
            match attempt {
                Ok(Ok(s)) => return Ok(s),
                Err(_) => return Err(Error::Timeout(format!("connecting to {addr}"))),
                Ok(Err(Error::Io(e))) => {
                    let not_up =
                        matches!(e.kind(), io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound);
                    if not_up && give_up.is_some_and(|g| Instant::now() + pause < g) {
                        ::tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_millis(100));
                        continue;
                    }
                    return Err(Error::Io(crate::error::io_context(
                        e,
                        format_args!("cannot connect to {addr}"),
                    )));
                }
                Ok(Err(e)) => return Err(e),
            }
        }
    }
}

/// Connects to a [`Listener`](super::Listener) or any procwire or CPython listener, the async
/// twin of [`procwire::Client`](crate::Client).
#[derive(Debug)]
pub struct Client;

impl Client {
    /// Options for connecting: authkey, timeouts, retry, limits.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Connects to `addr` with default options and **no authentication**; TCP is refused.
    pub async fn connect(addr: impl ToAddress) -> Result<Connection> {
        Client::builder().connect(addr).await
    }
}
