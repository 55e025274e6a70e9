//! A hostile peer on a shared-memory connection, in a real child process: it holds its end of
//! a `pipe_with(PipeKind::SharedMemory)` pair, maps the region itself and writes into it what
//! no procwire side writes (counters that jump, flip or go backwards, frame headers that
//! change under the reader, waiting words with odd values, a rewritten region header), or
//! misuses the doorbell socket (floods it, writes other bytes, half-closes it, never reads
//! it). The side under attack must answer with a typed error or carry on, within its
//! timeouts, and a second connection of the same process must stay unharmed.
//! (tests/shm.rs has the peer that overwrites the whole region once.)

#![cfg(target_os = "linux")]

mod common;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{ChildGuard, pattern, role, say, spawn};
use procwire::{Connection, Error, PipeKind, pipe_with};

const VAR: &str = "PROCWIRE_TEST_CONN";
/// How long an attacking child keeps at it.
const ATTACK: Duration = Duration::from_secs(2);
const LIMIT: Duration = Duration::from_secs(30);

// The region's layout (src/transport/shm/ring.rs): a 128-byte header (magic, capacity), then
// per ring 512 control bytes (tail, writer waiting, head, reader waiting, 128 bytes apart)
// and its data. The listener's end (the first of a pair) writes ring 0 and reads ring 1.
const HEADER: usize = 128;
const CONTROL: usize = 512;
const TAIL: usize = 0;
const WRITER_WAITING: usize = 128;
const HEAD: usize = 256;
const READER_WAITING: usize = 384;

/// The region as the attacking child maps it.
struct Region {
    ptr: *mut u8,
    len: usize,
    cap: usize,
}

impl Region {
    /// Maps the region whose descriptor our parent passed beside `VAR`.
    fn from_env() -> Region {
        let fd: i32 =
            std::env::var(format!("{VAR}_SHM_CLIENT")).unwrap().split(':').next().unwrap().parse().unwrap();
        // SAFETY: a zeroed stat is valid plain data for fstat to fill.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: a descriptor of this process and a stat to write.
        assert_eq!(unsafe { libc::fstat(fd, &mut st) }, 0);
        let len = st.st_size as usize;
        // SAFETY: mapping the region our parent passed, shared, whole.
        let p = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0)
        };
        assert_ne!(p, libc::MAP_FAILED);
        let mut r = Region { ptr: p.cast(), len, cap: 0 };
        r.cap = r.word(8).load(Ordering::Relaxed) as usize;
        r
    }

    /// The 8-byte word at byte `at` of the region.
    fn word(&self, at: usize) -> &AtomicU64 {
        assert!(at + 8 <= self.len && at.is_multiple_of(8));
        // SAFETY: in bounds and aligned (asserted; the mapping is page-aligned); the mapping
        // lives as long as the process (never unmapped).
        unsafe { &*self.ptr.add(at).cast::<AtomicU64>() }
    }

    fn ring(&self, index: usize) -> usize {
        HEADER + index * (CONTROL + self.cap)
    }

    fn counter(&self, index: usize, at: usize) -> &AtomicU64 {
        self.word(self.ring(index) + at)
    }

    fn flag(&self, index: usize, at: usize) -> &AtomicU32 {
        // SAFETY: a 4-byte word at the start of an 8-byte one (see `word`).
        unsafe { &*(self.word(self.ring(index) + at) as *const AtomicU64).cast::<AtomicU32>() }
    }

    /// Writes `bytes` into ring `index`'s data at ring position `pos`, across the edge.
    fn write_data(&self, index: usize, pos: u64, bytes: &[u8]) {
        let data = self.ring(index) + CONTROL;
        for (i, b) in bytes.iter().enumerate() {
            let at = (pos as usize + i) & (self.cap - 1);
            // SAFETY: inside ring `index`'s data bytes (at < cap).
            unsafe { self.ptr.add(data + at).write_volatile(*b) };
        }
    }
}

/// The socket our parent passed beside the region.
fn socket_fd() -> i32 {
    std::env::var(VAR).unwrap().split(':').next().unwrap().parse().unwrap()
}

/// Rings the parent's doorbell (the bell is one byte 1 on Unix).
fn ring_bell(fd: i32) {
    // SAFETY: one byte from a live buffer to a descriptor of this process.
    unsafe { libc::send(fd, [1u8].as_ptr().cast(), 1, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
}

/// Entry point of every child process of this file: the attackers.
#[test]
#[ignore = "runs only as a child process of the other tests"]
fn child() {
    let role = role().expect("child started without a role");
    // A process the attacked end is passed to, after the attack: how adopting it went.
    if role == "adopt" {
        match Connection::from_env(VAR) {
            Ok(_) => say("ok"),
            Err(e) => say(&format!("err {e:?}")),
        }
        std::process::exit(0);
    }
    let mut c = Connection::from_env(VAR).unwrap();
    let r = Region::from_env();
    let sock = socket_fd();
    c.send_bytes(b"ready").unwrap();
    assert_eq!(c.recv_bytes().unwrap(), b"go");
    let start = Instant::now();
    let mut k: u64 = 0;
    match role.as_str() {
        // The ring the parent reads (1): headers that claim huge or negative lengths, or change
        // between its reads; a tail that flips between a valid place, half a header, exactly a
        // ring ahead, one more, behind the head, and garbage.
        "tail-games" => {
            let headers: [&[u8]; 5] = [
                &[0x7f, 0xff, 0xff, 0xff],
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                &[0x80, 0, 0, 0],
                &[0xff, 0xff, 0xff, 0xfe],
                &[0, 0, 0, 10, 1, 2],
            ];
            while start.elapsed() < ATTACK {
                let head = r.counter(1, HEAD).load(Ordering::Acquire);
                let cap = r.cap as u64;
                // A header split across the ring's edge every other round.
                let at = if k.is_multiple_of(2) {
                    head
                } else {
                    head.wrapping_sub(head % cap).wrapping_add(cap - 2)
                };
                r.write_data(1, at, headers[(k % 5) as usize]);
                let tail = match k % 7 {
                    0 => head.wrapping_add(2),
                    1 => head.wrapping_add(cap),
                    2 => head.wrapping_add(cap + 1),
                    3 => head.wrapping_sub(1),
                    4 => u64::MAX - k,
                    5 => head.wrapping_add(12),
                    _ => head.wrapping_add(cap / 2),
                };
                r.counter(1, TAIL).store(tail, Ordering::Release);
                r.write_data(1, head, headers[((k + 1) % 5) as usize]);
                ring_bell(sock);
                k += 1;
                std::thread::yield_now();
            }
        }
        // The ring the parent writes (0): a head that jumps past the tail, falls behind it by
        // a ring (full for good), goes backwards, or says everything was read.
        "head-games" => {
            while start.elapsed() < ATTACK {
                let tail = r.counter(0, TAIL).load(Ordering::Acquire);
                let cap = r.cap as u64;
                let head = match k % 6 {
                    0 => tail.wrapping_add(1),
                    1 => tail.wrapping_sub(cap),
                    2 => tail.wrapping_sub(cap + 1),
                    3 => tail,
                    4 => u64::MAX - k,
                    _ => tail.wrapping_sub(k % cap),
                };
                r.counter(0, HEAD).store(head, Ordering::Release);
                r.flag(0, WRITER_WAITING).store(0, Ordering::Relaxed);
                ring_bell(sock);
                k += 1;
                std::thread::yield_now();
            }
        }
        // Odd values in every waiting word, and the parent's own "I sleep" word cleared as
        // soon as it is set (so it is never rung), while real messages come now and then.
        "flags" => {
            let words = [(0, WRITER_WAITING), (0, READER_WAITING), (1, WRITER_WAITING), (1, READER_WAITING)];
            let mut sent = 0;
            while sent < 10 {
                for (i, (ring, at)) in words.iter().enumerate() {
                    let v = if (k + i as u64).is_multiple_of(3) {
                        0
                    } else {
                        0xdead_beef_u32.rotate_left(k as u32) | 1
                    };
                    r.flag(*ring, *at).store(v, Ordering::Relaxed);
                }
                r.flag(1, READER_WAITING).store(0, Ordering::Relaxed);
                if start.elapsed() > Duration::from_millis(150) * (sent + 1) {
                    c.send_bytes(&pattern(3000, sent as u8)).unwrap();
                    sent += 1;
                }
                k += 1;
                std::thread::yield_now();
            }
            say("sent");
            std::thread::sleep(LIMIT);
        }
        // The region's header rewritten after the handshake, then an honest echo.
        "header" => {
            r.word(0).store(0, Ordering::Relaxed);
            r.word(8).store(1 << 40, Ordering::Relaxed);
            c.send_bytes(b"rewritten").unwrap();
            while let Ok(m) = c.recv_bytes() {
                c.send_bytes(&m).unwrap();
            }
        }
        // A doorbell flooded with bells until the socket is full, then an honest echo of a
        // few messages; then a byte that is no bell; then a half-closed socket.
        "bells" => {
            // SAFETY: a buffer of bells to a descriptor of this process, without waiting.
            while unsafe { libc::send(sock, [1u8; 4096].as_ptr().cast(), 4096, libc::MSG_DONTWAIT) } > 0 {}
            say("flooded");
            for _ in 0..20 {
                let m = c.recv_bytes().unwrap();
                c.send_bytes(&m).unwrap();
            }
            assert_eq!(c.recv_bytes().unwrap(), b"now a foreign byte");
            // SAFETY: as above, blocking (the parent drains the socket as it sleeps).
            assert_eq!(unsafe { libc::send(sock, [2u8].as_ptr().cast(), 1, 0) }, 1);
            say("foreign");
            std::thread::sleep(LIMIT);
        }
        // Half-closes the socket (write side), and keeps the process and its region.
        "half-close" => {
            c.send_bytes(b"last").unwrap();
            // SAFETY: a descriptor of this process.
            assert_eq!(unsafe { libc::shutdown(sock, libc::SHUT_WR) }, 0);
            say("shut");
            std::thread::sleep(LIMIT);
        }
        // Takes everything the parent writes without reading it, says it sleeps after every
        // take (so the parent rings each time), and never reads a bell.
        "deaf" => {
            while start.elapsed() < 2 * ATTACK {
                let tail = r.counter(0, TAIL).load(Ordering::Acquire);
                r.counter(0, HEAD).store(tail, Ordering::Release);
                r.flag(0, READER_WAITING).store(1, Ordering::SeqCst);
                std::thread::yield_now();
            }
        }
        other => panic!("unknown role {other}"),
    }
    say("done");
    std::thread::sleep(LIMIT);
    std::process::exit(0);
}

/// A shared-memory pair whose client end is in a child attacking in `role`; the parent's end
/// has received the child's "ready".
fn attacked(role: &str) -> (Connection, ChildGuard) {
    let (mut ours, theirs) = pipe_with(PipeKind::SharedMemory).unwrap();
    let mut cmd = common::child_command(role, &[]);
    theirs.pass_to_child(&mut cmd, VAR).unwrap();
    let child = spawn(&mut cmd);
    drop(theirs);
    ours.set_read_timeout(Some(LIMIT));
    assert_eq!(ours.recv_bytes().unwrap(), b"ready");
    ours.send_bytes(b"go").unwrap();
    (ours, child)
}

/// Whether `e` is one of the errors a hostile peer may cause.
fn typed(e: &Error) -> bool {
    matches!(
        e,
        Error::Protocol(_)
            | Error::Truncated { .. }
            | Error::Closed
            | Error::Timeout(_)
            | Error::MessageTooLarge { .. }
    )
}

/// Shows another shared-memory pair of this process unharmed.
fn another_pair_works() {
    let (mut a, mut b) = pipe_with(PipeKind::SharedMemory).unwrap();
    let m = pattern(100_000, 9);
    a.send_bytes(&m).unwrap();
    assert_eq!(b.recv_bytes().unwrap(), m);
}

#[test]
fn counters_and_headers_that_change_under_the_reader_are_errors_in_time() {
    let (mut ours, _child) = attacked("tail-games");
    ours.set_max_message_size(1 << 20);
    ours.set_read_timeout(Some(Duration::from_millis(300)));
    let start = Instant::now();
    // Garbage that happens to frame well is garbage messages, never over the limit; the first
    // error leaves the connection unusable, and says so at once from then on.
    let error = loop {
        assert!(start.elapsed() < ATTACK + Duration::from_secs(1), "no error from the attack");
        let t = Instant::now();
        let r = ours.recv_bytes();
        assert!(t.elapsed() < Duration::from_secs(3), "a receive took {:?}", t.elapsed());
        match r {
            Ok(m) => assert!(m.len() <= 1 << 20),
            Err(e) => break e,
        }
    };
    eprintln!("first error: {error:?}");
    assert!(matches!(error, Error::Protocol(_) | Error::MessageTooLarge { .. }), "{error:?}");
    let t = Instant::now();
    assert!(matches!(ours.recv_bytes(), Err(Error::Protocol(_))));
    assert!(t.elapsed() < Duration::from_secs(1));
    another_pair_works();
}

#[test]
fn a_head_that_jumps_or_goes_backwards_is_an_error_or_a_timeout_for_the_writer() {
    let (mut ours, _child) = attacked("head-games");
    ours.set_write_timeout(Some(Duration::from_millis(300)));
    let big = pattern(3 << 20, 1);
    let start = Instant::now();
    let mut errors = Vec::new();
    while start.elapsed() < ATTACK + Duration::from_secs(1) {
        let t = Instant::now();
        let r = ours.send_bytes(&big);
        assert!(t.elapsed() < Duration::from_secs(3), "a send took {:?}", t.elapsed());
        if let Err(e) = r {
            assert!(typed(&e), "{e:?}");
            errors.push(format!("{e}"));
        }
    }
    assert!(!errors.is_empty());
    eprintln!("errors seen: {:?}", errors.iter().take(3).collect::<Vec<_>>());
    another_pair_works();
}

#[test]
fn odd_waiting_words_and_a_cleared_sleep_word_only_delay_a_reader_by_its_recheck() {
    let (mut ours, mut child) = attacked("flags");
    for i in 0..10u8 {
        let t = Instant::now();
        assert_eq!(ours.recv_bytes().unwrap(), pattern(3000, i));
        assert!(t.elapsed() < Duration::from_secs(2), "message {i} took {:?}", t.elapsed());
    }
    assert_eq!(child.line(), "sent");
}

#[test]
fn a_region_header_rewritten_after_the_handshake_changes_nothing() {
    let (mut ours, _child) = attacked("header");
    assert_eq!(ours.recv_bytes().unwrap(), b"rewritten");
    for n in [5, 3 << 20, 9 << 20] {
        let m = pattern(n, 4);
        ours.send_bytes(&m).unwrap();
        assert_eq!(ours.recv_bytes().unwrap(), m);
    }
}

#[test]
fn a_region_header_rewritten_then_passed_on_is_a_protocol_error_where_it_is_adopted() {
    let (mut ours, _child) = attacked("header");
    assert_eq!(ours.recv_bytes().unwrap(), b"rewritten");
    // Passed on now, the region is refused by the process it is passed to, clearly.
    let mut cmd = common::child_command("adopt", &[]);
    ours.pass_to_child(&mut cmd, VAR).unwrap();
    let mut adopter = spawn(&mut cmd);
    let line = adopter.line();
    eprintln!("adopter: {line}");
    assert!(line.starts_with("err Protocol(") && line.contains("wrong magic"), "{line}");
}

#[test]
fn a_flooded_doorbell_then_a_foreign_byte_on_it() {
    let (mut ours, mut child) = attacked("bells");
    assert_eq!(child.line(), "flooded");
    for i in 0..20 {
        let m = pattern(1000 + i * 50_000, i as u8);
        ours.send_bytes(&m).unwrap();
        assert_eq!(ours.recv_bytes().unwrap(), m);
    }
    ours.send_bytes(b"now a foreign byte").unwrap();
    // The child's send of that byte waits for room that our sleeps make, draining the bells.
    ours.set_read_timeout(Some(Duration::from_secs(5)));
    match ours.recv_bytes() {
        Err(Error::Protocol(m)) => eprintln!("foreign byte: {m}"),
        other => panic!("expected a protocol error, got {other:?}"),
    }
    assert_eq!(child.line(), "foreign");
}

#[test]
fn a_half_closed_doorbell_is_the_end_of_the_stream() {
    let (mut ours, mut child) = attacked("half-close");
    assert_eq!(child.line(), "shut");
    assert_eq!(ours.recv_bytes().unwrap(), b"last");
    let t = Instant::now();
    match ours.recv_bytes() {
        Err(Error::Closed) => {}
        other => panic!("expected Closed, got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(2));
    // A write to a peer gone is an I/O error of kind BrokenPipe, as on a socket.
    let r = ours.send_bytes(b"x");
    assert!(matches!(r, Err(ref e) if e.is_closed()), "{r:?}");
}

#[test]
fn a_peer_that_never_reads_its_bells_does_not_block_the_writer() {
    let (mut ours, _child) = attacked("deaf");
    ours.set_write_timeout(Some(Duration::from_secs(5)));
    let m = pattern(64, 2);
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < ATTACK {
        ours.send_bytes(&m).unwrap();
        n += 1;
    }
    eprintln!("{n} messages sent to a deaf peer");
    assert!(n > 10_000, "only {n} messages");
}
