//! In-process connections: [`pipe`], [`Listener`] and [`Client`] with the process versions'
//! names and methods, over the in-process transport (no socket, no system call per message).
//!
//! A dummy listener bound to any address (`unix:/run/app.sock`, `tcp:127.0.0.1:0`, ...) binds
//! the in-process address of that name instead (`inproc:unix:/run/app.sock`), so a program's
//! addresses work unchanged with threads; a dummy client maps addresses the same way.
//! Connections keep every message rule of the socket ones: the frame format, the authkey
//! handshake, the largest message size, timeouts, and [`Error::Closed`](crate::Error::Closed)
//! when the other end is dropped.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use crate::{Address, AuthKey, Connection, Error, Incoming, Result, ToAddress, Waitable};

/// A connected pair of in-process connections, like [`crate::pipe`] for threads.
///
/// With `duplex` both ends send and receive; without, the first end only receives and the
/// second only sends. The bytes move through memory (at most 256 KiB buffered per direction
/// before a sender waits), not through the kernel. Unlike [`crate::pipe`], the ends cannot be
/// handed to a child process ([`Connection::pass_to_child`] fails).
///
/// ```
/// use procwire::dummy as pw;
/// let (mut a, mut b) = pw::pipe(true)?;
/// let t = std::thread::spawn(move || -> procwire::Result<()> {
///     let n: u64 = b.recv()?;
///     b.send(&(n * 2))
/// });
/// a.send(&21u64)?;
/// assert_eq!(a.recv::<u64>()?, 42);
/// t.join().unwrap()?;
/// # Ok::<(), procwire::Error>(())
/// ```
pub fn pipe(duplex: bool) -> Result<(Connection, Connection)> {
    Ok(crate::connection::pipe_in_process(duplex))
}

/// The in-process address standing for `addr`.
fn in_process(addr: &Address) -> Address {
    match addr {
        Address::InProc(_) => addr.clone(),
        other => Address::InProc(other.to_string()),
    }
}

/// The options of a dummy builder: each one sets the same option of the process version's
/// builder it wraps (`inner`), so the two cannot drift apart; only the doc is the dummy's own.
macro_rules! forward_options {
    ($builder:ident; $($(#[$attr:meta])* fn $name:ident($arg:ident: $ty:ty);)*) => {
        impl $builder {
            $(
                $(#[$attr])*
                pub fn $name(self, $arg: $ty) -> Self {
                    $builder { inner: self.inner.$name($arg) }
                }
            )*
        }
    };
}

/// Made-up ports for listeners bound to TCP port 0, so that each gets its own name.
static NEXT_PORT: AtomicU16 = AtomicU16::new(49152);

/// Options for [`Listener::bind`], as [`crate::ListenerBuilder`]; get one from
/// [`Listener::builder`]. Options about sockets (backlog aside) are accepted and have no
/// effect in-process.
#[derive(Clone, Debug, Default)]
pub struct ListenerBuilder {
    inner: crate::ListenerBuilder,
}

forward_options! {
    ListenerBuilder;
    /// As [`crate::ListenerBuilder::authkey`]: clients run the same handshake, in memory.
    fn authkey(key: impl Into<AuthKey>);
    /// As [`crate::ListenerBuilder::allow_unauthenticated_tcp`]: a `tcp:` address without a
    /// key is refused here too, so a program behaves the same with processes and threads.
    fn allow_unauthenticated_tcp(allow: bool);
    /// Accepted for the same signature; no effect in-process.
    fn tcp_keepalive(idle: Option<Duration>);
    /// As [`crate::ListenerBuilder::legacy_md5`].
    #[cfg(feature = "legacy-md5")]
    fn legacy_md5(allow: bool);
    /// How many connections may wait for `accept` (default 128); further clients wait in
    /// `connect`, up to their connect timeout.
    fn backlog(backlog: u32);
    /// As [`crate::ListenerBuilder::handshake_timeout`].
    fn handshake_timeout(t: Duration);
    /// As [`crate::ListenerBuilder::max_pending_handshakes`].
    fn max_pending_handshakes(n: usize);
    /// As [`crate::ListenerBuilder::max_message_size`].
    fn max_message_size(max: u64);
    /// Accepted for the same signature; no effect in-process (there is no socket file).
    fn socket_mode(mode: u32);
    /// As [`crate::ListenerBuilder::read_timeout`].
    fn read_timeout(t: Option<Duration>);
    /// As [`crate::ListenerBuilder::write_timeout`].
    fn write_timeout(t: Option<Duration>);
}

impl ListenerBuilder {
    /// Binds the in-process address named by `addr`'s string form (`inproc:unix:/run/app.sock`); TCP
    /// port 0 gets a made-up free port, so [`Listener::address`] differs from every other.
    /// Binding a name already bound in this process is an [`std::io::ErrorKind::AddrInUse`]
    /// error.
    pub fn bind(self, addr: impl ToAddress) -> Result<Listener> {
        let addr = &addr.to_address()?;
        self.inner.check_keyless(addr)?;
        let fresh_dir = match addr {
            Address::Unix(p) => p.parent().map(PathBuf::from),
            _ => None,
        };
        let inner = match addr {
            Address::Tcp { host, port: 0 } => loop {
                let port = NEXT_PORT.fetch_add(1, Ordering::Relaxed).max(49152);
                let named = Address::Tcp { host: host.clone(), port };
                match self.inner.clone().bind(in_process(&named)) {
                    Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
                    r => break r?,
                }
            },
            _ => self.inner.bind(in_process(addr))?,
        };
        Ok(Listener { inner, fresh_dir })
    }
}

/// Accepts in-process connections, like [`crate::Listener`] for threads.
///
/// ```
/// use procwire::dummy as pw;
/// use procwire::{Address, Family};
/// let listener = pw::Listener::builder().authkey("key").bind(&Address::fresh(Family::default())?)?;
/// let addr = listener.address().clone();
/// let t = std::thread::spawn(move || pw::Client::builder().authkey("key").connect(&addr));
/// let mut server_side = listener.accept()?;
/// let mut client_side = t.join().unwrap()?;
/// client_side.send(&[1, 2, 3])?;
/// assert_eq!(server_side.recv::<Vec<u8>>()?, [1, 2, 3]);
/// assert!(server_side.is_in_process());
/// # Ok::<(), procwire::Error>(())
/// ```
#[derive(Debug)]
pub struct Listener {
    inner: crate::Listener,
    /// A private directory `Address::fresh(Family::Unix)` made for the path: removed on drop,
    /// as the socket listener does (only if `fresh` made it).
    fresh_dir: Option<PathBuf>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(dir) = &self.fresh_dir {
            crate::sys::remove_fresh_dir(dir);
        }
    }
}

impl Listener {
    /// Options for binding: authkey, backlog, timeouts, limits.
    pub fn builder() -> ListenerBuilder {
        ListenerBuilder::default()
    }

    /// Binds with default options and no authentication (a `tcp:` address is refused, as
    /// with [`crate::Listener::bind`]).
    pub fn bind(addr: impl ToAddress) -> Result<Listener> {
        Listener::builder().bind(addr)
    }

    /// The in-process address the listener is bound to (an [`Address::InProc`]); clients of
    /// either kind in this process reach it with it.
    pub fn address(&self) -> &Address {
        self.inner.address()
    }

    /// Always `None`: in-process peers have no address.
    pub fn last_accepted(&self) -> Option<Address> {
        self.inner.last_accepted()
    }

    /// As [`crate::Listener::accept`].
    pub fn accept(&self) -> Result<Connection> {
        self.inner.accept()
    }

    /// As [`crate::Listener::accept_timeout`].
    pub fn accept_timeout(&self, timeout: Duration) -> Result<Connection> {
        self.inner.accept_timeout(timeout)
    }

    /// As [`crate::Listener::incoming`].
    pub fn incoming(&self) -> Incoming<'_> {
        self.inner.incoming()
    }
}

impl<'a> From<&'a Listener> for Waitable<'a> {
    fn from(l: &'a Listener) -> Self {
        Waitable::Listener(&l.inner)
    }
}

/// Options for [`Client::connect`], as [`crate::ClientBuilder`]; get one from
/// [`Client::builder`].
#[derive(Clone, Debug, Default)]
pub struct ClientBuilder {
    inner: crate::ClientBuilder,
}

forward_options! {
    ClientBuilder;
    /// As [`crate::ClientBuilder::authkey`].
    fn authkey(key: impl Into<AuthKey>);
    /// As [`crate::ClientBuilder::allow_unauthenticated_tcp`].
    fn allow_unauthenticated_tcp(allow: bool);
    /// Accepted for the same signature; no effect in-process.
    fn tcp_keepalive(idle: Option<Duration>);
    /// As [`crate::ClientBuilder::legacy_md5`].
    #[cfg(feature = "legacy-md5")]
    fn legacy_md5(allow: bool);
    /// How long `connect` waits while the listener's backlog is full.
    fn connect_timeout(t: Duration);
    /// As [`crate::ClientBuilder::wait_for_listener`]: retries while nothing is bound yet.
    fn wait_for_listener(t: Duration);
    /// As [`crate::ClientBuilder::handshake_timeout`].
    fn handshake_timeout(t: Duration);
    /// As [`crate::ClientBuilder::max_message_size`].
    fn max_message_size(max: u64);
    /// As [`crate::ClientBuilder::read_timeout`].
    fn read_timeout(t: Option<Duration>);
    /// As [`crate::ClientBuilder::write_timeout`].
    fn write_timeout(t: Option<Duration>);
}

impl ClientBuilder {
    /// Connects to the in-process listener standing for `addr` and runs the handshake. With no
    /// listener of that name, the error is an [`std::io::ErrorKind::ConnectionRefused`]
    /// (after [`wait_for_listener`](Self::wait_for_listener), if set).
    pub fn connect(self, addr: impl ToAddress) -> Result<Connection> {
        let addr = &addr.to_address()?;
        self.inner.check_keyless(addr)?;
        self.inner.connect(in_process(addr))
    }
}

/// Connects to a [`Listener`] of this process, like [`crate::Client`] for threads.
#[derive(Debug)]
pub struct Client;

impl Client {
    /// Options for connecting: authkey, timeouts, retry, limits.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Connects with default options and no authentication.
    pub fn connect(addr: impl ToAddress) -> Result<Connection> {
        Client::builder().connect(addr)
    }
}
