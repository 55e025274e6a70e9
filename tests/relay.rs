//! What the handshake does not protect against, shown rather than claimed (SPEC.md §10.2): a
//! relay that squats the address a keyed client dials and forwards bytes to the real listener
//! is let through by both sides, and then reads every message in the clear and injects its own.
//! The handshake proves that both ends know the key; it does not bind the connection to them.

#![cfg(unix)]

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use procwire::{Address, Client, Family, Listener};

const KEY: &[u8] = b"a key only the client and the listener know";

/// Copies `from` into `to` until `from` ends, keeping a copy of every byte in `seen`.
fn forward(mut from: UnixStream, to: Arc<Mutex<UnixStream>>, seen: Arc<Mutex<Vec<u8>>>) {
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = from.read(&mut buf) {
        seen.lock().unwrap().extend_from_slice(&buf[..n]);
        if to.lock().unwrap().write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

#[test]
fn a_relay_between_a_keyed_client_and_the_listener_reads_and_injects_messages() {
    let real = Listener::builder().authkey(KEY).bind(Address::fresh(Family::Unix).unwrap()).unwrap();
    let real_addr = real.address().clone();
    let server = thread::spawn(move || {
        // An echo server: answers every message with the same bytes.
        let mut conn = real.accept().unwrap();
        while let Ok(msg) = conn.recv_bytes() {
            conn.send_bytes(&msg).unwrap();
        }
    });

    // The relay holds the address the client was given; it knows no key.
    let dir = tempfile::tempdir().unwrap();
    let relay_path = dir.path().join("squatted.sock");
    let relay = UnixListener::bind(&relay_path).unwrap();
    let Address::Unix(real_path) = &real_addr else { panic!("not a Unix address: {real_addr}") };
    let upstream = UnixStream::connect(real_path).unwrap();
    let to_server = Arc::new(Mutex::new(upstream.try_clone().unwrap()));
    let from_client = Arc::new(Mutex::new(Vec::new()));
    let relay_thread = {
        let from_client = from_client.clone();
        let to_server = to_server.clone();
        thread::spawn(move || {
            let (victim, _) = relay.accept().unwrap();
            let to_client = Arc::new(Mutex::new(victim.try_clone().unwrap()));
            let back = {
                let to_client = to_client.clone();
                thread::spawn(move || forward(upstream, to_client, Arc::new(Mutex::new(Vec::new()))))
            };
            (to_client, back, thread::spawn(move || forward(victim, to_server, from_client)))
        })
    };

    let mut client = Client::builder()
        .authkey(KEY)
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Some(Duration::from_secs(10)))
        .connect(Address::Unix(relay_path.clone()))
        .expect("the client accepts the relayed handshake as the listener's");
    client.send_bytes(b"private: the launch code is 1234").unwrap();
    assert_eq!(client.recv_bytes().unwrap(), b"private: the launch code is 1234");
    let (to_client, back, fwd) = relay_thread.join().unwrap();

    // The relay read the message in the clear...
    let seen = from_client.lock().unwrap().clone();
    assert!(seen.windows(10).any(|w| w == b"launch cod"), "the relay did not see the plaintext");
    // ...and a frame it writes (4-byte big-endian length, payload) reaches the client as if the
    // listener had sent it, and one it sends upstream reaches the listener as the client's.
    let injected = b"from the relay";
    let mut frame = (injected.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(injected);
    to_client.lock().unwrap().write_all(&frame).unwrap();
    assert_eq!(client.recv_bytes().unwrap(), injected);
    to_server.lock().unwrap().write_all(&frame).unwrap();
    assert_eq!(client.recv_bytes().unwrap(), injected, "the listener echoed the relay's message");

    drop(client);
    fwd.join().unwrap();
    let _ = to_server.lock().unwrap().shutdown(std::net::Shutdown::Both);
    back.join().unwrap();
    server.join().unwrap();
}
