//! The async face (`procwire::tokio`) over real sockets: round trips on Unix sockets and TCP,
//! the handshake's rules, cancel safety of receives and sends against a raw peer that pauses
//! in the middle of a frame, the split halves and the `Stream`/`Sink` faces, interop with the
//! blocking endpoints both ways, and a load of 1,000 authenticated clients on one listener.

#![cfg(all(unix, feature = "tokio"))]

use std::io::{Read, Write};
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures_core::Stream;
use futures_sink::Sink;
use procwire::tokio::{Client, Connection, Listener};
use procwire::{Address, Error, Family};

const KEY: &[u8] = b"tokio face key";
/// The bound on every wait, so that a failing test fails instead of hanging.
const WAIT: Duration = Duration::from_secs(20);

fn families() -> Vec<Family> {
    vec![Family::Unix, Family::Tcp]
}

async fn bind(family: Family) -> Listener {
    Listener::builder().authkey(KEY).bind(&Address::fresh(family).unwrap()).await.unwrap()
}

/// An authenticated pair: (listener's side, client's side).
async fn pair(listener: &mut Listener) -> (Connection, Connection) {
    let addr = listener.address().clone();
    let client = tokio::spawn(async move { Client::builder().authkey(KEY).connect(&addr).await });
    let server = tokio::time::timeout(WAIT, listener.accept()).await.unwrap().unwrap();
    (server, client.await.unwrap().unwrap())
}

fn pattern(n: usize, seed: usize) -> Vec<u8> {
    (0..n).map(|i| ((i + 7 * seed) % 251) as u8).collect()
}

#[tokio::test]
async fn messages_of_every_size_both_ways_on_unix_and_tcp() {
    for family in families() {
        let mut listener = bind(family).await;
        let (mut server, mut client) = pair(&mut listener).await;
        let sizes = [0, 1, 16_384, 65_536, 100_000, 0, 1 << 20, 7];
        let echo = tokio::spawn(async move {
            let mut buf = Vec::new();
            for _ in sizes {
                let n = server.recv_bytes_into(&mut buf).await.unwrap();
                server.send_bytes(&buf[..n]).await.unwrap();
            }
            server
        });
        for (i, n) in sizes.into_iter().enumerate() {
            client.send_bytes(&pattern(n, i)).await.unwrap();
            assert_eq!(client.recv_bytes().await.unwrap(), pattern(n, i), "{family:?} {n} bytes");
        }
        let mut server = echo.await.unwrap();
        client.send(&("add", 1u32, vec![2u8; 3])).await.unwrap();
        let got: (String, u32, Vec<u8>) = server.recv().await.unwrap();
        assert_eq!(got, ("add".to_string(), 1, vec![2; 3]));
        drop(client);
        assert!(matches!(server.recv_bytes().await, Err(Error::Closed)));
    }
}

#[tokio::test]
async fn batched_sends_arrive_in_order_and_a_receive_flushes_them() {
    let mut listener = bind(Family::Unix).await;
    let (mut server, mut client) = pair(&mut listener).await;
    client.set_batching(Some(procwire::tokio::DEFAULT_BATCH));
    for i in 0..10_000u32 {
        client.send(&i).await.unwrap();
    }
    // Nothing flushed explicitly: the client's receive sends the queue while it waits.
    let echo = tokio::spawn(async move {
        for i in 0..10_000u32 {
            assert_eq!(server.recv::<u32>().await.unwrap(), i);
        }
        server.send_bytes(b"done").await.unwrap();
    });
    assert_eq!(client.recv_bytes().await.unwrap(), b"done");
    echo.await.unwrap();
}

#[tokio::test]
async fn wrong_key_is_refused_on_both_sides_and_the_listener_goes_on() {
    let mut listener = bind(Family::Tcp).await;
    let addr = listener.address().clone();
    let wrong = tokio::spawn({
        let addr = addr.clone();
        async move { Client::builder().authkey("another key").connect(&addr).await }
    });
    let e = tokio::time::timeout(WAIT, listener.accept()).await.unwrap().unwrap_err();
    assert!(matches!(e, Error::AuthenticationFailed(_)), "{e}");
    let e = wrong.await.unwrap().unwrap_err();
    assert!(e.to_string().contains("rejected our answer"), "{e}");
    let (mut server, mut client) = pair(&mut listener).await;
    client.send_bytes(b"after").await.unwrap();
    assert_eq!(server.recv_bytes().await.unwrap(), b"after");
}

#[tokio::test]
async fn keyless_rules_are_the_blocking_ones() {
    let tcp = Address::fresh(Family::Tcp).unwrap();
    assert!(matches!(Listener::bind(&tcp).await, Err(Error::InvalidInput(_))));
    assert!(matches!(Client::connect(&tcp).await, Err(Error::InvalidInput(_))));
    // A keyless client is told why when the listener wants a key, and the listener learns it.
    let mut listener = bind(Family::Unix).await;
    let addr = listener.address().clone();
    let client = tokio::spawn(async move {
        let mut c = Client::connect(&addr).await.unwrap();
        c.recv_bytes().await
    });
    let e = tokio::time::timeout(WAIT, listener.accept()).await.unwrap().unwrap_err();
    assert!(e.to_string().contains("no authkey"), "{e}");
    let e = client.await.unwrap().unwrap_err();
    assert!(matches!(e, Error::AuthenticationFailed(_)), "{e}");
    // Named pipes are refused with a typed error, not served half-way.
    let e = Listener::bind("pipe:procwire-async").await.unwrap_err();
    assert!(matches!(e, Error::InvalidAddress { .. }), "{e}");
    // So are shared-memory addresses, on both sides.
    let shm = Address::fresh(Family::Shm).unwrap();
    let e = Listener::builder().authkey(KEY).bind(&shm).await.unwrap_err();
    assert!(matches!(e, Error::InvalidAddress { .. }), "{e}");
    let e = Client::builder().authkey(KEY).connect(&shm).await.unwrap_err();
    assert!(matches!(e, Error::InvalidAddress { .. }), "{e}");
}

#[tokio::test]
async fn handshake_messages_are_capped_and_a_silent_client_times_out() {
    let mut listener = Listener::builder()
        .authkey(KEY)
        .handshake_timeout(Duration::from_millis(300))
        .bind(&Address::fresh(Family::Unix).unwrap())
        .await
        .unwrap();
    let Address::Unix(path) = listener.address().clone() else { unreachable!() };
    let mut big = std::os::unix::net::UnixStream::connect(&path).unwrap();
    big.write_all(&1000u32.to_be_bytes()).unwrap();
    let e = tokio::time::timeout(WAIT, listener.accept()).await.unwrap().unwrap_err();
    assert!(matches!(e, Error::MessageTooLarge { len: 1000, max: 256 }), "{e}");
    let _silent = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let e = tokio::time::timeout(WAIT, listener.accept()).await.unwrap().unwrap_err();
    assert!(matches!(e, Error::Timeout(_)), "{e}");
    assert!(e.to_string().contains("answer to our challenge"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_clients_delay_no_one() {
    let mut listener = bind(Family::Unix).await;
    let Address::Unix(path) = listener.address().clone() else { unreachable!() };
    let silent: Vec<_> = (0..50).map(|_| std::os::unix::net::UnixStream::connect(&path).unwrap()).collect();
    let start = Instant::now();
    let (mut server, mut client) = pair(&mut listener).await;
    // The default handshake timeout is 10 s: served long before any silent one expires.
    assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
    client.send_bytes(b"first").await.unwrap();
    assert_eq!(server.recv_bytes().await.unwrap(), b"first");
    drop(silent);
}

#[tokio::test]
async fn incoming_is_a_stream_that_goes_on_past_a_refused_client() {
    let mut listener = bind(Family::Unix).await;
    let addr = listener.address().clone();
    let clients = tokio::spawn(async move {
        let wrong = Client::builder().authkey("another key").connect(&addr).await;
        assert!(matches!(wrong, Err(Error::AuthenticationFailed(_))), "{wrong:?}");
        let mut kept = Vec::new();
        for i in 0..3u32 {
            let mut c = Client::builder().authkey(KEY).connect(&addr).await.unwrap();
            c.send(&i).await.unwrap();
            kept.push(c);
        }
        kept
    });
    let mut incoming = listener.incoming();
    let (mut refused, mut got) = (0, Vec::new());
    for _ in 0..4 {
        let next = std::future::poll_fn(|cx| Pin::new(&mut incoming).poll_next(cx));
        match tokio::time::timeout(WAIT, next).await.unwrap().expect("the stream never ends") {
            Ok(mut conn) => got.push(conn.recv::<u32>().await.unwrap()),
            Err(e) => {
                assert!(matches!(e, Error::AuthenticationFailed(_)), "{e}");
                refused += 1;
            }
        }
    }
    got.sort();
    assert_eq!((refused, got), (1, vec![0, 1, 2]));
    clients.await.unwrap();
}

#[tokio::test]
async fn past_max_pending_handshakes_the_oldest_is_dropped_for_a_newcomer() {
    let mut listener = Listener::builder()
        .authkey(KEY)
        .max_pending_handshakes(2)
        .bind(Address::fresh(Family::Unix).unwrap())
        .await
        .unwrap();
    let Address::Unix(path) = listener.address().clone() else { unreachable!() };
    let _silent: Vec<_> = (0..2).map(|_| std::os::unix::net::UnixStream::connect(&path).unwrap()).collect();
    let addr = listener.address().clone();
    let honest = tokio::spawn(async move { Client::builder().authkey(KEY).connect(&addr).await });
    // The dropped handshake's error and the newcomer's connection, in either order.
    let (mut dropped, mut server) = (None, None);
    for _ in 0..2 {
        match tokio::time::timeout(WAIT, listener.accept()).await.unwrap() {
            Ok(c) => server = Some(c),
            Err(e) => dropped = Some(e),
        }
    }
    let e = dropped.expect("one handshake dropped");
    assert!(matches!(e, Error::Timeout(_)) && e.to_string().contains("max_pending_handshakes"), "{e}");
    let mut server = server.expect("the newcomer accepted");
    let mut client = honest.await.unwrap().unwrap();
    client.send_bytes(b"in").await.unwrap();
    assert_eq!(server.recv_bytes().await.unwrap(), b"in");
}

/// A keyless Unix pair whose client side is a raw socket, to write frames in pieces.
async fn raw_pair() -> (Connection, std::os::unix::net::UnixStream) {
    let mut listener = Listener::bind(&Address::fresh(Family::Unix).unwrap()).await.unwrap();
    let Address::Unix(path) = listener.address().clone() else { unreachable!() };
    let raw = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let conn = tokio::time::timeout(WAIT, listener.accept()).await.unwrap().unwrap();
    (conn, raw)
}

#[tokio::test]
async fn a_receive_cancelled_mid_frame_loses_nothing() {
    let (mut conn, mut raw) = raw_pair().await;
    // Small (buffered) and large (read into its own allocation) messages alike.
    for n in [10, 5_000, 200_000] {
        let payload = pattern(n, n);
        let mut frame = (n as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&payload);
        let half = frame.len() / 2;
        let mut writer = raw.try_clone().unwrap();
        let first: Vec<u8> = frame[..half].to_vec();
        let rest: Vec<u8> = frame[half..].to_vec();
        let t = std::thread::spawn(move || {
            writer.write_all(&first).unwrap();
            std::thread::sleep(Duration::from_millis(300));
            writer.write_all(&rest).unwrap();
        });
        let cancelled = tokio::time::timeout(Duration::from_millis(100), conn.recv_bytes()).await;
        assert!(cancelled.is_err(), "the receive should still wait for the second half");
        let mut buf = Vec::new();
        let got = tokio::time::timeout(WAIT, conn.recv_bytes_into(&mut buf)).await.unwrap().unwrap();
        assert_eq!(got, n);
        assert_eq!(buf, payload, "{n} bytes");
        t.join().unwrap();
    }
    // The read timeout is the same cancellation, reported as Error::Timeout.
    conn.set_read_timeout(Some(Duration::from_millis(50)));
    raw.write_all(&[0, 0, 0, 3, b'a']).unwrap();
    assert!(matches!(conn.recv_bytes().await, Err(Error::Timeout(_))));
    raw.write_all(b"bc").unwrap();
    assert_eq!(conn.recv_bytes().await.unwrap(), b"abc");
}

#[tokio::test]
async fn a_keyless_client_at_a_keyless_shared_memory_listener_fails_clearly_on_both_sides() {
    // The tokio face has no shm: connections: at the socket of a blocking shm: listener its
    // keyless client refuses the region's offer, and the listener's side learns it.
    let addr = Address::fresh(Family::Shm).unwrap();
    let listener = procwire::Listener::bind(&addr).unwrap();
    let Address::Shm(path) = &addr else { unreachable!() };
    let unix = Address::Unix(path.clone());
    let server = std::thread::spawn(move || {
        let mut c = listener.accept_timeout(WAIT).unwrap();
        c.set_read_timeout(Some(WAIT));
        c.recv_bytes()
    });
    let mut client = Client::connect(&unix).await.unwrap();
    match tokio::time::timeout(WAIT, client.recv_bytes()).await.unwrap() {
        Err(Error::Protocol(m)) => assert!(m.contains("serves shared memory"), "{m}"),
        other => panic!("expected a protocol error, got {other:?}"),
    }
    // The refusal is queued as the receive fails and written as soon as the socket takes it;
    // a flush makes sure it has left.
    tokio::time::timeout(WAIT, client.flush()).await.unwrap().unwrap();
    match server.join().unwrap() {
        Err(Error::Protocol(m)) => assert!(m.contains("client without shared memory"), "{m}"),
        other => panic!("expected a protocol error on the listener's side, got {other:?}"),
    }
}

#[tokio::test]
async fn a_keyless_shared_memory_client_at_a_keyless_listener_is_refused_on_both_sides() {
    // As the blocking listener does: the accepted connection's first receive finds the shm
    // client's hello, fails, and answers with the refusal, which the client reports at once
    // (before, it waited for a region until its timeout).
    let addr = Address::fresh(Family::Unix).unwrap();
    let mut listener = Listener::bind(&addr).await.unwrap();
    let Address::Unix(path) = &addr else { unreachable!() };
    let shm = Address::Shm(path.clone());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let started = Instant::now();
        let r = procwire::Client::builder().handshake_timeout(WAIT).connect(&shm).map(|_| ());
        let _ = tx.send((r, started.elapsed()));
    });
    let mut conn = tokio::time::timeout(WAIT, listener.accept()).await.unwrap().unwrap();
    match tokio::time::timeout(WAIT, conn.recv_bytes()).await.unwrap() {
        Err(Error::Protocol(m)) => assert!(m.contains("does not serve shared memory"), "{m}"),
        other => panic!("expected a protocol error, got {other:?}"),
    }
    tokio::time::timeout(WAIT, conn.flush()).await.unwrap().unwrap();
    let (r, took) = tokio::task::spawn_blocking(move || rx.recv_timeout(WAIT).unwrap()).await.unwrap();
    match r {
        Err(Error::Protocol(m)) => assert!(m.contains("not an shm: listener"), "{m}"),
        other => panic!("expected the client to be refused, got {other:?}"),
    }
    assert!(took < WAIT, "the client was answered, not timed out ({took:?})");
    // The refusal ends that connection only: a keyless plain client is served as before.
    let mut plain = Client::connect(&addr).await.unwrap();
    let mut served = tokio::time::timeout(WAIT, listener.accept()).await.unwrap().unwrap();
    plain.send_bytes(b"plain").await.unwrap();
    assert_eq!(served.recv_bytes().await.unwrap(), b"plain");
}

#[tokio::test]
async fn a_send_cancelled_mid_frame_is_finished_by_the_next_send() {
    let (conn, raw) = raw_pair().await;
    let (mut tx, _rx) = conn.into_split();
    let big = pattern(8 << 20, 3);
    // Nobody reads yet: the socket buffer fills and the send is cancelled half-way.
    let r = tokio::time::timeout(Duration::from_millis(200), tx.send_bytes(&big)).await;
    assert!(r.is_err(), "8 MiB should not fit in a socket buffer");
    let reader = std::thread::spawn(move || {
        let mut raw = raw;
        let mut frames = Vec::new();
        for _ in 0..2 {
            let mut h = [0u8; 4];
            raw.read_exact(&mut h).unwrap();
            let mut p = vec![0u8; u32::from_be_bytes(h) as usize];
            raw.read_exact(&mut p).unwrap();
            frames.push(p);
        }
        frames
    });
    tx.send_bytes(b"next").await.unwrap();
    let frames = tokio::task::spawn_blocking(move || reader.join().unwrap()).await.unwrap();
    assert_eq!(frames[0].len(), big.len());
    assert!(frames[0] == big, "the cancelled message arrives whole");
    assert_eq!(frames[1], b"next");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_halves_work_from_two_tasks_and_as_stream_and_sink() {
    let mut listener = bind(Family::Tcp).await;
    let (server, client) = pair(&mut listener).await;
    let (mut tx, mut rx) = server.into_split();
    let echo = tokio::spawn(async move {
        let mut n = 0;
        // The receiver as a Stream: it ends when the client closes.
        while let Some(msg) = std::future::poll_fn(|cx| Pin::new(&mut rx).poll_next(cx)).await {
            tx.send_bytes(&msg.unwrap()).await.unwrap();
            n += 1;
        }
        n
    });
    let (mut ctx, mut crx) = client.into_split();
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        for _ in 0..100 {
            got.push(crx.recv_bytes().await.unwrap());
        }
        got
    });
    // The sender as a Sink.
    for i in 0..100u32 {
        std::future::poll_fn(|cx| Sink::<[u8; 4]>::poll_ready(Pin::new(&mut ctx), cx)).await.unwrap();
        Pin::new(&mut ctx).start_send(i.to_be_bytes()).unwrap();
    }
    std::future::poll_fn(|cx| Sink::<[u8; 4]>::poll_flush(Pin::new(&mut ctx), cx)).await.unwrap();
    let got = reader.await.unwrap();
    assert_eq!(got, (0..100u32).map(|i| i.to_be_bytes().to_vec()).collect::<Vec<_>>());
    ctx.close().await.unwrap();
    assert_eq!(echo.await.unwrap(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_listener_serves_blocking_clients() {
    for family in families() {
        let mut listener = bind(family).await;
        let addr = listener.address().clone();
        let clients = tokio::task::spawn_blocking(move || {
            let threads: Vec<_> = (0..4)
                .map(|t| {
                    let addr = addr.clone();
                    std::thread::spawn(move || {
                        let mut c = procwire::Client::builder().authkey(KEY).connect(&addr).unwrap();
                        for n in [3, 70_000, 1 << 20] {
                            c.send_bytes(&pattern(n, t)).unwrap();
                            assert_eq!(c.recv_bytes().unwrap(), pattern(n, t));
                        }
                        c.send(&("bye", t)).unwrap();
                    })
                })
                .collect();
            threads.into_iter().for_each(|t| t.join().unwrap());
        });
        for _ in 0..4 {
            let mut conn = tokio::time::timeout(WAIT, listener.accept()).await.unwrap().unwrap();
            tokio::spawn(async move {
                for _ in 0..3 {
                    let m = conn.recv_bytes().await.unwrap();
                    conn.send_bytes(&m).await.unwrap();
                }
                let (word, _): (String, usize) = conn.recv().await.unwrap();
                assert_eq!(word, "bye");
            });
        }
        clients.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_clients_talk_to_a_blocking_listener() {
    for family in families() {
        let listener =
            procwire::Listener::builder().authkey(KEY).bind(Address::fresh(family).unwrap()).unwrap();
        let addr = listener.address().clone();
        let server = std::thread::spawn(move || {
            for _ in 0..4 {
                let mut c = listener.accept().unwrap();
                std::thread::spawn(move || {
                    while let Ok(m) = c.recv_bytes() {
                        c.send_bytes(&m).unwrap();
                    }
                });
            }
        });
        let tasks: Vec<_> = (0..4)
            .map(|t| {
                let addr = addr.clone();
                tokio::spawn(async move {
                    let mut c = Client::builder().authkey(KEY).connect(&addr).await.unwrap();
                    for n in [0, 3, 70_000, 1 << 20] {
                        c.send_bytes(&pattern(n, t)).await.unwrap();
                        assert_eq!(c.recv_bytes().await.unwrap(), pattern(n, t));
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        tokio::task::spawn_blocking(move || server.join().unwrap()).await.unwrap();
        // A wrong key is refused by the blocking listener's rules too.
        let l2 = procwire::Listener::builder().authkey(KEY).bind(Address::fresh(family).unwrap()).unwrap();
        let a2 = l2.address().clone();
        let t = std::thread::spawn(move || l2.accept().map(|_| ()));
        let e = Client::builder().authkey("wrong").connect(&a2).await.unwrap_err();
        assert!(matches!(e, Error::AuthenticationFailed(_)), "{e}");
        assert!(matches!(t.join().unwrap(), Err(Error::AuthenticationFailed(_))));
    }
}

/// A field of /proc/self/status in KiB (VmHWM: the peak resident set).
#[cfg(target_os = "linux")]
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// One listener on a 2-worker runtime, 1,000 authenticated clients (on a runtime of their
/// own) each doing 100 round trips at once: no failure. Wall time and peak memory are printed
/// (`--nocapture`), not asserted.
#[cfg(target_os = "linux")]
#[test]
fn one_listener_serves_a_thousand_concurrent_clients() {
    const CLIENTS: usize = 1000;
    const ROUND_TRIPS: usize = 100;
    let server_rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let client_rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let before = status_kib("VmRSS");
    let start = Instant::now();
    let mut listener = server_rt.block_on(bind(Family::Unix));
    let addr = listener.address().clone();
    let server = server_rt.spawn(async move {
        let mut served = Vec::new();
        for _ in 0..CLIENTS {
            let mut conn = listener.accept().await.unwrap();
            served.push(tokio::spawn(async move {
                let mut buf = Vec::new();
                for _ in 0..ROUND_TRIPS {
                    let n = conn.recv_bytes_into(&mut buf).await.unwrap();
                    conn.send_bytes(&buf[..n]).await.unwrap();
                }
            }));
        }
        for s in served {
            s.await.unwrap();
        }
    });
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let addr = addr.clone();
            client_rt.spawn(async move {
                let mut conn = Client::builder().authkey(KEY).connect(&addr).await.unwrap();
                for i in 0..ROUND_TRIPS {
                    let msg = pattern(16 + (c * 7 + i * 13) % 1000, c + i);
                    conn.send_bytes(&msg).await.unwrap();
                    assert_eq!(conn.recv_bytes().await.unwrap(), msg);
                }
            })
        })
        .collect();
    client_rt.block_on(async {
        for c in clients {
            tokio::time::timeout(Duration::from_secs(120), c).await.unwrap().unwrap();
        }
    });
    server_rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(60), server).await.unwrap().unwrap() });
    let wall = start.elapsed();
    let peak = status_kib("VmHWM");
    println!(
        "tokio load: {CLIENTS} clients x {ROUND_TRIPS} round trips in {wall:.2?}; peak RSS {peak} KiB \
         (before {before} KiB; listener and clients in this one process)"
    );
}
