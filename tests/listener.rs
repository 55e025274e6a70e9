//! Listener and client behaviour: socket files (mode, stale reclaim, live conflict, removal),
//! address limits, accept timeouts, retrying connects, incoming(), authkeys from files, and
//! batching and split halves over real sockets.

#![cfg(unix)]

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use procwire::{Address, AuthKey, Client, Error, Family, Listener};

const KEY: &str = "listener-test-key";

fn unix_path(a: &Address) -> PathBuf {
    match a {
        Address::Unix(p) => p.clone(),
        other => panic!("not a unix path address: {other}"),
    }
}

fn connect_pair(listener: &Listener) -> (procwire::Connection, procwire::Connection) {
    let addr = listener.address().clone();
    let t = std::thread::spawn(move || Client::builder().authkey(KEY).connect(&addr));
    let server = listener.accept_timeout(Duration::from_secs(10)).unwrap();
    (t.join().unwrap().unwrap(), server)
}

#[test]
fn socket_file_is_0600_and_removed_with_its_private_dir_on_drop() {
    let addr = Address::fresh(Family::Unix).unwrap();
    let path = unix_path(&addr);
    let listener = Listener::builder().authkey(KEY).bind(&addr).unwrap();
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    drop(listener);
    assert!(!path.exists(), "socket file left behind");
    assert!(!path.parent().unwrap().exists(), "private directory left behind");
}

#[test]
fn socket_mode_option_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let addr = Address::Unix(dir.path().join("s.sock"));
    let _l = Listener::builder().socket_mode(0o660).bind(&addr).unwrap();
    let mode = std::fs::metadata(dir.path().join("s.sock")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660);
}

#[test]
fn stale_socket_file_is_reclaimed_and_a_live_one_is_addr_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sock");
    // A socket file whose listener is gone: what a killed process leaves behind.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let addr = Address::Unix(path.clone());
    let live = Listener::builder().authkey(KEY).bind(&addr).expect("stale socket should be reclaimed");

    // A second listener on the live path is refused and leaves the first one working.
    let e = Listener::builder().authkey(KEY).bind(&addr).unwrap_err();
    match &e {
        Error::Io(io) => {
            assert_eq!(io.kind(), std::io::ErrorKind::AddrInUse);
            assert!(io.to_string().contains("live listener"), "{io}");
        }
        other => panic!("expected AddrInUse, got {other}"),
    }
    let (mut c, mut s) = connect_pair(&live);
    c.send_bytes(b"still mine").unwrap();
    assert_eq!(s.recv_bytes().unwrap(), b"still mine");
}

#[test]
fn a_regular_file_in_the_way_is_never_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("precious.txt");
    std::fs::write(&path, b"do not delete").unwrap();
    let e = Listener::bind(Address::Unix(path.clone())).unwrap_err();
    assert!(e.to_string().contains("not a socket"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), b"do not delete");
}

#[test]
fn a_socket_file_replaced_by_someone_else_is_not_removed_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let listener = Listener::bind(Address::Unix(path.clone())).unwrap();
    std::fs::remove_file(&path).unwrap();
    let other = std::os::unix::net::UnixListener::bind(&path).unwrap();
    drop(listener);
    assert!(path.exists(), "dropping our listener removed another process's socket");
    drop(other);
}

#[test]
fn too_long_unix_path_is_a_clear_error() {
    let long = format!("/tmp/{}", "x".repeat(200));
    let e =
        Listener::bind(long.parse::<Address>().unwrap_or(Address::Unix(long.clone().into()))).unwrap_err();
    match &e {
        Error::InvalidAddress { reason, .. } => assert!(reason.contains("at most"), "{reason}"),
        other => panic!("expected InvalidAddress, got {other}"),
    }
    let e = Client::connect(Address::Unix(long.into())).unwrap_err();
    assert!(matches!(e, Error::InvalidAddress { .. }), "{e}");
}

#[test]
fn tcp_port_zero_resolves_to_the_real_port() {
    let l = Listener::builder().authkey(KEY).bind(Address::fresh(Family::Tcp).unwrap()).unwrap();
    let Address::Tcp { host, port } = l.address() else { panic!() };
    assert_eq!(host, "127.0.0.1");
    assert_ne!(*port, 0);
    let bound = l.address().clone();
    let t = std::thread::spawn(move || Client::builder().authkey(KEY).connect(&bound));
    let _s = l.accept_timeout(Duration::from_secs(5)).unwrap();
    let c = t.join().unwrap().unwrap();
    assert_eq!(c.peer_addr().as_ref(), Some(l.address()));
    assert_eq!(l.last_accepted(), c.local_addr());
}

#[test]
fn accept_timeout_times_out() {
    let l = Listener::builder().authkey(KEY).bind(Address::fresh(Family::UnixAbstract).unwrap()).unwrap();
    let start = Instant::now();
    let e = l.accept_timeout(Duration::from_millis(150)).unwrap_err();
    assert!(e.is_timeout(), "{e}");
    assert!(start.elapsed() >= Duration::from_millis(140));
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn client_waits_for_a_listener_that_is_not_up_yet() {
    for family in [Family::Unix, Family::Tcp] {
        // Reserve an address, then bind it only after the client started trying.
        let addr = match family {
            Family::Tcp => {
                let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                Address::tcp(probe.local_addr().unwrap())
            }
            _ => Address::fresh(family).unwrap(),
        };
        let a = addr.clone();
        let t = std::thread::spawn(move || {
            Client::builder().authkey(KEY).wait_for_listener(Duration::from_secs(10)).connect(&a)
        });
        std::thread::sleep(Duration::from_millis(300));
        let l = Listener::builder().authkey(KEY).bind(&addr).unwrap();
        let mut s = l.accept_timeout(Duration::from_secs(10)).unwrap();
        let mut c = t.join().unwrap().unwrap();
        c.send_bytes(b"late").unwrap();
        assert_eq!(s.recv_bytes().unwrap(), b"late");
    }
}

#[test]
fn client_without_wait_fails_at_once_when_nothing_listens() {
    let start = Instant::now();
    let e = Client::connect(Address::fresh(Family::Unix).unwrap()).unwrap_err();
    assert!(matches!(&e, Error::Io(io) if io.kind() == std::io::ErrorKind::NotFound), "{e}");
    assert!(e.to_string().contains("cannot connect to unix:"), "{e}");
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn incoming_yields_errors_for_bad_clients_and_connections_for_good_ones() {
    let l = Listener::builder().authkey(KEY).bind(Address::fresh(Family::Tcp).unwrap()).unwrap();
    let addr = l.address().clone();
    let clients = std::thread::spawn(move || {
        let bad = Client::builder().authkey("nope").connect(&addr);
        let good: Vec<_> = (0..3).map(|_| Client::builder().authkey(KEY).connect(&addr).unwrap()).collect();
        (bad.is_err(), good)
    });
    let mut results = l.incoming().take(4).map(|r| r.map(|_| ()));
    assert!(matches!(results.next(), Some(Err(Error::AuthenticationFailed(_)))));
    assert_eq!(results.filter(|r| r.is_ok()).count(), 3);
    let (bad_failed, good) = clients.join().unwrap();
    assert!(bad_failed);
    assert_eq!(good.len(), 3);
}

#[test]
fn authkey_from_file_is_used_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("key");
    std::fs::write(&f, b"line\n").unwrap();
    let key = AuthKey::from_file(&f).unwrap();
    assert_eq!(key.as_bytes(), b"line\n");
    std::fs::write(&f, b"").unwrap();
    assert!(AuthKey::from_file(&f).unwrap_err().to_string().contains("empty"));
    assert!(AuthKey::from_file(dir.path().join("missing")).is_err());
}

#[test]
fn batched_sends_arrive_in_order_with_large_messages_between() {
    let l = Listener::builder().authkey(KEY).bind(Address::fresh(Family::UnixAbstract).unwrap()).unwrap();
    let (mut c, mut s) = connect_pair(&l);
    c.set_batching(Some(4096));
    let writer = std::thread::spawn(move || {
        for i in 0..10_000u32 {
            c.send(&i).unwrap();
            if i % 1000 == 0 {
                c.send_bytes(&vec![(i % 256) as u8; 100_000]).unwrap();
            }
        }
        c.flush().unwrap();
        c
    });
    s.set_read_timeout(Some(Duration::from_secs(10)));
    for i in 0..10_000u32 {
        assert_eq!(s.recv::<u32>().unwrap(), i);
        if i % 1000 == 0 {
            assert_eq!(s.recv_bytes().unwrap(), vec![(i % 256) as u8; 100_000]);
        }
    }
    let _c = writer.join().unwrap();
}

#[test]
fn batched_data_is_flushed_when_the_connection_is_dropped() {
    let (mut a, mut b) = procwire::pipe(true).unwrap();
    a.set_batching(Some(1 << 20));
    for i in 0..100u8 {
        a.send_bytes(&[i]).unwrap();
    }
    drop(a);
    for i in 0..100u8 {
        assert_eq!(b.recv_bytes().unwrap(), [i]);
    }
    assert!(matches!(b.recv_bytes(), Err(Error::Closed)));
}

#[test]
fn split_halves_work_from_two_threads() {
    let l = Listener::builder().authkey(KEY).bind(Address::fresh(Family::Tcp).unwrap()).unwrap();
    let (c, mut s) = connect_pair(&l);
    let (mut tx, mut rx) = c.split();
    let sender = std::thread::spawn(move || {
        for i in 0..2000u32 {
            tx.send(&i).unwrap();
        }
    });
    let echo = std::thread::spawn(move || {
        for _ in 0..2000 {
            let v: u32 = s.recv().unwrap();
            s.send(&(v + 1)).unwrap();
        }
    });
    for i in 0..2000u32 {
        assert_eq!(rx.recv::<u32>().unwrap(), i + 1);
    }
    sender.join().unwrap();
    echo.join().unwrap();
}

#[test]
fn a_decode_error_consumes_the_message_and_the_connection_goes_on() {
    let (mut a, mut b) = procwire::pipe(true).unwrap();
    a.send_bytes(b"\xff\xff not cbor").unwrap();
    a.send(&7u8).unwrap();
    assert!(matches!(b.recv::<String>(), Err(Error::Decode(_))));
    assert_eq!(b.recv::<u8>().unwrap(), 7);
    // Trailing bytes after a valid value are refused too.
    a.send_bytes(&[0x01, 0x02]).unwrap();
    assert!(matches!(b.recv::<u8>(), Err(Error::Decode(m)) if m.contains("left over")));
}

#[test]
fn write_timeout_keeps_the_unsent_rest_and_flush_completes_it() {
    let (mut a, mut b) = procwire::pipe(true).unwrap();
    a.set_write_timeout(Some(Duration::from_millis(50)));
    let big = vec![7u8; 8 << 20];
    // Nobody reads: the send cannot finish in time.
    let e = a.send_bytes(&big).unwrap_err();
    assert!(e.is_timeout(), "{e}");
    let reader = std::thread::spawn(move || {
        let first = b.recv_bytes().unwrap();
        let second = b.recv_bytes().unwrap();
        (first, second)
    });
    a.set_write_timeout(Some(Duration::from_secs(10)));
    a.flush().unwrap();
    a.send_bytes(b"next").unwrap();
    let (first, second) = reader.join().unwrap();
    assert!(first == big, "the timed-out message must arrive whole");
    assert_eq!(second, b"next");
}

#[test]
fn a_lying_length_with_no_max_is_an_error_not_an_abort() {
    // Max "unlimited": a header announcing 2^62 bytes must not reserve them.
    let (a, mut b) = procwire::pipe(true).unwrap();
    b.set_max_message_size(u64::MAX);
    use std::io::Write;
    use std::os::fd::AsFd;
    let mut raw = std::fs::File::from(a.as_fd().try_clone_to_owned().unwrap());
    raw.write_all(&[0xff; 4]).unwrap();
    raw.write_all(&(1u64 << 62).to_be_bytes()).unwrap();
    raw.write_all(b"a few bytes").unwrap();
    drop((raw, a));
    match b.recv_bytes() {
        Err(Error::Truncated { received, expected }) => {
            assert_eq!((received, expected), (12 + 11, 12 + (1 << 62)));
        }
        Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::OutOfMemory => {}
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn binding_a_path_whose_live_listener_has_a_full_backlog_does_not_hang() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("busy.sock");
    let addr = Address::Unix(path.clone());
    let busy = Listener::builder().backlog(1).bind(&addr).unwrap();
    // Fill the backlog: nobody accepts.
    let mut held = Vec::new();
    for _ in 0..8 {
        let s = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&socket2::SockAddr::unix(&path).unwrap());
        held.push(s);
    }
    let start = Instant::now();
    let e = Listener::bind(&addr).unwrap_err();
    assert!(matches!(&e, Error::Io(io) if io.kind() == std::io::ErrorKind::AddrInUse), "{e}");
    assert!(start.elapsed() < Duration::from_secs(3), "{:?}", start.elapsed());
    // And a client facing the full backlog waits for its connect timeout instead of failing
    // at once with a confusing error.
    let start = Instant::now();
    let e = Client::builder().connect_timeout(Duration::from_millis(300)).connect(&addr).unwrap_err();
    assert!(e.is_timeout(), "{e}");
    assert!(start.elapsed() >= Duration::from_millis(250), "{:?}", start.elapsed());
    drop(busy);
}

#[test]
fn receive_still_works_after_a_failed_flush_of_batched_data() {
    let (mut a, mut b) = procwire::pipe(true).unwrap();
    b.send_bytes(b"last words").unwrap();
    drop(b);
    a.set_batching(Some(1 << 20));
    a.send_bytes(b"queued, never to be read").unwrap();
    // The queued data cannot go out (the peer is gone), but its last message is readable.
    assert_eq!(a.recv_bytes().unwrap(), b"last words");
    assert!(matches!(a.recv_bytes(), Err(Error::Closed)));
    // The send failure is reported by the next flush.
    assert!(a.flush().is_err());
}

#[test]
fn poll_zero_does_not_block_on_queued_data() {
    let (mut a, _b) = procwire::pipe(true).unwrap();
    a.set_batching(Some(64 << 20));
    // 16 MiB of small messages: far more than the socket buffer holds, all still queued.
    for _ in 0..16 << 10 {
        a.send_bytes(&[0u8; 1020]).unwrap();
    }
    let start = Instant::now();
    assert!(!a.poll_timeout(Duration::ZERO).unwrap());
    assert!(start.elapsed() < Duration::from_secs(1), "{:?}", start.elapsed());
}

#[test]
fn huge_timeouts_mean_forever_and_do_not_panic() {
    let (mut a, mut b) = procwire::pipe(true).unwrap();
    a.set_read_timeout(Some(Duration::MAX));
    a.set_write_timeout(Some(Duration::MAX));
    b.send_bytes(b"x").unwrap();
    assert!(a.poll_timeout(Duration::MAX).unwrap());
    assert_eq!(a.recv_bytes().unwrap(), b"x");
    a.send_bytes(b"y").unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"y");
    let l = Listener::builder()
        .authkey(KEY)
        .handshake_timeout(Duration::MAX)
        .bind(Address::fresh(Family::Tcp).unwrap())
        .unwrap();
    let addr = l.address().clone();
    let t = std::thread::spawn(move || {
        Client::builder()
            .authkey(KEY)
            .connect_timeout(Duration::MAX)
            .handshake_timeout(Duration::MAX)
            .connect(&addr)
    });
    l.accept_timeout(Duration::MAX).unwrap();
    t.join().unwrap().unwrap();
}

#[test]
fn a_second_thread_accept_timeout_is_honoured_while_another_thread_waits() {
    let l = Listener::builder().authkey(KEY).bind(Address::fresh(Family::Tcp).unwrap()).unwrap();
    std::thread::scope(|s| {
        let waiting = s.spawn(|| l.accept_timeout(Duration::from_secs(5)));
        std::thread::sleep(Duration::from_millis(50));
        let start = Instant::now();
        assert!(l.accept_timeout(Duration::from_millis(100)).unwrap_err().is_timeout());
        assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
        assert_eq!(l.last_accepted(), None); // does not block either
        // The first thread still gets the next client.
        let c = Client::builder().authkey(KEY).connect(l.address()).unwrap();
        waiting.join().unwrap().unwrap();
        drop(c);
    });
}

#[test]
fn a_busy_serial_server_does_not_fail_handshakes_it_started() {
    let l = Listener::builder()
        .authkey(KEY)
        .handshake_timeout(Duration::from_millis(300))
        .bind(Address::fresh(Family::Unix).unwrap())
        .unwrap();
    let addr = l.address().clone();
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let a = addr.clone();
            std::thread::spawn(move || Client::builder().authkey(KEY).connect(&a))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100)); // all three are queued
    for _ in 0..3 {
        let mut c = l.accept_timeout(Duration::from_secs(10)).unwrap();
        // Serve this client for longer than the handshake timeout before the next accept.
        std::thread::sleep(Duration::from_millis(500));
        c.send_bytes(b"served").unwrap();
    }
    for t in clients {
        let mut c = t.join().unwrap().unwrap();
        assert_eq!(c.recv_bytes().unwrap(), b"served");
    }
}

#[test]
fn at_most_max_pending_handshakes_hold_descriptors() {
    let l = Listener::builder()
        .authkey(KEY)
        .max_pending_handshakes(4)
        .handshake_timeout(Duration::from_millis(500))
        .bind(Address::fresh(Family::Tcp).unwrap())
        .unwrap();
    let Address::Tcp { host, port } = l.address().clone() else { panic!() };
    // Ten silent clients, then an honest one: past four, each newcomer takes the place of the
    // handshake that went longest without progress, and the honest one is served.
    let silent: Vec<_> =
        (0..10).map(|_| std::net::TcpStream::connect((host.as_str(), port)).unwrap()).collect();
    let addr = l.address().clone();
    let honest = std::thread::spawn(move || Client::builder().authkey(KEY).connect(&addr));
    let mut timeouts = 0;
    let start = Instant::now();
    loop {
        match l.accept_timeout(Duration::from_secs(10)) {
            Ok(_) => break,
            Err(e) if e.is_timeout() => timeouts += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(timeouts >= 4, "{timeouts}");
    assert!(start.elapsed() < Duration::from_secs(8), "{:?}", start.elapsed());
    honest.join().unwrap().unwrap();
    drop(silent);
}

/// Past the pending-handshake limit, a new connection takes the place of the handshake that
/// went longest without progress: an honest client gets through at once instead of waiting
/// for silent peers' handshakes to time out, and the oldest silent peer is the one dropped.
#[test]
fn an_honest_client_gets_through_past_the_pending_handshake_limit() {
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    let listener = Listener::builder()
        .authkey(KEY)
        .max_pending_handshakes(8)
        .handshake_timeout(Duration::from_secs(30))
        .bind(Address::fresh(Family::Unix).unwrap())
        .unwrap();
    let path = unix_path(listener.address());
    let silent: Vec<UnixStream> = (0..20).map(|_| UnixStream::connect(&path).unwrap()).collect();
    let addr = listener.address().clone();
    let honest = std::thread::spawn(move || -> procwire::Result<Vec<u8>> {
        let mut c = Client::builder()
            .authkey(KEY)
            .connect_timeout(Duration::from_secs(5))
            .handshake_timeout(Duration::from_secs(5))
            .read_timeout(Some(Duration::from_secs(5)))
            .connect(&addr)?;
        c.send_bytes(b"honest")?;
        c.recv_bytes()
    });
    let give_up = Instant::now() + Duration::from_secs(10);
    let mut dropped = 0;
    let mut server = loop {
        let left = give_up.saturating_duration_since(Instant::now());
        match listener.accept_timeout(left) {
            Ok(c) => break c,
            Err(e) if e.to_string().contains("max_pending_handshakes") => dropped += 1,
            Err(e) => panic!("no honest client within 10 s (after {dropped} dropped): {e}"),
        }
    };
    let m = server.recv_bytes().unwrap();
    server.send_bytes(&m).unwrap();
    assert_eq!(honest.join().unwrap().unwrap(), b"honest");
    assert!(dropped > 0, "silent connections were dropped for newcomers");
    // The first silent connection was dropped (its challenge, then end of file); the last one
    // is still pending.
    let read_all = |mut s: &UnixStream| {
        s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).map(|_| buf.len())
    };
    assert!(read_all(&silent[0]).is_ok_and(|n| n > 0), "the oldest silent peer was dropped");
    assert!(read_all(&silent[19]).is_err(), "the newest silent peer is still pending");
}

/// The handshake dropped for a newcomer is the one that went longest without progress, not
/// the oldest: a peer that sent bytes since outlasts a silent one that connected after it.
#[test]
fn the_pending_handshake_dropped_for_a_newcomer_is_the_longest_without_progress() {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    let listener = Listener::builder()
        .authkey(KEY)
        .max_pending_handshakes(2)
        .handshake_timeout(Duration::from_secs(30))
        .bind(Address::fresh(Family::Unix).unwrap())
        .unwrap();
    let path = unix_path(listener.address());
    // Each call runs rounds for a while: connections are taken, bytes read, room made.
    let rounds = || listener.accept_timeout(Duration::from_millis(300));
    let mut first = UnixStream::connect(&path).unwrap();
    let second = UnixStream::connect(&path).unwrap();
    assert!(rounds().unwrap_err().to_string().contains("waiting for a connection"));
    // One byte of a frame header: progress, though no message yet.
    first.write_all(&[0]).unwrap();
    assert!(rounds().unwrap_err().to_string().contains("waiting for a connection"));
    let _third = UnixStream::connect(&path).unwrap();
    let dropped = rounds().unwrap_err();
    assert!(dropped.to_string().contains("max_pending_handshakes"), "{dropped}");
    let outcome = |mut s: &UnixStream| {
        s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).map(|_| buf.len())
    };
    assert!(outcome(&second).is_ok_and(|n| n > 0), "the silent one is dropped (challenge, then end of file)");
    assert!(outcome(&first).is_err(), "the one that made progress is still pending");
}

#[test]
fn bind_and_connect_take_address_strings_and_refuse_bad_ones() {
    let listener = Listener::builder().authkey(KEY).bind("tcp:127.0.0.1:0").unwrap();
    let text: String = listener.address().to_string();
    let t = std::thread::spawn(move || Client::builder().authkey(KEY).connect(text));
    let mut server = listener.accept_timeout(Duration::from_secs(10)).unwrap();
    let mut client = t.join().unwrap().unwrap();
    client.send_bytes(b"by string").unwrap();
    assert_eq!(server.recv_bytes().unwrap(), b"by string");

    for bad in ["nowhere", "tcp:127.0.0.1:99999"] {
        assert!(matches!(Listener::bind(bad), Err(Error::InvalidAddress { .. })), "{bad}");
        assert!(matches!(Client::connect(bad), Err(Error::InvalidAddress { .. })), "{bad}");
    }
}
