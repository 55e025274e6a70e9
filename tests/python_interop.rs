//! CPython's `multiprocessing.connection` as a real peer of procwire: a Python `Client` against
//! a procwire `Listener` and a procwire `Client` against a Python `Listener`, over a Unix path
//! and TCP on loopback, with byte-exact messages both ways (empty, small, over 64 KiB, 1 MiB),
//! wrong keys refused on both sides, and the legacy HMAC-MD5 handshake of CPython 3.11.
//!
//! The Python side is `tests/py/peer.py`; it reports every outcome as a stdout line and an exit
//! code. These tests need `python3` on PATH and fail (never skip) without it.

#![cfg(all(unix, feature = "legacy-md5"))]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use procwire::{Address, Client, ClientBuilder, Connection, Error, Family, Listener, ListenerBuilder};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/peer.py");
const KEY: &[u8] = b"procwire python interop key";
const WRONG_KEY: &[u8] = b"some other key";
/// Empty messages first and in the middle; 16 KiB (CPython's largest single-write frame);
/// exactly 64 KiB (procwire's read buffer); over it (100 000 bytes and 1 MiB).
const SIZES: [usize; 8] = [0, 1, 16_384, 65_536, 100_000, 0, 1 << 20, 7];
/// The bound on every wait of the Rust side; Python's own alarm is 30 s.
const WAIT: Duration = Duration::from_secs(10);

// Exit codes of peer.py.
const EXIT_OK: i32 = 0;
const EXIT_AUTH: i32 = 5;
const EXIT_PEER_CLOSED: i32 = 7;

/// Byte `i` is `(i + 7 * seed) % 251`, as `pattern` in peer.py.
fn pattern(n: usize, seed: usize) -> Vec<u8> {
    (0..n).map(|i| ((i + 7 * seed) % 251) as u8).collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn sizes_arg() -> String {
    SIZES.map(|n| n.to_string()).join(",")
}

/// Compares without printing megabytes when they differ.
fn same_bytes(got: &[u8], want: &[u8], what: &str) -> Result<(), String> {
    if got == want {
        return Ok(());
    }
    let first = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
    Err(format!("{what}: got {} bytes, want {}, first difference at byte {first}", got.len(), want.len()))
}

/// What a finished Python peer left behind.
struct Outcome {
    code: Option<i32>,
    stdout: Vec<String>,
    stderr: String,
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "python exit code {:?}, stdout {:?}, stderr:\n{}", self.code, self.stdout, self.stderr)
    }
}

/// A running `peer.py`, killed when dropped so that a failing test never leaves it behind.
struct Python {
    child: Child,
    /// Where a Unix `listen` peer puts its socket; removed after the peer is killed.
    dir: Option<tempfile::TempDir>,
    lines: mpsc::Receiver<String>,
    stderr: Option<thread::JoinHandle<String>>,
    seen: Vec<String>,
}

impl Python {
    fn spawn(args: &[&str]) -> Python {
        let mut cmd = Command::new("python3");
        // -I: ignore PYTHON* variables and user site-packages; -u: unbuffered output.
        cmd.arg("-I").arg("-u").arg(SCRIPT).args(args);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot run `python3` ({e}): the Python interop tests need CPython 3 on PATH as \
                 `python3` to act as the multiprocessing.connection peer; install it (these tests \
                 fail rather than skip without it)"
            )
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        Python { child, dir: None, lines, stderr: Some(stderr), seen: Vec::new() }
    }

    /// A Python `Client` connecting to `addr` with `key`.
    fn client(addr: &Address, key: &[u8]) -> Python {
        Python::spawn(&["client", &addr.to_string(), &hex(key), &sizes_arg()])
    }

    /// A Python `Listener` with `key` on a fresh address of `family`, and that address.
    fn listen(family: Family, key: &[u8]) -> (Python, Address) {
        let dir = match family {
            Family::Unix => Some(tempfile::tempdir().expect("temporary directory")),
            Family::Tcp => None,
            f => panic!("peer.py does not listen on {f:?}"),
        };
        let place = match &dir {
            Some(d) => format!("unix:{}", d.path().display()),
            None => "tcp".to_string(),
        };
        let mut py = Python::spawn(&["listen", &place, &hex(key), &sizes_arg()]);
        py.dir = dir;
        let addr = py.address(family);
        (py, addr)
    }

    /// The next line Python prints, waiting at most [`WAIT`].
    fn line(&mut self) -> String {
        match self.lines.recv_timeout(WAIT) {
            Ok(line) => {
                self.seen.push(line.clone());
                line
            }
            Err(mpsc::RecvTimeoutError::Timeout) => self.fail(format!("no line from python within {WAIT:?}")),
            Err(mpsc::RecvTimeoutError::Disconnected) => self.fail("python closed its stdout".into()),
        }
    }

    /// Waits at most [`WAIT`] for Python to exit; returns its exit code and all it printed.
    fn finish(&mut self) -> Outcome {
        let deadline = Instant::now() + WAIT;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
                Ok(None) => self.fail(format!("python did not exit within {WAIT:?}")),
                Err(e) => self.fail(format!("waiting for python: {e}")),
            }
        };
        // The process is gone, so its pipes are closed and both readers end soon.
        while let Ok(line) = self.lines.recv_timeout(WAIT) {
            self.seen.push(line);
        }
        let stderr = self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
        Outcome { code: status.code(), stdout: self.seen.clone(), stderr }
    }

    /// Kills Python and panics with `what`, what it printed so far and its stderr.
    fn fail(&mut self, what: String) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let stderr = self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        panic!("{what}\npython stdout: {:?}\npython stderr:\n{stderr}", self.seen);
    }

    /// The address a `listen` peer prints as its first line.
    fn address(&mut self, family: Family) -> Address {
        let line = self.line();
        let addr: Address = match line.parse() {
            Ok(a) => a,
            Err(e) => self.fail(format!("python printed {line:?} instead of an address: {e}")),
        };
        if addr.family() != family {
            self.fail(format!("python listens on {addr}, not a {family:?} address"));
        }
        addr
    }
}

impl Drop for Python {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Python's major and minor version.
fn python_version() -> (u32, u32) {
    let mut py = Python::spawn(&["version"]);
    let line = py.line();
    let out = py.finish();
    assert_eq!(out.code, Some(EXIT_OK), "{out:?}");
    let v: Vec<u32> = line.split(' ').filter_map(|s| s.parse().ok()).collect();
    match v[..] {
        [major, minor] => (major, minor),
        _ => panic!("python printed {line:?} as its version"),
    }
}

/// True when `python3` only speaks the legacy HMAC-MD5 handshake (3.11 and older).
fn python_is_legacy() -> bool {
    python_version() < (3, 12)
}

/// A procwire listener with [`KEY`] on a fresh address of `family`; `legacy_md5(true)` only
/// when `legacy`, so that `false` tests the default.
fn listener(family: Family, legacy: bool) -> Listener {
    let mut builder: ListenerBuilder = Listener::builder()
        .authkey(KEY)
        .handshake_timeout(WAIT)
        .read_timeout(Some(WAIT))
        .write_timeout(Some(WAIT));
    if legacy {
        builder = builder.legacy_md5(true);
    }
    let listener = builder.bind(Address::fresh(family).expect("fresh address")).expect("bind");
    if let Address::Tcp { port, .. } = listener.address() {
        assert_ne!(*port, 0, "the listener reports the port the OS chose");
    }
    listener
}

/// A procwire client with `key`; `legacy_md5(true)` only when `legacy`.
fn client(key: &[u8], legacy: bool) -> ClientBuilder {
    let builder = Client::builder()
        .authkey(key)
        .connect_timeout(WAIT)
        .handshake_timeout(WAIT)
        .read_timeout(Some(WAIT))
        .write_timeout(Some(WAIT));
    if legacy { builder.legacy_md5(true) } else { builder }
}

/// The procwire half of peer.py's session: every size to Python and its echo back, then
/// Python's own messages, then Python's orderly close.
fn exchange(conn: &mut Connection) -> Result<(), String> {
    for (i, &n) in SIZES.iter().enumerate() {
        let sent = pattern(n, i);
        conn.send_bytes(&sent).map_err(|e| format!("sending message {i} ({n} bytes): {e:?}"))?;
        let echo = conn.recv_bytes().map_err(|e| format!("receiving echo {i} ({n} bytes): {e:?}"))?;
        same_bytes(&echo, &sent, &format!("echo of message {i}"))?;
    }
    for (i, &n) in SIZES.iter().enumerate() {
        let got =
            conn.recv_bytes().map_err(|e| format!("receiving python's message {i} ({n} bytes): {e:?}"))?;
        same_bytes(&got, &pattern(n, 100 + i), &format!("python's message {i}"))?;
    }
    match conn.recv_bytes() {
        Err(Error::Closed) => Ok(()),
        other => Err(format!("after the last message: want Err(Closed), got {other:?}")),
    }
}

fn assert_session_ok(py: &mut Python, conn: &mut Connection) {
    if py.line() != "CONNECTED" {
        py.fail("python did not report CONNECTED".into());
    }
    if let Err(e) = exchange(conn) {
        py.fail(e);
    }
    let out = py.finish();
    assert_eq!(out.code, Some(EXIT_OK), "{out:?}");
    assert_eq!(out.stdout.last().map(String::as_str), Some("OK"), "{out:?}");
}

/// Python's `Client(address, authkey=...)` against a procwire `Listener`.
fn python_client_session(family: Family) {
    let listener = listener(family, true);
    let mut py = Python::client(listener.address(), KEY);
    let mut conn = match listener.accept_timeout(WAIT) {
        Ok(c) => c,
        Err(e) => py.fail(format!("accept: {e:?}")),
    };
    assert_session_ok(&mut py, &mut conn);
    assert_eq!(py.seen, ["CONNECTED", "OK"]);
}

/// A procwire `Client` against Python's `Listener(..., authkey=...)`.
fn procwire_client_session(family: Family) {
    let (mut py, addr) = Python::listen(family, KEY);
    let mut conn = match client(KEY, true).connect(&addr) {
        Ok(c) => c,
        Err(e) => py.fail(format!("connect to {addr}: {e:?}")),
    };
    assert_session_ok(&mut py, &mut conn);
    assert_eq!(py.seen[1..], ["CONNECTED", "OK"]);
}

#[test]
fn python_client_to_procwire_listener_unix() {
    python_client_session(Family::Unix);
}

#[test]
fn python_client_to_procwire_listener_tcp() {
    python_client_session(Family::Tcp);
}

#[test]
fn procwire_client_to_python_listener_unix() {
    procwire_client_session(Family::Unix);
}

#[test]
fn procwire_client_to_python_listener_tcp() {
    procwire_client_session(Family::Tcp);
}

/// A Python client with the wrong key: procwire refuses it, Python raises AuthenticationError.
fn python_client_wrong_key(family: Family) {
    let listener = listener(family, true);
    let mut py = Python::client(listener.address(), WRONG_KEY);
    match listener.accept_timeout(WAIT) {
        Err(Error::AuthenticationFailed(_)) => {}
        Err(e) => py.fail(format!("accept: want AuthenticationFailed, got {e:?}")),
        Ok(_) => py.fail("accept: a client with the wrong key was accepted".into()),
    }
    let out = py.finish();
    assert_eq!(out.code, Some(EXIT_AUTH), "{out:?}");
    assert_eq!(out.stdout.len(), 1, "{out:?}");
    assert!(out.stdout[0].starts_with("AUTH_ERROR "), "{out:?}");
}

/// A procwire client with the wrong key: both sides fail the handshake. The client sent its
/// own challenge with its answer, and Python closes with it unread; on Linux the `#FAILURE#`
/// sent before that close still arrives first, so the client says why it failed.
fn procwire_client_wrong_key(family: Family) {
    let (mut py, addr) = Python::listen(family, KEY);
    match client(WRONG_KEY, true).connect(&addr) {
        Err(Error::AuthenticationFailed(m)) if m.contains("rejected our answer") => {}
        Err(Error::AuthenticationFailed(_)) if !cfg!(target_os = "linux") => {}
        Err(e) => py.fail(format!("connect: want AuthenticationFailed, got {e:?}")),
        Ok(_) => py.fail("connect: a listener with another key accepted us".into()),
    }
    let out = py.finish();
    assert_eq!(out.code, Some(EXIT_AUTH), "{out:?}");
    assert_eq!(out.stdout.len(), 2, "{out:?}");
    assert!(out.stdout[1].starts_with("AUTH_ERROR "), "{out:?}");
}

#[test]
fn python_client_with_wrong_key_is_refused_unix() {
    python_client_wrong_key(Family::Unix);
}

#[test]
fn python_client_with_wrong_key_is_refused_tcp() {
    python_client_wrong_key(Family::Tcp);
}

#[test]
fn procwire_client_with_wrong_key_is_refused_unix() {
    procwire_client_wrong_key(Family::Unix);
}

#[test]
fn procwire_client_with_wrong_key_is_refused_tcp() {
    procwire_client_wrong_key(Family::Tcp);
}

#[test]
fn listener_serves_python_client_after_a_wrong_key() {
    let listener = listener(Family::Unix, true);
    let mut bad = Python::client(listener.address(), WRONG_KEY);
    match listener.accept_timeout(WAIT) {
        Err(Error::AuthenticationFailed(_)) => {}
        other => {
            bad.fail(format!("accept: want AuthenticationFailed, got {:?}", other.map(|_| "a connection")))
        }
    }
    assert_eq!(bad.finish().code, Some(EXIT_AUTH));
    let mut good = Python::client(listener.address(), KEY);
    let mut conn = match listener.accept_timeout(WAIT) {
        Ok(c) => c,
        Err(e) => good.fail(format!("accept after a refused client: {e:?}")),
    };
    assert_session_ok(&mut good, &mut conn);
}

/// Without `legacy_md5(true)` a 3.11 Python client is refused at once with an error that
/// names the legacy handshake. A 3.12+ Python speaks `{sha256}` and needs no legacy option.
#[test]
fn listener_without_legacy_md5_refuses_python_311_clearly() {
    let legacy = python_is_legacy();
    let listener = listener(Family::Unix, false);
    let mut py = Python::client(listener.address(), KEY);
    let start = Instant::now();
    let accepted = listener.accept_timeout(WAIT);
    if !legacy {
        let mut conn = accepted.unwrap_or_else(|e| py.fail(format!("a modern python was refused: {e:?}")));
        assert_session_ok(&mut py, &mut conn);
        return;
    }
    match accepted {
        Err(Error::AuthenticationFailed(m)) if m.contains("legacy HMAC-MD5") => {}
        Err(e) => py.fail(format!("accept: want AuthenticationFailed naming legacy HMAC-MD5, got {e:?}")),
        Ok(_) => py.fail("accept: a legacy MD5 client was accepted without legacy_md5(true)".into()),
    }
    assert!(start.elapsed() < WAIT / 2, "the refusal took {:?}", start.elapsed());
    let out = py.finish();
    assert_eq!(out.code, Some(EXIT_AUTH), "{out:?}");
    assert_eq!(out.stdout.len(), 1, "{out:?}");
    assert!(out.stdout[0].starts_with("AUTH_ERROR "), "{out:?}");
}

/// Without `legacy_md5(true)` a procwire client refuses a 3.11 Python listener's MD5
/// challenge, saying why; Python sees the connection close.
#[test]
fn client_without_legacy_md5_refuses_python_311_clearly() {
    let legacy = python_is_legacy();
    let (mut py, addr) = Python::listen(Family::Tcp, KEY);
    let start = Instant::now();
    let connected = client(KEY, false).connect(&addr);
    if !legacy {
        let mut conn = connected.unwrap_or_else(|e| py.fail(format!("a modern python was refused: {e:?}")));
        assert_session_ok(&mut py, &mut conn);
        return;
    }
    match connected {
        Err(Error::AuthenticationFailed(m)) if m.contains("legacy HMAC-MD5") => {}
        Err(e) => py.fail(format!("connect: want AuthenticationFailed naming legacy HMAC-MD5, got {e:?}")),
        Ok(_) => py.fail("connect: a legacy MD5 listener was accepted without legacy_md5(true)".into()),
    }
    assert!(start.elapsed() < WAIT / 2, "the refusal took {:?}", start.elapsed());
    let out = py.finish();
    assert_eq!(out.code, Some(EXIT_PEER_CLOSED), "{out:?}");
    assert_eq!(out.stdout.len(), 2, "{out:?}");
    assert!(out.stdout[1].starts_with("PEER_CLOSED "), "{out:?}");
}

/// An encrypting procwire client at a CPython listener: the client recognises the plain
/// challenge and says so at once; Python gets the encrypted hello's prefix as its answer and
/// raises its AuthenticationError.
#[cfg(feature = "encrypt")]
#[test]
fn encrypting_client_at_a_python_listener_fails_fast_on_both_sides() {
    let (mut py, addr) = Python::listen(Family::Tcp, KEY);
    let start = Instant::now();
    match client(KEY, true).encrypt(true).connect(&addr) {
        Err(Error::AuthenticationFailed(m)) if m.contains("does not encrypt") => {}
        Err(e) => py.fail(format!(
            "connect: want AuthenticationFailed saying the listener does not encrypt, got {e:?}"
        )),
        Ok(_) => py.fail("connect: an encrypting client connected to a plain listener".into()),
    }
    assert!(start.elapsed() < WAIT / 2, "the refusal took {:?}", start.elapsed());
    let out = py.finish();
    assert_eq!(out.code, Some(EXIT_AUTH), "{out:?}");
    assert!(out.stdout[1].starts_with("AUTH_ERROR "), "{out:?}");
}

/// A CPython client at an encrypting procwire listener: Python's `answer_challenge` rejects the
/// encrypted hello at once (it expected a challenge: an AuthenticationError, or in 3.11 an
/// AssertionError) and closes without a word, which the
/// listener drops as it drops a probe: nothing is accepted.
#[cfg(feature = "encrypt")]
#[test]
fn python_client_at_an_encrypting_listener_fails_fast() {
    let listener = Listener::builder()
        .authkey(KEY)
        .encrypt(true)
        .handshake_timeout(WAIT)
        .bind(Address::fresh(Family::Tcp).expect("fresh address"))
        .expect("bind");
    let mut py = Python::client(listener.address(), KEY);
    let start = Instant::now();
    // The listener answers the connection for as long as Python may take to start and fail
    // (a window shorter than Python's start on a loaded machine left it unanswered).
    let accepting = thread::spawn(move || listener.accept_timeout(WAIT / 2).map(drop));
    let out = py.finish();
    assert!(start.elapsed() < WAIT / 2, "python took {:?} to fail", start.elapsed());
    match accepting.join().expect("the accepting thread") {
        Err(Error::Timeout(_)) => {}
        Err(e) => panic!("accept: want nothing accepted (a timeout), got {e:?}"),
        Ok(()) => panic!("accept: a plain python client was accepted by an encrypting listener"),
    }
    // 3.12 and later raise AuthenticationError; 3.11 fails an assertion on the message.
    if python_is_legacy() {
        // (Python quotes the bytes with " when they hold a ', so only the start is fixed.)
        assert!(out.code == Some(1) && out.stderr.contains("AssertionError: message = b"), "{out:?}");
        assert!(out.stderr.contains("#NOISE#"), "{out:?}");
    } else {
        assert_eq!(out.code, Some(EXIT_AUTH), "{out:?}");
        assert!(
            out.stdout[0].starts_with("AUTH_ERROR ") && out.stdout[0].contains("expected challenge"),
            "{out:?}"
        );
    }
}
