//! Endpoints: [`Listener`] accepts authenticated connections, [`Client`] makes them.
//!
//! With an authkey, every connection starts with CPython's mutual HMAC handshake (see
//! [`crate::auth`]). The listener runs the handshakes of all connecting clients side by side,
//! each with its own deadline, so a client that connects and stays silent does not delay an
//! honest one: `accept` returns whichever connection finishes its handshake first.

mod accept;
pub(crate) mod beside;
mod builder;
mod client;
mod poll;
mod setters;
mod shm;
mod steps;

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::auth::AuthKey;
use crate::connection::{ConnOptions, PeerCredentials};
use crate::transport::RawListener;
use crate::{Address, Connection, Error, Result, ToAddress};

#[cfg(doc)]
use accept::Pending;
use accept::State;
pub use builder::ListenerBuilder;
pub use client::{Client, ClientBuilder};
pub(crate) use setters::{client_setters, endpoint_setters, listener_setters};
#[cfg(feature = "tokio")]
pub(crate) use steps::Steps;

/// The default time a handshake may take before the connection is dropped.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The default time a client waits for a connection to be established (as CPython's
/// `CONNECTION_TIMEOUT`).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// The options a [`ListenerBuilder`] and a [`ClientBuilder`] both have: the key and how the
/// handshake runs, and the options of the connections they make.
#[derive(Clone, Debug)]
pub(crate) struct EndpointOptions {
    pub(crate) key: Option<AuthKey>,
    pub(crate) legacy: bool,
    /// Whether connections are encrypted (feature `encrypt`).
    pub(crate) encrypt: bool,
    pub(crate) keyless_tcp: bool,
    pub(crate) keepalive: Option<Duration>,
    pub(crate) handshake_timeout: Duration,
    pub(crate) conn: ConnOptions,
    /// The ring size of `shm:` connections: the listener's, or the one a client asks for.
    pub(crate) shm_ring: Option<usize>,
}

impl Default for EndpointOptions {
    fn default() -> Self {
        EndpointOptions {
            key: None,
            legacy: false,
            encrypt: false,
            keyless_tcp: false,
            keepalive: None,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            conn: ConnOptions::default(),
            shm_ring: None,
        }
    }
}

impl EndpointOptions {
    /// Refuses a TCP address without a key unless that was allowed; `what` (`listen on`,
    /// `connect to`) and `builder` name the side in the message.
    pub(crate) fn check_keyless(&self, addr: &Address, what: &str, builder: &str) -> Result<()> {
        if self.encrypt && !cfg!(feature = "encrypt") {
            return Err(Error::InvalidInput(format!(
                "cannot {what} {addr} encrypted: this build of procwire lacks its feature `encrypt`"
            )));
        }
        if self.encrypt && self.key.is_none() {
            return Err(Error::InvalidInput(format!(
                "{builder}::encrypt(true) needs an authkey: the encryption is keyed by it"
            )));
        }
        if self.encrypt && matches!(addr, Address::Shm(_)) {
            return Err(Error::InvalidInput(format!(
                "{builder}::encrypt(true) does not combine with the shared-memory address {addr}: \
                 its messages never leave this host; use unix: or tcp: to encrypt"
            )));
        }
        if self.key.is_some() || self.keyless_tcp || !matches!(addr, Address::Tcp { .. }) {
            return Ok(());
        }
        Err(Error::InvalidInput(format!(
            "refusing to {what} {addr} without an authkey: anyone who can reach a TCP port can \
             connect; set an authkey, or call {builder}::allow_unauthenticated_tcp(true)"
        )))
    }
}

impl EndpointOptions {
    /// Refuses a shared-memory ring size no ring can have; `builder` names the side.
    pub(crate) fn check_shm_ring(&self, builder: &str) -> Result<()> {
        match self.shm_ring {
            Some(r) if !crate::transport::valid_shm_ring(r) => Err(Error::InvalidInput(format!(
                "{builder}::shm_ring_size({r}): a ring size is a power of two from 4 KiB to 1 GiB"
            ))),
            _ => Ok(()),
        }
    }
}

/// Adds the peer to an error's message: its address, or else (an unnamed Unix socket) the
/// credentials of its process.
pub(crate) fn with_peer(e: Error, peer: &Option<Address>, creds: Option<PeerCredentials>) -> Error {
    let who = describe_peer(peer, creds);
    match e {
        Error::AuthenticationFailed(m) => Error::AuthenticationFailed(format!("{m} (peer {who})")),
        Error::Timeout(m) => Error::Timeout(format!("{m} (peer {who})")),
        Error::Protocol(m) => Error::Protocol(format!("{m} (peer {who})")),
        other => other,
    }
}

/// The peer as errors and events name it: its address, or else its process's credentials.
fn describe_peer(peer: &Option<Address>, creds: Option<PeerCredentials>) -> String {
    match (peer, creds) {
        (Some(a), _) => a.to_string(),
        (None, Some(c)) => c.to_string(),
        (None, None) => "an unnamed peer".to_string(),
    }
}

/// Batching limit while handshake replies are gathered into one write (they are far smaller).
pub(crate) const HANDSHAKE_BATCH: usize = 4 * crate::auth::MAX_HANDSHAKE_MESSAGE as usize;

/// A client that went away: end of stream, reset, or a broken pipe on our first write.
pub(crate) fn hung_up(e: &Error) -> bool {
    match e {
        Error::Closed => true,
        Error::Io(io) => matches!(
            io.kind(),
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
        ),
        _ => false,
    }
}

/// Accepts connections on an address, like CPython's `multiprocessing.connection.Listener`.
///
/// ```
/// use procwire::{Address, Client, Family, Listener};
/// let listener = Listener::builder().authkey("key").bind(&Address::fresh(Family::default())?)?;
/// let addr = listener.address().clone();
/// let t = std::thread::spawn(move || Client::builder().authkey("key").connect(&addr));
/// let mut server_side = listener.accept()?;
/// let mut client_side = t.join().unwrap()?;
/// client_side.send(&[1, 2, 3])?;
/// assert_eq!(server_side.recv::<Vec<u8>>()?, [1, 2, 3]);
/// # Ok::<(), procwire::Error>(())
/// ```
pub struct Listener {
    raw: RawListener,
    address: Address,
    opts: ListenerBuilder,
    state: Mutex<State>,
    turn: Condvar,
    last_peer: Mutex<Option<Address>>,
    /// The source of [`Pending::progress`].
    ticks: AtomicU64,
    /// Whether `accept` returns `WouldBlock` instead of waiting.
    nonblocking: AtomicBool,
    /// The listening socket and the pending handshakes' sockets, for a caller's poll loop
    /// (none for an in-process listener).
    #[cfg(unix)]
    poll_set: Option<crate::transport::PollSet>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("address", &self.address)
            .field("authkey", &self.opts.endpoint.key.is_some())
            .finish()
    }
}

impl Listener {
    /// Options for binding: authkey, backlog, timeouts, limits.
    pub fn builder() -> ListenerBuilder {
        ListenerBuilder::default()
    }

    /// Binds `addr` with default options and **no authentication** (as CPython's
    /// `Listener(address)` without an authkey). Use [`Listener::builder`] to set a key. A TCP
    /// address is refused (see [`ListenerBuilder::allow_unauthenticated_tcp`]).
    pub fn bind(addr: impl ToAddress) -> Result<Listener> {
        Listener::builder().bind(addr)
    }

    /// The address the listener is bound to: the real port after binding TCP port 0.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The peer address of the last accepted connection, where the transport has one.
    pub fn last_accepted(&self) -> Option<Address> {
        self.last_peer.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits for the next connection that completes its handshake.
    ///
    /// An error concerns one client only (wrong key: [`Error::AuthenticationFailed`]; a stalled
    /// handshake: [`Error::Timeout`] naming the likely cause; a client that hung up midway) and
    /// the listener stays ready for the next one: loop over [`incoming`](Listener::incoming)
    /// and skip errors to serve everyone. Several threads may call it; one drives at a time.
    pub fn accept(&self) -> Result<Connection> {
        self.accept_until(None)
    }

    /// As [`accept`](Listener::accept), but gives up after `timeout` with [`Error::Timeout`].
    pub fn accept_timeout(&self, timeout: Duration) -> Result<Connection> {
        self.accept_until(Instant::now().checked_add(timeout))
    }

    /// An endless iterator of [`accept`](Listener::accept) results.
    ///
    /// ```no_run
    /// # let listener = procwire::Listener::builder().authkey("secret").bind("tcp:127.0.0.1:0")?;
    /// for conn in listener.incoming() {
    ///     match conn {
    ///         Ok(mut c) => { c.send_bytes(b"hi")?; }
    ///         Err(e) => eprintln!("client refused: {e}"),
    ///     }
    /// }
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    pub(crate) fn raw(&self) -> &RawListener {
        &self.raw
    }

    /// Whether a finished handshake (or a per-client error) waits for `accept`.
    pub(crate) fn has_ready(&self) -> bool {
        !self.lock().ready.is_empty()
    }
}

/// Iterator over accepted connections; see [`Listener::incoming`].
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a Listener,
}

impl Iterator for Incoming<'_> {
    type Item = Result<Connection>;

    fn next(&mut self) -> Option<Result<Connection>> {
        Some(self.listener.accept())
    }
}
