//! Shared-memory connections between real processes: `shm:` addresses and
//! `pipe_with(PipeKind::SharedMemory)`; sizes around the ring's, a peer's death, timeouts,
//! readiness waits, an idle pair's CPU time, a peer that scribbles on the ring, and the
//! errors of a plain peer at a shared-memory one and the reverse. On Windows (run under Wine
//! by the CI) all but the scribbling peer and the CPU-time check: a named pipe underneath.

mod common;

use std::time::{Duration, Instant};

use common::{pattern, role, say, spawn, spawn_child};
use procwire::wait::wait_timeout;
use procwire::{Address, Client, Connection, Error, Family, Listener, PipeKind, pipe_with};

const KEY: &str = "shm-test-key";
const LIMIT: Duration = Duration::from_secs(30);
/// The ring size of a new region, per direction.
const RING: usize = procwire::connection::DEFAULT_SHM_RING;

fn env_of(addr: &Address) -> Vec<(&'static str, String)> {
    vec![("PROCWIRE_TEST_ADDR", addr.to_string())]
}

fn child_connect() -> procwire::Result<Connection> {
    let addr: Address = std::env::var("PROCWIRE_TEST_ADDR").unwrap().parse().unwrap();
    let mut b = Client::builder().handshake_timeout(Duration::from_secs(5)).read_timeout(Some(LIMIT));
    if std::env::var_os("PROCWIRE_TEST_KEYLESS").is_none() {
        b = b.authkey(KEY);
    }
    // The ring size the child asks for, when the test says.
    if let Some(ring) = std::env::var("PROCWIRE_TEST_RING").ok().and_then(|r| r.parse().ok()) {
        b = b.shm_ring_size(ring);
    }
    b.connect(&addr)
}

fn listener(addr: &Address) -> Listener {
    Listener::builder().authkey(KEY).handshake_timeout(Duration::from_secs(5)).bind(addr).unwrap()
}

fn shm_address() -> Address {
    Address::fresh(Family::Shm).unwrap()
}

/// The socket (named pipe) under an `shm:` address, as a plain address.
fn plain_of(addr: &Address) -> Address {
    let Address::Shm(p) = addr else { panic!("not shm: {addr}") };
    if cfg!(windows) { Address::Pipe(p.to_str().unwrap().into()) } else { Address::Unix(p.clone()) }
}

/// A plain address of the platform's local kind, and the `shm:` address of the same socket.
fn plain_and_shm() -> (Address, Address) {
    let plain = Address::fresh(Family::default()).unwrap();
    let shm = match &plain {
        Address::Unix(p) => Address::Shm(p.clone()),
        Address::Pipe(name) => Address::Shm(name.into()),
        other => panic!("not a local address: {other}"),
    };
    (plain, shm)
}

fn echo(mut c: Connection) -> i32 {
    loop {
        match c.recv_bytes() {
            Ok(m) => c.send_bytes(&m).unwrap(),
            Err(Error::Closed) => return 0,
            Err(e) => panic!("echo child: {e}"),
        }
    }
}

/// The CPU time (user and system) process `pid` used so far, from `/proc`.
#[cfg(target_os = "linux")]
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name (which ends with the last ')'): utime, stime are the
    // 12th and 13th of them.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_micros(ticks * 1_000_000 / hz)
}

/// Entry point of every child process of this file.
#[test]
#[ignore = "runs only as a child process of the other tests"]
fn child() {
    let role = role().expect("child started without a role");
    let code = match role.as_str() {
        "echo" => echo(child_connect().unwrap()),
        // Say the ring size this side got, then echo.
        "echo-ring" => {
            let c = child_connect().unwrap();
            say(&format!("ring {}", c.shm_ring_size().unwrap()));
            echo(c)
        }
        "pipe-echo" => echo(Connection::from_env("PROCWIRE_TEST_CONN").unwrap()),
        // Send STREAM_COUNT messages one way, of mixed sizes, with pauses (see below).
        "pipe-stream" => {
            let mut c = Connection::from_env("PROCWIRE_TEST_CONN").unwrap();
            for i in 0..STREAM_COUNT {
                c.send_bytes(&stream_message(i)).unwrap();
                stream_pause(i);
            }
            0
        }
        // Echo with recv_with and send_with: each message goes back reversed.
        "pipe-echo-with" => {
            let mut c = Connection::from_env("PROCWIRE_TEST_CONN").unwrap();
            loop {
                let m = match c.recv_with(|bytes| bytes.iter().rev().copied().collect::<Vec<u8>>()) {
                    Ok(m) => m,
                    Err(Error::Closed) => break 0,
                    Err(e) => panic!("echo child: {e}"),
                };
                let n = c.send_with(m.len(), |buf| {
                    buf.copy_from_slice(&m);
                    buf.len()
                });
                assert_eq!(n.unwrap(), m.len());
            }
        }
        // Report how connecting went: "ok", or the error.
        "report" => {
            match child_connect() {
                Ok(_) => say("ok"),
                Err(e) => say(&format!("err {e}")),
            }
            0
        }
        // Connect (keyless), send one message if told, then report how connecting and the
        // first receive went.
        "report-recv" => {
            let mut c = match child_connect() {
                Ok(c) => c,
                Err(e) => {
                    say(&format!("err {e}"));
                    std::process::exit(0);
                }
            };
            if std::env::var_os("PROCWIRE_TEST_SEND_FIRST").is_some() {
                c.send_bytes(b"first").unwrap();
            }
            match c.recv_bytes() {
                Ok(m) => say(&format!("got {}", String::from_utf8_lossy(&m))),
                Err(e) => say(&format!("err {e}")),
            }
            // Stay until the parent is done with the listener's side.
            std::thread::sleep(Duration::from_secs(2));
            0
        }
        // Start a message far larger than the ring, then die by SIGKILL while it is blocked.
        "die-mid-message" => {
            let big = vec![0x5a; 10 * RING];
            let mut c = child_connect().unwrap();
            std::thread::spawn(move || c.send_bytes(&big));
            std::thread::sleep(Duration::from_millis(300));
            say("blocked");
            std::thread::sleep(Duration::from_millis(100));
            common::kill_self()
        }
        // Listen, send one message to the first client, then die by SIGKILL.
        "listen-and-die" => {
            let addr: Address = std::env::var("PROCWIRE_TEST_ADDR").unwrap().parse().unwrap();
            let l = listener(&addr);
            say("listening");
            let mut c = l.accept_timeout(LIMIT).unwrap();
            c.send_bytes(b"hi").unwrap();
            std::thread::sleep(Duration::from_millis(100));
            common::kill_self()
        }
        // Say one thing, then write garbage over the whole region, ring the doorbell and wait.
        #[cfg(unix)]
        "scribble" => {
            let fd_of = |var: &str| -> i32 {
                std::env::var(var).unwrap().split(':').next().unwrap().parse().unwrap()
            };
            let (socket, fd) = (fd_of("PROCWIRE_TEST_CONN"), fd_of("PROCWIRE_TEST_CONN_SHM_CLIENT"));
            let mut c = Connection::from_env("PROCWIRE_TEST_CONN").unwrap();
            c.send_bytes(b"before").unwrap();
            assert_eq!(c.recv_bytes().unwrap(), b"go");
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            assert_eq!(unsafe { libc::fstat(fd, &mut st) }, 0);
            let len = st.st_size as usize;
            // SAFETY: mapping the region our parent passed, shared, whole.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    fd,
                    0,
                )
            };
            assert_ne!(p, libc::MAP_FAILED);
            // SAFETY: inside the mapping.
            unsafe { std::ptr::write_bytes(p.cast::<u8>(), 0xA7, len) };
            // SAFETY: one byte from a live buffer to the socket our parent passed.
            assert_eq!(unsafe { libc::write(socket, [1u8].as_ptr().cast(), 1) }, 1);
            say("scribbled");
            std::thread::sleep(Duration::from_secs(20));
            0
        }
        other => panic!("unknown role {other}"),
    };
    std::process::exit(code);
}

#[test]
fn messages_around_the_ring_size_both_ways_with_an_shm_listener() {
    let addr = shm_address();
    let l = listener(&addr);
    assert_eq!(l.address(), &addr);
    let _child = spawn_child("echo", &env_of(&addr));
    let mut c = l.accept_timeout(LIMIT).unwrap();
    c.set_read_timeout(Some(LIMIT));
    // Up to the largest message a connection takes by default (64 MiB: sixteen rings).
    let max = procwire::connection::DEFAULT_MAX_MESSAGE_SIZE as usize;
    for n in [0, 1, 100, RING - 1, RING, RING + 1, 5 * RING, 5 * RING + 12_345, max] {
        let m = pattern(n, n as u8);
        c.send_bytes(&m).unwrap();
        assert_eq!(c.recv_bytes().unwrap(), m, "{n} bytes");
    }
    // Many small messages in flight at once, as a stream.
    for i in 0..10_000u32 {
        c.send_bytes(&i.to_le_bytes()).unwrap();
    }
    for i in 0..10_000u32 {
        assert_eq!(c.recv_bytes().unwrap(), i.to_le_bytes());
    }
}

#[test]
fn the_ring_size_is_the_larger_of_the_listeners_and_the_clients_and_both_sides_see_it() {
    let addr = shm_address();
    let l = Listener::builder()
        .authkey(KEY)
        .handshake_timeout(Duration::from_secs(5))
        .shm_ring_size(64 << 10)
        .bind(&addr)
        .unwrap();
    for (asked, got) in [(None, 64 << 10), (Some(16 << 10), 64 << 10), (Some(256 << 10), 256 << 10)] {
        let mut env = env_of(&addr);
        env.extend(asked.map(|r: usize| ("PROCWIRE_TEST_RING", r.to_string())));
        let mut child = spawn_child("echo-ring", &env);
        let mut c = l.accept_timeout(LIMIT).unwrap();
        assert_eq!(c.shm_ring_size(), Some(got), "asked {asked:?}");
        assert_eq!(child.line(), format!("ring {got}"), "the child's view, asked {asked:?}");
        c.set_read_timeout(Some(LIMIT));
        // Messages around and well over the ring's size stream through it in pieces.
        for n in [got - 1, got, got + 1, 5 * got + 3] {
            let m = pattern(n, n as u8);
            c.send_bytes(&m).unwrap();
            assert_eq!(c.recv_bytes().unwrap(), m, "{n} bytes through rings of {got}");
        }
    }
    // A shared-memory pipe of its own size, in a child.
    let (mut ours, theirs) = pipe_with(PipeKind::SharedMemoryRing(8 << 10)).unwrap();
    assert_eq!((ours.shm_ring_size(), theirs.shm_ring_size()), (Some(8 << 10), Some(8 << 10)));
    let mut cmd = common::child_command("pipe-echo", &[]);
    theirs.pass_to_child(&mut cmd, "PROCWIRE_TEST_CONN").unwrap();
    let _child = spawn(&mut cmd);
    drop(theirs);
    ours.set_read_timeout(Some(LIMIT));
    let m = pattern(100_000, 1);
    ours.send_bytes(&m).unwrap();
    assert_eq!(ours.recv_bytes().unwrap(), m);
}

#[test]
fn a_ring_size_no_ring_can_have_is_refused_before_anything_is_made() {
    for bad in [0, 1000, 2048, 3 << 20, 2 << 30] {
        let addr = shm_address();
        match Listener::builder().shm_ring_size(bad).bind(&addr) {
            Err(Error::InvalidInput(m)) => assert!(m.contains("power of two"), "{m}"),
            other => panic!("ring {bad}: expected InvalidInput, got {other:?}"),
        }
        assert!(!std::path::Path::new(&addr.to_string()["shm:".len()..]).exists());
        assert!(matches!(Client::builder().shm_ring_size(bad).connect(&addr), Err(Error::InvalidInput(_))));
        assert!(matches!(pipe_with(PipeKind::SharedMemoryRing(bad)), Err(Error::InvalidInput(_))));
    }
    // A plain connection has no ring.
    let (a, _b) = procwire::pipe(true).unwrap();
    assert_eq!(a.shm_ring_size(), None);
}

#[test]
fn a_shared_memory_pipe_end_works_in_a_child() {
    let (mut ours, theirs) = pipe_with(PipeKind::SharedMemory).unwrap();
    let mut cmd = common::child_command("pipe-echo", &[]);
    theirs.pass_to_child(&mut cmd, "PROCWIRE_TEST_CONN").unwrap();
    let _child = spawn(&mut cmd);
    drop(theirs);
    ours.set_read_timeout(Some(LIMIT));
    for n in [0, 7, RING + 1, 3 * RING] {
        let m = pattern(n, 3);
        ours.send_bytes(&m).unwrap();
        assert_eq!(ours.recv_bytes().unwrap(), m);
    }
}

/// Messages of the one-way stream test.
const STREAM_COUNT: usize = 6000;

/// Message `i` of the one-way stream: sizes around a cache line, the reader's 1 KiB batch and
/// a 4 KiB ring, each with its index in front.
fn stream_message(i: usize) -> Vec<u8> {
    const SIZES: [usize; 12] = [0, 1, 15, 16, 17, 100, 1000, 1023, 1024, 1025, 3000, 9000];
    let mut m = (i as u32).to_le_bytes().to_vec();
    m.extend(pattern(SIZES[i % SIZES.len()], i as u8));
    m
}

/// The sender's pauses after message `i`: now and then a few microseconds (longer than the
/// one-way reader's gap, shorter than its spin window), now and then a millisecond (long
/// enough for it to go to sleep).
fn stream_pause(i: usize) {
    if i.is_multiple_of(13) {
        let until = Instant::now() + Duration::from_micros(10);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
    }
    if i.is_multiple_of(997) {
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_one_way_stream_of_mixed_sizes_and_pauses_arrives_whole_and_in_order() {
    // The default spin window, none at all, and one shorter than the reader's gap; a ring of
    // the default size and the smallest, which the larger messages wrap and fill.
    for (window, ring) in [(None, RING), (Some(Duration::ZERO), 4096), (Some(Duration::from_micros(1)), 4096)]
    {
        let (mut ours, theirs) = pipe_with(PipeKind::SharedMemoryRing(ring)).unwrap();
        let mut cmd = common::child_command("pipe-stream", &[]);
        theirs.pass_to_child(&mut cmd, "PROCWIRE_TEST_CONN").unwrap();
        let child = spawn(&mut cmd);
        // The command holds the child's end too until it goes.
        drop((cmd, theirs));
        ours.set_read_timeout(Some(LIMIT));
        if let Some(w) = window {
            ours.set_spin_window(w);
        }
        for i in 0..STREAM_COUNT {
            let m = ours.recv_bytes().unwrap();
            assert!(
                m == stream_message(i),
                "message {i} of {STREAM_COUNT} (window {window:?}, ring {ring}) differs"
            );
        }
        assert!(matches!(ours.recv_bytes(), Err(Error::Closed)));
        assert_eq!(child.finish(LIMIT).0, Some(0));
    }
}

#[test]
fn send_with_and_recv_with_work_alike_over_shared_memory_and_a_socket_with_a_child() {
    for kind in [PipeKind::SharedMemory, PipeKind::Socket] {
        let (mut ours, theirs) = pipe_with(kind).unwrap();
        let mut cmd = common::child_command("pipe-echo-with", &[]);
        theirs.pass_to_child(&mut cmd, "PROCWIRE_TEST_CONN").unwrap();
        let _child = spawn(&mut cmd);
        drop(theirs);
        ours.set_read_timeout(Some(LIMIT));
        for n in [0, 5, 20_000, RING - 3, RING + 1, 3 * RING + 7] {
            let m = pattern(n, n as u8);
            let filled = ours.send_with(n, |buf| {
                assert!(buf.iter().all(|&b| b == 0), "a zeroed buffer");
                buf.copy_from_slice(&m);
                "filled"
            });
            assert_eq!(filled.unwrap(), "filled");
            let back = ours.recv_with(|bytes| bytes.iter().rev().copied().collect::<Vec<u8>>()).unwrap();
            assert!(back == m, "{n} bytes over {kind:?}");
        }
        // A fill that panics sends nothing: the next message is the next one sent.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            ours.send_with(10, |_| panic!("a fill that fails"))
        }));
        assert!(r.is_err());
        ours.send_with(3, |buf| buf.copy_from_slice(b"abc")).unwrap();
        assert_eq!(ours.recv_bytes().unwrap(), b"cba", "over {kind:?}");
    }
}

#[test]
fn a_peer_killed_mid_message_is_truncated_never_a_partial_message() {
    let addr = shm_address();
    let l = listener(&addr);
    let mut child = spawn_child("die-mid-message", &env_of(&addr));
    let mut c = l.accept_timeout(LIMIT).unwrap();
    assert_eq!(child.line(), "blocked");
    // Let it die before reading: all that is left is what it put in the ring.
    let start = Instant::now();
    while !common::is_dead(child.pid()) && child.child.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < LIMIT);
        std::thread::sleep(Duration::from_millis(1));
    }
    let died = Instant::now();
    c.set_read_timeout(Some(LIMIT));
    match c.recv_bytes() {
        Err(Error::Truncated { received, expected }) => {
            assert_eq!(expected, 10 * RING as u64 + 4);
            assert!(received <= RING as u64 + 4, "{received}");
        }
        other => panic!("expected a truncation, got {other:?}"),
    }
    assert!(died.elapsed() < Duration::from_millis(100), "{:?}", died.elapsed());
    assert!(c.recv_bytes().is_err());
    assert!(c.send_bytes(b"x").and_then(|()| c.send_bytes(&pattern(2 * RING, 0))).is_err());
}

#[test]
fn timeouts_on_an_empty_and_a_full_ring_and_waits_over_a_mix() {
    let (mut a, mut b) = pipe_with(PipeKind::SharedMemory).unwrap();
    let t = Instant::now();
    b.set_read_timeout(Some(Duration::from_millis(50)));
    assert!(matches!(b.recv_bytes(), Err(Error::Timeout(_))));
    assert!(t.elapsed() >= Duration::from_millis(50));
    assert!(!b.poll_timeout(Duration::from_millis(20)).unwrap());
    // A full ring: the send times out, and nothing is lost.
    a.set_write_timeout(Some(Duration::from_millis(50)));
    let big = pattern(3 * RING, 5);
    assert!(matches!(a.send_bytes(&big), Err(Error::Timeout(_))));
    a.set_write_timeout(None);
    b.set_read_timeout(Some(LIMIT));
    let sender = std::thread::spawn(move || {
        a.flush().unwrap();
        a
    });
    assert_eq!(b.recv_bytes().unwrap(), big);
    let mut a = sender.join().unwrap();
    // wait() over shared-memory and socket connections together.
    let (mut s1, s2) = procwire::pipe(true).unwrap();
    let none = wait_timeout(&[(&b).into(), (&s2).into()], Duration::from_millis(30)).unwrap();
    assert!(none.is_empty());
    a.send_bytes(b"hi").unwrap();
    assert_eq!(wait_timeout(&[(&s2).into(), (&b).into()], LIMIT).unwrap(), [1]);
    s1.send_bytes(b"ho").unwrap();
    assert_eq!(wait_timeout(&[(&s2).into(), (&b).into()], LIMIT).unwrap(), [0, 1]);
    assert!(b.poll().unwrap());
    assert_eq!(b.recv_bytes().unwrap(), b"hi");
    // A sleeper in wait() is woken by a send from another thread.
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        a.send_bytes(b"late").unwrap();
        a
    });
    assert_eq!(wait_timeout(&[(&b).into()], LIMIT).unwrap(), [0]);
    assert_eq!(b.recv_bytes().unwrap(), b"late");
    drop(t.join().unwrap());
    assert!(matches!(b.recv_bytes(), Err(Error::Closed)));
}

#[test]
#[cfg(target_os = "linux")]
fn an_idle_child_costs_almost_no_cpu_after_its_spin_window() {
    let (mut ours, theirs) = pipe_with(PipeKind::SharedMemory).unwrap();
    let mut cmd = common::child_command("pipe-echo", &[]);
    theirs.pass_to_child(&mut cmd, "PROCWIRE_TEST_CONN").unwrap();
    let child = spawn(&mut cmd);
    drop(theirs);
    ours.set_read_timeout(Some(LIMIT));
    ours.send_bytes(b"warm up").unwrap();
    assert_eq!(ours.recv_bytes().unwrap(), b"warm up");
    // The child now waits in a receive: past its spin window it sleeps on the doorbell.
    std::thread::sleep(Duration::from_millis(100));
    let (cpu, wall) = (cpu_time(child.pid()), Instant::now());
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_time(child.pid()) - cpu;
    let share = used.as_secs_f64() / wall.elapsed().as_secs_f64();
    assert!(share < 0.05, "an idle child used {:.1}% of a core", share * 100.0);
    // And it still answers at once.
    ours.send_bytes(b"wake").unwrap();
    assert_eq!(ours.recv_bytes().unwrap(), b"wake");
}

#[test]
#[cfg(unix)]
fn a_peer_scribbling_on_the_ring_is_a_protocol_error() {
    // Another shared-memory pair of this process, to show it unharmed after the scribbling.
    let (mut other, mut other_peer) = pipe_with(PipeKind::SharedMemory).unwrap();
    let (mut ours, theirs) = pipe_with(PipeKind::SharedMemory).unwrap();
    let mut cmd = common::child_command("scribble", &[]);
    theirs.pass_to_child(&mut cmd, "PROCWIRE_TEST_CONN").unwrap();
    let mut child = spawn(&mut cmd);
    drop(theirs);
    ours.set_read_timeout(Some(LIMIT));
    assert_eq!(ours.recv_bytes().unwrap(), b"before");
    ours.send_bytes(b"go").unwrap();
    assert_eq!(child.line(), "scribbled");
    // Garbage positions: an error; garbage that happens to be in range: garbage bytes, never
    // more than a ring and never a message over the limit.
    ours.set_max_message_size(1 << 20);
    let mut errors = 0;
    for _ in 0..3 {
        match ours.recv_bytes() {
            Ok(m) => assert!(m.len() <= 1 << 20),
            Err(Error::Protocol(_) | Error::MessageTooLarge { .. }) => errors += 1,
            Err(e) => panic!("expected a protocol error, got {e:?}"),
        }
    }
    assert!(errors > 0);
    assert!(ours.send_bytes(&pattern(4 * RING, 0)).is_err());
    let m = pattern(RING / 2, 3);
    other.send_bytes(&m).unwrap();
    assert_eq!(other_peer.recv_bytes().unwrap(), m, "another connection is unharmed");
    other_peer.send_bytes(b"back").unwrap();
    assert_eq!(other.recv_bytes().unwrap(), b"back");
}

#[test]
fn a_plain_client_at_an_shm_listener_and_the_reverse_fail_clearly_on_both_sides() {
    // A plain client at a shared-memory listener.
    let addr = shm_address();
    let l = listener(&addr);
    let mut child = spawn_child("report", &env_of(&plain_of(&addr)));
    match l.accept_timeout(LIMIT) {
        Err(Error::Protocol(m)) => assert!(m.contains("without shared memory"), "{m}"),
        other => panic!("expected a protocol error, got {other:?}"),
    }
    let line = child.line();
    assert!(
        line.starts_with("err ") && line.contains("serves shared memory") && line.contains("shm:"),
        "{line}"
    );
    // A shared-memory client at a plain listener.
    let (addr, shm) = plain_and_shm();
    let l = listener(&addr);
    let mut child = spawn_child("report", &env_of(&shm));
    match l.accept_timeout(LIMIT) {
        Err(Error::Protocol(m)) => assert!(m.contains("shared-memory client"), "{m}"),
        other => panic!("expected a protocol error, got {other:?}"),
    }
    let line = child.line();
    assert!(line.starts_with("err ") && line.contains("does not serve shared memory"), "{line}");
}

#[test]
fn without_a_key_a_plain_client_at_an_shm_listener_and_the_reverse_fail_clearly_on_both_sides() {
    let keyless = |addr: &Address, send_first: bool| {
        let mut env = env_of(addr);
        env.push(("PROCWIRE_TEST_KEYLESS", String::new()));
        if send_first {
            env.push(("PROCWIRE_TEST_SEND_FIRST", String::new()));
        }
        spawn_child("report-recv", &env)
    };
    let bind =
        |addr: &Address| Listener::builder().handshake_timeout(Duration::from_secs(5)).bind(addr).unwrap();
    let protocol_error = |r: procwire::Result<Vec<u8>>, what: &str| match r {
        Err(Error::Protocol(m)) => assert!(m.contains(what), "{m}"),
        other => panic!("expected a protocol error saying {what:?}, got {other:?}"),
    };
    // A plain client at a shared-memory listener, receiving first or sending first: it reads
    // the offer as a message and refuses it, and the listener's side learns it from the socket.
    for send_first in [false, true] {
        let addr = shm_address();
        let l = bind(&addr);
        let mut child = keyless(&plain_of(&addr), send_first);
        let mut c = l.accept_timeout(LIMIT).unwrap();
        c.set_read_timeout(Some(LIMIT));
        protocol_error(c.recv_bytes(), "client without shared memory");
        let line = child.line();
        assert!(line.starts_with("err ") && line.contains("serves shared memory"), "{line}");
        assert!(c.send_bytes(b"x").is_err(), "the listener's side is unusable after it");
    }
    // A shared-memory client at a plain listener: the listener's side reads its hello and
    // refuses it; the client gets the refusal instead of a region.
    let (addr, shm) = plain_and_shm();
    let l = bind(&addr);
    let mut child = keyless(&shm, false);
    let mut c = l.accept_timeout(LIMIT).unwrap();
    c.set_read_timeout(Some(LIMIT));
    protocol_error(c.recv_bytes(), "does not serve shared memory");
    let line = child.line();
    assert!(line.starts_with("err ") && line.contains("not an shm: listener"), "{line}");
    // Keyless and matched, both kinds still work.
    for addr in [shm_address(), Address::fresh(Family::default()).unwrap()] {
        let l = bind(&addr);
        let mut child = keyless(&addr, true);
        let mut c = l.accept_timeout(LIMIT).unwrap();
        c.set_read_timeout(Some(LIMIT));
        assert_eq!(c.recv_bytes().unwrap(), b"first", "{addr}");
        c.send_bytes(b"back").unwrap();
        assert_eq!(child.line(), "got back", "{addr}");
    }
}

#[test]
fn a_keyless_shm_connection_passed_to_a_child_at_once_works_there() {
    // The client's hello may still be on the socket when the listener's side is passed on:
    // the child's side must not take it for a plain client's bytes.
    let addr = shm_address();
    let l = Listener::builder().handshake_timeout(Duration::from_secs(5)).bind(&addr).unwrap();
    let client = {
        let addr = addr.clone();
        std::thread::spawn(move || Client::builder().read_timeout(Some(LIMIT)).connect(&addr))
    };
    let accepted = l.accept_timeout(LIMIT).unwrap();
    let mut cmd = common::child_command("pipe-echo", &[]);
    accepted.pass_to_child(&mut cmd, "PROCWIRE_TEST_CONN").unwrap();
    let _child = spawn(&mut cmd);
    drop((cmd, accepted));
    let mut c = client.join().unwrap().unwrap();
    for n in [3, RING + 5] {
        let m = pattern(n, 7);
        c.send_bytes(&m).unwrap();
        assert_eq!(c.recv_bytes().unwrap(), m);
    }
}

#[test]
fn both_halves_of_a_split_end_sleep_at_once_and_each_is_woken() {
    let (a, mut b) = pipe_with(PipeKind::SharedMemory).unwrap();
    let (mut tx, mut rx) = a.split();
    let big = pattern(3 * RING, 9);
    let sent = big.clone();
    let writer = std::thread::spawn(move || tx.send_bytes(&sent).map(|()| tx));
    let reader = std::thread::spawn(move || {
        let m = rx.recv_bytes();
        (m, Instant::now())
    });
    // Both past their spin windows: the writer on a full ring, the reader on an empty one.
    std::thread::sleep(Duration::from_millis(100));
    b.set_read_timeout(Some(LIMIT));
    assert_eq!(b.recv_bytes().unwrap(), big);
    let _tx = writer.join().unwrap().unwrap();
    let rung = Instant::now();
    b.send_bytes(b"x").unwrap();
    let (m, woke) = reader.join().unwrap();
    assert_eq!(m.unwrap(), b"x");
    // Well within the sleep's own recheck (100 ms): woken by the doorbell, not by the clock.
    assert!(woke - rung < Duration::from_millis(80), "{:?}", woke - rung);
}

#[test]
fn a_listener_killed_is_closed_for_its_client_at_once() {
    let addr = shm_address();
    let mut child = spawn_child("listen-and-die", &env_of(&addr));
    assert_eq!(child.line(), "listening");
    let mut c = Client::builder().authkey(KEY).read_timeout(Some(LIMIT)).connect(&addr).unwrap();
    assert_eq!(c.recv_bytes().unwrap(), b"hi");
    // Asleep on the doorbell when the listener dies: woken by end of file, not by a timeout.
    let start = Instant::now();
    assert!(matches!(c.recv_bytes(), Err(Error::Closed)));
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
    let (code, _) = child.finish(LIMIT);
    // Killed: by a signal on Unix, with TerminateProcess's code on Windows.
    assert!(code.is_none() || (cfg!(windows) && code == Some(0x10009)), "not killed: {code:?}");
    assert!(c.send_bytes(&pattern(2 * RING, 1)).is_err());
}
