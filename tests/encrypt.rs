//! Encrypted connections (feature `encrypt`) over real sockets: messages of every size both
//! ways over TCP and Unix sockets, every mismatch refused at once on both sides (plain against
//! encrypting, wrong key, no key), and a relay in the middle that cannot read the payload and
//! whose tampering (a flipped bit, a dropped, reordered or replayed message, a replayed
//! handshake, a cut at a message boundary) the receiver detects as an integrity or
//! authentication error.

#![cfg(feature = "encrypt")]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use procwire::{Address, Client, ClientBuilder, Connection, Error, Family, Listener, ListenerBuilder};

const KEY: &[u8] = b"encrypted test key";
const WAIT: Duration = Duration::from_secs(10);

fn listener_builder(key: &[u8]) -> ListenerBuilder {
    Listener::builder()
        .authkey(key)
        .handshake_timeout(WAIT)
        .read_timeout(Some(WAIT))
        .write_timeout(Some(WAIT))
}

fn client_builder(key: &[u8]) -> ClientBuilder {
    Client::builder()
        .authkey(key)
        .connect_timeout(WAIT)
        .handshake_timeout(WAIT)
        .read_timeout(Some(WAIT))
        .write_timeout(Some(WAIT))
}

fn bind(family: Family, encrypt: bool) -> Listener {
    listener_builder(KEY).encrypt(encrypt).bind(Address::fresh(family).unwrap()).unwrap()
}

/// Connects a client built by `client` to `listener`; both results.
fn connect(
    listener: &Listener,
    client: ClientBuilder,
) -> (Result<Connection, Error>, Result<Connection, Error>) {
    let addr = listener.address().clone();
    let t = thread::spawn(move || client.connect(&addr));
    let accepted = listener.accept_timeout(WAIT);
    (accepted, t.join().unwrap())
}

fn pattern(n: usize, seed: usize) -> Vec<u8> {
    (0..n).map(|i| ((i + 7 * seed) % 251) as u8).collect()
}

const SIZES: [usize; 10] = [0, 1, 100, 65_515, 65_519, 65_520, 65_535, 65_536, 200_000, 1 << 20];

fn exchange(family: Family) {
    let listener = bind(family, true);
    let (server, client) = connect(&listener, client_builder(KEY).encrypt(true));
    let (mut server, mut client) = (server.unwrap(), client.unwrap());
    assert!(server.is_encrypted() && client.is_encrypted());
    let t = thread::spawn(move || {
        for (i, &n) in SIZES.iter().enumerate() {
            let got = server.recv_bytes().unwrap();
            assert_eq!(got, pattern(n, i), "message {i} of {n} bytes");
            server.send_bytes(&got).unwrap();
        }
        server.send(&("done", 42u32)).unwrap();
    });
    for (i, &n) in SIZES.iter().enumerate() {
        client.send_bytes(&pattern(n, i)).unwrap();
        assert_eq!(client.recv_bytes().unwrap(), pattern(n, i), "echo {i} of {n} bytes");
    }
    assert_eq!(client.recv::<(String, u32)>().unwrap(), ("done".to_string(), 42));
    t.join().unwrap();
    assert!(matches!(client.recv_bytes(), Err(Error::Closed)));
}

#[test]
fn messages_of_every_size_cross_over_tcp() {
    exchange(Family::Tcp);
}

#[cfg(unix)]
#[test]
fn messages_of_every_size_cross_over_unix_sockets() {
    exchange(Family::Unix);
}

#[test]
fn batched_small_messages_and_split_halves_work() {
    let listener = bind(Family::Tcp, true);
    let (server, client) = connect(&listener, client_builder(KEY).encrypt(true));
    let (server, mut client) = (server.unwrap(), client.unwrap());
    let (mut tx, mut rx) = server.split();
    let echo = thread::spawn(move || {
        for _ in 0..10_000 {
            let v: u32 = rx.recv().unwrap();
            tx.send(&(v * 2)).unwrap();
        }
    });
    client.set_batching(Some(procwire::connection::DEFAULT_BATCH));
    for i in 0..10_000u32 {
        client.send(&i).unwrap();
    }
    client.flush().unwrap();
    for i in 0..10_000u32 {
        assert_eq!(client.recv::<u32>().unwrap(), i * 2);
    }
    echo.join().unwrap();
}

#[test]
fn a_wrong_key_is_refused_on_both_sides() {
    let listener = bind(Family::Tcp, true);
    let start = Instant::now();
    let (server, client) = connect(&listener, client_builder(b"another key").encrypt(true));
    match server {
        Err(Error::AuthenticationFailed(m)) if m.contains("different authkeys") => {}
        other => panic!("listener: want AuthenticationFailed naming the keys, got {other:?}"),
    }
    match client {
        Err(Error::AuthenticationFailed(m)) if m.contains("different authkeys") => {}
        other => panic!("client: want AuthenticationFailed naming the keys, got {other:?}"),
    }
    assert!(start.elapsed() < WAIT / 2, "took {:?}", start.elapsed());
    // And the listener still serves the right key.
    let (server, client) = connect(&listener, client_builder(KEY).encrypt(true));
    assert!(server.is_ok() && client.is_ok());
}

#[test]
fn an_encrypting_client_at_a_plain_listener_fails_fast_on_both_sides() {
    let listener = bind(Family::Tcp, false);
    let start = Instant::now();
    let (server, client) = connect(&listener, client_builder(KEY).encrypt(true));
    match client {
        Err(Error::AuthenticationFailed(m)) if m.contains("does not encrypt") => {}
        other => {
            panic!("client: want AuthenticationFailed saying the listener does not encrypt, got {other:?}")
        }
    }
    match server {
        Err(Error::AuthenticationFailed(m)) if m.contains("asks for an encrypted connection") => {}
        other => panic!("listener: want AuthenticationFailed naming encryption, got {other:?}"),
    }
    assert!(start.elapsed() < WAIT / 2, "took {:?}", start.elapsed());
}

#[test]
fn a_plain_client_at_an_encrypting_listener_fails_fast_on_both_sides() {
    let listener = bind(Family::Tcp, true);
    let start = Instant::now();
    let (server, client) = connect(&listener, client_builder(KEY));
    match client {
        Err(Error::AuthenticationFailed(m)) if m.contains("encrypts its connections") => {}
        other => panic!("client: want AuthenticationFailed saying the listener encrypts, got {other:?}"),
    }
    match server {
        Err(Error::AuthenticationFailed(m)) if m.contains("the client does not encrypt") => {}
        other => {
            panic!("listener: want AuthenticationFailed saying the client does not encrypt, got {other:?}")
        }
    }
    assert!(start.elapsed() < WAIT / 2, "took {:?}", start.elapsed());
}

#[test]
fn encryption_without_a_key_is_refused_when_building() {
    let e = Listener::builder().encrypt(true).bind("tcp:127.0.0.1:0").unwrap_err();
    assert!(matches!(&e, Error::InvalidInput(m) if m.contains("needs an authkey")), "{e:?}");
    let e = Client::builder().encrypt(true).connect("tcp:127.0.0.1:9").unwrap_err();
    assert!(matches!(&e, Error::InvalidInput(m) if m.contains("needs an authkey")), "{e:?}");
}

#[cfg(unix)]
#[test]
fn encryption_over_shared_memory_is_refused_when_building() {
    let shm = procwire::Address::fresh(procwire::Family::Shm).unwrap();
    let e = Listener::builder().authkey("k").encrypt(true).bind(&shm).unwrap_err();
    assert!(matches!(&e, Error::InvalidInput(m) if m.contains("shared-memory")), "{e:?}");
    let e = Client::builder().authkey("k").encrypt(true).connect(&shm).unwrap_err();
    assert!(matches!(&e, Error::InvalidInput(m) if m.contains("shared-memory")), "{e:?}");
}

/// What the relay does to the client's messages after its handshake message (frame 0).
#[derive(Clone, Copy, Debug)]
enum Tamper {
    Nothing,
    /// Flips one bit in the middle of frame `n`.
    Flip(usize),
    Drop(usize),
    /// Sends frame `n + 1` before frame `n`.
    Swap(usize),
    Replay(usize),
    /// Forwards nothing from frame `n` on, and ends the stream to the listener there (a cut at
    /// a message boundary).
    Cut(usize),
}

/// A TCP relay between one client and `target`, changing the client's frames as `tamper`
/// says; returns its address and everything it forwarded (both ways).
fn relay(target: &Address, tamper: Tamper) -> (Address, Arc<Mutex<Vec<u8>>>) {
    let Address::Tcp { port, .. } = target else { panic!("a TCP target") };
    let target = format!("127.0.0.1:{port}");
    let front = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: Address = format!("tcp:{}", front.local_addr().unwrap()).parse().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    thread::spawn(move || {
        let (mut client, _) = front.accept().unwrap();
        let mut server = TcpStream::connect(target).unwrap();
        let (mut client_r, mut server_w) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        let seen3 = seen2.clone();
        // Listener to client: faithful.
        thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            loop {
                match server.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        seen3.lock().unwrap().extend_from_slice(&buf[..n]);
                        if client.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = client.shutdown(std::net::Shutdown::Write);
        });
        // Client to listener: frame by frame.
        let mut held: Option<Vec<u8>> = None;
        for i in 0.. {
            let mut header = [0u8; 4];
            if client_r.read_exact(&mut header).is_err() {
                break;
            }
            let mut frame = header.to_vec();
            frame.resize(4 + u32::from_be_bytes(header) as usize, 0);
            if client_r.read_exact(&mut frame[4..]).is_err() {
                break;
            }
            seen2.lock().unwrap().extend_from_slice(&frame);
            if matches!(tamper, Tamper::Cut(n) if i == n) {
                break;
            }
            let out: Vec<Vec<u8>> = match tamper {
                Tamper::Flip(n) if i == n => {
                    let mid = frame.len() / 2;
                    frame[mid] ^= 0x10;
                    vec![frame]
                }
                Tamper::Drop(n) if i == n => vec![],
                Tamper::Swap(n) if i == n => {
                    held = Some(frame);
                    vec![]
                }
                Tamper::Swap(n) if i == n + 1 => vec![frame, held.take().unwrap()],
                Tamper::Replay(n) if i == n => vec![frame.clone(), frame],
                _ => vec![frame],
            };
            for f in out {
                if server_w.write_all(&f).is_err() {
                    return;
                }
            }
        }
        let _ = server_w.shutdown(std::net::Shutdown::Write);
    });
    (addr, seen)
}

const SECRET: &[u8] = b"the payload no relay may read: 0123456789";

/// Sends three messages through a relay that does `tamper`; returns what the listener received.
fn through_relay(tamper: Tamper, sizes: [usize; 3]) -> (Vec<Result<Vec<u8>, Error>>, Vec<u8>) {
    let listener = bind(Family::Tcp, true);
    let (addr, seen) = relay(listener.address(), tamper);
    let t = thread::spawn(move || {
        let mut c = client_builder(KEY).encrypt(true).connect(&addr).unwrap();
        for (i, n) in sizes.into_iter().enumerate() {
            let mut m = SECRET.repeat(n / SECRET.len() + 1);
            m.truncate(n.max(SECRET.len()));
            m[0] = i as u8;
            // Once the listener has refused a tampered message and closed, the relay closes
            // this side too: a later send may fail (broken pipe), and that is expected.
            if c.send_bytes(&m).is_err() {
                return;
            }
        }
        // Wait for the listener's verdict before closing.
        let _ = c.recv_bytes();
    });
    let mut server = listener.accept_timeout(WAIT).unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        let r = server.recv_bytes();
        let failed = r.is_err();
        got.push(r);
        if failed {
            break;
        }
    }
    drop(server);
    t.join().unwrap();
    let seen = seen.lock().unwrap().clone();
    (got, seen)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_faithful_relay_never_sees_the_payload() {
    let (got, seen) = through_relay(Tamper::Nothing, [SECRET.len(), 100_000, 10]);
    assert_eq!(got.len(), 3);
    for (i, r) in got.iter().enumerate() {
        let m = r.as_ref().unwrap();
        assert_eq!(m[0], i as u8);
        assert!(contains(m, &SECRET[1..]));
    }
    assert!(seen.len() > 100_000, "the relay forwarded {} bytes", seen.len());
    assert!(!contains(&seen, &SECRET[1..20]), "plaintext crossed the relay");
}

/// The listener gets the messages before the tampered one intact, then an integrity error,
/// and never a changed or partial message.
fn assert_integrity_failure(tamper: Tamper, sizes: [usize; 3], intact: usize) {
    let (got, _) = through_relay(tamper, sizes);
    assert_eq!(got.len(), intact + 1, "{tamper:?}: {got:?}");
    for (i, r) in got[..intact].iter().enumerate() {
        assert_eq!(r.as_ref().unwrap()[0], i as u8, "{tamper:?}");
    }
    match &got[intact] {
        Err(Error::Integrity(_)) => {}
        other => panic!("{tamper:?}: want an integrity error, got {other:?}"),
    }
}

#[test]
fn a_flipped_bit_is_an_integrity_error() {
    assert_integrity_failure(Tamper::Flip(2), [10, 10, 10], 1);
}

#[test]
fn a_flipped_bit_inside_a_large_message_returns_no_part_of_it() {
    // Frame 1 is the first 64 KiB piece of a 200 000-byte message.
    assert_integrity_failure(Tamper::Flip(2), [200_000, 10, 10], 0);
    // Later pieces, which the receiver reads and opens in the message's own buffer.
    for frame in 3..=5 {
        assert_integrity_failure(Tamper::Flip(frame), [200_000, 10, 10], 0);
    }
}

#[test]
fn a_dropped_message_is_an_integrity_error() {
    assert_integrity_failure(Tamper::Drop(2), [10, 10, 10], 1);
}

#[test]
fn reordered_messages_are_an_integrity_error() {
    assert_integrity_failure(Tamper::Swap(1), [10, 10, 10], 0);
}

#[test]
fn a_replayed_message_is_an_integrity_error() {
    assert_integrity_failure(Tamper::Replay(1), [10, 10, 10], 1);
}

/// A client sends two messages through a relay doing `tamper` and closes; what the listener's
/// first three receives return.
fn send_two_and_close(tamper: Tamper) -> Vec<Result<Vec<u8>, Error>> {
    let listener = bind(Family::Tcp, true);
    let (addr, _) = relay(listener.address(), tamper);
    let t = thread::spawn(move || {
        let mut c = client_builder(KEY).encrypt(true).connect(&addr).unwrap();
        c.send_bytes(b"one").unwrap();
        c.send_bytes(b"two").unwrap();
        c.close().unwrap();
    });
    let mut server = listener.accept_timeout(WAIT).unwrap();
    let got = (0..3).map(|_| server.recv_bytes()).collect();
    t.join().unwrap();
    got
}

#[test]
fn a_clean_close_through_a_faithful_relay_is_closed() {
    let got = send_two_and_close(Tamper::Nothing);
    assert_eq!(got[0].as_ref().unwrap(), b"one");
    assert_eq!(got[1].as_ref().unwrap(), b"two");
    assert!(matches!(got[2], Err(Error::Closed)), "{:?}", got[2]);
}

#[test]
fn a_stream_cut_at_a_message_boundary_is_an_integrity_error() {
    // Frame 0 is the handshake, 1 and 2 the messages, 3 the client's end message.
    let got = send_two_and_close(Tamper::Cut(3));
    assert_eq!(got[0].as_ref().unwrap(), b"one");
    assert_eq!(got[1].as_ref().unwrap(), b"two");
    match &got[2] {
        Err(Error::Integrity(m)) if m.contains("end message") => {}
        other => panic!("want an integrity error naming the missing end message, got {other:?}"),
    }
    // Cut earlier, the listener never learns of the second message, and says so too.
    let got = send_two_and_close(Tamper::Cut(2));
    assert_eq!(got[0].as_ref().unwrap(), b"one");
    assert!(matches!(&got[1], Err(Error::Integrity(_))), "{:?}", got[1]);
}

/// Reads one frame from a raw socket.
fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    let mut header = [0u8; 4];
    s.read_exact(&mut header).unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
    s.read_exact(&mut body).unwrap();
    body
}

#[test]
fn a_replayed_handshake_is_refused() {
    let listener = bind(Family::Tcp, true);
    let (addr, seen) = relay(listener.address(), Tamper::Nothing);
    let t = thread::spawn(move || client_builder(KEY).encrypt(true).connect(&addr).map(drop));
    listener.accept_timeout(WAIT).unwrap();
    t.join().unwrap().unwrap();
    // The client's first frame, as the relay saw it: its handshake message. The relay records
    // both directions; the client's frame is the only one of 52 bytes after the 43-byte hello.
    let deadline = Instant::now() + WAIT;
    let message1 = loop {
        let seen = seen.lock().unwrap().clone();
        if let Some(at) = seen.windows(4).position(|w| w == [0, 0, 0, 48]) {
            break seen[at..at + 52].to_vec();
        }
        assert!(Instant::now() < deadline, "no handshake message seen");
        thread::sleep(Duration::from_millis(5));
    };
    let Address::Tcp { port, .. } = listener.address() else { unreachable!() };
    let port = *port;
    // The listener only speaks inside accept: the replaying client is a thread.
    let replay = thread::spawn(move || {
        let mut raw = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let hello = read_frame(&mut raw);
        assert!(hello.starts_with(b"#NOISE#"));
        raw.write_all(&message1).unwrap();
        read_frame(&mut raw)
    });
    match listener.accept_timeout(WAIT) {
        Err(Error::AuthenticationFailed(m)) if m.contains("replayed") => {}
        other => panic!("want the replayed handshake refused, got {other:?}"),
    }
    assert_eq!(replay.join().unwrap(), b"#FAILURE#");
}

/// Messages that arrived in one transport message with an earlier one are ready for `poll` and
/// `wait` although the socket has nothing more to read.
#[test]
fn poll_and_wait_see_messages_already_decrypted() {
    let listener = bind(Family::Tcp, true);
    let (server, client) = connect(&listener, client_builder(KEY).encrypt(true));
    let (mut server, mut client) = (server.unwrap(), client.unwrap());
    client.set_batching(Some(procwire::connection::DEFAULT_BATCH));
    for i in 0..3u8 {
        client.send_bytes(&[i; 100]).unwrap();
    }
    client.flush().unwrap();
    assert_eq!(server.recv_bytes().unwrap(), [0; 100]);
    assert!(server.poll_timeout(Duration::ZERO).unwrap());
    assert_eq!(procwire::wait_timeout(&[(&server).into()], Duration::ZERO).unwrap(), [0]);
    assert_eq!(server.recv_bytes().unwrap(), [1; 100]);
    assert_eq!(server.recv_bytes().unwrap(), [2; 100]);
    assert!(!server.poll_timeout(Duration::ZERO).unwrap());
    assert!(procwire::wait_timeout(&[(&server).into()], Duration::from_millis(50)).unwrap().is_empty());
}

/// Dropping a connection whose peer does not read returns without waiting for room for the end
/// message: the peer, reading only afterwards, gets every message sent whole, then an integrity
/// error for the cut stream, never part of a message.
#[test]
fn dropping_a_connection_does_not_wait_for_a_peer_that_does_not_read() {
    let listener = bind(Family::Tcp, true);
    let client = client_builder(KEY).encrypt(true).write_timeout(Some(Duration::from_millis(100)));
    let (server, client) = connect(&listener, client);
    let (mut server, mut client) = (server.unwrap(), client.unwrap());
    let message = pattern(1 << 20, 3);
    let mut sent = 0;
    loop {
        match client.send_bytes(&message) {
            Ok(()) => sent += 1,
            Err(Error::Timeout(_)) => break,
            Err(e) => panic!("want the sends to fill the socket, got {e:?}"),
        }
    }
    drop(client);
    for _ in 0..sent {
        assert_eq!(server.recv_bytes().unwrap(), message);
    }
    match server.recv_bytes() {
        Err(Error::Integrity(_)) => {}
        other => panic!("want an integrity error for the cut stream, got {other:?}"),
    }
}
