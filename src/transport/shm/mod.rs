//! The shared-memory transport (`shm:` addresses, [`PipeKind::SharedMemory`]): a byte stream
//! between two processes of one host through a memory region both map, with the connection it
//! was made on (a Unix socket, a named pipe on Windows) kept as doorbell and liveness signal.
//!
//! After the handshake on the socket, the listener makes a region ([`ring`]: a header and one
//! single-writer single-reader ring per direction) and hands it to the client over the socket
//! (the platform's `shm_region`: a descriptor over `SCM_RIGHTS` on Unix, a section handle the
//! client duplicates out of the listener's process on Windows), and both sides move their bytes
//! through the rings. A side that finds nothing to read (or no room to write) spins for a
//! short window, then says in the ring that it sleeps and sleeps waiting on the socket
//! ([`doorbell`]), which the other side rings. The connection's framing runs over this stream
//! unchanged, so a message larger than a ring streams through it in pieces, and the peer's
//! death is end of file on the socket as on any other connection.
//!
//! [`PipeKind::SharedMemory`]: crate::PipeKind::SharedMemory

mod doorbell;
pub(crate) mod ring;

use std::io::{self, IoSlice};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use self::doorbell::Doorbell;
use self::ring::{Reader, Writer};
use crate::Address;
use crate::sys::shm::Mapping;
use crate::transport::platform::Stream as Socket;
use crate::transport::platform::shm_region as region;
use crate::transport::{SHM_HELLO, SHM_OFFER};
use crate::util::lock;
pub(crate) use region::PLAIN;

/// How long a side that finds nothing to do spins before it sleeps, by default.
pub(crate) const SPIN: Duration = Duration::from_micros(50);
/// Spins in a row that find nothing before spinning becomes the exception, and how rare.
const SPIN_MISSES: u32 = 4;
const SPIN_PROBE: u32 = 16;
/// How long passing a stream to a child waits for a keyless client's first message, which it
/// sent as soon as it connected.
const FIRST_WAIT: Duration = Duration::from_secs(10);
/// How long a spin runs before each of its rounds yields the CPU.
const SPIN_ALONE: Duration = Duration::from_micros(5);
/// How long a reader of a one-way stream waits between looks at its ring while it spins
/// (see [`Stream::spin`]).
const GAP: Duration = Duration::from_micros(4);
/// Fewer bytes than this found by such a reader wait one [`GAP`] for more before it takes
/// them (see [`Stream::read_raw`]).
const BATCH: usize = 1 << 10;

/// Which end of the region this is: the listener writes ring 0 and reads ring 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Listener,
    Client,
}

/// One end of a shared-memory stream.
#[derive(Debug)]
pub(crate) struct Stream {
    rx: Mutex<Reader>,
    tx: Mutex<Writer>,
    bell: Doorbell,
    /// The spin window, in nanoseconds.
    spin: AtomicU64,
    /// Spins in a row that ended with nothing to do (see [`Stream::spin`]).
    misses: AtomicU32,
    /// Spins in a row that found their answer only after they had yielded the CPU.
    crowded: AtomicU32,
    /// This side wrote since it last read: the peer may be waiting for an answer.
    wrote: AtomicBool,
    /// The last spin for data found it at its first look (after the gap, if it waited one).
    quick: AtomicBool,
    local: Option<Address>,
    peer: Option<Address>,
    side: Side,
    /// Bytes of each ring.
    capacity: usize,
    /// Last: the rings point into it.
    map: Mapping,
}

impl Stream {
    fn new(socket: Socket, map: Mapping, capacity: usize, side: Side, addr: Option<Address>) -> Stream {
        Stream::with_bell(Doorbell::new(socket, &[]), map, capacity, side, addr)
    }

    fn with_bell(bell: Doorbell, map: Mapping, capacity: usize, side: Side, addr: Option<Address>) -> Stream {
        let (tx, rx) = if side == Side::Listener { (0, 1) } else { (1, 0) };
        let (local, peer) = if side == Side::Listener { (addr, None) } else { (None, addr) };
        Stream {
            rx: Mutex::new(Reader::new(&map, capacity, rx)),
            tx: Mutex::new(Writer::new(&map, capacity, tx)),
            bell,
            spin: AtomicU64::new(SPIN.as_nanos() as u64),
            misses: AtomicU32::new(0),
            crowded: AtomicU32::new(0),
            wrote: AtomicBool::new(false),
            quick: AtomicBool::new(false),
            local,
            peer,
            side,
            capacity,
            map,
        }
    }

    /// Bytes of each ring.
    pub(crate) fn ring_size(&self) -> usize {
        self.capacity
    }

    /// Sets how long a side that finds nothing to do spins before it sleeps.
    pub(crate) fn set_spin(&self, spin: Duration) {
        self.spin.store(u64::try_from(spin.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Spins until `ready()` or the spin window ends, looking at the clock only now and then.
    /// After the first few microseconds each round yields the CPU: with more busy threads
    /// than cores, the peer may be waiting for this one's. After [`SPIN_MISSES`] spins in a
    /// row that found nothing, only one in [`SPIN_PROBE`] spins: where the peer does not
    /// answer within the window (it is idle, or not running) a spin only costs time, and a
    /// sleep with a doorbell wakes sooner than a yield. After [`SPIN_MISSES`] spins in a row
    /// that found their answer only once they had yielded, the next yield at once (all but one
    /// in [`SPIN_PROBE`]): the peer then runs on this CPU (a request and its reply, each side
    /// waiting for the other), and every microsecond spun before yielding is lost.
    ///
    /// A `patient` spin (a reader of a one-way stream, see [`Stream::read_raw`]) looks only
    /// once every [`GAP`]. Each look takes the line of the writer's counter from the writer's
    /// core, so that its next publication waits for the line to come back: a reader that
    /// looks as fast as it can when the writer is only a message ahead makes every message
    /// pay that wait, on both sides. Looking less often, it takes a gap's worth at once.
    ///
    /// Returns whether the first look found `ready()` (the peer keeps up with this side).
    fn spin(&self, deadline: Option<Instant>, patient: bool, mut ready: impl FnMut() -> bool) -> bool {
        let mut window = Duration::from_nanos(self.spin.load(Ordering::Relaxed));
        if let Some(d) = deadline {
            window = window.min(d.saturating_duration_since(Instant::now()));
        }
        let misses = self.misses.load(Ordering::Relaxed);
        if window.is_zero() || (misses >= SPIN_MISSES && !misses.is_multiple_of(SPIN_PROBE)) {
            self.misses.store(misses.wrapping_add(1), Ordering::Relaxed);
            return false;
        }
        let crowded = self.crowded.load(Ordering::Relaxed);
        let alone = if crowded >= SPIN_MISSES && !crowded.is_multiple_of(SPIN_PROBE) {
            Duration::ZERO
        } else {
            SPIN_ALONE
        };
        let (looks, gap) = if patient { (1, GAP.min(window)) } else { (64, Duration::ZERO) };
        let start = Instant::now();
        let mut yielded = false;
        let mut first = true;
        loop {
            for _ in 0..looks {
                if patient {
                    pause(gap);
                }
                if ready() {
                    self.misses.store(0, Ordering::Relaxed);
                    self.crowded.store(if yielded { crowded.wrapping_add(1) } else { 0 }, Ordering::Relaxed);
                    return first;
                }
                std::hint::spin_loop();
            }
            first = false;
            let spent = start.elapsed();
            if spent >= window {
                self.misses.store(misses.wrapping_add(1), Ordering::Relaxed);
                return false;
            }
            if spent >= alone {
                std::thread::yield_now();
                yielded = true;
            }
        }
    }

    /// Whether this side reads a one-way stream: it wrote nothing since its last read (nobody
    /// waits for an answer from it) and data has been coming as fast as it reads. A
    /// request's reply, or a message after a pause, is looked for at once.
    fn patient(&self) -> bool {
        !self.wrote.load(Ordering::Relaxed) && self.quick.load(Ordering::Relaxed)
    }

    /// Reads at most `len` bytes into `ptr`; 0 means end of stream; `TimedOut` after
    /// `deadline`; `InvalidData` when the peer corrupted the ring.
    ///
    /// The caller guarantees that `ptr..ptr+len` is writable memory it owns.
    pub(crate) fn read_raw(&self, ptr: *mut u8, len: usize, deadline: Option<Instant>) -> io::Result<usize> {
        let mut rx = lock(&self.rx);
        // A reader of a one-way stream that finds a little data takes more at once if it waits
        // a gap first. Else it falls into step with the writer, a message behind: each look
        // takes the line the writer is still filling from the writer's core, and every
        // message pays that transfer on both sides (the same reason a patient spin looks
        // only once every gap). Never beyond the spin window or the deadline, and not when
        // the peer shares this CPU (no data can come while this side waits).
        if self.patient()
            && self.crowded.load(Ordering::Relaxed) < SPIN_MISSES
            && rx.available().is_ok_and(|n| n > 0 && n < BATCH.min(len))
        {
            let mut gap = GAP.min(Duration::from_nanos(self.spin.load(Ordering::Relaxed)));
            if let Some(d) = deadline {
                gap = gap.min(d.saturating_duration_since(Instant::now()));
            }
            pause(gap);
        }
        let mut spun = false;
        loop {
            self.bell.check_peer()?;
            // SAFETY: the caller's guarantee.
            let r = unsafe { rx.read(ptr, len) }?;
            if r.wake {
                self.bell.ring();
            }
            if r.len > 0 || len == 0 {
                if r.len > 0 && self.wrote.load(Ordering::Relaxed) {
                    self.wrote.store(false, Ordering::Relaxed);
                }
                return Ok(r.len);
            }
            if self.bell.closed() {
                // Whatever the peer published before it went is still read.
                // SAFETY: as above.
                return Ok(unsafe { rx.read(ptr, len) }?.len);
            }
            if deadline.is_some_and(|d| d <= Instant::now()) {
                return Err(io::ErrorKind::TimedOut.into());
            }
            if !spun {
                spun = true;
                let quick = self.spin(deadline, self.patient(), || {
                    rx.available().map_or(true, |n| n > 0) || self.bell.closed()
                });
                if quick != self.quick.load(Ordering::Relaxed) {
                    self.quick.store(quick, Ordering::Relaxed);
                }
                continue;
            }
            if !rx.start_waiting()? {
                self.bell.sleep(deadline, || rx.available().map_or(true, |n| n > 0))?;
            }
            rx.stop_waiting();
        }
    }

    /// Writes some of `bufs`; `TimedOut` when `deadline` passes first; `BrokenPipe` once the
    /// peer is gone.
    pub(crate) fn write_vectored(
        &self,
        bufs: &[IoSlice<'_>],
        deadline: Option<Instant>,
    ) -> io::Result<usize> {
        let mut tx = lock(&self.tx);
        let want: usize = bufs.iter().map(|b| b.len()).sum();
        let mut spun = false;
        loop {
            self.bell.check_peer()?;
            if self.bell.closed() {
                return Err(io::Error::new(io::ErrorKind::BrokenPipe, "the peer closed its end"));
            }
            let w = tx.write(bufs)?;
            if w.wake {
                self.bell.ring();
            }
            if w.len > 0 || want == 0 {
                if !self.wrote.load(Ordering::Relaxed) {
                    self.wrote.store(true, Ordering::Relaxed);
                }
                return Ok(w.len);
            }
            if deadline.is_some_and(|d| d <= Instant::now()) {
                return Err(io::ErrorKind::TimedOut.into());
            }
            if !spun {
                spun = true;
                self.spin(deadline, false, || tx.has_room() || self.bell.closed());
                continue;
            }
            if !tx.start_waiting()? {
                self.bell.sleep(deadline, || tx.has_room())?;
            }
            tx.stop_waiting();
        }
    }

    /// Whether a read would not wait: data in the ring, the peer gone, or an error to report.
    pub(crate) fn readable_now(&self) -> bool {
        let rx = lock(&self.rx);
        rx.available().map_or(true, |n| n > 0) || self.bell.closed() || self.bell.check_peer().is_err()
    }

    /// Whether data (or end of stream) can be read now, waiting up to `timeout`.
    pub(crate) fn wait_readable(&self, timeout: Option<Duration>) -> io::Result<bool> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let rx = lock(&self.rx);
        let ready = || {
            rx.available().map_or(true, |n| n > 0) || self.bell.closed() || self.bell.check_peer().is_err()
        };
        loop {
            if ready() {
                return Ok(true);
            }
            if deadline.is_some_and(|d| d <= Instant::now()) {
                return Ok(false);
            }
            if !rx.start_waiting().unwrap_or(true) {
                self.bell.sleep(deadline, ready)?;
            }
            rx.stop_waiting();
        }
    }

    /// Says the reader sleeps (for a wait over many objects that polls the socket itself);
    /// `true` when there is no need, as data is there or the peer gone.
    pub(crate) fn arm(&self) -> bool {
        let rx = lock(&self.rx);
        rx.start_waiting().unwrap_or(true) || self.bell.closed()
    }

    /// After a wait over many objects found the socket readable: takes the doorbell's bytes,
    /// says the reader is awake, and tells whether a read would not wait.
    pub(crate) fn settle(&self) -> bool {
        self.bell.take_rung();
        lock(&self.rx).stop_waiting();
        self.readable_now()
    }

    /// Says the reader no longer sleeps, after a wait over many objects.
    pub(crate) fn disarm(&self) {
        lock(&self.rx).stop_waiting();
    }

    /// The socket under the stream, which a wait over many objects polls.
    pub(crate) fn socket(&self) -> &Socket {
        &self.bell.socket
    }

    /// Hands the socket and the region to `cmd`'s child only, named in its environment as
    /// `var` and `var` with the suffix of this end's side.
    pub(crate) fn pass_to_child(&self, cmd: &mut std::process::Command, var: &str) -> io::Result<()> {
        // The child's doorbell expects nothing but doorbell bytes.
        self.bell.take_first(Instant::now().checked_add(FIRST_WAIT))?;
        self.bell.socket.pass_to_child(cmd, var)?;
        region::pass_region(&self.map, cmd, &memory_var(var, self.side))
    }

    pub(crate) fn local_addr(&self) -> Option<Address> {
        self.local.clone()
    }

    pub(crate) fn peer_addr(&self) -> Option<Address> {
        self.peer.clone()
    }
}

/// Waits `gap` without looking at the ring (or at anything the other core writes).
fn pause(gap: Duration) {
    let until = Instant::now() + gap;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// The frame of [`SHM_OFFER`]: its short header, then the message.
fn offer_frame() -> Vec<u8> {
    [&(SHM_OFFER.len() as u32).to_be_bytes()[..], SHM_OFFER].concat()
}

/// Reads exactly `buf.len()` bytes with `read`; `false` at end of stream before that.
pub(crate) fn read_exact(
    mut read: impl FnMut(&mut [u8]) -> io::Result<usize>,
    buf: &mut [u8],
) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match read(&mut buf[got..])? {
            0 => return Ok(false),
            n => got += n,
        }
    }
    Ok(true)
}

/// Takes the region the other end sent with the platform's `send_region`.
fn take_region(socket: &Socket, deadline: Option<Instant>) -> io::Result<Mapping> {
    match region::take_region(socket, &offer_frame(), deadline) {
        Ok(Some(map)) => Ok(map),
        Ok(None) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the listener sent no shared memory: it is not an shm: listener (connect with its own address form)",
        )),
        Err(e) if e.kind() == io::ErrorKind::TimedOut => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "no shared memory came from the listener in time (is it an shm: listener?)",
        )),
        Err(e) => Err(e),
    }
}

/// The listener's side of the upgrade, after the handshake: makes a region with rings of
/// `capacity` bytes, sends it to the client over `socket`, and makes the stream. `addr` is
/// the listener's `shm:` address; `hello`: the client sent [`SHM_HELLO`] first (no
/// handshake), and any other first bytes on the socket mean a plain client.
pub(crate) fn offer(
    socket: Socket,
    addr: Option<Address>,
    capacity: usize,
    hello: bool,
    deadline: Option<Instant>,
) -> io::Result<Stream> {
    let map = Mapping::create_passable(ring::region_len(capacity))?;
    ring::init(&map, capacity)?;
    region::send_region(&socket, &map, &offer_frame(), deadline)?;
    let first: Vec<u8> =
        if hello { [&(SHM_HELLO.len() as u32).to_be_bytes()[..], SHM_HELLO].concat() } else { Vec::new() };
    Ok(Stream::with_bell(Doorbell::new(socket, &first), map, capacity, Side::Listener, addr))
}

/// The client's side of the upgrade, after the handshake: takes the listener's region from
/// `socket` and makes the stream. `addr` is the `shm:` address connected to; rings smaller
/// than `min` bytes (what the client asked for) are refused.
pub(crate) fn take_offer(
    socket: Socket,
    addr: Option<Address>,
    min: usize,
    deadline: Option<Instant>,
) -> io::Result<Stream> {
    let map = take_region(&socket, deadline)?;
    let capacity = ring::capacity_of(&map)?;
    if capacity < min {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the listener made rings of {capacity} bytes, smaller than the {min} asked for"),
        ));
    }
    Ok(Stream::new(socket, map, capacity, Side::Client, addr))
}

/// A connected pair of shared-memory streams with rings of `capacity` bytes over a socket
/// pair, for [`crate::pipe_with`].
pub(crate) fn pair(a: Socket, b: Socket, capacity: usize) -> io::Result<(Stream, Stream)> {
    let a = offer(a, None, capacity, false, None)?;
    let b = take_offer(b, None, capacity, None)?;
    Ok((a, b))
}

/// Waits over many objects, some of them the shared-memory streams `shm` (with their indices
/// among all): says each reader sleeps, lets `os_wait` poll everything (the streams as their
/// sockets) until `deadline`, and counts a stream ready only if its ring has data or its peer
/// is gone (a byte rung earlier is no news).
pub(crate) fn wait_many(
    shm: &[(usize, &Stream)],
    deadline: Option<Instant>,
    mut os_wait: impl FnMut(Option<Instant>) -> io::Result<Vec<usize>>,
) -> io::Result<Vec<usize>> {
    let result = (|| loop {
        let mut ready: Vec<usize> = shm.iter().filter(|(_, s)| s.arm()).map(|(i, _)| *i).collect();
        // Another thread of a stream (the other half of a split connection, sleeping in its
        // doorbell) may take the byte meant for this wait: look at the rings again now and
        // then, as every doorbell sleep does.
        let recheck = Instant::now() + doorbell::RECHECK;
        let until = if ready.is_empty() {
            Some(deadline.map_or(recheck, |d| d.min(recheck)))
        } else {
            Some(Instant::now())
        };
        let mut polled = os_wait(until)?;
        polled.retain(|i| match shm.iter().find(|(j, _)| j == i) {
            Some((_, s)) => s.settle(),
            None => true,
        });
        ready.extend(polled);
        ready.sort_unstable();
        ready.dedup();
        if !ready.is_empty() || deadline.is_some_and(|d| d <= Instant::now()) {
            return Ok(ready);
        }
    })();
    for (_, s) in shm {
        s.disarm();
    }
    result
}

/// The environment variable naming the region passed beside the socket named by `var`.
fn memory_var(var: &str, side: Side) -> String {
    match side {
        Side::Listener => format!("{var}_SHM_LISTENER"),
        Side::Client => format!("{var}_SHM_CLIENT"),
    }
}

/// The shared-memory stream a parent passed as `var` with [`Stream::pass_to_child`], if the
/// environment names a region beside the socket; `None` for a plain socket.
pub(crate) fn from_env(var: &str) -> crate::Result<Option<Stream>> {
    let Some(side) =
        [Side::Listener, Side::Client].into_iter().find(|s| std::env::var_os(memory_var(var, *s)).is_some())
    else {
        return Ok(None);
    };
    let map = region::region_from_env(&memory_var(var, side))?;
    let socket = Socket::from_env(var)?;
    // A region the peer left unusable (its header rewritten) is its fault, as at connection.
    let capacity = ring::capacity_of(&map).map_err(|e| crate::Error::Protocol(e.to_string()))?;
    Ok(Some(Stream::new(socket, map, capacity, side, None)))
}
