//! Real processes over every transport: message sizes, typed messages, authentication
//! failures, limits, dead peers, timeouts and handshake isolation.

#![cfg(unix)]

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use common::{pattern, role, say, spawn_child, transports};
use procwire::{Address, AuthKey, Client, Connection, Error, Family, Listener};
use serde::{Deserialize, Serialize};

const KEY: &str = "transport-test-key";
const LIMIT: Duration = Duration::from_secs(30);
const SIZES: [usize; 4] = [0, 1, 64 << 10, 16 << 20];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Shape {
    Point,
    Circle { r: f64 },
    Poly(Vec<(i32, i32)>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Nested {
    name: String,
    id: u64,
    tags: BTreeMap<String, Vec<u8>>,
    shapes: Vec<Shape>,
    parent: Option<Box<Nested>>,
    #[serde(with = "serde_bytes")]
    blob: Vec<u8>,
}

fn sample() -> Nested {
    let mut tags = BTreeMap::new();
    tags.insert("alpha".to_string(), vec![1, 2, 3]);
    tags.insert("".to_string(), vec![]);
    Nested {
        name: "root ünïcode".into(),
        id: u64::MAX,
        tags,
        shapes: vec![
            Shape::Point,
            Shape::Circle { r: -1.5 },
            Shape::Poly(vec![(1, -2), (i32::MIN, i32::MAX)]),
        ],
        parent: Some(Box::new(Nested {
            name: "child".into(),
            id: 0,
            tags: BTreeMap::new(),
            shapes: vec![],
            parent: None,
            blob: vec![0; 3],
        })),
        blob: pattern(1000, 9),
    }
}

fn env_of(addr: &Address, key: Option<&str>) -> Vec<(&'static str, String)> {
    let mut v = vec![("PROCWIRE_TEST_ADDR", addr.to_string())];
    if let Some(k) = key {
        v.push(("PROCWIRE_TEST_KEY", k.to_string()));
    }
    v
}

fn keyed_listener(addr: &Address) -> Listener {
    Listener::builder().authkey(KEY).handshake_timeout(Duration::from_secs(10)).bind(addr).unwrap()
}

/// Child side: connect with the key from the environment (if any).
fn child_connect() -> procwire::Result<Connection> {
    let addr: Address = std::env::var("PROCWIRE_TEST_ADDR").unwrap().parse().unwrap();
    let mut b = Client::builder()
        .handshake_timeout(Duration::from_secs(3))
        .read_timeout(Some(LIMIT))
        .allow_unauthenticated_tcp(true);
    if let Ok(k) = std::env::var("PROCWIRE_TEST_KEY") {
        b = b.authkey(k.as_str());
    }
    b.connect(&addr)
}

/// Entry point of every child process of this file.
#[test]
#[ignore = "runs only as a child process of the other tests"]
fn child() {
    let role = role().expect("child started without a role");
    let code = match role.as_str() {
        // Echo every message back until the parent closes.
        "echo" => {
            let mut c = child_connect().unwrap();
            loop {
                match c.recv_bytes() {
                    Ok(m) => c.send_bytes(&m).unwrap(),
                    Err(Error::Closed) => break 0,
                    Err(e) => panic!("echo child: {e}"),
                }
            }
        }
        // Receive a typed value, change it, send it back.
        "cbor" => {
            let mut c = child_connect().unwrap();
            let mut v: Nested = c.recv().unwrap();
            v.id = v.id.wrapping_add(1);
            v.shapes.push(Shape::Circle { r: 2.0 });
            c.send(&v).unwrap();
            let _ = c.recv_bytes();
            0
        }
        // Report how connecting went: one line "ok", or the error's kind and text.
        "report" => {
            match child_connect() {
                Ok(mut c) => {
                    say("ok");
                    // Then say what the first receive gives (keyless client vs keyed listener).
                    match c.recv_bytes() {
                        Ok(m) => say(&format!("recv ok {}", m.len())),
                        Err(e) => say(&format!("recv {}", kind(&e))),
                    }
                }
                Err(e) => say(&format!("{} {e}", kind(&e))),
            }
            0
        }
        // Authenticate, then write a header for 10 MB and half of it, then die by SIGKILL.
        "die-mid-message" => {
            let c = child_connect().unwrap();
            let mut raw = std::fs::File::from(c.as_fd().try_clone_to_owned().unwrap());
            raw.write_all(&(10_000_000u32).to_be_bytes()).unwrap();
            raw.write_all(&pattern(5_000_000, 1)).unwrap();
            raw.flush().unwrap();
            say("sent half");
            // Wait until the parent has seen the data, then die without closing cleanly.
            std::thread::sleep(Duration::from_millis(200));
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
            unreachable!()
        }
        // Use the connection end passed by the parent: echo typed messages until closed.
        "pipe-end" => {
            let mut c = Connection::from_env("PROCWIRE_TEST_CONN").unwrap();
            loop {
                match c.recv::<(u32, String)>() {
                    Ok((n, s)) => c.send(&(n * 2, s.to_uppercase())).unwrap(),
                    Err(Error::Closed) => break 0,
                    Err(e) => panic!("pipe-end child: {e}"),
                }
            }
        }
        "pipe-writer" => {
            let mut c = Connection::from_env("PROCWIRE_TEST_CONN").unwrap();
            for i in 0..100u32 {
                c.send(&i).unwrap();
            }
            c.send_bytes(&pattern(1 << 20, 3)).unwrap();
            0
        }
        other => panic!("unknown role {other}"),
    };
    std::process::exit(code);
}

fn kind(e: &Error) -> &'static str {
    match e {
        Error::AuthenticationFailed(_) => "AuthenticationFailed",
        Error::Timeout(_) => "Timeout",
        Error::Closed => "Closed",
        Error::Truncated { .. } => "Truncated",
        Error::Io(_) => "Io",
        Error::MessageTooLarge { .. } => "MessageTooLarge",
        _ => "Other",
    }
}

#[test]
fn messages_of_every_size_both_ways_on_every_transport() {
    for addr in transports() {
        let listener = keyed_listener(&addr);
        let bound = listener.address().clone();
        let child = spawn_child("echo", &env_of(&bound, Some(KEY)));
        let mut c = listener.accept_timeout(LIMIT).unwrap_or_else(|e| panic!("{bound}: {e}"));
        c.set_read_timeout(Some(LIMIT));
        for (i, &n) in SIZES.iter().enumerate() {
            let sent = pattern(n, i as u8);
            c.send_bytes(&sent).unwrap();
            let back = c.recv_bytes().unwrap();
            assert_eq!(back.len(), n, "{bound}: size {n}");
            assert!(back == sent, "{bound}: {n}-byte message changed on the way");
        }
        drop(c);
        let (code, _) = child.finish(LIMIT);
        assert_eq!(code, Some(0), "{bound}: echo child failed");
    }
}

#[test]
fn typed_cbor_round_trip_between_processes() {
    for addr in transports() {
        let listener = keyed_listener(&addr);
        let child = spawn_child("cbor", &env_of(listener.address(), Some(KEY)));
        let mut c = listener.accept_timeout(LIMIT).unwrap();
        c.set_read_timeout(Some(LIMIT));
        let v = sample();
        c.send(&v).unwrap();
        let back: Nested = c.recv().unwrap();
        let mut want = v.clone();
        want.id = want.id.wrapping_add(1);
        want.shapes.push(Shape::Circle { r: 2.0 });
        assert_eq!(back, want);
        drop(c);
        assert_eq!(child.finish(LIMIT).0, Some(0));
    }
}

#[test]
fn wrong_key_fails_on_both_sides_and_the_listener_serves_the_next_client() {
    for addr in transports() {
        let listener = keyed_listener(&addr);
        let bound = listener.address().clone();
        let mut bad = spawn_child("report", &env_of(&bound, Some("not-the-key")));
        let e = listener.accept_timeout(LIMIT).unwrap_err();
        assert!(matches!(e, Error::AuthenticationFailed(_)), "{bound}: listener got {e}");
        let line = bad.line();
        assert!(line.starts_with("AuthenticationFailed"), "{bound}: client said {line}");
        assert!(line.contains("different authkeys"), "{line}");
        assert_eq!(bad.finish(LIMIT).0, Some(0));

        let good = spawn_child("echo", &env_of(&bound, Some(KEY)));
        let mut c = listener.accept_timeout(LIMIT).unwrap();
        c.send_bytes(b"still serving").unwrap();
        assert_eq!(c.recv_bytes().unwrap(), b"still serving");
        drop(c);
        assert_eq!(good.finish(LIMIT).0, Some(0));
    }
}

#[test]
fn keyed_client_against_keyless_listener_is_a_clear_timeout() {
    let listener = Listener::bind(Address::fresh(Family::Unix).unwrap()).unwrap();
    let start = Instant::now();
    let mut child = spawn_child("report", &env_of(listener.address(), Some(KEY)));
    let mut server_side = listener.accept_timeout(LIMIT).unwrap();
    let line = child.line();
    assert!(line.starts_with("Timeout"), "{line}");
    assert!(line.contains("does the listener have an authkey"), "{line}");
    assert!(start.elapsed() < Duration::from_secs(15), "took {:?}", start.elapsed());
    // The keyless side sees the client go away, not a hang.
    server_side.set_read_timeout(Some(LIMIT));
    assert!(matches!(server_side.recv_bytes(), Err(Error::Closed)));
    assert_eq!(child.finish(LIMIT).0, Some(0));
}

#[test]
fn keyless_client_against_keyed_listener_is_a_clear_error_on_both_sides() {
    let listener = Listener::builder()
        .authkey(KEY)
        .handshake_timeout(Duration::from_secs(2))
        .bind(Address::fresh(Family::Tcp).unwrap())
        .unwrap();
    let mut child = spawn_child("report", &env_of(listener.address(), None));
    std::thread::scope(|s| {
        // The listener sends its challenge while it accepts.
        let accepting = s.spawn(|| listener.accept_timeout(LIMIT));
        assert_eq!(child.line(), "ok"); // no handshake on the keyless side
        let recv = child.line();
        assert!(recv.starts_with("recv AuthenticationFailed"), "{recv}");
        let e = accepting.join().unwrap().unwrap_err();
        assert!(matches!(&e, Error::AuthenticationFailed(m) if m.contains("no authkey")), "{e}");
    });
    assert_eq!(child.finish(LIMIT).0, Some(0));
}

#[test]
fn message_over_the_max_is_refused_without_allocating() {
    for addr in transports() {
        let listener = Listener::builder().authkey(KEY).max_message_size(1 << 20).bind(&addr).unwrap();
        let mut client = {
            let bound = listener.address().clone();
            let t = std::thread::spawn(move || Client::builder().authkey(KEY).connect(&bound));
            let server = listener.accept_timeout(LIMIT).unwrap();
            (t.join().unwrap().unwrap(), server)
        };
        let (ref mut tx, ref mut rx) = client;
        // A header announcing 2^40 bytes: allocating it would abort the test process.
        let mut raw = std::fs::File::from(tx.as_fd().try_clone_to_owned().unwrap());
        raw.write_all(&[0xff, 0xff, 0xff, 0xff]).unwrap();
        raw.write_all(&(1u64 << 40).to_be_bytes()).unwrap();
        let e = rx.recv_bytes().unwrap_err();
        assert!(matches!(e, Error::MessageTooLarge { len, max } if len == 1 << 40 && max == 1 << 20), "{e}");
        // One byte over the max, in the short form, too.
        let (mut a, mut b) = procwire::pipe(true).unwrap();
        b.set_max_message_size(100);
        a.send_bytes(&[0; 101]).unwrap();
        assert!(matches!(b.recv_bytes(), Err(Error::MessageTooLarge { len: 101, max: 100 })));
    }
}

#[test]
fn peer_killed_mid_message_is_an_error_never_a_partial_message() {
    for addr in transports() {
        let listener = keyed_listener(&addr);
        let bound = listener.address().clone();
        let mut child = spawn_child("die-mid-message", &env_of(&bound, Some(KEY)));
        let mut c = listener.accept_timeout(LIMIT).unwrap();
        c.set_read_timeout(Some(LIMIT));
        let start = Instant::now();
        match c.recv_bytes() {
            Err(Error::Truncated { received, expected }) => {
                assert_eq!(expected, 10_000_004, "{bound}: header and payload");
                assert!((4_000_000..10_000_004).contains(&received), "{bound}: {received}");
            }
            Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("{bound}: expected a truncation error, got {other:?}"),
        }
        assert!(start.elapsed() < Duration::from_secs(10));
        assert_eq!(child.line(), "sent half");
        // And it stays an error: no later call returns the half message.
        assert!(c.recv_bytes().is_err());
        let (code, _) = child.finish(LIMIT);
        assert_eq!(code, None, "child should have died by a signal");
    }
}

#[test]
fn recv_timeout_returns_timeout_and_loses_nothing() {
    for addr in transports() {
        let listener = keyed_listener(&addr);
        let bound = listener.address().clone();
        let t = std::thread::spawn(move || Client::builder().authkey(KEY).connect(&bound));
        let mut server = listener.accept_timeout(LIMIT).unwrap();
        let mut client = t.join().unwrap().unwrap();
        server.set_read_timeout(Some(Duration::from_millis(100)));
        let start = Instant::now();
        assert!(matches!(server.recv_bytes(), Err(Error::Timeout(_))));
        let waited = start.elapsed();
        assert!((Duration::from_millis(90)..Duration::from_secs(5)).contains(&waited), "{waited:?}");
        // A large message that arrives in two parts with a timeout in between is not lost.
        let big = pattern(1 << 20, 5);
        let mut raw = std::fs::File::from(client.as_fd().try_clone_to_owned().unwrap());
        raw.write_all(&(big.len() as u32).to_be_bytes()).unwrap();
        // Less than any socket buffer, so this write cannot block while nobody reads.
        raw.write_all(&big[..50_000]).unwrap();
        assert!(matches!(server.recv_bytes(), Err(Error::Timeout(_))));
        let rest = big[50_000..].to_vec();
        let writer = std::thread::spawn(move || raw.write_all(&rest));
        server.set_read_timeout(Some(LIMIT));
        assert!(server.recv_bytes().unwrap() == big);
        writer.join().unwrap().unwrap();
        client.send_bytes(b"after").unwrap();
        assert_eq!(server.recv_bytes().unwrap(), b"after");
    }
}

#[test]
fn a_silent_client_does_not_delay_an_honest_one() {
    for addr in transports() {
        let listener =
            Listener::builder().authkey(KEY).handshake_timeout(Duration::from_secs(20)).bind(&addr).unwrap();
        let bound = listener.address().clone();
        // Connect and say nothing: a keyless client does no handshake, so it stays silent.
        let _silent = Client::builder().allow_unauthenticated_tcp(true).connect(&bound).unwrap();
        let start = Instant::now();
        let honest = spawn_child("echo", &env_of(&bound, Some(KEY)));
        let mut c = listener.accept_timeout(LIMIT).unwrap_or_else(|e| panic!("{bound}: {e}"));
        let waited = start.elapsed();
        assert!(waited < Duration::from_secs(5), "{bound}: honest client waited {waited:?}");
        c.send_bytes(b"hi").unwrap();
        assert_eq!(c.recv_bytes().unwrap(), b"hi");
        drop(c);
        assert_eq!(honest.finish(LIMIT).0, Some(0));
    }
}

#[test]
fn pipe_ends_work_in_a_child_process() {
    // Duplex: a socketpair end handed to the child.
    let (mut mine, theirs) = procwire::pipe(true).unwrap();
    let mut cmd = common::child_command("pipe-end", &[]);
    theirs.pass_to_child(&mut cmd, "PROCWIRE_TEST_CONN").unwrap();
    let child = common::spawn(&mut cmd);
    // The command holds a duplicate of the child's end until it is dropped.
    drop(cmd);
    drop(theirs);
    mine.set_read_timeout(Some(LIMIT));
    for n in 0..50u32 {
        mine.send(&(n, format!("msg {n}"))).unwrap();
        let (m, s): (u32, String) = mine.recv().unwrap();
        assert_eq!((m, s), (n * 2, format!("MSG {n}")));
    }
    drop(mine);
    assert_eq!(child.finish(LIMIT).0, Some(0));

    // One-way: the write end of an OS pipe in the child.
    let (mut reader, writer) = procwire::pipe(false).unwrap();
    let mut cmd = common::child_command("pipe-writer", &[]);
    writer.pass_to_child(&mut cmd, "PROCWIRE_TEST_CONN").unwrap();
    let child = common::spawn(&mut cmd);
    drop(cmd);
    drop(writer);
    reader.set_read_timeout(Some(LIMIT));
    for i in 0..100u32 {
        assert_eq!(reader.recv::<u32>().unwrap(), i);
    }
    assert!(reader.recv_bytes().unwrap() == pattern(1 << 20, 3));
    assert!(matches!(reader.recv_bytes(), Err(Error::Closed)));
    assert_eq!(child.finish(LIMIT).0, Some(0));
}

#[test]
fn wrong_key_in_process_gives_authentication_failed_both_sides() {
    let listener = Listener::builder()
        .authkey(AuthKey::random().unwrap())
        .bind(Address::fresh(Family::Tcp).unwrap())
        .unwrap();
    let addr = listener.address().clone();
    let t = std::thread::spawn(move || Client::builder().authkey(AuthKey::random().unwrap()).connect(&addr));
    assert!(matches!(listener.accept_timeout(LIMIT), Err(Error::AuthenticationFailed(_))));
    assert!(matches!(t.join().unwrap(), Err(Error::AuthenticationFailed(_))));
}
