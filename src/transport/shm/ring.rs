//! The memory of a shared-memory stream: a region holding one single-writer single-reader byte
//! ring per direction, and the two ends of one ring. No system calls here: the region is any
//! mapping (`sys::shm`, a heap model under Miri) and waking is the caller's.
//!
//! The peer maps the same memory and may write anything into it at any time, so every number
//! read from the region is checked before it is used: each side keeps its own position in
//! private memory, reads only the other side's counter, and refuses a counter that would put
//! more than the ring's capacity between the two ([`Corrupt`]). Copies are bounded by the
//! capacity fixed when the region was opened, never by a value read from it.

use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

use crate::sys::shm::Mapping;
use crate::util::copy_in_pieces as copy;

/// The first bytes of a region: its kind and layout version.
const MAGIC: u64 = u64::from_le_bytes(*b"PWSHMRG2");
/// Bytes before the first ring: the magic and the capacity.
const HEADER: usize = 128;
/// Control bytes of one ring: four words, each on a 128-byte line of its own (two cache lines,
/// as adjacent lines are fetched in pairs). A counter is written on every publication and its
/// line moves to the other side's core each time; a waiting word is written only around a
/// sleep, so the side that looks at it after every publication finds it in its own cache.
const CONTROL: usize = 512;
const TAIL: usize = 0;
const WRITER_WAITING: usize = 128;
const HEAD: usize = 256;
const READER_WAITING: usize = 384;

/// The most bytes a write or read copies before it publishes its position, so that a large
/// copy on one side overlaps with the other side's; a quarter of the ring if that is less.
const PUBLISH: usize = 64 << 10;

/// How far ahead of its tail a writer asks for the ring's line ([`Ring::prefetch_for_write`]):
/// eight lines, about a microsecond of 16-byte messages, longer than a line takes to come
/// from the reader's core. Measured (BENCHMARKS.md): 256 to 768 bytes alike, 2 KiB and more
/// less good, as the line is then asked for too early.
const AHEAD: usize = 512;

/// The smallest and largest ring capacity a region may declare.
pub(crate) const MIN_CAPACITY: usize = 4 << 10;
pub(crate) const MAX_CAPACITY: usize = 1 << 30;

/// A peer's counter that no correct writer or reader could have left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Corrupt;

impl From<Corrupt> for io::Error {
    fn from(_: Corrupt) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            crate::Error::Protocol(
                "the peer corrupted the shared-memory ring (a position out of range)".into(),
            ),
        )
    }
}

/// Bytes of a region with two rings of `capacity` bytes.
pub(crate) fn region_len(capacity: usize) -> usize {
    HEADER + 2 * (CONTROL + capacity)
}

/// Whether `capacity` is one a ring may have: a power of two (positions wrap with a mask)
/// from [`MIN_CAPACITY`] to [`MAX_CAPACITY`].
pub(crate) fn valid_capacity(capacity: usize) -> bool {
    capacity.is_power_of_two() && (MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity)
}

/// Writes the header of a fresh (zeroed) region made for rings of `capacity` bytes.
pub(crate) fn init(map: &Mapping, capacity: usize) -> io::Result<()> {
    if !valid_capacity(capacity) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "ring capacity: a power of two, 4 KiB to 1 GiB",
        ));
    }
    if map.len() < region_len(capacity) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "shared memory too small for its rings"));
    }
    word(map, 8).store(capacity as u64, Ordering::Relaxed);
    word(map, 0).store(MAGIC, Ordering::Release);
    Ok(())
}

/// How much larger than its rings a region may map: what a platform rounds a mapping's size
/// up to (Windows reports a view's size in whole pages; its allocation unit is 64 KiB).
const SLACK: usize = 64 << 10;

/// The ring capacity a region made by a peer declares, checked against the region's size.
pub(crate) fn capacity_of(map: &Mapping) -> io::Result<usize> {
    let bad = |what: &str| {
        io::Error::new(io::ErrorKind::InvalidData, format!("not a procwire ring region: {what}"))
    };
    if map.len() < HEADER {
        return Err(bad("too small"));
    }
    if word(map, 0).load(Ordering::Acquire) != MAGIC {
        return Err(bad("wrong magic"));
    }
    let cap = usize::try_from(word(map, 8).load(Ordering::Relaxed)).map_err(|_| bad("capacity"))?;
    if !valid_capacity(cap) || map.len() < region_len(cap) {
        return Err(bad("capacity does not fit the region"));
    }
    // A region far larger than its rings is no region we made: the peer would choose how
    // much of our address space its mapping holds for as long as the connection lives.
    if map.len() > region_len(cap).next_multiple_of(SLACK) {
        return Err(bad("the region is larger than its rings"));
    }
    Ok(cap)
}

/// Marks a fresh region with `token` (header words 2 and 3), for a peer that takes the region
/// by a name that could come to mean another region (see [`has_token`]).
#[cfg_attr(unix, allow(dead_code))]
pub(crate) fn set_token(map: &Mapping, token: [u64; 2]) {
    word(map, 16).store(token[0], Ordering::Relaxed);
    word(map, 24).store(token[1], Ordering::Relaxed);
}

/// Whether the region carries `token` ([`set_token`]): the region the peer meant.
#[cfg_attr(unix, allow(dead_code))]
pub(crate) fn has_token(map: &Mapping, token: [u64; 2]) -> bool {
    word(map, 16).load(Ordering::Relaxed) == token[0] && word(map, 24).load(Ordering::Relaxed) == token[1]
}

/// The 8-byte word at `at` in the first [`HEADER`] bytes.
fn word(map: &Mapping, at: usize) -> &AtomicU64 {
    assert!(at + 8 <= HEADER && at.is_multiple_of(8) && map.len() >= HEADER);
    // SAFETY: in bounds (asserted), 8-aligned (the mapping is page-aligned), and these bytes
    // are only ever accessed as atomics, by every process.
    unsafe { &*map.ptr().add(at).cast::<AtomicU64>() }
}

/// Whether this CPU has `prefetchw` (CPUID leaf 0x8000_0001, ECX bit 8): AMD's since 2007,
/// Intel's since 2014. Asked once, as `cpuid` costs a trip to the hypervisor in a VM.
#[cfg(all(target_arch = "x86_64", not(miri)))]
fn has_prefetchw() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        use std::arch::x86_64::__cpuid;
        // `__cpuid` is a safe function in newer Rust, unsafe in the oldest we support.
        #[allow(unused_unsafe)]
        // SAFETY: every x86-64 CPU has `cpuid`, and leaf 0x8000_0000 says which extended
        // leaves it answers.
        unsafe {
            __cpuid(0x8000_0000).eax >= 0x8000_0001 && __cpuid(0x8000_0001).ecx & (1 << 8) != 0
        }
    })
}

/// One ring of a region: raw pointers into a mapping the caller keeps alive.
#[derive(Debug, Clone, Copy)]
struct Ring {
    control: *mut u8,
    data: *mut u8,
    capacity: usize,
}

// SAFETY: the pointers lead into a shared mapping the owner (the stream) keeps alive. Its
// control words are only touched as atomics. Its data bytes are only copied through raw
// pointers (never through a reference) into or out of our private memory, at positions the
// counters hand to this side; a peer process that breaks that rule and writes bytes we are
// copying can only change the bytes we get (any u8 is valid, and what we parse is parsed from
// our private copy, read once), never our control flow or memory safety.
unsafe impl Send for Ring {}
// SAFETY: as above.
unsafe impl Sync for Ring {}

impl Ring {
    /// Ring `index` (0 or 1) of `map`, whose header says `capacity` ([`capacity_of`]).
    fn new(map: &Mapping, capacity: usize, index: usize) -> Ring {
        assert!(index < 2 && map.len() >= region_len(capacity));
        let offset = HEADER + index * (CONTROL + capacity);
        // SAFETY: offset + CONTROL + capacity <= region_len(capacity) <= map.len() (asserted).
        let control = unsafe { map.ptr().add(offset) };
        // SAFETY: as above.
        let data = unsafe { control.add(CONTROL) };
        Ring { control, data, capacity }
    }

    fn counter(&self, at: usize) -> &AtomicU64 {
        // SAFETY: `at` is one of the control offsets, inside the CONTROL bytes and 8-aligned
        // (the region is page-aligned, HEADER and CONTROL multiples of 128, capacity a power
        // of two of at least 4 KiB); those bytes are only ever accessed as atomics.
        unsafe { &*self.control.add(at).cast::<AtomicU64>() }
    }

    /// Bytes copied between two publications of a position (see [`PUBLISH`]).
    fn piece(&self) -> usize {
        (self.capacity / 4).min(PUBLISH)
    }

    fn flag(&self, at: usize) -> &AtomicU32 {
        // SAFETY: as in `counter`, for a 4-byte word.
        unsafe { &*self.control.add(at).cast::<AtomicU32>() }
    }

    /// Clears the waiting word at `at` and tells whether it was set. It is read first and
    /// swapped only when set: a swap would take its line from the other side's cache on every
    /// publication, though it is almost always clear.
    fn take_flag(&self, at: usize) -> bool {
        let flag = self.flag(at);
        flag.load(Ordering::Relaxed) != 0 && flag.swap(0, Ordering::Relaxed) != 0
    }

    /// Copies `len` bytes at ring position `pos` out to `dst` (which has room for them),
    /// across the ring's edge if need be.
    ///
    /// # Safety
    /// `dst..dst+len` is writable and `len <= capacity`.
    unsafe fn copy_out(&self, pos: u64, dst: *mut u8, len: usize) {
        let at = (pos as usize) & (self.capacity - 1);
        let first = len.min(self.capacity - at);
        // SAFETY: at + first <= capacity and len - first <= capacity: inside the data bytes.
        unsafe {
            copy(self.data.add(at), dst, first);
            copy(self.data, dst.add(first), len - first);
        }
    }

    /// Asks the CPU for the line at ring position `pos`, to write it: a hint, nothing else.
    ///
    /// A line of the ring was last read by the reader, on the other core. A store to it waits
    /// until that core gives it up, and the writer's next fence or atomic waits for that store;
    /// so a writer of small messages paid one core-to-core transfer per line, one after the
    /// other. Asked for ahead of time, the transfers overlap with the copies before them.
    fn prefetch_for_write(&self, pos: u64) {
        let at = (pos as usize) & (self.capacity - 1);
        // `prefetchw`: a plain prefetch would fetch the line shared, and the store would then
        // still wait for the other core to drop its copy.
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        if has_prefetchw() {
            // SAFETY: the CPU has the instruction (just checked); a prefetch reads no memory,
            // writes none and cannot fault, and the address is inside the data bytes anyway
            // (at < capacity).
            unsafe {
                std::arch::asm!("prefetchw [{0}]", in(reg) self.data.add(at), options(nostack, preserves_flags, readonly));
            }
        }
        #[cfg(not(all(target_arch = "x86_64", not(miri))))]
        let _ = at;
    }

    /// Copies `src` in at ring position `pos`, across the edge if need be.
    fn copy_in(&self, pos: u64, src: &[u8]) {
        // The bounds the unsafe copy below relies on: one comparison per write.
        assert!(src.len() <= self.capacity, "a copy larger than the ring");
        let at = (pos as usize) & (self.capacity - 1);
        let first = src.len().min(self.capacity - at);
        // SAFETY: as in copy_out; src is a slice of that length.
        unsafe {
            copy(src.as_ptr(), self.data.add(at), first);
            copy(src.as_ptr().add(first), self.data, src.len() - first);
        }
    }
}

/// The writing end of one ring.
#[derive(Debug)]
pub(crate) struct Writer {
    ring: Ring,
    /// Bytes published, ever: ours alone, never read back from the region.
    tail: u64,
    /// The reader's head as last read: looked at again only when it says the ring is full.
    head: u64,
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Written {
    /// Bytes copied in (0: the ring is full).
    pub(crate) len: usize,
    /// The reader said it was going to sleep: ring its doorbell.
    pub(crate) wake: bool,
}

impl Writer {
    /// The writer of ring `index` of `map` (a region of rings of `capacity` bytes). The caller
    /// keeps `map` alive as long as the writer.
    pub(crate) fn new(map: &Mapping, capacity: usize, index: usize) -> Writer {
        let ring = Ring::new(map, capacity, index);
        let tail = ring.counter(TAIL).load(Ordering::Relaxed);
        // As if the ring were full: the first write reads the reader's head, since a region
        // adopted from another process (a pipe end passed on) may still hold unread bytes.
        Writer { ring, tail, head: tail.wrapping_sub(capacity as u64) }
    }

    /// Bytes free in the ring, reading the reader's head again.
    fn room(&mut self) -> Result<usize, Corrupt> {
        let head = self.ring.counter(HEAD).load(Ordering::Acquire);
        let used = self.tail.wrapping_sub(head);
        if used > self.ring.capacity as u64 {
            return Err(Corrupt);
        }
        self.head = head;
        Ok(self.ring.capacity - used as usize)
    }

    /// Whether a write would take bytes now (a corrupt ring too: the write says so).
    pub(crate) fn has_room(&self) -> bool {
        let used = self.tail.wrapping_sub(self.ring.counter(HEAD).load(Ordering::Acquire));
        used != self.ring.capacity as u64
    }

    /// Copies as much of `bufs` as fits (also room the reader makes meanwhile) and publishes
    /// it, piece by piece: the reader starts copying out the first piece while this side
    /// copies in the next, instead of waiting for the whole write.
    pub(crate) fn write(&mut self, bufs: &[IoSlice<'_>]) -> Result<Written, Corrupt> {
        let want: usize = bufs.iter().map(|b| b.len()).sum();
        let mut room = self.ring.capacity - self.tail.wrapping_sub(self.head) as usize;
        if room < want {
            room = self.room()?;
        }
        if room == 0 || want == 0 {
            return Ok(Written { len: 0, wake: false });
        }
        let mut done = 0;
        // Bytes copied in since the tail was last published: a header and its payload in two
        // slices are published together, so the reader never wakes for the header alone.
        let mut unpublished = 0;
        'bufs: for b in bufs {
            let mut at = 0;
            while at < b.len() {
                if room == 0 {
                    self.publish(&mut unpublished);
                    room = self.room()?;
                    if room == 0 {
                        break 'bufs;
                    }
                }
                let take = (b.len() - at).min(room).min(self.ring.piece() - unpublished);
                self.ring.copy_in(self.tail, &b[at..at + take]);
                self.tail = self.tail.wrapping_add(take as u64);
                (at, done, room, unpublished) = (at + take, done + take, room - take, unpublished + take);
                if unpublished == self.ring.piece() {
                    self.publish(&mut unpublished);
                }
            }
        }
        if room > AHEAD {
            self.ring.prefetch_for_write(self.tail.wrapping_add(AHEAD as u64));
        }
        // The last publication and the look at the reader's waiting word are sequentially
        // consistent, pairing with the reader's fence between saying it sleeps and looking
        // again: either it sees the new tail, or we see it waiting. (An `xchg` here costs
        // less than a plain store followed by a fence.)
        if unpublished > 0 {
            self.ring.counter(TAIL).store(self.tail, Ordering::SeqCst);
        } else {
            // Published inside the loop, by a plain release store.
            fence(Ordering::SeqCst);
        }
        let waiting = self.ring.flag(READER_WAITING);
        let wake = waiting.load(Ordering::SeqCst) != 0 && waiting.swap(0, Ordering::Relaxed) != 0;
        Ok(Written { len: done, wake })
    }

    /// Publishes the bytes copied in so far (`unpublished` of them), if any.
    fn publish(&mut self, unpublished: &mut usize) {
        if *unpublished > 0 {
            self.ring.counter(TAIL).store(self.tail, Ordering::Release);
            *unpublished = 0;
        }
    }

    /// Says this writer is about to sleep until there is room; `Ok(true)` if there is room
    /// already (then it does not sleep, and says so again with [`Writer::stop_waiting`]).
    pub(crate) fn start_waiting(&mut self) -> Result<bool, Corrupt> {
        self.ring.flag(WRITER_WAITING).store(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        Ok(self.room()? > 0)
    }

    /// Says this writer no longer sleeps.
    pub(crate) fn stop_waiting(&self) {
        self.ring.flag(WRITER_WAITING).store(0, Ordering::Relaxed);
    }
}

/// The reading end of one ring.
#[derive(Debug)]
pub(crate) struct Reader {
    ring: Ring,
    /// Bytes taken, ever: ours alone, never read back from the region.
    head: u64,
}

/// What a read did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Read {
    /// Bytes copied out (0: the ring is empty).
    pub(crate) len: usize,
    /// The writer said it was waiting for room: ring its doorbell.
    pub(crate) wake: bool,
}

impl Reader {
    /// The reader of ring `index` of `map`; as [`Writer::new`].
    pub(crate) fn new(map: &Mapping, capacity: usize, index: usize) -> Reader {
        let ring = Ring::new(map, capacity, index);
        let head = ring.counter(HEAD).load(Ordering::Relaxed);
        Reader { ring, head }
    }

    /// Bytes published and not yet taken.
    pub(crate) fn available(&self) -> Result<usize, Corrupt> {
        let tail = self.ring.counter(TAIL).load(Ordering::Acquire);
        let n = tail.wrapping_sub(self.head);
        if n > self.ring.capacity as u64 {
            return Err(Corrupt);
        }
        Ok(n as usize)
    }

    /// Copies up to `len` published bytes to `dst` (also bytes the writer publishes
    /// meanwhile) and gives their room back to the writer, piece by piece (see
    /// [`Writer::write`]).
    ///
    /// # Safety
    /// `dst..dst+len` is writable memory the caller owns.
    pub(crate) unsafe fn read(&mut self, dst: *mut u8, len: usize) -> Result<Read, Corrupt> {
        let mut ready = self.available()?.min(len);
        if ready == 0 {
            return Ok(Read { len: 0, wake: false });
        }
        let mut done = 0;
        while ready > 0 {
            let take = ready.min(self.ring.piece());
            // SAFETY: done + take <= len (dst's room); take <= available <= capacity.
            unsafe { self.ring.copy_out(self.head, dst.add(done), take) };
            done += take;
            self.head = self.head.wrapping_add(take as u64);
            self.ring.counter(HEAD).store(self.head, Ordering::Release);
            ready -= take;
            if ready == 0 {
                ready = self.available()?.min(len - done);
            }
        }
        fence(Ordering::SeqCst);
        Ok(Read { len: done, wake: self.ring.take_flag(WRITER_WAITING) })
    }

    /// Says this reader is about to sleep until data comes; `Ok(true)` if data is there
    /// already (then it does not sleep, and says so again with [`Reader::stop_waiting`]).
    pub(crate) fn start_waiting(&self) -> Result<bool, Corrupt> {
        self.ring.flag(READER_WAITING).store(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        Ok(self.available()? > 0)
    }

    /// Says this reader no longer sleeps.
    pub(crate) fn stop_waiting(&self) {
        self.ring.flag(READER_WAITING).store(0, Ordering::Relaxed);
    }
}

/// A test-only hook: writes `garbage` over ring `index`'s tail, as a scribbling peer would.
#[cfg(test)]
pub(crate) fn scribble_tail(map: &Mapping, capacity: usize, index: usize, garbage: u64) {
    Ring::new(map, capacity, index).counter(TAIL).store(garbage, Ordering::Release);
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: usize = MIN_CAPACITY;

    fn region() -> Mapping {
        let map = Mapping::create(region_len(CAP)).unwrap();
        init(&map, CAP).unwrap();
        map
    }

    fn read(r: &mut Reader, n: usize) -> Result<Vec<u8>, Corrupt> {
        let mut v = vec![0; n];
        // SAFETY: v has n writable bytes.
        let got = unsafe { r.read(v.as_mut_ptr(), n) }?;
        v.truncate(got.len);
        Ok(v)
    }

    #[test]
    fn the_header_is_checked_on_open() {
        let map = region();
        assert_eq!(capacity_of(&map).unwrap(), CAP);
        word(&map, 8).store(3, Ordering::Relaxed);
        assert!(capacity_of(&map).is_err());
        word(&map, 8).store((CAP * 2) as u64, Ordering::Relaxed);
        assert!(capacity_of(&map).is_err(), "a capacity larger than the region");
        word(&map, 0).store(0, Ordering::Relaxed);
        assert!(capacity_of(&map).is_err());
        // A region far larger than the rings its header declares.
        let big = Mapping::create(region_len(CAP) + SLACK + 4096).unwrap();
        init(&big, CAP).unwrap();
        assert!(capacity_of(&big).is_err(), "a region larger than its rings");
        assert!(init(&map, 1000).is_err());
    }

    #[test]
    fn a_writer_adopting_a_ring_with_unread_bytes_writes_after_them() {
        // A pipe end passed to a child: the child's writer starts where the parent's stopped,
        // with the parent's bytes still unread.
        let map = region();
        let (mut first, mut r) = (Writer::new(&map, CAP, 0), Reader::new(&map, CAP, 0));
        let old: Vec<u8> = (0..CAP - 100).map(|i| i as u8).collect();
        assert_eq!(first.write(&[IoSlice::new(&old)]).unwrap().len, old.len());
        let mut adopted = Writer::new(&map, CAP, 0);
        assert_eq!(adopted.write(&[IoSlice::new(&[0xee; 300])]).unwrap().len, 100, "only the free room");
        assert_eq!(read(&mut r, CAP).unwrap(), [old, vec![0xee; 100]].concat());
    }

    #[test]
    fn bytes_cross_the_edge_and_a_full_ring_takes_nothing() {
        let map = region();
        let (mut w, mut r) = (Writer::new(&map, CAP, 0), Reader::new(&map, CAP, 0));
        let data: Vec<u8> = (0..CAP + 100).map(|i| (i * 7) as u8).collect();
        assert_eq!(w.write(&[IoSlice::new(&data[..CAP - 10])]).unwrap().len, CAP - 10);
        assert_eq!(read(&mut r, CAP - 20).unwrap(), &data[..CAP - 20]);
        // 10 bytes left in the ring: all but 10 of a ring fit, across the edge.
        let w2 = w.write(&[IoSlice::new(&data[..15]), IoSlice::new(&data[15..CAP])]).unwrap();
        assert_eq!(w2.len, CAP - 10);
        assert_eq!(w.write(&[IoSlice::new(b"x")]).unwrap().len, 0, "full");
        let mut all = read(&mut r, CAP * 2).unwrap();
        assert_eq!(all.len(), CAP);
        assert_eq!(&all[..10], &data[CAP - 20..CAP - 10]);
        all.drain(..10);
        assert_eq!(all, &data[..CAP - 10]);
        assert_eq!(read(&mut r, 10).unwrap(), b"");
    }

    #[test]
    fn a_sleeping_reader_is_woken_once_and_a_waiting_writer_too() {
        let map = region();
        let (mut w, mut r) = (Writer::new(&map, CAP, 1), Reader::new(&map, CAP, 1));
        assert!(!r.start_waiting().unwrap());
        assert!(w.write(&[IoSlice::new(b"ab")]).unwrap().wake);
        assert!(!w.write(&[IoSlice::new(b"cd")]).unwrap().wake, "one bell per sleep");
        assert!(r.start_waiting().unwrap(), "data there already");
        r.stop_waiting();
        let fill = vec![0u8; CAP];
        w.write(&[IoSlice::new(&fill)]).unwrap();
        assert!(!w.start_waiting().unwrap());
        let got = read(&mut r, 1).unwrap();
        assert_eq!(got, b"a");
        // SAFETY: a one-byte buffer.
        let again = unsafe { r.read([0u8; 1].as_mut_ptr(), 1) }.unwrap();
        assert!(!again.wake, "the writer was woken by the first read");
        assert!(w.start_waiting().unwrap());
        w.stop_waiting();
    }

    #[test]
    fn garbage_counters_are_errors_not_reads_out_of_bounds() {
        let map = region();
        let (mut w, mut r) = (Writer::new(&map, CAP, 0), Reader::new(&map, CAP, 0));
        w.write(&[IoSlice::new(b"hello")]).unwrap();
        for garbage in [u64::MAX, CAP as u64 + 1, 1 << 40, u64::MAX / 2] {
            scribble_tail(&map, CAP, 0, garbage);
            assert_eq!(read(&mut r, 1 << 20), Err(Corrupt));
            assert_eq!(r.start_waiting(), Err(Corrupt));
        }
        // A tail within range is just bytes: the reader takes garbage, never more than a ring.
        scribble_tail(&map, CAP, 0, CAP as u64);
        assert_eq!(read(&mut r, 1 << 20).unwrap().len(), CAP);
        // A head moved by the peer beyond what the writer published.
        Ring::new(&map, CAP, 0).counter(HEAD).store(1 << 50, Ordering::Release);
        let fill = vec![0u8; CAP + 1];
        assert_eq!(w.write(&[IoSlice::new(&fill)]), Err(Corrupt));
    }

    #[test]
    fn bytes_stream_between_threads_intact() {
        // Uneven writes and reads, many times round the ring, both sides racing: under Miri
        // this checks the orderings that hand each byte from one side to the other.
        let map = region();
        let total = if cfg!(miri) { 3 * CAP + 77 } else { 50 * CAP + 77 };
        let byte = |i: usize| (i * 13 + i / 251) as u8;
        let mut w = Writer::new(&map, CAP, 0);
        let mut r = Reader::new(&map, CAP, 0);
        std::thread::scope(|s| {
            s.spawn(move || {
                let (mut at, mut step) = (0, 1);
                while at < total {
                    let n = step.min(total - at);
                    let chunk: Vec<u8> = (at..at + n).map(byte).collect();
                    let mut done = 0;
                    while done < n {
                        let mid = (n / 2).max(done);
                        let got = w.write(&[IoSlice::new(&chunk[done..mid]), IoSlice::new(&chunk[mid..])]);
                        let got = got.unwrap().len;
                        if got == 0 {
                            std::thread::yield_now();
                        }
                        done += got;
                    }
                    at += n;
                    step = (step * 31 + 17) % (3 * CAP);
                }
            });
            let (mut at, mut want) = (0, 3);
            while at < total {
                let got = read(&mut r, want).unwrap();
                if got.is_empty() {
                    std::thread::yield_now();
                }
                for (k, b) in got.iter().enumerate() {
                    assert_eq!(*b, byte(at + k), "byte {}", at + k);
                }
                at += got.len();
                want = (want * 13 + 5) % (2 * CAP) + 1;
            }
        });
    }
}
