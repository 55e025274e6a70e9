//! `procwire::tokio` over Windows named pipes (`pipe:` addresses): the async listener with
//! blocking clients and blocking listeners with async clients, message boundaries kept (a
//! 70,000-byte message, which tokio's own pipes read back as 4,096 + 65,536 + 368 bytes, and
//! empty messages, which they never show), many clients at once, a wrong key, the peer's end
//! as `Error::Closed` both ways, and a receive cancelled again and again that loses nothing.
//!
//! The blocking ends run on threads of the test process; the pipes between them are real
//! named pipes. CI runs these under Wine (`.ci/windows.sh`), where pipes are slow: the sizes
//! stay modest.

#![cfg(all(windows, feature = "tokio"))]

use std::sync::mpsc;
use std::time::Duration;

use procwire::tokio::{Client, Listener};
use procwire::{Address, Error, Family};

const KEY: &[u8] = b"tokio pipe key";
/// The bound on every wait, so that a failing test fails instead of hanging (Wine is slow).
const WAIT: Duration = Duration::from_secs(60);
/// Boundaries a byte stream would lose: a message longer than one read, empty ones, and the
/// three sizes tokio's pipes cut the first one into.
const SIZES: [usize; 8] = [70_000, 0, 4_096, 0, 65_536, 368, 1, 0];

fn pattern(n: usize, seed: usize) -> Vec<u8> {
    (0..n).map(|i| ((i + 7 * seed) % 251) as u8).collect()
}

fn fresh() -> Address {
    Address::fresh(Family::Pipe).unwrap()
}

/// Starts `f` on a thread of its own now; the future waits for its result without blocking
/// the runtime.
fn on_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> impl Future<Output = T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    async move {
        tokio::task::spawn_blocking(move || rx.recv_timeout(WAIT).expect("the thread's result"))
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_listener_serves_a_blocking_client_with_every_boundary_kept() {
    let mut listener = Listener::builder().authkey(KEY).bind(fresh()).await.unwrap();
    let addr = listener.address().clone();
    assert!(matches!(addr, Address::Pipe(_)), "{addr}");
    let client = on_thread(move || {
        let mut c = procwire::Client::builder().authkey(KEY).connect(&addr)?;
        c.set_read_timeout(Some(WAIT));
        for (i, &n) in SIZES.iter().enumerate() {
            c.send_bytes(&pattern(n, i))?;
        }
        SIZES.iter().map(|_| c.recv_bytes()).collect::<procwire::Result<Vec<_>>>()
    });
    let mut conn = tokio::time::timeout(WAIT, listener.accept()).await.unwrap().unwrap();
    conn.set_read_timeout(Some(WAIT));
    for (i, &n) in SIZES.iter().enumerate() {
        let got = conn.recv_bytes().await.unwrap();
        assert_eq!(got.len(), n, "message {i}");
        assert_eq!(got, pattern(n, i), "message {i}");
        conn.send_bytes(&got).await.unwrap();
    }
    let echoed = client.await.unwrap();
    let lens: Vec<usize> = echoed.iter().map(Vec::len).collect();
    assert_eq!(lens, SIZES);
    for (i, m) in echoed.iter().enumerate() {
        assert_eq!(m, &pattern(SIZES[i], i), "echo {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_client_talks_to_a_blocking_listener_with_every_boundary_kept() {
    let addr = fresh();
    let listener = procwire::Listener::builder().authkey(KEY).bind(&addr).unwrap();
    let server = on_thread(move || -> procwire::Result<Vec<usize>> {
        let mut c = listener.accept_timeout(WAIT)?;
        c.set_read_timeout(Some(WAIT));
        let mut lens = Vec::new();
        for _ in SIZES {
            let m = c.recv_bytes()?;
            lens.push(m.len());
            c.send_bytes(&m)?;
        }
        Ok(lens)
    });
    let mut conn = Client::builder().authkey(KEY).connect(&addr).await.unwrap();
    conn.set_read_timeout(Some(WAIT));
    for (i, &n) in SIZES.iter().enumerate() {
        conn.send_bytes(&pattern(n, i)).await.unwrap();
        assert_eq!(conn.recv_bytes().await.unwrap(), pattern(n, i), "echo {i}");
    }
    assert_eq!(server.await.unwrap(), SIZES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_at_once_each_get_their_own_answers() {
    const CLIENTS: usize = 16;
    const ROUNDS: usize = 10;
    let mut listener = Listener::builder().authkey(KEY).bind(fresh()).await.unwrap();
    let addr = listener.address().clone();
    let server = tokio::spawn(async move {
        let mut served = Vec::new();
        for _ in 0..CLIENTS {
            let mut conn = listener.accept().await.unwrap();
            served.push(tokio::spawn(async move {
                while let Ok(m) = conn.recv_bytes().await {
                    let mut back = m;
                    back.reverse();
                    conn.send_bytes(&back).await.unwrap();
                }
            }));
        }
        served
    });
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let addr = addr.clone();
            tokio::spawn(async move {
                let mut c = Client::builder().authkey(KEY).connect(&addr).await.unwrap();
                for round in 0..ROUNDS {
                    let m = format!("client {id} round {round}").into_bytes();
                    c.send_bytes(&m).await.unwrap();
                    let mut want = m;
                    want.reverse();
                    assert_eq!(c.recv_bytes().await.unwrap(), want);
                }
                id
            })
        })
        .collect();
    let mut done = Vec::new();
    for c in clients {
        done.push(tokio::time::timeout(WAIT, c).await.unwrap().unwrap());
    }
    assert_eq!(done, (0..CLIENTS).collect::<Vec<_>>());
    for s in tokio::time::timeout(WAIT, server).await.unwrap().unwrap() {
        // Each server task ends when its client has gone: its receive saw the end.
        tokio::time::timeout(WAIT, s).await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_refused_on_both_sides() {
    let mut listener = Listener::builder().authkey(KEY).bind(fresh()).await.unwrap();
    let addr = listener.address().clone();
    let client =
        on_thread(move || procwire::Client::builder().authkey("another key").connect(&addr).map(|_| ()));
    match tokio::time::timeout(WAIT, listener.accept()).await.unwrap() {
        Err(Error::AuthenticationFailed(_)) => {}
        other => panic!("expected the listener to refuse the key, got {other:?}"),
    }
    assert!(matches!(client.await, Err(Error::AuthenticationFailed(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_closing_is_closed_both_ways() {
    // A blocking client that sends one message and goes: the async side gets the message,
    // then `Closed`.
    let mut listener = Listener::builder().authkey(KEY).bind(fresh()).await.unwrap();
    let addr = listener.address().clone();
    let client = on_thread(move || {
        let mut c = procwire::Client::builder().authkey(KEY).connect(&addr)?;
        c.send_bytes(b"last words")
    });
    let mut conn = tokio::time::timeout(WAIT, listener.accept()).await.unwrap().unwrap();
    conn.set_read_timeout(Some(WAIT));
    client.await.unwrap();
    assert_eq!(conn.recv_bytes().await.unwrap(), b"last words");
    assert!(matches!(conn.recv_bytes().await, Err(Error::Closed)));

    // An async client that sends one message and is dropped, and one that closes: the
    // blocking listener's side gets the message, then `Closed`.
    for close in [false, true] {
        let addr = fresh();
        let listener = procwire::Listener::builder().authkey(KEY).bind(&addr).unwrap();
        let server = on_thread(move || -> procwire::Result<(Vec<u8>, procwire::Result<Vec<u8>>)> {
            let mut c = listener.accept_timeout(WAIT)?;
            c.set_read_timeout(Some(WAIT));
            let first = c.recv_bytes()?;
            Ok((first, c.recv_bytes()))
        });
        let mut conn = Client::builder().authkey(KEY).connect(&addr).await.unwrap();
        conn.send_bytes(b"bye").await.unwrap();
        if close {
            conn.close().await.unwrap();
        } else {
            drop(conn);
        }
        let (first, then) = server.await.unwrap();
        assert_eq!(first, b"bye");
        assert!(matches!(then, Err(Error::Closed)), "close {close}: {then:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receive_cancelled_again_and_again_loses_nothing() {
    let mut listener = Listener::builder().authkey(KEY).bind(fresh()).await.unwrap();
    let addr = listener.address().clone();
    let (go, wait_go) = mpsc::channel::<()>();
    let big = pattern(3 << 20, 5);
    let sent = big.clone();
    let client = on_thread(move || -> procwire::Result<()> {
        let mut c = procwire::Client::builder().authkey(KEY).connect(&addr)?;
        wait_go.recv_timeout(WAIT).expect("the go");
        c.send_bytes(&sent)?;
        c.send_bytes(b"")?;
        c.send_bytes(b"after")?;
        // Stay until the other side has read everything.
        c.set_read_timeout(Some(WAIT));
        c.recv_bytes().map(|_| ())
    });
    let mut conn = tokio::time::timeout(WAIT, listener.accept()).await.unwrap().unwrap();
    // Nothing was sent yet: this receive is cancelled for sure, with nothing to lose.
    assert!(tokio::time::timeout(Duration::from_millis(50), conn.recv_bytes()).await.is_err());
    go.send(()).unwrap();
    // Receives of the large message given a millisecond each, dropped wherever they are
    // (between reads of its bytes, most of them), until one finishes.
    let started = std::time::Instant::now();
    let mut cancelled = 0;
    let got = loop {
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(1), conn.recv_bytes()).await {
            break r.unwrap();
        }
        cancelled += 1;
        assert!(started.elapsed() < WAIT, "the message never came");
    };
    eprintln!("{cancelled} receives of the large message were cancelled");
    assert!(got == big, "the large message came back changed ({} bytes)", got.len());
    conn.set_read_timeout(Some(WAIT));
    assert_eq!(conn.recv_bytes().await.unwrap(), b"");
    assert_eq!(conn.recv_bytes().await.unwrap(), b"after");
    conn.send_bytes(b"done").await.unwrap();
    client.await.unwrap();
}

#[cfg(feature = "encrypt")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_connections_work_over_pipes_with_blocking_peers() {
    let mut listener = Listener::builder().authkey(KEY).encrypt(true).bind(fresh()).await.unwrap();
    let addr = listener.address().clone();
    let client = on_thread(move || {
        let mut c = procwire::Client::builder().authkey(KEY).encrypt(true).connect(&addr)?;
        c.set_read_timeout(Some(WAIT));
        for (i, &n) in SIZES.iter().enumerate() {
            c.send_bytes(&pattern(n, i))?;
        }
        c.recv_bytes()
    });
    let mut conn = tokio::time::timeout(WAIT, listener.accept()).await.unwrap().unwrap();
    assert!(conn.is_encrypted());
    conn.set_read_timeout(Some(WAIT));
    for (i, &n) in SIZES.iter().enumerate() {
        assert_eq!(conn.recv_bytes().await.unwrap(), pattern(n, i), "message {i}");
    }
    conn.send_bytes(b"sealed").await.unwrap();
    assert_eq!(client.await.unwrap(), b"sealed");
}
