//! The async face's encrypted connections (features `tokio` and `encrypt`) over real sockets:
//! messages of every size between the async and blocking faces both ways, every mismatch
//! refused on both sides with the blocking face's typed errors, and cancel safety against a
//! raw encrypted peer (the public sans-IO `secure` core over a plain socket) that pauses in
//! the middle of a frame, both inside one encrypted message and between two.

#![cfg(all(unix, feature = "tokio", feature = "encrypt"))]

use std::io::{Read, Write};
use std::time::Duration;

use procwire::auth::Role;
use procwire::secure::{Handshake, Inbox, Session};
use procwire::tokio::{Client, Connection, Listener};
use procwire::{Address, Error, Family};

const KEY: &[u8] = b"async encrypted key";
/// The bound on every wait, so that a failing test fails instead of hanging. Handshakes get
/// the same: a refusal that comes as `AuthenticationFailed` was not a timeout.
const WAIT: Duration = Duration::from_secs(20);

fn pattern(n: usize, seed: usize) -> Vec<u8> {
    (0..n).map(|i| ((i + 7 * seed) % 251) as u8).collect()
}

/// Around one encrypted message's plaintext (65,519 bytes), and several messages.
const SIZES: [usize; 8] = [0, 1, 65_515, 65_519, 65_520, 200_000, 1 << 20, 3];

async fn bind(family: Family, encrypt: bool) -> Listener {
    Listener::builder()
        .authkey(KEY)
        .encrypt(encrypt)
        .handshake_timeout(WAIT)
        .bind(Address::fresh(family).unwrap())
        .await
        .unwrap()
}

fn blocking_client(addr: &Address, encrypt: bool) -> procwire::Result<procwire::Connection> {
    procwire::Client::builder().authkey(KEY).encrypt(encrypt).handshake_timeout(WAIT).connect(addr)
}

async fn async_client(addr: &Address, encrypt: bool) -> procwire::Result<Connection> {
    Client::builder().authkey(KEY).encrypt(encrypt).handshake_timeout(WAIT).connect(addr).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_encrypted_listener_serves_blocking_encrypted_clients() {
    for family in [Family::Unix, Family::Tcp] {
        let mut listener = bind(family, true).await;
        let addr = listener.address().clone();
        let client = tokio::task::spawn_blocking(move || {
            let mut c = blocking_client(&addr, true).unwrap();
            assert!(c.is_encrypted());
            for (i, n) in SIZES.into_iter().enumerate() {
                c.send_bytes(&pattern(n, i)).unwrap();
                assert!(c.recv_bytes().unwrap() == pattern(n, i), "{n} bytes back");
            }
            c.send(&("bye", 7u32)).unwrap();
        });
        let mut conn = tokio::time::timeout(WAIT, listener.accept()).await.unwrap().unwrap();
        assert!(conn.is_encrypted());
        let mut buf = Vec::new();
        for (i, n) in SIZES.into_iter().enumerate() {
            assert_eq!(conn.recv_bytes_into(&mut buf).await.unwrap(), n);
            assert!(buf == pattern(n, i), "{family:?} {n} bytes");
            conn.send_bytes(&buf).await.unwrap();
        }
        assert_eq!(conn.recv::<(String, u32)>().await.unwrap(), ("bye".to_string(), 7));
        client.await.unwrap();
        assert!(matches!(conn.recv_bytes().await, Err(Error::Closed)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_encrypted_clients_talk_to_a_blocking_encrypted_listener() {
    for family in [Family::Unix, Family::Tcp] {
        let listener = procwire::Listener::builder()
            .authkey(KEY)
            .encrypt(true)
            .bind(Address::fresh(family).unwrap())
            .unwrap();
        let addr = listener.address().clone();
        let server = std::thread::spawn(move || {
            let mut c = listener.accept().unwrap();
            assert!(c.is_encrypted());
            let end = loop {
                match c.recv_bytes() {
                    Ok(m) => c.send_bytes(&m).unwrap(),
                    Err(e) => break e,
                }
            };
            // The async close sent the end message: an orderly end, not a cut.
            assert!(matches!(end, Error::Closed), "{end}");
        });
        let mut c = async_client(&addr, true).await.unwrap();
        assert!(c.is_encrypted());
        // Batched small messages, then large ones.
        c.set_batching(Some(procwire::tokio::DEFAULT_BATCH));
        for i in 0..1000u32 {
            c.send(&i).await.unwrap();
        }
        for i in 0..1000u32 {
            assert_eq!(c.recv::<u32>().await.unwrap(), i);
        }
        c.set_batching(None);
        for (i, n) in SIZES.into_iter().enumerate() {
            c.send_bytes(&pattern(n, i)).await.unwrap();
            assert!(c.recv_bytes().await.unwrap() == pattern(n, i), "{family:?} {n} bytes");
        }
        c.close().await.unwrap();
        tokio::task::spawn_blocking(move || server.join().unwrap()).await.unwrap();
    }
}

#[tokio::test]
async fn async_to_async_encrypted_split_halves() {
    let mut listener = bind(Family::Unix, true).await;
    let addr = listener.address().clone();
    let client = tokio::spawn(async move { async_client(&addr, true).await });
    let server = tokio::time::timeout(WAIT, listener.accept()).await.unwrap().unwrap();
    let (mut tx, mut rx) = client.await.unwrap().unwrap().into_split();
    let (mut stx, mut srx) = server.into_split();
    let echo = tokio::spawn(async move {
        while let Ok(m) = srx.recv_bytes().await {
            stx.send_bytes(&m).await.unwrap();
        }
    });
    let reader = tokio::spawn(async move {
        for i in 0..50 {
            assert!(rx.recv_bytes().await.unwrap() == pattern(i * 5_000, i), "message {i}");
        }
    });
    for i in 0..50 {
        tx.send_bytes(&pattern(i * 5_000, i)).await.unwrap();
    }
    reader.await.unwrap();
    tx.close().await.unwrap();
    // Nothing may follow the end message.
    assert!(tx.send_bytes(b"late").await.is_err());
    echo.await.unwrap();
}

/// What each side of a mismatched pair says: the blocking face's tests expect the same words.
fn expect_refusal(side: &str, r: procwire::Result<()>, words: &str) {
    match r {
        Err(Error::AuthenticationFailed(m)) if m.contains(words) => {}
        other => panic!("{side}: want AuthenticationFailed saying {words:?}, got {other:?}"),
    }
}

/// What a listener that encrypts (or not) and a client that does the opposite say.
fn refusals(listener_encrypts: bool) -> (&'static str, &'static str) {
    if listener_encrypts {
        ("the client does not encrypt", "encrypts its connections")
    } else {
        ("asks for an encrypted connection", "does not encrypt")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mismatches_with_the_blocking_face_fail_on_both_sides_with_its_errors() {
    for listener_encrypts in [true, false] {
        let (listener_says, client_says) = refusals(listener_encrypts);

        // An async listener, a blocking client of the other kind.
        let mut listener = bind(Family::Tcp, listener_encrypts).await;
        let addr = listener.address().clone();
        let client =
            tokio::task::spawn_blocking(move || blocking_client(&addr, !listener_encrypts).map(drop));
        let server = tokio::time::timeout(WAIT, listener.accept()).await.unwrap().map(drop);
        expect_refusal("async listener", server, listener_says);
        expect_refusal("blocking client", client.await.unwrap(), client_says);

        // A blocking listener, an async client of the other kind.
        let listener = procwire::Listener::builder()
            .authkey(KEY)
            .encrypt(listener_encrypts)
            .handshake_timeout(WAIT)
            .bind(Address::fresh(Family::Tcp).unwrap())
            .unwrap();
        let addr = listener.address().clone();
        let server = std::thread::spawn(move || listener.accept().map(drop));
        let client = async_client(&addr, !listener_encrypts).await.map(drop);
        expect_refusal("async client", client, client_says);
        let server = tokio::task::spawn_blocking(move || server.join().unwrap()).await.unwrap();
        expect_refusal("blocking listener", server, listener_says);
    }
}

#[tokio::test]
async fn a_wrong_key_is_refused_and_the_listener_goes_on() {
    let mut listener = bind(Family::Unix, true).await;
    let addr = listener.address().clone();
    let wrong = tokio::spawn({
        let addr = addr.clone();
        async move { Client::builder().authkey("another key").encrypt(true).connect(&addr).await.map(drop) }
    });
    let e = tokio::time::timeout(WAIT, listener.accept()).await.unwrap().unwrap_err();
    assert!(matches!(e, Error::AuthenticationFailed(_)), "{e}");
    assert!(matches!(wrong.await.unwrap(), Err(Error::AuthenticationFailed(_))));
    let client = tokio::spawn(async move { async_client(&addr, true).await });
    let mut server = tokio::time::timeout(WAIT, listener.accept()).await.unwrap().unwrap();
    let mut client = client.await.unwrap().unwrap();
    client.send_bytes(b"after").await.unwrap();
    assert_eq!(server.recv_bytes().await.unwrap(), b"after");
}

#[tokio::test]
async fn encryption_without_a_key_is_refused_when_building() {
    let e = Listener::builder().encrypt(true).bind("tcp:127.0.0.1:0").await.unwrap_err();
    assert!(matches!(e, Error::InvalidInput(_)), "{e}");
    let e = Client::builder().encrypt(true).connect("tcp:127.0.0.1:9").await.unwrap_err();
    assert!(matches!(e, Error::InvalidInput(_)), "{e}");
}

/// A raw encrypted peer: a plain Unix socket and the sans-IO core, so that a test decides
/// where the ciphertext stops.
struct RawPeer {
    sock: std::os::unix::net::UnixStream,
    session: Session,
    inbox: Inbox,
}

fn write_frame(sock: &mut std::os::unix::net::UnixStream, payload: &[u8]) {
    sock.write_all(&(payload.len() as u32).to_be_bytes()).unwrap();
    sock.write_all(payload).unwrap();
}

fn read_frame(sock: &mut std::os::unix::net::UnixStream) -> Vec<u8> {
    let mut h = [0u8; 4];
    sock.read_exact(&mut h).unwrap();
    let mut p = vec![0u8; u32::from_be_bytes(h) as usize];
    sock.read_exact(&mut p).unwrap();
    p
}

impl RawPeer {
    /// Connects to `listener` and runs the client's side of the encrypted handshake by hand;
    /// returns the peer and the listener's side.
    async fn connect(listener: &mut Listener) -> (RawPeer, Connection) {
        let Address::Unix(path) = listener.address().clone() else { unreachable!() };
        let raw = tokio::task::spawn_blocking(move || {
            let mut sock = std::os::unix::net::UnixStream::connect(&path).unwrap();
            sock.set_read_timeout(Some(WAIT)).unwrap();
            let mut hs = Handshake::new(Role::Client, &KEY.into(), [9; 64]);
            let m1 = hs.on_message(&read_frame(&mut sock)).unwrap().unwrap();
            write_frame(&mut sock, &m1);
            assert!(hs.on_message(&read_frame(&mut sock)).unwrap().is_none());
            RawPeer { sock, session: hs.into_session().unwrap(), inbox: Inbox::new() }
        });
        let conn = tokio::time::timeout(WAIT, listener.accept()).await.unwrap().unwrap();
        (raw.await.unwrap(), conn)
    }

    /// The ciphertext of `plain` (a piece of the plaintext stream) as one or more messages.
    fn seal(&mut self, plain: &[u8]) -> Vec<u8> {
        let mut wire = Vec::new();
        self.session.seal(plain, &mut wire).unwrap();
        wire
    }

    /// The next plaintext frame from the peer.
    fn recv_frame(&mut self, plain: &mut Vec<u8>) -> Vec<u8> {
        loop {
            if plain.len() >= 4 {
                let n = u32::from_be_bytes(plain[..4].try_into().unwrap()) as usize;
                if plain.len() >= 4 + n {
                    let frame = plain[4..4 + n].to_vec();
                    plain.drain(..4 + n);
                    return frame;
                }
            }
            let m = read_frame(&mut self.sock);
            self.inbox.push(&(m.len() as u32).to_be_bytes());
            self.inbox.push(&m);
            self.inbox.open_all(&mut self.session, plain).unwrap();
        }
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

#[tokio::test]
async fn a_receive_cancelled_mid_frame_loses_nothing_in_encrypted_mode() {
    let mut listener = bind(Family::Unix, true).await;
    let (mut peer, mut conn) = RawPeer::connect(&mut listener).await;
    for n in [10, 5_000, 200_000] {
        let plain = frame(&pattern(n, n));
        // Cut inside one encrypted message (the ciphertext stops half-way through it), and
        // between two (the plaintext frame stops half-way, its messages whole).
        let whole = peer.seal(&plain);
        let cut_ciphertext = (whole[..whole.len() / 2].to_vec(), whole[whole.len() / 2..].to_vec());
        let half = plain.len() / 2;
        let cut_plaintext = (peer.seal(&plain[..half]), peer.seal(&plain[half..]));
        for (first, rest) in [cut_ciphertext, cut_plaintext] {
            peer.sock.write_all(&first).unwrap();
            let cancelled = tokio::time::timeout(Duration::from_millis(100), conn.recv_bytes()).await;
            assert!(cancelled.is_err(), "the receive should still wait for the rest");
            peer.sock.write_all(&rest).unwrap();
            let mut buf = Vec::new();
            let got = tokio::time::timeout(WAIT, conn.recv_bytes_into(&mut buf)).await.unwrap().unwrap();
            assert_eq!(got, n);
            assert!(buf == pattern(n, n), "{n} bytes");
        }
    }
    // The read timeout is the same cancellation, reported as Error::Timeout.
    conn.set_read_timeout(Some(Duration::from_millis(50)));
    let abc = peer.seal(&frame(b"abc"));
    peer.sock.write_all(&abc[..6]).unwrap();
    assert!(matches!(conn.recv_bytes().await, Err(Error::Timeout(_))));
    peer.sock.write_all(&abc[6..]).unwrap();
    assert_eq!(conn.recv_bytes().await.unwrap(), b"abc");
}

#[tokio::test]
async fn a_send_cancelled_mid_frame_is_finished_by_the_next_send_in_encrypted_mode() {
    let mut listener = bind(Family::Unix, true).await;
    let (peer, conn) = RawPeer::connect(&mut listener).await;
    let (mut tx, _rx) = conn.into_split();
    let big = pattern(8 << 20, 3);
    // Nobody reads yet: the socket buffer fills and the send is cancelled half-way.
    let r = tokio::time::timeout(Duration::from_millis(200), tx.send_bytes(&big)).await;
    assert!(r.is_err(), "8 MiB should not fit in a socket buffer");
    let reader = std::thread::spawn(move || {
        let mut peer = peer;
        let mut plain = Vec::new();
        [peer.recv_frame(&mut plain), peer.recv_frame(&mut plain)]
    });
    tx.send_bytes(b"next").await.unwrap();
    let frames = tokio::task::spawn_blocking(move || reader.join().unwrap()).await.unwrap();
    assert_eq!(frames[0].len(), big.len());
    assert!(frames[0] == big, "the cancelled message arrives whole");
    assert_eq!(frames[1], b"next");
}

#[tokio::test]
async fn a_tampered_message_is_an_integrity_error() {
    let mut listener = bind(Family::Unix, true).await;
    let (mut peer, mut conn) = RawPeer::connect(&mut listener).await;
    let mut wire = peer.seal(&frame(b"hello"));
    wire[8] ^= 1;
    peer.sock.write_all(&wire).unwrap();
    let e = tokio::time::timeout(WAIT, conn.recv_bytes()).await.unwrap().unwrap_err();
    assert!(matches!(e, Error::Integrity(_)), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_async_connection_ends_the_stream_in_order() {
    let listener = procwire::Listener::builder()
        .authkey(KEY)
        .encrypt(true)
        .bind(Address::fresh(Family::Unix).unwrap())
        .unwrap();
    let addr = listener.address().clone();
    let server = std::thread::spawn(move || {
        let mut c = listener.accept().unwrap();
        assert_eq!(c.recv_bytes().unwrap(), b"last words");
        c.recv_bytes().unwrap_err()
    });
    let mut c = async_client(&addr, true).await.unwrap();
    c.send_bytes(b"last words").await.unwrap();
    // No close: the drop sends the end message, as the socket has room for it.
    drop(c);
    let end = tokio::task::spawn_blocking(move || server.join().unwrap()).await.unwrap();
    assert!(matches!(end, Error::Closed), "{end}");
}

#[tokio::test]
async fn a_stream_cut_between_messages_is_an_integrity_error() {
    let mut listener = bind(Family::Unix, true).await;
    let (mut peer, mut conn) = RawPeer::connect(&mut listener).await;
    let wire = peer.seal(&frame(b"hello"));
    peer.sock.write_all(&wire).unwrap();
    // The peer's socket ends with no end message after a whole message: a cut.
    drop(peer);
    assert_eq!(tokio::time::timeout(WAIT, conn.recv_bytes()).await.unwrap().unwrap(), b"hello");
    let e = tokio::time::timeout(WAIT, conn.recv_bytes()).await.unwrap().unwrap_err();
    assert!(matches!(e, Error::Integrity(_)), "{e}");
}

#[tokio::test]
async fn a_raw_peer_end_message_is_an_orderly_close() {
    let mut listener = bind(Family::Unix, true).await;
    let (mut peer, mut conn) = RawPeer::connect(&mut listener).await;
    let mut wire = peer.seal(&frame(b"bye"));
    peer.session.seal_end(&mut wire).unwrap();
    peer.sock.write_all(&wire).unwrap();
    drop(peer);
    assert_eq!(tokio::time::timeout(WAIT, conn.recv_bytes()).await.unwrap().unwrap(), b"bye");
    let e = tokio::time::timeout(WAIT, conn.recv_bytes()).await.unwrap().unwrap_err();
    assert!(matches!(e, Error::Closed), "{e}");
}
