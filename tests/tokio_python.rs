//! CPython's `multiprocessing.connection` as a real peer of the async face: a Python `Client`
//! against a `procwire::tokio::Listener` and a `procwire::tokio::Client` against a Python
//! `Listener`, over a Unix path and TCP, with byte-exact messages both ways (the session of
//! `tests/py/peer.py`) and a wrong key refused. CPython 3.11 speaks the legacy HMAC-MD5
//! handshake, hence the `legacy-md5` feature. Needs `python3` on PATH (fails without it).

#![cfg(all(unix, feature = "tokio", feature = "legacy-md5"))]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use procwire::tokio::{Client, Connection, Listener};
use procwire::{Address, Error, Family};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/peer.py");
const KEY: &[u8] = b"procwire python interop key";
const SIZES: [usize; 8] = [0, 1, 16_384, 65_536, 100_000, 0, 1 << 20, 7];
const WAIT: Duration = Duration::from_secs(20);
const EXIT_AUTH: i32 = 5;

/// Byte `i` is `(i + 7 * seed) % 251`, as `pattern` in peer.py.
fn pattern(n: usize, seed: usize) -> Vec<u8> {
    (0..n).map(|i| ((i + 7 * seed) % 251) as u8).collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A running `peer.py` with its stdout lines on a channel, killed when dropped.
struct Python {
    child: Child,
    lines: mpsc::Receiver<String>,
    _dir: tempfile::TempDir,
}

impl Python {
    fn spawn(args: &[&str]) -> Python {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new("python3")
            .arg(SCRIPT)
            .args(args.iter().map(|a| a.replace("{dir}", &dir.path().display().to_string())))
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 on PATH");
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || out.lines().map_while(Result::ok).try_for_each(|l| tx.send(l)));
        Python { child, lines, _dir: dir }
    }

    fn line(&self) -> String {
        self.lines.recv_timeout(WAIT).expect("a line from python")
    }

    fn exit_code(mut self) -> Option<i32> {
        self.child.wait().unwrap().code()
    }
}

impl Drop for Python {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn legacy() -> bool {
    let py = Python::spawn(&["version"]);
    let v: Vec<u32> = py.line().split(' ').filter_map(|s| s.parse().ok()).collect();
    v < vec![3, 12]
}

fn sizes() -> String {
    SIZES.map(|n| n.to_string()).join(",")
}

/// The Rust side of peer.py's session: each size sent and echoed, then Python's own messages.
async fn session(conn: &mut Connection) {
    for (i, n) in SIZES.into_iter().enumerate() {
        conn.send_bytes(&pattern(n, i)).await.unwrap();
        assert!(conn.recv_bytes().await.unwrap() == pattern(n, i), "echo of message {i}");
    }
    let mut buf = Vec::new();
    for (i, n) in SIZES.into_iter().enumerate() {
        conn.recv_bytes_into(&mut buf).await.unwrap();
        assert!(buf == pattern(n, 100 + i), "python's message {i}");
    }
    assert!(matches!(conn.recv_bytes().await, Err(Error::Closed)));
}

#[tokio::test]
async fn python_clients_to_an_async_listener() {
    let legacy = legacy();
    for family in [Family::Unix, Family::Tcp] {
        let mut listener = Listener::builder()
            .authkey(KEY)
            .legacy_md5(legacy)
            .bind(Address::fresh(family).unwrap())
            .await
            .unwrap();
        let addr = listener.address().to_string();
        // A wrong key first: refused, and the listener goes on.
        let wrong = Python::spawn(&["client", &addr, &hex(b"wrong"), &sizes()]);
        let e = tokio::time::timeout(WAIT, listener.accept()).await.unwrap().unwrap_err();
        assert!(matches!(e, Error::AuthenticationFailed(_)), "{e}");
        assert_eq!(tokio::task::spawn_blocking(move || wrong.exit_code()).await.unwrap(), Some(EXIT_AUTH));
        let py = Python::spawn(&["client", &addr, &hex(KEY), &sizes()]);
        let mut conn = tokio::time::timeout(WAIT, listener.accept()).await.unwrap().unwrap();
        assert_eq!(py.line(), "CONNECTED");
        tokio::time::timeout(WAIT, session(&mut conn)).await.unwrap();
        assert_eq!(py.line(), "OK");
        assert_eq!(tokio::task::spawn_blocking(move || py.exit_code()).await.unwrap(), Some(0));
    }
}

#[tokio::test]
async fn async_client_to_a_python_listener() {
    let legacy = legacy();
    for place in ["unix:{dir}", "tcp"] {
        let py = Python::spawn(&["listen", place, &hex(KEY), &sizes()]);
        let addr = py.line();
        let mut conn = Client::builder()
            .authkey(KEY)
            .legacy_md5(legacy)
            .handshake_timeout(WAIT)
            .connect(addr.as_str())
            .await
            .unwrap();
        assert_eq!(py.line(), "CONNECTED");
        tokio::time::timeout(WAIT, session(&mut conn)).await.unwrap();
        assert_eq!(py.line(), "OK");
        assert_eq!(tokio::task::spawn_blocking(move || py.exit_code()).await.unwrap(), Some(0));
    }
}
