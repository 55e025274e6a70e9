//! Accepting: the table of handshakes under way, driven in rounds, and what they produce.

use std::collections::VecDeque;
use std::sync::MutexGuard;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::steps::Steps;
use super::{HANDSHAKE_BATCH, Listener, hung_up, with_peer};
use crate::auth::Role;
use crate::connection::PeerCredentials;
use crate::error::io_context;
use crate::trace;
use crate::transport::{Stream, wait_any};
use crate::{Address, Connection, Error, Result};

/// Most connections taken from the accept queue in one round, so that handshakes already
/// under way keep moving during a flood of new connections.
const ACCEPT_BURST: usize = 64;
/// How long the listening socket rests after the OS refused an accept for lack of resources.
const RESOURCE_REST: Duration = Duration::from_millis(100);

pub(super) struct Pending {
    conn: Connection,
    hs: Steps,
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
    /// What the client's challenge said about shared memory (see `shm.rs`).
    shm: Option<super::shm::Peer>,
}

#[derive(Default)]
pub(super) struct State {
    /// Handshakes under way. While a thread drives them they are out of here, in its hands.
    pending: Vec<Pending>,
    /// Finished handshakes (and per-client errors) waiting for an `accept` to take them.
    pub(super) ready: Found,
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

impl Listener {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn accept_until(&self, deadline: Option<Instant>) -> Result<Connection> {
        let nonblocking = self.is_nonblocking();
        let mut drove = false;
        let mut st = self.lock();
        loop {
            if let Some(r) = st.ready.pop_front() {
                let (conn, peer) = r?;
                *self.last_peer.lock().unwrap_or_else(|p| p.into_inner()) = peer;
                return Ok(conn);
            }
            // Nonblocking: one round without waiting, and none if another thread is driving.
            if nonblocking && (drove || st.driving) {
                return Err(super::poll::would_block());
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
            // A nonblocking listener's caller polls between calls: its handshakes were not
            // paused, so their deadlines stand.
            if let Some(idle) = st.idle_since.take()
                && !nonblocking
            {
                let paused = now.saturating_duration_since(idle);
                for p in &mut pending {
                    p.deadline = p.deadline.and_then(|d| d.checked_add(paused));
                }
            }
            let rest_until = st.accept_rest_until.filter(|&t| t > now);
            if st.accept_rest_until.is_some() && rest_until.is_none() {
                st.accept_rest_until = None;
                self.watch_listening(true);
            }
            drop(st);
            let mut found = VecDeque::new();
            let round_deadline = if nonblocking { Some(now) } else { deadline };
            let rested = self.drive_round(&mut pending, &mut found, round_deadline, rest_until);
            drove = true;
            st = self.lock();
            st.pending = pending;
            st.ready.extend(found);
            st.driving = false;
            st.idle_since = Some(Instant::now());
            if rested.is_some() {
                if st.accept_rest_until.is_none() {
                    self.watch_listening(false);
                }
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
                trace::event!(ERROR, listener = %self.address, error = %e, "waiting for clients failed");
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
                        trace::event!(WARN, listener = %self.address, error = %e, "accept failed, pausing");
                        found.push_back(Err(Error::Io(io_context(
                            e,
                            format_args!("accept failed, pausing for {RESOURCE_REST:?}"),
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
                let p = self.take(pending, i);
                let e = Error::Timeout(format!("in the handshake, {}", p.hs.waiting_for()));
                refuse(self, found, with_peer(e, &p.peer, p.creds));
            } else {
                i += 1;
            }
        }
        rest
    }

    /// Removes pending handshake `i` from the table and from the poll set. Every way out of the
    /// table goes through here: the set tracks the socket itself, not its descriptor number, so
    /// an entry left behind would outlive a close while a forked child still holds the socket,
    /// and a hung-up one would keep the listener's descriptor readable for nothing.
    fn take(&self, pending: &mut Vec<Pending>, i: usize) -> Pending {
        let p = pending.swap_remove(i);
        self.unwatch(&p.conn);
        p
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
            let p = self.take(pending, i);
            let e = Error::Timeout(format!(
                "in the handshake, {}: dropped for a new connection, as {max} handshakes were \
                 pending (max_pending_handshakes) and this one had gone longest without progress",
                p.hs.waiting_for()
            ));
            refuse(self, found, with_peer(e, &p.peer, p.creds));
        }
    }

    fn start(&self, pending: &mut Vec<Pending>, found: &mut Found, stream: Stream, peer: Option<Address>) {
        // An unnamed Unix socket is named in errors by its process.
        let creds = if peer.is_none() { stream.peer_credentials() } else { None };
        trace::event!(DEBUG, listener = %self.address, peer = %super::describe_peer(&peer, creds), "accepted a connection");
        if let Some(idle) = self.opts.endpoint.keepalive
            && let Err(e) = stream.set_keepalive(Some(idle))
        {
            refuse(self, found, with_peer(Error::Io(e), &peer, creds));
            return;
        }
        let mut conn = Connection::for_handshake(stream);
        let Some(key) = &self.opts.endpoint.key else {
            let deadline = Instant::now().checked_add(self.opts.endpoint.handshake_timeout);
            let mut conn = match super::shm::finish(
                conn,
                &self.address,
                true,
                None,
                self.opts.endpoint.shm_ring,
                deadline,
            ) {
                Ok(conn) => conn,
                Err(e) => return refuse(self, found, with_peer(e, &peer, creds)),
            };
            conn.finish_handshake(&self.opts.endpoint.conn);
            trace::event!(INFO, listener = %self.address, peer = %super::describe_peer(&peer, creds), "accepted without a handshake (no authkey)");
            found.push_back(Ok((conn, peer)));
            return;
        };
        let ep = &self.opts.endpoint;
        let mut hs = match Steps::new(Role::Listener, key, ep.legacy, ep.encrypt, |random| {
            super::shm::mark(&self.address, ep.shm_ring, random)
        }) {
            Ok(hs) => hs,
            Err(e) => return refuse(self, found, with_peer(e, &peer, creds)),
        };
        let deadline = Instant::now().checked_add(self.opts.endpoint.handshake_timeout);
        conn.set_write_timeout(Some(self.opts.endpoint.handshake_timeout));
        let sent = hs.start().and_then(|m| m.map_or(Ok(()), |m| conn.send_bytes(&m)));
        match sent.and_then(|()| self.watch(&conn).map_err(Error::Io)) {
            Ok(()) => pending.push(Pending {
                conn,
                hs,
                deadline,
                peer,
                creds,
                progress: self.tick(),
                heard: false,
                shm: None,
            }),
            // Gone before our challenge went out. Silent only if it never said a word either
            // (a probe); one that wrote something first is reported like any other hang-up.
            Err(e) if hung_up(&e) => {
                if matches!(conn.fill_ready(), Ok(true)) {
                    let e = Error::AuthenticationFailed(format!(
                        "the client hung up during the handshake ({e}) while {}",
                        hs.waiting_for()
                    ));
                    refuse(self, found, with_peer(e, &peer, creds));
                } else {
                    trace::event!(DEBUG, listener = %self.address, peer = %super::describe_peer(&peer, creds), "a client hung up without a word");
                }
            }
            Err(e) => refuse(self, found, with_peer(e, &peer, creds)),
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
                let p = self.take(pending, i);
                trace::event!(DEBUG, listener = %self.address, peer = %super::describe_peer(&p.peer, p.creds), "a client hung up without a word");
                drop(p);
            }
            Err(e) if hung_up(&e) => {
                let p = self.take(pending, i);
                let e = Error::AuthenticationFailed(format!(
                    "the client hung up during the handshake ({e}) while {}",
                    p.hs.waiting_for()
                ));
                refuse(self, found, with_peer(e, &p.peer, p.creds));
            }
            Ok(true) => {
                let p = self.take(pending, i);
                let finished = p.hs.finish(p.conn).and_then(|conn| {
                    let ring = self.opts.endpoint.shm_ring;
                    super::shm::finish(conn, &self.address, true, p.shm, ring, p.deadline)
                });
                match finished {
                    Ok(mut conn) => {
                        conn.finish_handshake(&self.opts.endpoint.conn);
                        trace::event!(INFO, listener = %self.address, peer = %super::describe_peer(&p.peer, p.creds), "handshake succeeded");
                        found.push_back(Ok((conn, p.peer)));
                    }
                    Err(e) => refuse(self, found, with_peer(e, &p.peer, p.creds)),
                }
            }
            Err(e) => {
                let mut p = self.take(pending, i);
                if let Some(f) = p.hs.failure_message() {
                    let _ = p.conn.send_bytes(&f);
                }
                refuse(self, found, with_peer(e, &p.peer, p.creds));
            }
        }
    }
}

/// Accepted connections and per-client errors, in the order they happened.
type Found = VecDeque<Result<(Connection, Option<Address>)>>;

/// Records a client's failed handshake (already naming the peer) for `accept`.
fn refuse(listener: &Listener, found: &mut Found, e: Error) {
    trace::event!(WARN, listener = %listener.address, error = %e, "handshake failed");
    let _ = listener;
    found.push_back(Err(e));
}

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
        if let Some(marked) = super::shm::marked(&msg) {
            p.shm = Some(marked);
        }
        if let Some(reply) = p.hs.on_message(&msg)? {
            p.conn.send_bytes(&reply)?;
        }
        if p.hs.is_done() {
            return Ok(true);
        }
    }
    Ok(false)
}
