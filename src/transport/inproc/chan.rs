//! One direction of a stream: a ring buffer with one writer and one reader, each side behind
//! a lock of its own, and the sleeping and waking of a side that must wait.

use std::cell::UnsafeCell;
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::signal::{RECHECK, Signal, busy_fence, fire_all, sleeper_fence};
use crate::util::{copy_in_pieces as copy, lock, wait_deadline};

/// Bytes a channel holds before its writer waits: the role of a socket's buffers.
pub(crate) const CAPACITY: usize = 256 << 10;
/// How long a reader that finds nothing spins before it sleeps.
const SPIN: Duration = Duration::from_micros(20);

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

/// One direction of a stream.
#[derive(Debug)]
pub(super) struct Chan {
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
    /// line of its own (on a shared one, the two sides' lock and unlock would bounce it between
    /// their cores at every message). The writer's
    /// lock holds the last `head` it read: it looks at the reader's counter (a cache line the
    /// reader keeps writing) only when that one says the ring is too full.
    write_side: Padded<Mutex<usize>>,
    read_side: Padded<Mutex<()>>,
    watching: AtomicUsize,
    watchers: Mutex<Vec<Arc<Signal>>>,
}

impl Chan {
    pub(super) fn new() -> Arc<Chan> {
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
    pub(super) fn readable_now(&self) -> bool {
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

    pub(super) fn read(&self, dst: *mut u8, len: usize, deadline: Option<Instant>) -> io::Result<usize> {
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
                // Look often (a pause instruction is long on some CPUs), and at the clock less
                // often.
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

    pub(super) fn write(&self, bufs: &[IoSlice<'_>], deadline: Option<Instant>) -> io::Result<usize> {
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

    pub(super) fn wait_readable(&self, deadline: Option<Instant>) -> bool {
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
    pub(super) fn watch(&self, signal: &Arc<Signal>) {
        lock(&self.watchers).push(signal.clone());
        self.watching.fetch_add(1, Ordering::SeqCst);
    }

    pub(super) fn unwatch(&self, signal: &Arc<Signal>) {
        let mut w = lock(&self.watchers);
        if let Some(i) = w.iter().position(|x| Arc::ptr_eq(x, signal)) {
            w.swap_remove(i);
            self.watching.fetch_sub(1, Ordering::SeqCst);
        }
    }

    pub(super) fn close_writer(&self) {
        self.writer_open.store(false, Ordering::SeqCst);
        {
            let _g = lock(&self.park);
            self.readable.notify_all();
        }
        fire_all(&lock(&self.watchers));
    }

    pub(super) fn close_reader(&self) {
        self.reader_open.store(false, Ordering::SeqCst);
        let _g = lock(&self.park);
        self.writable.notify_all();
    }
}
