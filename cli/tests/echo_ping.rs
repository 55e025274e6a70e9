//! `procwire echo` and `procwire ping` as a user runs them: over a Unix socket (a named pipe on
//! Windows) and TCP, with the key from a file or from PROCWIRE_AUTHKEY, and a wrong key that
//! must fail clearly.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

const EXE: &str = env!("CARGO_BIN_EXE_procwire");

/// An echo server that is killed when dropped.
struct Echo {
    child: Child,
    addr: String,
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address `procwire echo` prints alone on its first stdout line, checked to be one.
fn first_line_address(stdout: std::process::ChildStdout) -> String {
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read echo's address");
    let addr = line.strip_suffix('\n').unwrap_or_else(|| panic!("no whole first line: {line:?}"));
    let parsed: procwire::Address =
        addr.parse().unwrap_or_else(|e| panic!("{line:?} is not an address: {e}"));
    assert_eq!(parsed.to_string(), addr, "the first line is the address alone");
    addr.to_string()
}

/// Starts `procwire echo --listen addr` with `args` and the key `env_key` in the environment;
/// returns it once it says where it listens.
fn echo(addr: &str, args: &[&str], env_key: Option<&str>) -> Echo {
    let mut cmd = Command::new(EXE);
    cmd.args(["echo", "--listen", addr]).args(args).stdout(Stdio::piped()).stderr(Stdio::null());
    cmd.env_remove("PROCWIRE_AUTHKEY");
    if let Some(k) = env_key {
        cmd.env("PROCWIRE_AUTHKEY", k);
    }
    let mut child = cmd.spawn().expect("start procwire echo");
    let addr = first_line_address(child.stdout.take().expect("stdout"));
    Echo { child, addr }
}

/// Runs `procwire ping` with `args` and the key `env_key`, with a time limit.
fn ping(args: &[&str], env_key: Option<&str>) -> Output {
    let mut cmd = Command::new(EXE);
    cmd.arg("ping").args(args).args(["--timeout", "5s"]);
    cmd.env_remove("PROCWIRE_AUTHKEY");
    if let Some(k) = env_key {
        cmd.env("PROCWIRE_AUTHKEY", k);
    }
    // --timeout bounds every wait of ping (connect, handshake, each reply).
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start procwire ping");
    child.wait_with_output().expect("wait for procwire ping")
}

/// An address of the platform's local transport named `name`: a Unix socket in `dir`, or a
/// named pipe on Windows.
fn local(dir: &std::path::Path, name: &str) -> String {
    if cfg!(windows) {
        let unique = dir.file_name().map_or_else(String::new, |d| d.to_string_lossy().into_owned());
        format!("pipe:procwire-cli-test-{}-{unique}-{name}", std::process::id())
    } else {
        format!("unix:{}", dir.join(name).display())
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn assert_pinged(out: &Output, count: u32, size: usize) {
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "ping failed: {stdout}\n{stderr}");
    assert_eq!(stdout.lines().filter(|l| l.contains("seq=")).count(), count as usize, "{stdout}");
    assert!(stdout.contains(&format!("{count} round trips of {size} bytes, all replies intact")), "{stdout}");
    assert!(stdout.contains("rtt min/median/p99/max = "), "{stdout}");
}

#[test]
fn echo_and_ping_over_the_local_transport_with_a_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, b"local secret\n").unwrap();
    let key = key.to_str().unwrap();
    let addr = local(dir.path(), "echo.sock");
    let server = echo(&addr, &["--authkey-file", key], None);
    assert_eq!(server.addr, addr);
    let out = ping(&[&server.addr, "--authkey-file", key, "--count", "5", "--size", "4k"], None);
    assert_pinged(&out, 5, 4096);
    // The same key from the environment (the file's content, newline included).
    let out = ping(&[&server.addr, "-c", "2", "-s", "0"], Some("local secret\n"));
    assert_pinged(&out, 2, 0);
}

#[test]
fn echo_and_ping_over_tcp_with_a_key_from_the_environment() {
    let server = echo("tcp:127.0.0.1:0", &[], Some("tcp secret"));
    assert!(server.addr.starts_with("tcp:127.0.0.1:") && !server.addr.ends_with(":0"), "{}", server.addr);
    let out = ping(&[&server.addr, "--count", "3", "--size", "1m"], Some("tcp secret"));
    assert_pinged(&out, 3, 1 << 20);
    let out = ping(&[&server.addr, "--count", "20", "--quiet"], Some("tcp secret"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).contains("seq="), "--quiet prints only the summary");
}

#[test]
fn ping_with_a_wrong_key_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    for addr in [local(dir.path(), "echo.sock"), "tcp:127.0.0.1:0".to_string()] {
        let server = echo(&addr, &[], Some("right key"));
        let out = ping(&[&server.addr, "-c", "1"], Some("wrong key"));
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "exit code 3 means authentication failed: {stderr}");
        assert!(stderr.contains("authentication with"), "{stderr}");
        assert!(stderr.contains("different authkeys"), "{stderr}");
        assert!(stderr.contains("PROCWIRE_AUTHKEY"), "the hint names where keys come from: {stderr}");
        assert!(!text(&out.stdout).contains("seq="), "no round trip happened");
        // The server is still there for a client with the right key.
        assert_pinged(&ping(&[&server.addr, "-c", "1"], Some("right key")), 1, 64);
    }
}

#[test]
fn ping_and_echo_without_a_key_say_where_to_put_one() {
    let out = ping(&["tcp:127.0.0.1:9"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no authkey: pass --authkey-file FILE or set"),
        "{}",
        text(&out.stderr)
    );
    let out = Command::new(EXE)
        .args(["echo", "--listen", "tcp:127.0.0.1:0"])
        .env_remove("PROCWIRE_AUTHKEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no authkey"), "{}", text(&out.stderr));
}

/// A message over the server's `--max-message-size` is refused with the server's reason, both
/// one that the client could send whole and one the server closed the connection in the middle
/// of; the server goes on serving.
#[test]
fn ping_of_an_oversized_message_reports_the_servers_limit() {
    let dir = tempfile::tempdir().unwrap();
    for addr in [local(dir.path(), "echo.sock"), "tcp:127.0.0.1:0".to_string()] {
        let server = echo(&addr, &["--max-message-size", "1k"], Some("limit key"));
        for (size, bytes) in [("4k", 4096), ("8m", 8 << 20)] {
            let out = ping(&[&server.addr, "-c", "3", "-s", size], Some("limit key"));
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{stderr}");
            let want = format!(
                "round trip 1: {} refused the message: message too large: the server accepts at most \
                 1024 bytes, this one has {bytes}",
                server.addr
            );
            assert!(stderr.contains(&want), "{addr} {size}: {stderr}");
            assert!(!text(&out.stdout).contains("seq="), "no round trip happened");
        }
        assert_pinged(&ping(&[&server.addr, "-c", "2", "-s", "1k"], Some("limit key")), 2, 1024);
    }
}

/// A reply larger than procwire's default limit (64 MiB) is accepted by `ping`: it expects
/// replies as large as its messages.
#[test]
fn ping_takes_replies_as_large_as_its_messages() {
    let server = echo("tcp:127.0.0.1:0", &["--max-message-size", "80m"], Some("big key"));
    assert_pinged(&ping(&[&server.addr, "-c", "1", "-s", "65m"], Some("big key")), 1, 65 << 20);
}

#[test]
fn ping_to_nothing_fails_with_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let addr = local(dir.path(), "nobody.sock");
    let out = ping(&[&addr], Some("k"));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("nobody.sock"), "{}", text(&out.stderr));
}

/// What `procwire echo` is for: a peer in another language. CPython's own client (HMAC-MD5 in
/// 3.11, so the server accepts the legacy handshake) sends messages and gets them back.
#[cfg(feature = "legacy-md5")]
#[test]
fn a_cpython_client_gets_its_messages_back() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("no python3: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("echo.sock");
    let server = echo(&format!("unix:{}", path.display()), &["--legacy-md5"], Some("py key"));
    assert!(server.addr.ends_with("echo.sock"));
    let script = r#"
import sys
from multiprocessing.connection import Client
c = Client(sys.argv[1], "AF_UNIX", authkey=b"py key")
for msg in [b"", b"hello", bytes(range(256)) * 300]:
    c.send_bytes(msg)
    assert c.recv_bytes() == msg
print("OK")
"#;
    let out = Command::new("python3").args(["-c", script, path.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "OK");
}

/// The server logs each client on stderr; with stderr closed (a log pipe whose reader went
/// away) it still serves.
#[test]
fn echo_keeps_serving_when_its_stderr_is_closed() {
    use std::io::Read;

    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(EXE)
        .args(["echo", "--listen", &local(dir.path(), "echo.sock")])
        .env("PROCWIRE_AUTHKEY", "log key")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start procwire echo");
    let addr = first_line_address(child.stdout.take().unwrap());
    // Once its first log line has begun, the reader goes away.
    let mut stderr = child.stderr.take().unwrap();
    stderr.read_exact(&mut [0u8; 1]).unwrap();
    drop(stderr);
    let mut server = Echo { child, addr };
    for _ in 0..2 {
        assert_pinged(&ping(&[&server.addr, "-c", "1"], Some("log key")), 1, 64);
    }
    assert!(server.child.try_wait().unwrap().is_none(), "the echo server exited");
}

/// Reads a field of /proc/PID/status in KiB (VmSize).
#[cfg(target_os = "linux")]
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Under an address-space limit that leaves room for only a few thread stacks, the echo server
/// refuses the client it cannot start a thread for and keeps serving: once the held clients
/// are gone, a new client gets its echo.
#[cfg(target_os = "linux")]
#[test]
fn echo_refuses_a_client_it_has_no_thread_for_and_keeps_serving() {
    use std::time::{Duration, Instant};

    use procwire::{Address, Client};

    let dir = tempfile::tempdir().unwrap();
    let mut server = echo(&local(dir.path(), "echo.sock"), &[], Some("thread key"));
    let pid = server.child.id();
    // Room for about a dozen 2 MiB thread stacks beyond what the server maps now.
    let limit = (status_kib(pid, "VmSize") + 24 * 1024) * 1024;
    let lim = libc::rlimit { rlim_cur: limit, rlim_max: limit };
    // SAFETY: prlimit with a valid pointer to an rlimit and a null old-limit pointer.
    let r = unsafe { libc::prlimit(pid as libc::pid_t, libc::RLIMIT_AS, &lim, std::ptr::null_mut()) };
    assert_eq!(r, 0, "prlimit: {}", std::io::Error::last_os_error());

    let addr: Address = server.addr.parse().unwrap();
    let client = || {
        Client::builder()
            .authkey("thread key")
            .connect_timeout(Duration::from_secs(5))
            .handshake_timeout(Duration::from_secs(5))
            .read_timeout(Some(Duration::from_secs(5)))
            .connect(&addr)
    };
    let echoed = |c: &mut procwire::Connection| {
        c.send_bytes(b"ping").and_then(|()| c.recv_bytes()).is_ok_and(|m| m == b"ping")
    };
    // Clients that keep their connection (and so their server thread) until one is refused.
    let mut held = Vec::new();
    while held.len() < 200 {
        let Ok(mut c) = client() else { break };
        if !echoed(&mut c) {
            break;
        }
        held.push(c);
    }
    assert!(held.len() < 200, "no client was refused under the limit: the test shows nothing");
    eprintln!("{} clients served before one was refused", held.len());
    drop(held);
    // Their threads end and give their stacks back; then a new client is served.
    let give_up = Instant::now() + Duration::from_secs(10);
    let served = loop {
        if client().is_ok_and(|mut c| echoed(&mut c)) {
            break true;
        }
        if Instant::now() > give_up {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let exited = server.child.try_wait().unwrap();
    assert!(served && exited.is_none(), "the echo server stopped serving (exit status: {exited:?})");
}

#[test]
fn echo_and_ping_with_encrypt_and_a_mismatch_said_clearly() {
    let server = echo("tcp:127.0.0.1:0", &["--encrypt"], Some("sealed secret"));
    let out = ping(&[&server.addr, "--encrypt", "--count", "3", "--size", "1m"], Some("sealed secret"));
    assert_pinged(&out, 3, 1 << 20);
    // A plain ping at the encrypting echo server is refused at once, saying why.
    let out = ping(&[&server.addr, "-c", "1"], Some("sealed secret"));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("encrypts its connections"), "{stderr}");
    // And an encrypting ping at a plain one.
    let plain = echo("tcp:127.0.0.1:0", &[], Some("sealed secret"));
    let out = ping(&[&plain.addr, "--encrypt", "-c", "1"], Some("sealed secret"));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("does not encrypt"), "{stderr}");
}
