//! The in-process transport: byte streams in memory between threads of one process, with no
//! socket and no system call per message, for `procwire::dummy` and `inproc:` addresses.
//!
//! A stream is a pair of one-way channels. A channel is a bounded byte buffer
//! ([`CAPACITY`]) under a mutex: a writer appends (and waits while it is full), a reader takes
//! everything there is in one go (and waits while it is empty). Nobody is woken unless they
//! sleep: a reader first spins briefly, since in a stream of small messages the next one is
//! usually a few hundred nanoseconds away. Dropping an end ends the stream as a socket would:
//! the reader sees end of stream once the buffer is drained, the writer a broken pipe.
//!
//! Listeners live in a process-wide table of names; a client connects by queueing the far end
//! of a new stream at the listener, which `accept` takes.

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::{Address, Result};

/// Bytes a channel holds before its writer waits: the role of a socket's buffers.
pub(crate) const CAPACITY: usize = 1 << 20;
/// How long a reader that finds nothing spins before it sleeps.
const SPIN: Duration = Duration::from_micros(20);
/// Copies go in pieces of this size (see `COPY_PIECE` in connection.rs: some CPUs run glibc's
/// large `memcpy` very slowly for some alignments).
const COPY_PIECE: usize = 2 << 10;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Waits on `cv` until `deadline` (`None`: forever); `false` when the deadline has passed.
fn wait_until<'a, T>(
    cv: &Condvar,
    guard: MutexGuard<'a, T>,
    deadline: Option<Instant>,
) -> (MutexGuard<'a, T>, bool) {
    match deadline {
        None => (cv.wait(guard).unwrap_or_else(|p| p.into_inner()), true),
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return (guard, false);
            }
            (cv.wait_timeout(guard, left).unwrap_or_else(|p| p.into_inner()).0, true)
        }
    }
}

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

    /// Sleeps until fired or `deadline`; clears the flag.
    pub(crate) fn wait(&self, deadline: Option<Instant>) {
        let mut fired = lock(&self.fired);
        while !*fired {
            let (g, more) = wait_until(&self.cv, fired, deadline);
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

#[derive(Debug)]
struct ChanState {
    buf: Vec<u8>,
    /// Bytes before `pos` were read already.
    pos: usize,
    writer_open: bool,
    reader_open: bool,
    readers_waiting: u32,
    writers_waiting: u32,
    watchers: Vec<Arc<Signal>>,
}

impl ChanState {
    fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }
}

/// One direction of a stream.
#[derive(Debug)]
struct Chan {
    state: Mutex<ChanState>,
    readable: Condvar,
    writable: Condvar,
    /// What a spinning reader looks at without the lock: bytes buffered, or `usize::MAX` once
    /// the writer is gone.
    hint: AtomicUsize,
}

impl Chan {
    fn new() -> Arc<Chan> {
        Arc::new(Chan {
            state: Mutex::new(ChanState {
                buf: Vec::new(),
                pos: 0,
                writer_open: true,
                reader_open: true,
                readers_waiting: 0,
                writers_waiting: 0,
                watchers: Vec::new(),
            }),
            readable: Condvar::new(),
            writable: Condvar::new(),
            hint: AtomicUsize::new(0),
        })
    }

    fn read(&self, dst: *mut u8, len: usize, deadline: Option<Instant>) -> io::Result<usize> {
        let mut st = lock(&self.state);
        let mut spun = false;
        loop {
            let have = st.buffered();
            if have > 0 || len == 0 {
                let n = have.min(len);
                let src = &st.buf[st.pos..st.pos + n];
                for (i, piece) in src.chunks(COPY_PIECE).enumerate() {
                    // SAFETY: the caller guarantees dst..dst+len is writable; n <= len, and the
                    // source is our own buffer, which cannot overlap it.
                    unsafe {
                        std::ptr::copy_nonoverlapping(piece.as_ptr(), dst.add(i * COPY_PIECE), piece.len())
                    };
                }
                st.pos += n;
                if st.pos == st.buf.len() {
                    st.buf.clear();
                    st.pos = 0;
                }
                self.hint.store(st.buffered(), Ordering::Relaxed);
                if st.writers_waiting > 0 {
                    self.writable.notify_all();
                }
                return Ok(n);
            }
            if !st.writer_open {
                return Ok(0);
            }
            if deadline.is_some_and(|d| d <= Instant::now()) {
                return Err(io::ErrorKind::TimedOut.into());
            }
            if !spun {
                spun = true;
                drop(st);
                let until = Instant::now() + SPIN;
                while self.hint.load(Ordering::Relaxed) == 0 && Instant::now() < until {
                    std::hint::spin_loop();
                }
                st = lock(&self.state);
                continue;
            }
            st.readers_waiting += 1;
            let (g, _) = wait_until(&self.readable, st, deadline);
            st = g;
            st.readers_waiting -= 1;
        }
    }

    fn write(&self, bufs: &[IoSlice<'_>], deadline: Option<Instant>) -> io::Result<usize> {
        let mut st = lock(&self.state);
        loop {
            if !st.reader_open {
                return Err(io::Error::new(io::ErrorKind::BrokenPipe, "the reading end was dropped"));
            }
            if st.buffered() < CAPACITY {
                break;
            }
            if deadline.is_some_and(|d| d <= Instant::now()) {
                return Err(io::ErrorKind::TimedOut.into());
            }
            st.writers_waiting += 1;
            let (g, _) = wait_until(&self.writable, st, deadline);
            st = g;
            st.writers_waiting -= 1;
        }
        // Read bytes in front are dropped once they are half the buffer: each byte is moved
        // at most once more.
        if st.pos > 0 && st.pos * 2 >= st.buf.len() {
            let pos = st.pos;
            st.buf.drain(..pos);
            st.pos = 0;
        }
        let mut room = CAPACITY - st.buffered();
        let mut total = 0;
        for b in bufs {
            let take = b.len().min(room);
            st.buf.reserve(take);
            for piece in b[..take].chunks(COPY_PIECE) {
                st.buf.extend_from_slice(piece);
            }
            total += take;
            room -= take;
            if room == 0 {
                break;
            }
        }
        self.hint.store(st.buffered(), Ordering::Relaxed);
        if st.readers_waiting > 0 {
            self.readable.notify_all();
        }
        fire_all(&st.watchers);
        Ok(total)
    }

    fn readable_now(&self) -> bool {
        let st = lock(&self.state);
        st.buffered() > 0 || !st.writer_open
    }

    fn close_writer(&self) {
        let mut st = lock(&self.state);
        st.writer_open = false;
        self.hint.store(usize::MAX, Ordering::Relaxed);
        self.readable.notify_all();
        fire_all(&st.watchers);
    }

    fn close_reader(&self) {
        let mut st = lock(&self.state);
        st.reader_open = false;
        st.buf = Vec::new();
        st.pos = 0;
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

    pub(crate) fn read_spare(
        &self,
        v: &mut Vec<u8>,
        max: usize,
        deadline: Option<Instant>,
    ) -> io::Result<usize> {
        let spare: &mut [MaybeUninit<u8>] = v.spare_capacity_mut();
        let len = spare.len().min(max);
        let n = self.read_raw(spare.as_mut_ptr().cast(), len, deadline)?;
        // SAFETY: read_raw initialised the first n bytes of the spare capacity.
        unsafe { v.set_len(v.len() + n) };
        Ok(n)
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
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut st = lock(&rx.state);
        loop {
            if st.buffered() > 0 || !st.writer_open {
                return Ok(true);
            }
            st.readers_waiting += 1;
            let (g, more) = wait_until(&rx.readable, st, deadline);
            st = g;
            st.readers_waiting -= 1;
            if !more {
                return Ok(st.buffered() > 0 || !st.writer_open);
            }
        }
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
                lock(&rx.state).watchers.push(signal.clone());
                true
            }
            None => false,
        }
    }

    pub(crate) fn unwatch(&self, signal: &Arc<Signal>) {
        if let Some(rx) = &self.rx {
            unwatch(&mut lock(&rx.state).watchers, signal);
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
        let (g, _) = wait_until(&at.room, st, deadline);
        st = g;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(s: &Stream, n: usize, deadline: Option<Instant>) -> io::Result<Vec<u8>> {
        let mut v = Vec::with_capacity(n);
        s.read_spare(&mut v, n, deadline)?;
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
