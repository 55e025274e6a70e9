//! Endpoints: [`Listener`] accepts authenticated connections, [`Client`] makes them.
//!
//! With an authkey, every connection starts with CPython's mutual HMAC handshake (see
//! [`crate::auth`]). The listener runs the handshakes of all connecting clients side by side,
//! each with its own deadline, so a client that connects and stays silent does not delay an
//! honest one: `accept` returns whichever connection finishes its handshake first.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::auth::{AuthKey, Handshake, Role, Status};
use crate::connection::{ConnOptions, PeerCredentials};
use crate::transport::{RawListener, Stream, wait_any};
use crate::{Address, Connection, Error, Result};

/// The default time a handshake may take before the connection is dropped.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The default time a client waits for a connection to be established (as CPython's
/// `CONNECTION_TIMEOUT`).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Most connections taken from the accept queue in one round, so that handshakes already
/// under way keep moving during a flood of new connections.
const ACCEPT_BURST: usize = 64;
/// How long the listening socket rests after the OS refused an accept for lack of resources.
const RESOURCE_REST: Duration = Duration::from_millis(100);
/// The error for TCP without an authkey and without the explicit opt-out.
fn keyless_tcp_refused(addr: &Address, what: &str, builder: &str) -> Error {
    Error::Io(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "refusing to {what} {addr} without an authkey: anyone who can reach a TCP port can \
             connect; set an authkey, or call {builder}::allow_unauthenticated_tcp(true)"
        ),
    ))
}

/// Adds the peer to an error's message: its address, or else (an unnamed Unix socket) the
/// credentials of its process.
fn with_peer(e: Error, peer: &Option<Address>, creds: Option<PeerCredentials>) -> Error {
    let who = match (peer, creds) {
        (Some(a), _) => a.to_string(),
        (None, Some(c)) => c.to_string(),
        (None, None) => "an unnamed peer".to_string(),
    };
    match e {
        Error::AuthenticationFailed(m) => Error::AuthenticationFailed(format!("{m} (peer {who})")),
        Error::Timeout(m) => Error::Timeout(format!("{m} (peer {who})")),
        Error::Protocol(m) => Error::Protocol(format!("{m} (peer {who})")),
        other => other,
    }
}

/// Options for [`Listener::bind`]; get one from [`Listener::builder`].
///
/// ```
/// use std::time::Duration;
/// use procwire::{Address, Family, Listener};
/// let listener = Listener::builder()
///     .authkey(b"secret".as_slice())
///     .backlog(64)
///     .handshake_timeout(Duration::from_secs(2))
///     .max_message_size(1 << 20)
///     .bind(&Address::fresh(Family::default())?)?;
/// # Ok::<(), procwire::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct ListenerBuilder {
    key: Option<AuthKey>,
    legacy: bool,
    keyless_tcp: bool,
    keepalive: Option<Duration>,
    backlog: i32,
    handshake_timeout: Duration,
    max_pending: usize,
    mode: u32,
    conn: ConnOptions,
}

impl Default for ListenerBuilder {
    fn default() -> Self {
        ListenerBuilder {
            key: None,
            legacy: false,
            keyless_tcp: false,
            keepalive: None,
            backlog: 128,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_pending: 1024,
            mode: 0o600,
            conn: ConnOptions::default(),
        }
    }
}

impl ListenerBuilder {
    /// Requires clients to prove they hold `key` (and proves it to them). Without a key there
    /// is no handshake at all, as in CPython: anyone who can connect is accepted. That is
    /// allowed for Unix path sockets (the socket file's mode, 0600 by default, decides who can
    /// connect), abstract Unix sockets (no protection at all: any process in the same network
    /// namespace can connect) and named pipes, but refused for TCP unless
    /// [`allow_unauthenticated_tcp`](Self::allow_unauthenticated_tcp) says otherwise.
    pub fn authkey(mut self, key: impl Into<AuthKey>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Allows binding a TCP address without an [`authkey`](Self::authkey) (default: refused,
    /// unlike CPython). Without a key, anyone who can reach the port is accepted and can send
    /// any message; use it only on a network where that is acceptable.
    ///
    /// ```
    /// use procwire::{Address, Family, Listener};
    /// let addr = Address::fresh(Family::Tcp)?;
    /// assert!(Listener::builder().bind(&addr).is_err());
    /// let _open = Listener::builder().allow_unauthenticated_tcp(true).bind(&addr)?;
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn allow_unauthenticated_tcp(mut self, allow: bool) -> Self {
        self.keyless_tcp = allow;
        self
    }

    /// Turns on TCP keepalive for every accepted TCP connection, probing after `idle` of
    /// silence, so that a client that vanished without closing (host down, link cut) is
    /// eventually reported by a receive (see [`Connection::set_keepalive`]). Default: off.
    /// No effect on other transports.
    pub fn tcp_keepalive(mut self, idle: Option<Duration>) -> Self {
        self.keepalive = idle;
        self
    }

    /// Also accepts the HMAC-MD5 handshake of CPython 3.11 and older. MD5 is weak: enable it
    /// only to talk to such peers.
    #[cfg(feature = "legacy-md5")]
    pub fn legacy_md5(mut self, allow: bool) -> Self {
        self.legacy = allow;
        self
    }

    /// The length of the kernel's queue of connections not yet accepted (default 128).
    pub fn backlog(mut self, backlog: u32) -> Self {
        self.backlog = backlog.min(i32::MAX as u32) as i32;
        self
    }

    /// How long a client may take to complete the handshake (default 10 s).
    pub fn handshake_timeout(mut self, t: Duration) -> Self {
        self.handshake_timeout = t;
        self
    }

    /// How many handshakes may be under way at once (default 1024), so that a flood of
    /// silent connections costs at most this many descriptors (and, within one round of the
    /// listener, up to 64 newly accepted ones more).
    ///
    /// A new connection that finds the table full is still accepted: the pending handshake
    /// that has gone longest without progress (since it was accepted or last sent bytes) is
    /// dropped for it, and reported by [`accept`](Listener::accept) as an [`Error::Timeout`].
    /// An honest client moves its handshake forward at every round trip, so it is dropped only
    /// if more than `n` connections arrive or move within one of its round trips; peers that
    /// connect and stay silent cannot make it wait for their handshake timeout.
    pub fn max_pending_handshakes(mut self, n: usize) -> Self {
        self.max_pending = n.max(1);
        self
    }

    /// The largest message accepted connections receive (default 64 MiB).
    pub fn max_message_size(mut self, max: u64) -> Self {
        self.conn.max_message_size = max;
        self
    }

    /// Permission bits of the socket file of a Unix path address (default `0o600`: only the
    /// owner may connect). The file has exactly these before anyone can connect, whatever the
    /// umask, and they are never set through a symbolic link: a path that is no longer our
    /// socket when the mode is set makes `bind` fail.
    pub fn socket_mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// The read timeout of accepted connections (default none).
    pub fn read_timeout(mut self, t: Option<Duration>) -> Self {
        self.conn.read_timeout = t;
        self
    }

    /// The write timeout of accepted connections (default none).
    pub fn write_timeout(mut self, t: Option<Duration>) -> Self {
        self.conn.write_timeout = t;
        self
    }

    /// Binds and listens on `addr`.
    ///
    /// A Unix socket file left behind by a dead process is removed and bound again; one that a
    /// live listener answers on is an [`io::ErrorKind::AddrInUse`] error, and a path that is
    /// not a socket is never removed. The file is removed when the listener is dropped.
    ///
    /// A TCP address without an authkey is an [`Error::Io`] of kind
    /// [`io::ErrorKind::InvalidInput`] unless
    /// [`allow_unauthenticated_tcp`](Self::allow_unauthenticated_tcp) was set.
    pub fn bind(self, addr: &Address) -> Result<Listener> {
        self.check_keyless(addr)?;
        let raw = RawListener::bind(
            addr,
            &crate::transport::BindOptions { backlog: self.backlog, mode: self.mode },
        )?;
        let address = raw.local_addr().unwrap_or_else(|_| addr.clone());
        Ok(Listener {
            raw,
            address,
            opts: self,
            state: Mutex::new(State::default()),
            turn: Condvar::new(),
            last_peer: Mutex::new(None),
            ticks: AtomicU64::new(0),
        })
    }
}

impl ListenerBuilder {
    /// Refuses a TCP address without a key unless that was allowed.
    pub(crate) fn check_keyless(&self, addr: &Address) -> Result<()> {
        if self.key.is_none() && !self.keyless_tcp && matches!(addr, Address::Tcp { .. }) {
            return Err(keyless_tcp_refused(addr, "listen on", "ListenerBuilder"));
        }
        Ok(())
    }
}

struct Pending {
    conn: Connection,
    hs: Handshake,
    deadline: Option<Instant>,
    peer: Option<Address>,
    /// Who connected, for error messages when there is no address.
    creds: Option<PeerCredentials>,
    /// When it was accepted or last sent bytes, as a number from [`Listener::tick`] (no two
    /// alike, unlike clock readings): the lowest is dropped first when the table is full.
    progress: u64,
    /// Whether the client sent anything yet. One that hangs up before saying a word (a
    /// liveness probe, a port scan, a stale-socket check) is dropped without an error.
    heard: bool,
}

/// A client that went away: end of stream, reset, or a broken pipe on our first write.
fn hung_up(e: &Error) -> bool {
    match e {
        Error::Closed => true,
        Error::Io(io) => matches!(
            io.kind(),
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
        ),
        _ => false,
    }
}

#[derive(Default)]
struct State {
    /// Handshakes under way. While a thread drives them they are out of here, in its hands.
    pending: Vec<Pending>,
    /// Finished handshakes (and per-client errors) waiting for an `accept` to take them.
    ready: Found,
    /// Whether a thread is driving: only one polls at a time, the others wait for its results.
    driving: bool,
    /// Threads waiting for the driver's results: with none, nobody needs waking.
    waiting: usize,
    /// After the OS ran out of descriptors or memory, the listening socket rests until then.
    accept_rest_until: Option<Instant>,
    /// When the last driving round ended. Handshakes only move while some thread is inside
    /// `accept`, so their deadlines are pushed back by the time nobody was: a server that
    /// serves one client before accepting the next does not fail the handshakes it started.
    idle_since: Option<Instant>,
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
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("address", &self.address)
            .field("authkey", &self.opts.key.is_some())
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
    pub fn bind(addr: &Address) -> Result<Listener> {
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
    /// # let listener = procwire::Listener::builder().authkey("secret").bind(&"tcp:127.0.0.1:0".parse()?)?;
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

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn accept_until(&self, deadline: Option<Instant>) -> Result<Connection> {
        let mut st = self.lock();
        loop {
            if let Some(r) = st.ready.pop_front() {
                let (conn, peer) = r?;
                *self.last_peer.lock().unwrap_or_else(|p| p.into_inner()) = peer;
                return Ok(conn);
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| d <= now) {
                return Err(Error::Timeout("waiting for a connection".into()));
            }
            if st.driving {
                // Another thread is polling; it hands over what it finds, or the turn.
                st.waiting += 1;
                st = match deadline {
                    None => self.turn.wait(st).unwrap_or_else(|p| p.into_inner()),
                    Some(d) => self.turn.wait_timeout(st, d - now).unwrap_or_else(|p| p.into_inner()).0,
                };
                st.waiting -= 1;
                continue;
            }
            st.driving = true;
            let mut pending = std::mem::take(&mut st.pending);
            if let Some(idle) = st.idle_since.take() {
                let paused = now.saturating_duration_since(idle);
                for p in &mut pending {
                    p.deadline = p.deadline.and_then(|d| d.checked_add(paused));
                }
            }
            let rest_until = st.accept_rest_until.filter(|&t| t > now);
            drop(st);
            let mut found = VecDeque::new();
            let rested = self.drive_round(&mut pending, &mut found, deadline, rest_until);
            st = self.lock();
            st.pending = pending;
            st.ready.extend(found);
            st.driving = false;
            st.idle_since = Some(Instant::now());
            if rested.is_some() {
                st.accept_rest_until = rested;
            }
            if st.waiting > 0 {
                self.turn.notify_all();
            }
        }
    }

    /// One round: wait until the listener or a pending handshake is readable (or a deadline
    /// passes), move every readable handshake forward, take new connections, then expire the
    /// handshakes whose time is up. Returns a rest period for the listening socket after the
    /// OS refused an accept for lack of resources.
    fn drive_round(
        &self,
        pending: &mut Vec<Pending>,
        found: &mut Found,
        deadline: Option<Instant>,
        rest_until: Option<Instant>,
    ) -> Option<Instant> {
        // A full table does not stop accepting: a newcomer takes the place of the handshake that
        // went longest without progress, so silent peers cannot queue honest ones behind them.
        let listen = rest_until.is_none();
        let wake = pending.iter().filter_map(|p| p.deadline).chain(deadline).chain(rest_until).min();
        let streams: Vec<&Stream> = pending.iter().map(|p| p.conn.stream()).collect();
        let (listener_ready, ready) = match wait_any(listen.then_some(&self.raw), &streams, wake) {
            Ok(r) => r,
            Err(e) => {
                found.push_back(Err(Error::Io(e)));
                return None;
            }
        };
        // Highest index first, so that removals do not move the ones still to visit.
        for i in ready.into_iter().rev() {
            self.drive(pending, found, i);
        }
        let mut rest = None;
        if listener_ready {
            // At most a table's worth per round, so that no connection is dropped in the round
            // that accepted it (those accepted last have the highest progress numbers).
            for _ in 0..ACCEPT_BURST.min(self.opts.max_pending) {
                match self.raw.try_accept() {
                    Ok(Some((stream, peer))) => self.start(pending, found, stream, peer),
                    Ok(None) => break,
                    Err(e) => {
                        // Out of descriptors or memory: the socket stays readable, so rest it
                        // instead of spinning, and say so once.
                        rest = Instant::now().checked_add(RESOURCE_REST);
                        found.push_back(Err(Error::Io(io::Error::new(
                            e.kind(),
                            format!("accept failed, pausing for {RESOURCE_REST:?}: {e}"),
                        ))));
                        break;
                    }
                }
            }
        }
        self.evict_idlest(pending, found);
        // Expire only after reading, so a client whose last message is already here is served.
        let now = Instant::now();
        let mut i = 0;
        while i < pending.len() {
            if pending[i].deadline.is_some_and(|d| d <= now) {
                let p = pending.swap_remove(i);
                let e = Error::Timeout(format!("in the handshake, {}", p.hs.waiting_for()));
                found.push_back(Err(with_peer(e, &p.peer, p.creds)));
            } else {
                i += 1;
            }
        }
        rest
    }

    /// A number larger than all handed out before: the order of accepts and progress.
    fn tick(&self) -> u64 {
        self.ticks.fetch_add(1, Ordering::Relaxed)
    }

    /// Past `max_pending`, drops the pending handshakes that went longest without progress.
    /// One selection per round, linear in the table's size.
    fn evict_idlest(&self, pending: &mut Vec<Pending>, found: &mut Found) {
        let max = self.opts.max_pending;
        let excess = pending.len().saturating_sub(max);
        if excess == 0 {
            return;
        }
        let mut order: Vec<usize> = (0..pending.len()).collect();
        order.select_nth_unstable_by_key(excess - 1, |&i| pending[i].progress);
        let mut victims = order[..excess].to_vec();
        // Highest index first: swap_remove then moves only entries that stay.
        victims.sort_unstable_by(|a, b| b.cmp(a));
        for i in victims {
            let p = pending.swap_remove(i);
            let e = Error::Timeout(format!(
                "in the handshake, {}: dropped for a new connection, as {max} handshakes were \
                 pending (max_pending_handshakes) and this one had gone longest without progress",
                p.hs.waiting_for()
            ));
            found.push_back(Err(with_peer(e, &p.peer, p.creds)));
        }
    }

    fn start(&self, pending: &mut Vec<Pending>, found: &mut Found, stream: Stream, peer: Option<Address>) {
        // An unnamed Unix socket is named in errors by its process.
        let creds = if peer.is_none() { stream.peer_credentials() } else { None };
        if let Some(idle) = self.opts.keepalive
            && let Err(e) = stream.set_keepalive(Some(idle))
        {
            found.push_back(Err(with_peer(Error::Io(e), &peer, creds)));
            return;
        }
        let mut conn = Connection::for_handshake(stream);
        let Some(key) = &self.opts.key else {
            conn.finish_handshake(&self.opts.conn);
            found.push_back(Ok((conn, peer)));
            return;
        };
        let mut hs = Handshake::new(Role::Listener, key.clone()).allow_legacy_md5(self.opts.legacy);
        let deadline = Instant::now().checked_add(self.opts.handshake_timeout);
        conn.set_write_timeout(Some(self.opts.handshake_timeout));
        let sent = hs.start().and_then(|m| m.map_or(Ok(()), |m| conn.send_bytes(&m)));
        match sent {
            Ok(()) => {
                pending.push(Pending { conn, hs, deadline, peer, creds, progress: self.tick(), heard: false })
            }
            // Gone before our challenge went out. Silent only if it never said a word either
            // (a probe); one that wrote something first is reported like any other hang-up.
            Err(e) if hung_up(&e) => {
                if matches!(conn.fill_ready(), Ok(true)) {
                    let e = Error::AuthenticationFailed(format!(
                        "the client hung up during the handshake ({e}) while {}",
                        hs.waiting_for()
                    ));
                    found.push_back(Err(with_peer(e, &peer, creds)));
                }
            }
            Err(e) => found.push_back(Err(with_peer(e, &peer, creds))),
        }
    }

    /// Moves the handshake of pending connection `i` forward after its socket became readable.
    fn drive(&self, pending: &mut Vec<Pending>, found: &mut Found, i: usize) {
        let p = &mut pending[i];
        let outcome = match p.conn.fill_ready() {
            Ok(false) => Err(Error::Closed),
            Err(e) => Err(e),
            Ok(true) => {
                p.heard = true;
                p.progress = self.tick();
                step_handshake(p)
            }
        };
        match outcome {
            Ok(false) => {}
            Err(e) if hung_up(&e) && !p.heard => {
                pending.swap_remove(i);
            }
            Err(e) if hung_up(&e) => {
                let p = pending.swap_remove(i);
                let e = Error::AuthenticationFailed(format!(
                    "the client hung up during the handshake ({e}) while {}",
                    p.hs.waiting_for()
                ));
                found.push_back(Err(with_peer(e, &p.peer, p.creds)));
            }
            Ok(true) => {
                let mut p = pending.swap_remove(i);
                p.conn.finish_handshake(&self.opts.conn);
                found.push_back(Ok((p.conn, p.peer)));
            }
            Err(e) => {
                let mut p = pending.swap_remove(i);
                if let Some(f) = p.hs.failure_message() {
                    let _ = p.conn.send_bytes(&f);
                }
                found.push_back(Err(with_peer(e, &p.peer, p.creds)));
            }
        }
    }
}

/// Accepted connections and per-client errors, in the order they happened.
type Found = VecDeque<Result<(Connection, Option<Address>)>>;

/// Batching limit while handshake replies are gathered into one write (they are far smaller).
const HANDSHAKE_BATCH: usize = 4 * crate::auth::MAX_HANDSHAKE_MESSAGE as usize;

/// Feeds every buffered handshake message to the state machine; `Ok(true)` when done.
/// Replies to messages that arrived together (a client's answer and its early challenge)
/// leave together, in one write.
fn step_handshake(p: &mut Pending) -> Result<bool> {
    p.conn.set_batching(Some(HANDSHAKE_BATCH));
    let r = feed_handshake(p);
    p.conn.set_batching(None);
    let flushed = p.conn.flush();
    r.and_then(|done| flushed.map(|()| done))
}

/// The loop of [`step_handshake`], with the replies queued.
fn feed_handshake(p: &mut Pending) -> Result<bool> {
    while let Some(msg) = p.conn.buffered_frame()? {
        if let Some(reply) = p.hs.on_message(&msg)?.send {
            p.conn.send_bytes(&reply)?;
        }
        if p.hs.status() == Status::Done {
            return Ok(true);
        }
    }
    Ok(false)
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

/// Options for [`Client::connect`]; get one from [`Client::builder`].
///
/// ```no_run
/// use std::time::Duration;
/// use procwire::Client;
/// let conn = Client::builder()
///     .authkey(procwire::AuthKey::from_file("/etc/myapp/key")?)
///     .connect_timeout(Duration::from_secs(5))
///     .wait_for_listener(Duration::from_secs(30))
///     .connect(&"tcp:10.0.0.5:7000".parse()?)?;
/// # Ok::<(), procwire::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    key: Option<AuthKey>,
    legacy: bool,
    keyless_tcp: bool,
    keepalive: Option<Duration>,
    connect_timeout: Duration,
    wait: Option<Duration>,
    handshake_timeout: Duration,
    conn: ConnOptions,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            key: None,
            legacy: false,
            keyless_tcp: false,
            keepalive: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            wait: None,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            conn: ConnOptions::default(),
        }
    }
}

impl ClientBuilder {
    /// Answers the listener's challenge with `key` and challenges it back. Without a key
    /// there is no handshake (as in CPython), which is refused for TCP addresses unless
    /// [`allow_unauthenticated_tcp`](Self::allow_unauthenticated_tcp) says otherwise.
    pub fn authkey(mut self, key: impl Into<AuthKey>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Allows connecting to a TCP address without an [`authkey`](Self::authkey) (default:
    /// refused, unlike CPython). Without a key the client cannot tell the listener it meant
    /// from anyone else who took the port, and the listener accepts anyone.
    pub fn allow_unauthenticated_tcp(mut self, allow: bool) -> Self {
        self.keyless_tcp = allow;
        self
    }

    /// Turns on TCP keepalive, probing after `idle` of silence, so that a listener that
    /// vanished without closing (host down, link cut) is eventually reported by a receive
    /// (see [`Connection::set_keepalive`]). Default: off. No effect on other transports.
    pub fn tcp_keepalive(mut self, idle: Option<Duration>) -> Self {
        self.keepalive = idle;
        self
    }

    /// Also accepts the HMAC-MD5 handshake of CPython 3.11 and older.
    #[cfg(feature = "legacy-md5")]
    pub fn legacy_md5(mut self, allow: bool) -> Self {
        self.legacy = allow;
        self
    }

    /// How long one connection attempt may take (default 20 s).
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// Keeps retrying for up to `t` while nothing listens at the address yet (connection
    /// refused, socket file missing, backlog full), for a listener that is still starting.
    pub fn wait_for_listener(mut self, t: Duration) -> Self {
        self.wait = Some(t);
        self
    }

    /// How long the handshake may take (default 10 s).
    pub fn handshake_timeout(mut self, t: Duration) -> Self {
        self.handshake_timeout = t;
        self
    }

    /// The largest message the connection receives (default 64 MiB).
    pub fn max_message_size(mut self, max: u64) -> Self {
        self.conn.max_message_size = max;
        self
    }

    /// The connection's read timeout (default none).
    pub fn read_timeout(mut self, t: Option<Duration>) -> Self {
        self.conn.read_timeout = t;
        self
    }

    /// The connection's write timeout (default none).
    pub fn write_timeout(mut self, t: Option<Duration>) -> Self {
        self.conn.write_timeout = t;
        self
    }

    /// Connects to `addr` and runs the handshake.
    ///
    /// A TCP address without an authkey is an [`Error::Io`] of kind
    /// [`io::ErrorKind::InvalidInput`] unless
    /// [`allow_unauthenticated_tcp`](Self::allow_unauthenticated_tcp) was set.
    pub fn connect(self, addr: &Address) -> Result<Connection> {
        self.check_keyless(addr)?;
        let stream = self.open(addr)?;
        if let Some(idle) = self.keepalive {
            stream.set_keepalive(Some(idle))?;
        }
        let mut conn = Connection::for_handshake(stream);
        match &self.key {
            Some(key) => self.handshake(&mut conn, key, addr)?,
            None => conn.refuse_challenge(),
        }
        conn.finish_handshake(&self.conn);
        Ok(conn)
    }

    /// Refuses a TCP address without a key unless that was allowed.
    pub(crate) fn check_keyless(&self, addr: &Address) -> Result<()> {
        if self.key.is_none() && !self.keyless_tcp && matches!(addr, Address::Tcp { .. }) {
            return Err(keyless_tcp_refused(addr, "connect to", "ClientBuilder"));
        }
        Ok(())
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
                    return Err(Error::Io(io::Error::new(
                        e.kind(),
                        format!("cannot connect to {addr}: {e}"),
                    )));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn handshake(&self, conn: &mut Connection, key: &AuthKey, addr: &Address) -> Result<()> {
        let mut hs = Handshake::new(Role::Client, key.clone()).allow_legacy_md5(self.legacy);
        let deadline = Instant::now().checked_add(self.handshake_timeout);
        conn.set_write_timeout(Some(self.handshake_timeout));
        let peer = Some(addr.clone());
        while hs.status() != Status::Done {
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
            match hs.on_message(&msg) {
                Ok(out) => match (out.send, hs.challenge_early()?) {
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
        Ok(())
    }
}

/// Connects to a [`Listener`], like CPython's `multiprocessing.connection.Client`.
///
/// ```no_run
/// let mut conn = procwire::Client::builder().authkey("secret").connect(&"unix:/run/app.sock".parse()?)?;
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
    pub fn connect(addr: &Address) -> Result<Connection> {
        Client::builder().connect(addr)
    }
}
