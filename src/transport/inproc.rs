//! The in-process transport: byte streams in memory between threads of one process, with no
//! socket and no system call per message, for `procwire::dummy` and `inproc:` addresses.
//!
//! A stream is a pair of one-way channels. A channel is a ring buffer of [`CAPACITY`] bytes
//! (allocated at the first write) with one writer and one reader, each side serialized by a
//! lock of its own, so the two never wait for each other's lock: the writer copies bytes in and
//! publishes the new end with a release store; the reader takes everything published in one
//! go. Nobody is woken unless they sleep: a reader that finds nothing first spins briefly (in a
//! stream of small messages the next one is usually a few hundred nanoseconds away), then
//! sleeps on a condition variable that a writer signals only when told someone sleeps. A
//! writer sleeps the same way while the ring is full. Dropping an end ends the stream as a
//! socket would: the reader sees end of stream once the ring is drained, the writer a broken
//! pipe.
//!
//! Listeners live in a process-wide table of names; a client connects by queueing the far end
//! of a new stream at the listener, which `accept` takes.

use std::cell::UnsafeCell;
use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering, compiler_fence, fence};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::util::{lock, wait_deadline};
use crate::{Address, Result};

/// Bytes a channel holds before its writer waits: the role of a socket's buffers.
pub(crate) const CAPACITY: usize = 256 << 10;
/// How long a reader that finds nothing spins before it sleeps.
const SPIN: Duration = Duration::from_micros(20);
/// Copies go in pieces of this size (see `COPY_PIECE` in connection/mod.rs: some CPUs run glibc's
/// large `memcpy` very slowly for some alignments).
const COPY_PIECE: usize = 2 << 10;

/// A flag one waiter sleeps on while it watches many channels and listeners.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    fired: Mutex<bool>,
    cv: Condvar,
}

impl Signal {
    fn fire(&self) {
        *lock(&self.fired) = true;
        self.cv.notify_all();
    }

    /// Sleeps until fired, `deadline`, or at most [`RECHECK`] (the caller looks again); clears
    /// the flag.
    pub(crate) fn wait(&self, deadline: Option<Instant>) {
        let recheck = Instant::now().checked_add(RECHECK);
        let deadline = match (deadline, recheck) {
            (Some(d), Some(r)) => Some(d.min(r)),
            (d, r) => d.or(r),
        };
        let mut fired = lock(&self.fired);
        while !*fired {
            let (g, more) = wait_deadline(&self.cv, fired, deadline);
            fired = g;
            if !more {
                break;
            }
        }
        *fired = false;
    }
}

fn fire_all(watchers: &[Arc<Signal>]) {
    for w in watchers {
        w.fire();
    }
}

fn unwatch(watchers: &mut Vec<Arc<Signal>>, s: &Arc<Signal>) {
    if let Some(i) = watchers.iter().position(|w| Arc::ptr_eq(w, s)) {
        watchers.swap_remove(i);
    }
}

/// Whether process-wide barriers work here (Linux `membarrier`, Windows
/// `FlushProcessWriteBuffers`): then the busy side of a sleep handshake, which runs at every
/// write and read, needs only a compiler fence, and the side about to sleep pays for both.
/// A real fence at every write made the writer wait for its store to reach the reader's core.
static ASYMMETRIC: OnceLock<bool> = OnceLock::new();

/// The longest a sleeper waits before it looks again even if nobody signalled it: a bound on
/// the cost of a signal lost if a process barrier failed after working before.
const RECHECK: Duration = Duration::from_secs(1);

/// Set if a process barrier failed after working before: busy sides go back to real fences
/// (sleepers' [`RECHECK`] covers the switch-over).
static DEGRADED: AtomicBool = AtomicBool::new(false);

fn asymmetric() -> bool {
    *ASYMMETRIC.get_or_init(crate::sys::process_barrier) && !DEGRADED.load(Ordering::Relaxed)
}

/// The fence of the busy side: between publishing and looking for sleepers.
fn busy_fence() {
    if asymmetric() {
        compiler_fence(Ordering::SeqCst);
    } else {
        fence(Ordering::SeqCst);
    }
}

/// The fence of the side about to sleep: between saying so and looking for news.
pub(crate) fn sleeper_fence() {
    if asymmetric() && !crate::sys::process_barrier() {
        DEGRADED.store(true, Ordering::SeqCst);
    }
    if !asymmetric() {
        fence(Ordering::SeqCst);
    }
}

/// A value on a cache line of its own, so the writer's and the reader's counters do not
/// make each other's cores fetch the line.
#[repr(align(128))]
#[derive(Debug, Default)]
struct Padded<T>(T);

/// The ring's bytes: written only by the writer in `[tail, head + CAPACITY)`, read only by the
/// reader in `[head, tail)` (positions modulo `CAPACITY`), the two kept apart by the counters.
struct Ring(Box<[UnsafeCell<u8>]>);

// SAFETY: the bytes are only reached through `Chan`, whose counters (acquire/release) give
// each byte to one side at a time; see `Ring`.
unsafe impl Sync for Ring {}

impl Ring {
    fn new() -> Ring {
        Ring((0..CAPACITY).map(|_| UnsafeCell::new(0)).collect())
    }

    fn at(&self, pos: usize) -> *mut u8 {
        // From the slice's pointer, not from a reference to one cell: the copies through it
        // cover up to COPY_PIECE bytes.
        // SAFETY: pos % CAPACITY is within the slice.
        UnsafeCell::raw_get(unsafe { self.0.as_ptr().add(pos % CAPACITY) })
    }
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ring({} bytes)", self.0.len())
    }
}

/// Copies `len` bytes in pieces of [`COPY_PIECE`].
///
/// # Safety
/// `src..src+len` must be readable, `dst..dst+len` writable, and the two must not overlap.
unsafe fn copy(src: *const u8, dst: *mut u8, len: usize) {
    let mut done = 0;
    while done < len {
        let n = (len - done).min(COPY_PIECE);
        // SAFETY: within the ranges the caller vouches for.
        unsafe { std::ptr::copy_nonoverlapping(src.add(done), dst.add(done), n) };
        done += n;
    }
}

/// One direction of a stream.
#[derive(Debug)]
struct Chan {
    /// Bytes taken by the reader, ever (written by the reader only).
    head: Padded<AtomicUsize>,
    /// Bytes published by the writer, ever (written by the writer only).
    tail: Padded<AtomicUsize>,
    ring: OnceLock<Ring>,
    writer_open: AtomicBool,
    reader_open: AtomicBool,
    /// Threads asleep (or about to sleep) in `park`, waiting for data or for room.
    readers_waiting: AtomicU32,
    writers_waiting: AtomicU32,
    park: Mutex<()>,
    readable: Condvar,
    writable: Condvar,
    /// Serializes the writers (one in practice) and the readers of the channel; each on a cache
    /// line of its own (on a shared one, the two sides' lock and unlock made it bounce between
    /// their cores at every message: over half the writer's time). The writer's
    /// lock holds the last `head` it read: it looks at the reader's counter (a cache line the
    /// reader keeps writing) only when that one says the ring is too full.
    write_side: Padded<Mutex<usize>>,
    read_side: Padded<Mutex<()>>,
    watching: AtomicUsize,
    watchers: Mutex<Vec<Arc<Signal>>>,
}

impl Chan {
    fn new() -> Arc<Chan> {
        Arc::new(Chan {
            head: Padded::default(),
            tail: Padded::default(),
            ring: OnceLock::new(),
            writer_open: AtomicBool::new(true),
            reader_open: AtomicBool::new(true),
            readers_waiting: AtomicU32::new(0),
            writers_waiting: AtomicU32::new(0),
            park: Mutex::new(()),
            readable: Condvar::new(),
            writable: Condvar::new(),
            write_side: Padded(Mutex::new(0)),
            read_side: Padded(Mutex::new(())),
            watching: AtomicUsize::new(0),
            watchers: Mutex::new(Vec::new()),
        })
    }

    /// Data to read, or the writer gone (end of stream).
    fn readable_now(&self) -> bool {
        self.tail.0.load(Ordering::Acquire) != self.head.0.load(Ordering::Acquire)
            || !self.writer_open.load(Ordering::Acquire)
    }

    /// Sleeps on `cv` until `ready()` or `deadline`, counted in `waiting` so that the other
    /// side knows to signal. `false` once the deadline has passed.
    fn sleep(
        &self,
        cv: &Condvar,
        waiting: &AtomicU32,
        deadline: Option<Instant>,
        ready: impl Fn() -> bool,
    ) -> bool {
        let guard = lock(&self.park);
        waiting.fetch_add(1, Ordering::SeqCst);
        // Pairs with the fence the other side makes between its publication and its look at
        // `waiting`: either it sees us waiting (and signals under `park`, which we hold until
        // we wait), or we see what it published.
        sleeper_fence();
        let recheck = Instant::now().checked_add(RECHECK);
        let until = match (deadline, recheck) {
            (Some(d), Some(r)) => Some(d.min(r)),
            (d, r) => d.or(r),
        };
        let more = if ready() {
            true
        } else {
            wait_deadline(cv, guard, until).1 || deadline.is_none_or(|d| d > Instant::now())
        };
        waiting.fetch_sub(1, Ordering::SeqCst);
        more
    }

    /// Wakes the sleepers counted in `waiting` (after the caller published something).
    fn signal(&self, cv: &Condvar, waiting: &AtomicU32) {
        busy_fence();
        if waiting.load(Ordering::Relaxed) > 0 {
            let _g = lock(&self.park);
            cv.notify_all();
        }
    }

    fn fire_watchers(&self) {
        if self.watching.load(Ordering::SeqCst) > 0 {
            fire_all(&lock(&self.watchers));
        }
    }

    fn read(&self, dst: *mut u8, len: usize, deadline: Option<Instant>) -> io::Result<usize> {
        let _side = lock(&self.read_side.0);
        let head = self.head.0.load(Ordering::Relaxed);
        let mut spun = false;
        loop {
            let tail = self.tail.0.load(Ordering::Acquire);
            if tail != head || len == 0 {
                let n = tail.wrapping_sub(head).min(len);
                if n > 0 {
                    let ring = self.ring.get().expect("published bytes live in the ring");
                    let first = n.min(CAPACITY - head % CAPACITY);
                    // SAFETY: [head, head+n) was published by the writer (acquire above) and is
                    // not written again until head moves past it; dst has room for len >= n.
                    unsafe {
                        copy(ring.at(head), dst, first);
                        copy(ring.at(head.wrapping_add(first)), dst.add(first), n - first);
                    }
                }
                self.head.0.store(head.wrapping_add(n), Ordering::Release);
                self.signal(&self.writable, &self.writers_waiting);
                return Ok(n);
            }
            if !self.writer_open.load(Ordering::Acquire) {
                if self.tail.0.load(Ordering::Acquire) == head {
                    return Ok(0);
                }
                continue;
            }
            if deadline.is_some_and(|d| d <= Instant::now()) {
                return Err(io::ErrorKind::TimedOut.into());
            }
            let ready =
                || self.tail.0.load(Ordering::SeqCst) != head || !self.writer_open.load(Ordering::SeqCst);
            if !spun {
                spun = true;
                // Look often (a pause instruction takes up to ~100 cycles on some CPUs), and at
                // the clock less often.
                let until = Instant::now() + SPIN;
                'spin: while Instant::now() < until {
                    for _ in 0..64 {
                        if ready() {
                            break 'spin;
                        }
                        std::hint::spin_loop();
                    }
                }
                continue;
            }
            self.sleep(&self.readable, &self.readers_waiting, deadline, ready);
        }
    }

    fn write(&self, bufs: &[IoSlice<'_>], deadline: Option<Instant>) -> io::Result<usize> {
        let mut known_head = lock(&self.write_side.0);
        let tail = self.tail.0.load(Ordering::Relaxed);
        let want: usize = bufs.iter().map(|b| b.len()).sum();
        let room = loop {
            if !self.reader_open.load(Ordering::Acquire) {
                return Err(io::Error::new(io::ErrorKind::BrokenPipe, "the reading end was dropped"));
            }
            if want == 0 {
                return Ok(0);
            }
            if CAPACITY - tail.wrapping_sub(*known_head) < want {
                *known_head = self.head.0.load(Ordering::Acquire);
            }
            let room = CAPACITY - tail.wrapping_sub(*known_head);
            if room > 0 {
                break room;
            }
            if deadline.is_some_and(|d| d <= Instant::now()) {
                return Err(io::ErrorKind::TimedOut.into());
            }
            let ready = || {
                self.head.0.load(Ordering::SeqCst).wrapping_add(CAPACITY) != tail
                    || !self.reader_open.load(Ordering::SeqCst)
            };
            self.sleep(&self.writable, &self.writers_waiting, deadline, ready);
        };
        let ring = self.ring.get_or_init(Ring::new);
        let mut at = tail;
        for b in bufs {
            let take = b.len().min(room - at.wrapping_sub(tail));
            let first = take.min(CAPACITY - at % CAPACITY);
            // SAFETY: [at, at+take) lies in [tail, head+CAPACITY): the reader does not look at
            // it until the release store below; b holds take bytes.
            unsafe {
                copy(b.as_ptr(), ring.at(at), first);
                copy(b.as_ptr().add(first), ring.at(at.wrapping_add(first)), take - first);
            }
            at = at.wrapping_add(take);
            if at.wrapping_sub(tail) == room {
                break;
            }
        }
        self.tail.0.store(at, Ordering::Release);
        self.signal(&self.readable, &self.readers_waiting);
        self.fire_watchers();
        Ok(at.wrapping_sub(tail))
    }

    fn wait_readable(&self, deadline: Option<Instant>) -> bool {
        loop {
            if self.readable_now() {
                return true;
            }
            let ready = || self.readable_now();
            if !self.sleep(&self.readable, &self.readers_waiting, deadline, ready) {
                return self.readable_now();
            }
        }
    }

    /// The caller runs [`sleeper_fence`] once after watching everything, then looks at the
    /// channels: a writer's look at `watching` comes after its busy fence.
    fn watch(&self, signal: &Arc<Signal>) {
        lock(&self.watchers).push(signal.clone());
        self.watching.fetch_add(1, Ordering::SeqCst);
    }

    fn unwatch(&self, signal: &Arc<Signal>) {
        let mut w = lock(&self.watchers);
        if let Some(i) = w.iter().position(|x| Arc::ptr_eq(x, signal)) {
            w.swap_remove(i);
            self.watching.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn close_writer(&self) {
        self.writer_open.store(false, Ordering::SeqCst);
        {
            let _g = lock(&self.park);
            self.readable.notify_all();
        }
        fire_all(&lock(&self.watchers));
    }

    fn close_reader(&self) {
        self.reader_open.store(false, Ordering::SeqCst);
        let _g = lock(&self.park);
        self.writable.notify_all();
    }
}

/// One end of an in-process stream.
#[derive(Debug)]
pub(crate) struct Stream {
    rx: Option<Arc<Chan>>,
    tx: Option<Arc<Chan>>,
    local: Option<Address>,
    peer: Option<Address>,
}

impl Drop for Stream {
    fn drop(&mut self) {
        if let Some(tx) = &self.tx {
            tx.close_writer();
        }
        if let Some(rx) = &self.rx {
            rx.close_reader();
        }
    }
}

fn one_way(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, format!("this end of a one-way pipe only {what}s"))
}

impl Stream {
    pub(crate) fn can_read(&self) -> bool {
        self.rx.is_some()
    }

    pub(crate) fn can_write(&self) -> bool {
        self.tx.is_some()
    }

    /// Reads at most `len` bytes into `ptr`; 0 means end of stream; `TimedOut` after `deadline`.
    ///
    /// The caller guarantees that `ptr..ptr+len` is writable memory it owns.
    pub(crate) fn read_raw(&self, ptr: *mut u8, len: usize, deadline: Option<Instant>) -> io::Result<usize> {
        self.rx.as_ref().ok_or_else(|| one_way("send"))?.read(ptr, len, deadline)
    }

    pub(crate) fn write_vectored(
        &self,
        bufs: &[IoSlice<'_>],
        deadline: Option<Instant>,
    ) -> io::Result<usize> {
        self.tx.as_ref().ok_or_else(|| one_way("receive"))?.write(bufs, deadline)
    }

    /// Whether a read would not wait: data buffered, or the writer gone.
    pub(crate) fn readable_now(&self) -> bool {
        self.rx.as_ref().is_some_and(|rx| rx.readable_now())
    }

    pub(crate) fn wait_readable(&self, timeout: Option<Duration>) -> io::Result<bool> {
        let Some(rx) = &self.rx else { return Err(one_way("send")) };
        Ok(rx.wait_readable(timeout.and_then(|t| Instant::now().checked_add(t))))
    }

    pub(crate) fn local_addr(&self) -> Option<Address> {
        self.local.clone()
    }

    pub(crate) fn peer_addr(&self) -> Option<Address> {
        self.peer.clone()
    }

    /// Asks to be woken by `signal` when this end turns readable; `false` if it cannot read.
    pub(crate) fn watch(&self, signal: &Arc<Signal>) -> bool {
        match &self.rx {
            Some(rx) => {
                rx.watch(signal);
                true
            }
            None => false,
        }
    }

    pub(crate) fn unwatch(&self, signal: &Arc<Signal>) {
        if let Some(rx) = &self.rx {
            rx.unwatch(signal);
        }
    }
}

/// A connected pair: with `duplex` both ends send and receive; without, the first end only
/// receives and the second only sends (as `pipe(false)`).
pub(crate) fn pair(duplex: bool) -> (Stream, Stream) {
    pair_named(duplex, None, None)
}

fn pair_named(duplex: bool, a_addr: Option<Address>, b_addr: Option<Address>) -> (Stream, Stream) {
    let ab = Chan::new();
    if duplex {
        let ba = Chan::new();
        (
            Stream {
                rx: Some(ba.clone()),
                tx: Some(ab.clone()),
                local: a_addr.clone(),
                peer: b_addr.clone(),
            },
            Stream { rx: Some(ab), tx: Some(ba), local: b_addr, peer: a_addr },
        )
    } else {
        (
            Stream { rx: Some(ab.clone()), tx: None, local: None, peer: None },
            Stream { rx: None, tx: Some(ab), local: None, peer: None },
        )
    }
}

#[derive(Debug)]
struct ListenState {
    queue: VecDeque<Stream>,
    open: bool,
    watchers: Vec<Arc<Signal>>,
}

#[derive(Debug)]
struct Listening {
    state: Mutex<ListenState>,
    /// Clients waiting for room in the queue.
    room: Condvar,
    backlog: usize,
}

/// The process-wide table of in-process listeners, by name.
static LISTENERS: Mutex<Option<HashMap<String, Arc<Listening>>>> = Mutex::new(None);

/// A listening in-process address.
#[derive(Debug)]
pub(crate) struct Listener {
    name: String,
    at: Arc<Listening>,
}

impl Listener {
    pub(crate) fn bind(addr: &Address, name: &str, backlog: i32) -> Result<Listener> {
        let mut table = lock(&LISTENERS);
        let table = table.get_or_insert_with(HashMap::new);
        if table.contains_key(name) {
            return Err(crate::Error::Io(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{addr} is already bound in this process"),
            )));
        }
        let at = Arc::new(Listening {
            state: Mutex::new(ListenState { queue: VecDeque::new(), open: true, watchers: Vec::new() }),
            room: Condvar::new(),
            backlog: usize::try_from(backlog).unwrap_or(1).max(1),
        });
        table.insert(name.to_string(), at.clone());
        Ok(Listener { name: name.to_string(), at })
    }

    pub(crate) fn local_addr(&self) -> Address {
        Address::InProc(self.name.clone())
    }

    pub(crate) fn try_accept(&self) -> Option<Stream> {
        let mut st = lock(&self.at.state);
        let s = st.queue.pop_front();
        if s.is_some() {
            self.at.room.notify_all();
        }
        s
    }

    pub(crate) fn ready_now(&self) -> bool {
        !lock(&self.at.state).queue.is_empty()
    }

    pub(crate) fn watch(&self, signal: &Arc<Signal>) {
        lock(&self.at.state).watchers.push(signal.clone());
    }

    pub(crate) fn unwatch(&self, signal: &Arc<Signal>) {
        unwatch(&mut lock(&self.at.state).watchers, signal);
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(table) = lock(&LISTENERS).as_mut()
            && table.get(&self.name).is_some_and(|l| Arc::ptr_eq(l, &self.at))
        {
            table.remove(&self.name);
        }
        let queued = {
            let mut st = lock(&self.at.state);
            st.open = false;
            self.at.room.notify_all();
            std::mem::take(&mut st.queue)
        };
        // Outside the lock: dropping them wakes their clients.
        drop(queued);
    }
}

/// Connects to the listener named `name`: `ConnectionRefused` if there is none; waits until
/// `deadline` (then `TimedOut`) while its queue of unaccepted connections is full.
pub(crate) fn connect(name: &str, deadline: Option<Instant>) -> io::Result<Stream> {
    let at = lock(&LISTENERS).as_ref().and_then(|t| t.get(name).cloned()).ok_or_else(|| {
        io::Error::new(io::ErrorKind::ConnectionRefused, "no listener of that name in this process")
    })?;
    let addr = Address::InProc(name.to_string());
    let (mine, theirs) = pair_named(true, None, Some(addr.clone()));
    let mut theirs = theirs;
    theirs.local = Some(addr);
    let mut st = lock(&at.state);
    loop {
        if !st.open {
            return Err(io::Error::new(io::ErrorKind::ConnectionRefused, "the listener was dropped"));
        }
        if st.queue.len() < at.backlog {
            st.queue.push_back(theirs);
            fire_all(&st.watchers);
            return Ok(mine);
        }
        if deadline.is_some_and(|d| d <= Instant::now()) {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let (g, _) = wait_deadline(&at.room, st, deadline);
        st = g;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(s: &Stream, n: usize, deadline: Option<Instant>) -> io::Result<Vec<u8>> {
        let mut v = vec![0; n];
        let got = s.read_raw(v.as_mut_ptr(), n, deadline)?;
        v.truncate(got);
        Ok(v)
    }

    #[test]
    fn bytes_travel_both_ways_and_end_of_stream_follows_the_data() {
        let (a, b) = pair(true);
        assert_eq!(a.write_vectored(&[IoSlice::new(b"he"), IoSlice::new(b"llo")], None).unwrap(), 5);
        assert_eq!(read(&b, 3, None).unwrap(), b"hel");
        assert_eq!(read(&b, 10, None).unwrap(), b"lo");
        b.write_vectored(&[IoSlice::new(b"back")], None).unwrap();
        assert_eq!(read(&a, 10, None).unwrap(), b"back");
        a.write_vectored(&[IoSlice::new(b"last")], None).unwrap();
        drop(a);
        assert_eq!(read(&b, 10, None).unwrap(), b"last");
        assert_eq!(read(&b, 10, None).unwrap(), b"");
        let e = b.write_vectored(&[IoSlice::new(b"x")], None).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn reads_and_full_writes_time_out() {
        let (a, b) = pair(true);
        let t = Instant::now();
        let e = read(&b, 1, Some(t + Duration::from_millis(30))).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(t.elapsed() >= Duration::from_millis(30));
        let big = vec![1u8; CAPACITY + 10];
        assert_eq!(a.write_vectored(&[IoSlice::new(&big)], None).unwrap(), CAPACITY);
        let e = a.write_vectored(&[IoSlice::new(&big)], Some(Instant::now() + Duration::from_millis(20)));
        assert_eq!(e.unwrap_err().kind(), io::ErrorKind::TimedOut);
        // An empty write does not wait, even on a full ring.
        assert_eq!(a.write_vectored(&[], None).unwrap(), 0);
        // Room made by the reader lets the writer on.
        assert_eq!(read(&b, 100, None).unwrap().len(), 100);
        assert_eq!(a.write_vectored(&[IoSlice::new(&big)], None).unwrap(), 100);
    }

    #[test]
    fn a_blocked_reader_wakes_for_data_from_another_thread() {
        let (a, b) = pair(false);
        assert!(!b.can_read() && !a.can_write());
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            b.write_vectored(&[IoSlice::new(b"wake")], None).unwrap();
        });
        assert_eq!(read(&a, 10, None).unwrap(), b"wake");
        t.join().unwrap();
        assert_eq!(read(&a, 10, None).unwrap(), b"");
    }

    #[test]
    fn bytes_cross_the_ring_edge_intact_between_threads() {
        // Writes and reads of uneven sizes, several times round the ring, both sides racing.
        let (rx, tx) = pair(false);
        let total = 5 * CAPACITY + 12_345;
        let byte = |i: usize| (i * 7 + i / 251) as u8;
        let writer = std::thread::spawn(move || {
            let (mut at, mut step) = (0, 1);
            while at < total {
                let n = step.min(total - at);
                let chunk: Vec<u8> = (at..at + n).map(byte).collect();
                let mut done = 0;
                while done < n {
                    let mid = (n / 2).max(done);
                    let halves = [IoSlice::new(&chunk[done..mid]), IoSlice::new(&chunk[mid..])];
                    done += tx.write_vectored(&halves, None).unwrap();
                }
                at += n;
                step = (step * 31 + 17) % 70_001;
            }
        });
        let (mut at, mut want) = (0, 3);
        while at < total {
            let got = read(&rx, want, None).unwrap();
            assert!(!got.is_empty(), "end of stream at {at} of {total}");
            for (k, b) in got.iter().enumerate() {
                assert_eq!(*b, byte(at + k), "byte {}", at + k);
            }
            at += got.len();
            want = (want * 13 + 5) % 90_001 + 1;
        }
        writer.join().unwrap();
        assert_eq!(read(&rx, 10, None).unwrap(), b"");
    }

    #[test]
    fn listeners_are_found_by_name_and_refuse_when_gone() {
        let name = "inproc-unit-test-listener";
        let addr = Address::InProc(name.into());
        let l = Listener::bind(&addr, name, 1).unwrap();
        assert!(Listener::bind(&addr, name, 1).is_err());
        let c = connect(name, None).unwrap();
        // The queue holds one: a second client waits, then times out.
        let e = connect(name, Some(Instant::now() + Duration::from_millis(10))).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        let s = l.try_accept().unwrap();
        assert_eq!(s.local_addr(), Some(addr.clone()));
        assert_eq!(c.peer_addr(), Some(addr));
        c.write_vectored(&[IoSlice::new(b"hi")], None).unwrap();
        assert_eq!(read(&s, 2, None).unwrap(), b"hi");
        drop(l);
        assert_eq!(connect(name, None).unwrap_err().kind(), io::ErrorKind::ConnectionRefused);
    }
}
