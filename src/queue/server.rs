//! The queue's server: its items, the local handles' direct access to them, and the threads
//! that serve other processes' handles (an acceptor, and a reader and a writer per connection).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::wire::{self, Info};
use crate::RemoteKind;
use crate::shared::AtomicValue;
use crate::trace;
use crate::util::{deadline_of, lock};
use crate::{Address, AuthKey, Connection, Error, Listener, Receiver, Result, Sender};

/// How often an idle server thread looks whether the queue was dropped.
const TICK: Duration = Duration::from_millis(500);
/// Answers and items waiting for a connection's writer beyond which its reader stops reading.
const OUT_LIMIT: usize = 4096;
/// How long a connection's reader pauses after a batch of acknowledgements only.
const ACK_GATHER: Duration = Duration::from_micros(50);
/// Stack size of the per-connection threads (they decode only small control values).
const STACK: usize = 256 << 10;

/// [`Receiver::recv_batch`], trying what already arrived first: under load it usually has,
/// and a read with a deadline in the future waits for readiness before it reads.
pub(crate) fn read_batch(
    rx: &mut Receiver,
    deadline: Option<Instant>,
    f: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    match deadline {
        Some(d) if d > Instant::now() => match rx.recv_batch(Some(Instant::now()), f) {
            Err(Error::Timeout(_)) => rx.recv_batch(deadline, f),
            r => r,
        },
        _ => rx.recv_batch(deadline, f),
    }
}

/// A copy of an item that arrived, or an error for its client if memory for it cannot be had
/// (the connection is dropped; the server goes on).
fn copy_item(body: &[u8]) -> Result<Bytes> {
    let mut v = Vec::new();
    v.try_reserve_exact(body.len()).map_err(|_| {
        Error::Io(std::io::Error::new(
            std::io::ErrorKind::OutOfMemory,
            format!("no memory for a queue item of {} bytes", body.len()),
        ))
    })?;
    v.extend_from_slice(body);
    Ok(Bytes::from(v))
}

/// What a connection's writer thread sends next, in order.
enum Out {
    Frame(Vec<u8>),
    Item(Bytes),
    /// `JOINED` answering this many `JOIN`s.
    Joined(u64),
    /// A message whose body is a count (`SIZE`, `GRANT`), or none (`CANCELLED`, `UNRESERVED`):
    /// the frequent answers, kept without an allocation of their own.
    Count(u8, u64),
    Bare(u8),
}

/// A connected handle of another process (or of a handle that was sent and came back).
struct Conn {
    /// How many more items the client asked for (`WANT`) and has not received.
    credit: u64,
    in_hungry: bool,
    /// Items sent (or about to be), oldest first, that the client has not acknowledged.
    unacked: VecDeque<Bytes>,
    out: Vec<Out>,
    writer_waiting: bool,
    /// The reader waits for the writer to drain `out` (a client that asks without reading).
    reader_waiting: bool,
    cv: Arc<Condvar>,
    /// Slots asked for with `RESERVE` and not granted yet.
    reserve_pending: u64,
    in_reserve_queue: bool,
    /// Slots granted and not used by a `PUT` yet.
    reserved: u64,
    /// `JOIN`s waiting for the count of unfinished tasks to reach zero (a count: a flood of
    /// them costs nothing, and is answered by one `JOINED`).
    joining: u64,
    /// A write to it failed: it gets nothing more.
    dead: bool,
    /// The client's acknowledgement counter in shared memory, and its value when last read.
    acks: Option<AtomicValue<u64>>,
    acks_seen: u64,
}

impl Conn {
    /// Forgets the items the client counted as taken in its shared counter since the last
    /// look; returns how many. A count beyond what it was sent is a protocol error.
    fn sync_acks(&mut self) -> Result<u64> {
        let Some(acks) = &self.acks else { return Ok(0) };
        let now = acks.atomic().load(Ordering::Acquire);
        let n = now.wrapping_sub(self.acks_seen);
        if n > self.unacked.len() as u64 {
            return Err(Error::Protocol(
                "the shared acknowledgement count ran ahead of the items sent".into(),
            ));
        }
        self.acks_seen = now;
        self.unacked.drain(..n as usize);
        Ok(n)
    }

    fn push(&mut self, out: Out) {
        self.out.push(out);
        if self.writer_waiting {
            self.cv.notify_all();
        }
    }

    /// Answers `n` more `JOIN`s. Answers not written yet merge into one `JOINED`, so a client
    /// that sends JOINs without reading the answers makes nothing pile up here.
    fn push_joined(&mut self, n: u64) {
        if let Some(Out::Joined(k)) = self.out.last_mut() {
            *k = k.saturating_add(n);
            return;
        }
        self.push(Out::Joined(n));
    }

    fn push_count(&mut self, op: u8, n: u64) {
        self.push(Out::Count(op, n));
    }

    fn push_value<V: serde::Serialize>(&mut self, op: u8, v: &V) {
        let mut f = Vec::new();
        if wire::push_value(&mut f, op, v).is_ok() {
            // The frame without its header: the writer adds one to every frame.
            self.push(Out::Frame(f.split_off(4)));
        }
    }
}

#[derive(Default)]
pub(crate) struct State {
    items: VecDeque<Bytes>,
    unacked_total: u64,
    reserved_total: u64,
    unfinished: u64,
    conns: HashMap<u64, Conn>,
    hungry: VecDeque<u64>,
    reserve_queue: VecDeque<u64>,
    next_id: u64,
    /// `FINISH` came (or a local handle finished the queue): once `items` is empty, consumers
    /// are told so rather than left waiting.
    finished: bool,
    pub(crate) local_getters: usize,
    pub(crate) local_putters: usize,
    pub(crate) local_joiners: usize,
}

impl State {
    /// Whether the queue is finished and has nothing left to hand out: a local get ends.
    pub(crate) fn drained(&self) -> bool {
        self.finished && self.items.is_empty()
    }

    /// Items in the queue or handed to a consumer's prefetch and not yet taken by it.
    pub(crate) fn qsize(&mut self) -> u64 {
        self.sync_acks();
        self.items.len() as u64 + self.unacked_total
    }

    fn occupancy(&mut self) -> u64 {
        self.qsize() + self.reserved_total
    }

    /// Reads every shared acknowledgement counter. A connection whose count is impossible
    /// keeps its items; its reader drops it at its next message.
    fn sync_acks(&mut self) {
        for c in self.conns.values_mut() {
            if let Ok(n) = c.sync_acks() {
                self.unacked_total -= n;
            }
        }
    }
}

pub(crate) struct Server {
    pub(crate) st: Mutex<State>,
    /// Local getters, putters and joiners wait here.
    pub(crate) local_cv: Condvar,
    pub(crate) maxsize: Option<u64>,
    pub(crate) joinable: bool,
    stop: AtomicBool,
    pub(crate) address: Address,
    pub(crate) key: AuthKey,
    /// Whether its listener encrypts (handles of it connect encrypted).
    pub(crate) encrypted: bool,
    /// The shared-memory listener's address beside `address`, for handles on this host.
    pub(crate) shm: Option<Address>,
    pub(crate) max_item_size: u64,
}

impl Server {
    /// Binds `address` (and a shared-memory listener beside it, when `shared_memory` says so
    /// and it works here) and starts the acceptor threads.
    pub(crate) fn start(
        address: &Address,
        key: AuthKey,
        encrypted: bool,
        shared_memory: bool,
        maxsize: Option<u64>,
        joinable: bool,
        max_item_size: u64,
    ) -> Result<Arc<Server>> {
        // A message is an opcode and an item.
        let builder = Listener::builder()
            .authkey(key.clone())
            .encrypt_if(encrypted)
            .max_message_size(max_item_size + 1);
        let listener = builder.clone().bind(address)?;
        let beside = crate::listener::beside::bind_beside(&builder, shared_memory, encrypted);
        let server = Arc::new(Server {
            st: Mutex::new(State::default()),
            local_cv: Condvar::new(),
            maxsize,
            joinable,
            stop: AtomicBool::new(false),
            address: listener.address().clone(),
            key,
            encrypted,
            shm: beside.as_ref().map(|l| l.address().clone()),
            max_item_size,
        });
        for listener in std::iter::once(listener).chain(beside) {
            let s = server.clone();
            thread::Builder::new()
                .name("procwire-queue-accept".into())
                .stack_size(STACK)
                .spawn(move || s.accept_loop(listener))?;
        }
        Ok(server)
    }

    pub(crate) fn info(&self) -> Info {
        Info {
            version: wire::VERSION,
            maxsize: self.maxsize,
            joinable: self.joinable,
            acks_shared: false,
            shm: None,
        }
    }

    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Stops serving: the threads end within a tick and close their connections, so other
    /// processes' handles see [`Error::Closed`].
    pub(crate) fn shutdown(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let st = lock(&self.st);
        for c in st.conns.values() {
            c.cv.notify_all();
        }
        self.local_cv.notify_all();
    }

    fn accept_loop(self: Arc<Self>, listener: Listener) {
        while !self.stopped() {
            let conn = match listener.accept_timeout(TICK) {
                Ok(c) => c,
                // A client's failed handshake, or no client this tick.
                Err(_) => continue,
            };
            let s = self.clone();
            let spawned = thread::Builder::new()
                .name("procwire-queue-read".into())
                .stack_size(STACK)
                .spawn(move || s.serve(conn));
            if let Err(e) = spawned {
                trace::event!(WARN, error = %e, "queue refused a client: no thread to serve it");
                let _ = e;
            }
        }
    }

    /// Serves one connection: `HELLO`, then its requests until it closes.
    fn serve(self: Arc<Self>, mut conn: Connection) {
        conn.set_read_timeout(Some(self.handshake_limit()));
        // HELLO has no reason to be large: a longer one is refused by its length, unread.
        conn.set_max_message_size(wire::HELLO_MAX);
        let hello = match conn.recv_bytes() {
            Ok(m) => m,
            Err(Error::MessageTooLarge { len, max }) => {
                return self.refuse(conn, &format!("a HELLO of {len} bytes (at most {max})"));
            }
            Err(_) => return,
        };
        conn.set_max_message_size(self.max_item_size + 1);
        let mut reply = Vec::new();
        let acks;
        match wire::split(&hello).and_then(|(op, body)| Ok((op, wire::hello(body)?))) {
            Ok((wire::HELLO, (wire::VERSION, a, ask))) => {
                // A client that cannot be mapped (another user, another host, no memfd) sends
                // ACK messages instead.
                acks = a;
                // A client that came through the main address and asks is told the
                // shared-memory one: on this host, it moves there.
                let shm = crate::listener::beside::to_tell(self.shm.as_ref(), ask, &conn);
                let info = wire::Info { acks_shared: acks.is_some(), shm, ..self.info() };
                let _ = wire::push_value(&mut reply, wire::INFO, &info);
            }
            _ => {
                return self.refuse(
                    conn,
                    &format!("this queue speaks version {} of the queue protocol", wire::VERSION),
                );
            }
        }
        let (mut tx, mut rx) = conn.split();
        if tx.write_frames(&reply, deadline_of(Some(self.handshake_limit()))).is_err() {
            return;
        }
        let cv = Arc::new(Condvar::new());
        let id = {
            let mut st = lock(&self.st);
            let id = st.next_id;
            st.next_id += 1;
            st.conns.insert(
                id,
                Conn {
                    credit: 0,
                    in_hungry: false,
                    unacked: VecDeque::new(),
                    out: Vec::new(),
                    writer_waiting: false,
                    reader_waiting: false,
                    cv: cv.clone(),
                    reserve_pending: 0,
                    in_reserve_queue: false,
                    reserved: 0,
                    joining: 0,
                    dead: false,
                    acks_seen: acks.as_ref().map_or(0, |a| a.atomic().load(Ordering::Acquire)),
                    acks,
                },
            );
            id
        };
        trace::event!(INFO, client = id, "queue client connected");
        let s = self.clone();
        let spawned = thread::Builder::new()
            .name("procwire-queue-write".into())
            .stack_size(STACK)
            .spawn(move || s.write_loop(id, tx, cv));
        if spawned.is_ok() {
            self.read_loop(id, &mut rx);
        }
        self.drop_conn(id);
    }

    /// Answers a connection's first message with REFUSED and why, and closes it.
    fn refuse(&self, conn: Connection, why: &str) {
        trace::event!(WARN, reason = why, "queue refused a client");
        let mut reply = Vec::new();
        let _ = wire::push_value(&mut reply, wire::REFUSED, why);
        let (mut tx, _) = conn.split();
        let _ = tx.write_frames(&reply, deadline_of(Some(self.handshake_limit())));
    }

    fn handshake_limit(&self) -> Duration {
        crate::listener::DEFAULT_HANDSHAKE_TIMEOUT
    }

    fn read_loop(&self, id: u64, rx: &mut Receiver) {
        loop {
            let mut guard: Option<MutexGuard<'_, State>> = None;
            let mut only_acks = true;
            let r = read_batch(rx, Some(Instant::now() + TICK), &mut |frame| {
                only_acks &= frame.first() == Some(&wire::ACK);
                let st = guard.get_or_insert_with(|| lock(&self.st));
                self.on_message(st, id, frame)
            });
            if let Some(mut st) = guard {
                self.distribute(&mut st);
                self.grant(&mut st);
                // Answers this client does not read pile up here: stop reading its requests
                // until the writer got them out, so its socket fills and it waits instead.
                while !self.stopped() && st.conns.get(&id).is_some_and(|c| c.out.len() > OUT_LIMIT) {
                    let cv = st.conns.get_mut(&id).map(|c| {
                        c.reader_waiting = true;
                        c.cv.clone()
                    });
                    let Some(cv) = cv else { break };
                    st = cv.wait_timeout(st, TICK).unwrap_or_else(|p| p.into_inner()).0;
                    if let Some(c) = st.conns.get_mut(&id) {
                        c.reader_waiting = false;
                    }
                }
            }
            match r {
                Ok(()) if only_acks => {
                    // A consumer acknowledges every get with a write of its own; nothing waits
                    // for the server to count them, so let a few gather instead of waking for
                    // each (a request behind them waits this long at most).
                    thread::sleep(ACK_GATHER);
                }
                Ok(()) => {}
                Err(Error::Timeout(_)) => {}
                Err(_) => return,
            }
            if self.stopped() || !lock(&self.st).conns.contains_key(&id) {
                return;
            }
        }
    }

    fn write_loop(&self, id: u64, mut tx: Sender, cv: Arc<Condvar>) {
        let mut buf = Vec::new();
        loop {
            {
                let mut st = lock(&self.st);
                loop {
                    if self.stopped() {
                        return;
                    }
                    let Some(c) = st.conns.get_mut(&id) else { return };
                    if !c.out.is_empty() {
                        c.writer_waiting = false;
                        if c.reader_waiting {
                            c.cv.notify_all();
                        }
                        for o in c.out.drain(..) {
                            match o {
                                Out::Frame(f) => wire::push_frame(&mut buf, f[0], &f[1..]),
                                Out::Item(b) => wire::push_frame(&mut buf, wire::ITEM, &b),
                                Out::Joined(n) => wire::push_count(&mut buf, wire::JOINED, n),
                                Out::Count(op, n) => wire::push_count(&mut buf, op, n),
                                Out::Bare(op) => wire::push_frame(&mut buf, op, &[]),
                            }
                        }
                        break;
                    }
                    c.writer_waiting = true;
                    st = cv.wait_timeout(st, TICK).unwrap_or_else(|p| p.into_inner()).0;
                }
            }
            let mut r = tx.write_frames(&buf, Some(Instant::now() + TICK));
            while let Err(Error::Timeout(_)) = r {
                // A client that does not read: keep trying while it is connected.
                if self.stopped() || !lock(&self.st).conns.contains_key(&id) {
                    return;
                }
                r = tx.flush_until(Some(Instant::now() + TICK));
            }
            buf.clear();
            if r.is_err() {
                // The reader forgets the connection once it has read to the end: acknowledgements
                // may still be waiting there, and taking the items back before reading them
                // would deliver them twice. Until then nothing more goes to this connection.
                if let Some(c) = lock(&self.st).conns.get_mut(&id) {
                    c.credit = 0;
                    c.dead = true;
                }
                return;
            }
        }
    }

    /// Forgets a connection: what it was sent and did not acknowledge goes back to the front
    /// of the queue in its order, its reserved slots are freed.
    fn drop_conn(&self, id: u64) {
        let mut st = lock(&self.st);
        let Some(mut c) = st.conns.remove(&id) else { return };
        trace::event!(INFO, client = id, "queue client disconnected");
        c.cv.notify_all();
        // What the client counted as taken before it went is gone for good.
        if let Ok(n) = c.sync_acks() {
            st.unacked_total -= n;
        }
        st.unacked_total -= c.unacked.len() as u64;
        for item in c.unacked.into_iter().rev() {
            st.items.push_front(item);
        }
        st.reserved_total -= c.reserved;
        self.distribute(&mut st);
        self.grant(&mut st);
        self.wake_local(&st);
    }

    fn on_message(&self, st: &mut State, id: u64, frame: &[u8]) -> Result<()> {
        let (op, body) = wire::split(frame)?;
        if op != wire::PUT && body.len() > wire::CONTROL_BODY_MAX {
            return Err(Error::Protocol(format!(
                "queue message {op:#04x} with a body of {} bytes",
                body.len()
            )));
        }
        let maxsize = self.maxsize;
        let Some(c) = st.conns.get_mut(&id) else { return Err(Error::Closed) };
        st.unacked_total -= c.sync_acks()?;
        match op {
            wire::PUT => {
                if maxsize.is_some() {
                    if c.reserved == 0 {
                        return Err(Error::Protocol("PUT without a reserved slot".into()));
                    }
                    c.reserved -= 1;
                    st.reserved_total -= 1;
                }
                st.items.push_back(copy_item(body)?);
                if self.joinable {
                    st.unfinished += 1;
                }
            }
            wire::WANT => {
                let n = wire::count(op, body)?;
                if c.dead {
                    return Ok(());
                }
                c.credit = c.credit.saturating_add(n);
                if c.credit > 0 && !c.in_hungry {
                    c.in_hungry = true;
                    st.hungry.push_back(id);
                }
            }
            wire::ACK => {
                let n = wire::count(op, body)?;
                if n > c.unacked.len() as u64 {
                    return Err(Error::Protocol("ACK for more items than were sent".into()));
                }
                c.unacked.drain(..n as usize);
                st.unacked_total -= n;
            }
            wire::CANCEL => {
                c.credit = 0;
                c.push(Out::Bare(wire::CANCELLED));
            }
            wire::RETURN => {
                let n = wire::count(op, body)?;
                if n > c.unacked.len() as u64 {
                    return Err(Error::Protocol("RETURN of more items than were sent".into()));
                }
                for _ in 0..n {
                    if let Some(item) = c.unacked.pop_back() {
                        st.items.push_front(item);
                    }
                }
                st.unacked_total -= n;
            }
            wire::RESERVE => {
                let n = wire::count(op, body)?;
                if maxsize.is_none() {
                    return Err(Error::Protocol("RESERVE on a queue without maxsize".into()));
                }
                c.reserve_pending = c.reserve_pending.saturating_add(n);
                if !c.in_reserve_queue {
                    c.in_reserve_queue = true;
                    st.reserve_queue.push_back(id);
                }
            }
            wire::UNRESERVE => {
                c.reserve_pending = 0;
                c.push(Out::Bare(wire::UNRESERVED));
            }
            wire::RELEASE => {
                let n = wire::count(op, body)?;
                let n = n.min(c.reserved);
                c.reserved -= n;
                st.reserved_total -= n;
            }
            wire::QSIZE => {
                let size = st.qsize();
                let c = st.conns.get_mut(&id).ok_or(Error::Closed)?;
                c.push_count(wire::SIZE, size);
            }
            wire::TASK_DONE => {
                let n = wire::count(op, body)?;
                let r = self.task_done_locked(st, n).map_err(|e| e.to_string());
                let c = st.conns.get_mut(&id).ok_or(Error::Closed)?;
                c.push_value(wire::DONE, &r.err());
            }
            wire::FINISH => {
                // The caller's distribute (after this batch) tells the waiting consumers.
                st.finished = true;
                if st.local_getters > 0 {
                    self.local_cv.notify_all();
                }
            }
            wire::JOIN => {
                if st.unfinished == 0 {
                    c.push_joined(1);
                } else {
                    c.joining = c.joining.saturating_add(1);
                }
            }
            _ => return Err(Error::Protocol(format!("unknown queue message {op:#04x}"))),
        }
        Ok(())
    }

    /// Marks `n` tasks done; wakes joiners when none is left.
    pub(crate) fn task_done_locked(&self, st: &mut State, n: u64) -> Result<()> {
        if !self.joinable {
            return Err(Error::Remote {
                kind: RemoteKind::Value,
                message: "task_done() on a queue that is not joinable".into(),
            });
        }
        if n > st.unfinished {
            return Err(Error::Remote {
                kind: RemoteKind::Value,
                message: "task_done() called too many times".into(),
            });
        }
        st.unfinished -= n;
        if st.unfinished == 0 {
            for c in st.conns.values_mut() {
                let n = std::mem::take(&mut c.joining);
                if n > 0 {
                    c.push_joined(n);
                }
            }
            if st.local_joiners > 0 {
                self.local_cv.notify_all();
            }
        }
        Ok(())
    }

    pub(crate) fn unfinished(st: &State) -> u64 {
        st.unfinished
    }

    /// Adds an item from a local handle (space was checked by the caller).
    pub(crate) fn push_local(&self, st: &mut State, item: Bytes) {
        st.items.push_back(item);
        if self.joinable {
            st.unfinished += 1;
        }
        self.distribute(st);
        if st.local_getters > 0 {
            self.local_cv.notify_all();
        }
    }

    /// Marks the queue finished for a local handle and tells the waiting consumers.
    pub(crate) fn finish_local(&self, st: &mut State) {
        st.finished = true;
        self.distribute(st);
        if st.local_getters > 0 {
            self.local_cv.notify_all();
        }
    }

    /// Takes the next item for a local getter.
    pub(crate) fn pop_local(&self, st: &mut State) -> Option<Bytes> {
        let item = st.items.pop_front()?;
        // It may have been the last one a remote consumer was waiting behind.
        self.end_if_drained(st);
        self.grant(st);
        if st.local_putters > 0 {
            self.local_cv.notify_all();
        }
        Some(item)
    }

    /// Whether a local put may add an item now.
    pub(crate) fn has_room(&self, st: &mut State) -> bool {
        self.maxsize.is_none_or(|m| st.occupancy() < m)
    }

    fn wake_local(&self, st: &State) {
        if st.local_getters + st.local_putters + st.local_joiners > 0 {
            self.local_cv.notify_all();
        }
    }

    /// Hands queued items to connections that asked for them, round robin, leaving one for
    /// each waiting local getter.
    pub(crate) fn distribute(&self, st: &mut State) {
        let keep = st.local_getters;
        while st.items.len() > keep {
            let Some(id) = st.hungry.pop_front() else { break };
            let share = (st.items.len() - keep).div_ceil(st.hungry.len() + 1) as u64;
            let Some(c) = st.conns.get_mut(&id) else { continue };
            let n = c.credit.min(share);
            for _ in 0..n {
                let Some(item) = st.items.pop_front() else { break };
                c.unacked.push_back(item.clone());
                c.push(Out::Item(item));
            }
            c.credit -= n;
            st.unacked_total += n;
            if c.credit > 0 {
                st.hungry.push_back(id);
            } else {
                c.in_hungry = false;
            }
        }
        if st.local_getters > 0 && !st.items.is_empty() {
            self.local_cv.notify_all();
        }
        self.end_if_drained(st);
    }

    /// Once the queue is finished and empty, answers every outstanding `WANT` with
    /// `FINISHED` (its credit is cancelled: a later get asks anew, and is answered at once).
    fn end_if_drained(&self, st: &mut State) {
        if !st.drained() {
            return;
        }
        for id in std::mem::take(&mut st.hungry) {
            if let Some(c) = st.conns.get_mut(&id) {
                c.in_hungry = false;
                c.credit = 0;
                c.push(Out::Bare(wire::FINISHED));
            }
        }
    }

    /// Grants free slots to connections waiting in `RESERVE`, oldest first; local putters
    /// waiting for room go first.
    pub(crate) fn grant(&self, st: &mut State) {
        let Some(max) = self.maxsize else { return };
        if st.local_putters > 0 {
            if st.occupancy() < max {
                self.local_cv.notify_all();
            }
            return;
        }
        while st.occupancy() < max {
            let Some(&id) = st.reserve_queue.front() else { break };
            let free = max - st.occupancy();
            let Some(c) = st.conns.get_mut(&id) else {
                st.reserve_queue.pop_front();
                continue;
            };
            let k = c.reserve_pending.min(free);
            if k > 0 {
                c.reserve_pending -= k;
                c.reserved += k;
                c.push_count(wire::GRANT, k);
            }
            let done = c.reserve_pending == 0;
            if done {
                c.in_reserve_queue = false;
                st.reserve_queue.pop_front();
            }
            st.reserved_total += k;
        }
    }
}
