//! Faults with real processes: a peer SIGKILLed in the middle of a frame and a peer that closes
//! right after a header, on every transport (Unix path and abstract sockets, TCP over IPv4 and
//! IPv6, a socket pair and an OS pipe handed to a child); a listener process killed while
//! clients are connected; a TCP peer that vanishes without a FIN (a network namespace whose
//! link is taken down; root only), and the keepalive options that make that loss show;
//! binding on a full or read-only filesystem (root only) or an unwritable directory.

#![cfg(target_os = "linux")]

mod common;

use std::io::Write;
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{ChildGuard, role, say, spawn_child};
use procwire::{Address, Client, Connection, Error, Family, Listener};

const KEY: &str = "faults-test-key";
const LIMIT: Duration = Duration::from_secs(30);
/// Far more than any socket or pipe buffer holds, so a sender of it blocks part-way.
const BIG: usize = 32 << 20;

/// Where a child's connection comes from.
#[derive(Clone, Debug)]
enum Transport {
    /// A keyed listener of the parent at a fresh address of this family.
    Addr(Family),
    /// One end of `pipe(true)` handed to the child.
    SocketPair,
    /// The write end of `pipe(false)` handed to the child (it can only send).
    OsPipe,
}

fn transports() -> Vec<Transport> {
    let mut v = vec![
        Transport::Addr(Family::Unix),
        Transport::Addr(Family::UnixAbstract),
        Transport::Addr(Family::Tcp),
    ];
    if common::ipv6_works() {
        v.push(Transport::Addr(Family::Tcp6));
    }
    v.push(Transport::SocketPair);
    v.push(Transport::OsPipe);
    v
}

/// Starts the child `role` connected to the parent over `t`; returns it and the parent's end.
fn start(t: &Transport, role: &str, env: &[(&str, String)]) -> (ChildGuard, Connection) {
    match t {
        Transport::Addr(family) => {
            let addr = Address::fresh(*family).unwrap();
            let l = Listener::builder().authkey(KEY).bind(&addr).unwrap();
            let mut env = env.to_vec();
            env.push(("PROCWIRE_TEST_ADDR", l.address().to_string()));
            let child = spawn_child(role, &env);
            let conn = l.accept_timeout(LIMIT).unwrap_or_else(|e| panic!("{addr}: {e}"));
            (child, conn)
        }
        Transport::SocketPair | Transport::OsPipe => {
            let (mine, theirs) = procwire::pipe(matches!(t, Transport::SocketPair)).unwrap();
            let mut cmd = common::child_command(role, env);
            theirs.pass_to_child(&mut cmd, "PROCWIRE_TEST_CONN").unwrap();
            let child = common::spawn(&mut cmd);
            // The command and our copy of the child's end must go, or the end never closes.
            drop((cmd, theirs));
            (child, mine)
        }
    }
}

/// Child side of [`start`].
fn child_conn() -> Connection {
    match std::env::var("PROCWIRE_TEST_ADDR") {
        Ok(addr) => Client::builder().authkey(KEY).connect(&addr).unwrap(),
        Err(_) => Connection::from_env("PROCWIRE_TEST_CONN").unwrap(),
    }
}

/// What the child writes raw, after the handshake, before it closes: (name, bytes, what the
/// parent must receive: complete messages, then the final error as (received, expected) of
/// a `Truncated`, or `None` for `Closed`).
type Case = (&'static str, Vec<u8>, Vec<&'static [u8]>, Option<(u64, u64)>);

fn cases() -> Vec<Case> {
    let mut long = vec![0xff; 4];
    long.extend_from_slice(&100u64.to_be_bytes());
    let mut large = 100_000u32.to_be_bytes().to_vec();
    large.extend_from_slice(&[7; 1000]);
    vec![
        ("short header only", 100u32.to_be_bytes().to_vec(), vec![], Some((4, 104))),
        ("long header only", long, vec![], Some((12, 112))),
        ("half a header", vec![0, 0], vec![], Some((2, 4))),
        ("long marker and 3 length bytes", vec![0xff, 0xff, 0xff, 0xff, 0, 0, 0], vec![], Some((7, 12))),
        ("a message, then a header", vec![0, 0, 0, 2, b'o', b'k', 0, 0, 0, 10], vec![b"ok"], Some((4, 14))),
        ("a header over the buffer and a little payload", large, vec![], Some((1004, 100_004))),
        ("a message, then nothing (control)", vec![0, 0, 0, 2, b'o', b'k'], vec![b"ok"], None),
    ]
}

/// Entry point of the child processes of this file.
#[test]
#[ignore = "runs only as a child process of the other tests"]
fn child() {
    let role = role().expect("child started without a role");
    match role.as_str() {
        // Send one message far larger than any buffer; the parent kills us part-way.
        "send-big" => {
            let mut c = child_conn();
            say("sending");
            let r = c.send_bytes(&common::pattern(BIG, 1));
            say(&format!("sent {r:?}"));
        }
        // Write case PROCWIRE_TEST_CASE raw after the handshake, then close and exit.
        "raw-then-close" => {
            let c = child_conn();
            let i: usize = std::env::var("PROCWIRE_TEST_CASE").unwrap().parse().unwrap();
            let mut raw = std::fs::File::from(c.as_fd().try_clone_to_owned().unwrap());
            raw.write_all(&cases()[i].1).unwrap();
            drop((raw, c));
            say("closed");
        }
        // Keyed listeners on every address family; echo on every connection until killed.
        "listen-everywhere" => {
            let mut listeners = Vec::new();
            for addr in common::transports() {
                let l = Listener::builder().authkey(KEY).bind(&addr).unwrap();
                say(&format!("addr {}", l.address()));
                listeners.push(l);
            }
            for l in listeners {
                std::thread::spawn(move || {
                    for c in l.incoming() {
                        let Ok(mut c) = c else { continue };
                        std::thread::spawn(move || {
                            while let Ok(m) = c.recv_bytes() {
                                if c.send_bytes(&m).is_err() {
                                    break;
                                }
                            }
                        });
                    }
                });
            }
            say("ready");
            std::thread::sleep(Duration::from_secs(600));
        }
        // Inside a network namespace: connect to the parent's listener, listen for the parent
        // too, and echo on both until killed.
        "netns-peer" => {
            let addr: Address = std::env::var("PROCWIRE_TEST_ADDR").unwrap().parse().unwrap();
            let own: Address = std::env::var("PROCWIRE_TEST_LISTEN").unwrap().parse().unwrap();
            let l = Listener::builder().authkey(KEY).bind(&own).unwrap();
            say(&format!("addr {}", l.address()));
            let outgoing = Client::builder().authkey(KEY).connect(&addr).unwrap();
            let incoming = l.accept_timeout(LIMIT).unwrap();
            for mut c in [outgoing, incoming] {
                std::thread::spawn(move || {
                    while let Ok(m) = c.recv_bytes() {
                        if c.send_bytes(&m).is_err() {
                            break;
                        }
                    }
                });
            }
            say("ready");
            std::thread::sleep(Duration::from_secs(600));
        }
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

/// Kills the child with SIGKILL and reaps it.
fn kill(mut child: ChildGuard) {
    child.child.kill().unwrap();
    let status = child.child.wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL));
}

#[test]
fn a_peer_sigkilled_mid_frame_is_truncated_on_every_transport() {
    for t in transports() {
        let (mut child, mut conn) = start(&t, "send-big", &[]);
        conn.set_read_timeout(Some(LIMIT));
        assert_eq!(child.line(), "sending", "{t:?}");
        // Part of the frame is here (the sender blocks on a full buffer): kill it now.
        assert!(conn.poll_timeout(LIMIT).unwrap(), "{t:?}: nothing arrived");
        kill(child);
        let start = Instant::now();
        match conn.recv_bytes() {
            Err(Error::Truncated { received, expected }) => {
                assert_eq!(expected, 4 + BIG as u64, "{t:?}");
                assert!(received > 0 && received < expected, "{t:?}: {received} of {expected}");
            }
            other => panic!("{t:?}: expected Truncated, got {other:?}"),
        }
        assert!(start.elapsed() < LIMIT, "{t:?}");
        // The receiving side stays unusable: the partial message never comes out later.
        assert!(matches!(conn.recv_bytes(), Err(Error::Protocol(_))), "{t:?}");
    }
}

#[test]
fn a_peer_that_closes_right_after_a_header_is_truncated_on_every_transport() {
    for t in transports() {
        for (i, (name, _, messages, end)) in cases().into_iter().enumerate() {
            let (mut child, mut conn) = start(&t, "raw-then-close", &[("PROCWIRE_TEST_CASE", i.to_string())]);
            conn.set_read_timeout(Some(LIMIT));
            assert_eq!(child.line(), "closed", "{t:?} {name}");
            for m in messages {
                assert_eq!(conn.recv_bytes().unwrap(), m, "{t:?} {name}");
            }
            match (conn.recv_bytes(), end) {
                (Err(Error::Truncated { received, expected }), Some(want)) => {
                    assert_eq!((received, expected), want, "{t:?} {name}");
                }
                (Err(Error::Closed), None) => {}
                (other, _) => panic!("{t:?} {name}: got {other:?}, expected {end:?}"),
            }
            assert_eq!(child.finish(LIMIT).0, Some(0), "{t:?} {name}");
        }
    }
}

/// A client process (Python, so that nothing of procwire is on that side) that reads the
/// listener's 59-byte challenge, writes only the header of an answer, and exits.
const HEADER_THEN_EXIT: &str = "\
import socket, sys
family, rest = sys.argv[1].split(':', 1)
if family == 'unix':
    s = socket.socket(socket.AF_UNIX)
    s.connect('\\0' + rest[1:] if rest.startswith('@') else rest)
else:
    host, port = rest.rsplit(':', 1)
    s = socket.create_connection((host.strip('[]'), int(port)))
got = b''
while len(got) < 63:
    chunk = s.recv(63 - len(got))
    if not chunk:
        sys.exit('the listener closed before its challenge was complete')
    got += chunk
assert got[4:15] == b'#CHALLENGE#', got
s.sendall(b'\\x00\\x00\\x00\\x28')
";

#[test]
fn a_client_that_closes_after_a_header_in_the_handshake_is_refused_and_the_listener_goes_on() {
    for addr in common::transports() {
        let l = Listener::builder().authkey(KEY).bind(&addr).unwrap();
        let bound = l.address().clone();
        let mut python = Command::new("python3")
            .args(["-c", HEADER_THEN_EXIT, &bound.to_string()])
            .spawn()
            .expect("python3 is needed for this test");
        match l.accept_timeout(LIMIT) {
            Err(Error::AuthenticationFailed(m)) => assert!(m.contains("hung up"), "{bound}: {m}"),
            other => panic!("{bound}: expected AuthenticationFailed, got {other:?}"),
        }
        assert!(python.wait().unwrap().success(), "{bound}: the Python client failed");
        let t = std::thread::spawn(move || Client::builder().authkey(KEY).connect(&bound));
        l.accept_timeout(LIMIT).unwrap();
        t.join().unwrap().unwrap();
    }
}

#[test]
fn a_listener_that_closes_after_the_header_of_its_challenge_fails_the_client_at_once() {
    for family in [Family::Unix, Family::Tcp] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fake.sock");
        let (tx, rx) = mpsc::channel();
        // A fake listener: the header of a 59-byte challenge, then the end.
        let server = std::thread::spawn(move || match family {
            Family::Unix => {
                let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
                tx.send(Address::Unix(path)).unwrap();
                let (mut s, _) = l.accept().unwrap();
                s.write_all(&59u32.to_be_bytes()).unwrap();
            }
            _ => {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let port = l.local_addr().unwrap().port();
                tx.send(Address::Tcp { host: "127.0.0.1".into(), port }).unwrap();
                let (mut s, _) = l.accept().unwrap();
                s.write_all(&59u32.to_be_bytes()).unwrap();
            }
        });
        let addr = rx.recv().unwrap();
        let start = Instant::now();
        let e = Client::builder().authkey(KEY).connect(&addr).unwrap_err();
        server.join().unwrap();
        assert!(matches!(e, Error::Truncated { received: 4, expected: 63 }), "{addr}: {e:?}");
        // Not the handshake timeout (10 s): the end of the stream was reported at once.
        assert!(start.elapsed() < Duration::from_secs(9), "{addr}: {:?}", start.elapsed());
    }
}

#[test]
fn clients_of_a_killed_listener_process_see_closed_and_do_not_hang() {
    let mut child = spawn_child("listen-everywhere", &[]);
    let mut addrs = Vec::new();
    loop {
        let line = child.line();
        match line.strip_prefix("addr ") {
            Some(a) => addrs.push(a.parse::<Address>().unwrap()),
            None if line == "ready" => break,
            None => panic!("unexpected line {line:?}"),
        }
    }
    let mut clients = Vec::new();
    for addr in &addrs {
        for n in 0..3u8 {
            let mut c = Client::builder().authkey(KEY).read_timeout(Some(LIMIT)).connect(addr).unwrap();
            c.send_bytes(&[n; 100]).unwrap();
            assert_eq!(c.recv_bytes().unwrap(), [n; 100]);
            clients.push((addr.clone(), c));
        }
    }
    // Every client blocks in a receive; then the listener's process dies.
    let (tx, rx) = mpsc::channel();
    for (addr, mut c) in clients {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let r = c.recv_bytes();
            // And a send after the end fails too, within a few tries (TCP learns it from the
            // reset that answers the first one).
            let mut send_failed = false;
            for _ in 0..50 {
                if c.send_bytes(b"anyone?").is_err() {
                    send_failed = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            tx.send((addr, r, send_failed)).unwrap();
        });
    }
    drop(tx);
    kill(child);
    let mut seen = 0;
    for (addr, r, send_failed) in rx.iter() {
        assert!(matches!(r, Err(Error::Closed)), "{addr}: expected Closed, got {r:?}");
        assert!(send_failed, "{addr}: sends kept succeeding after the listener died");
        seen += 1;
    }
    assert_eq!(seen, addrs.len() * 3);
}

/// Runs a command; `Err` with its output when it fails.
fn run(args: &[&str]) -> Result<(), String> {
    let out =
        Command::new(args[0]).args(&args[1..]).output().map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A network namespace joined to ours by a veth pair (a /30 of 198.18.0.0/15, the range set
/// aside for network tests), deleted on drop.
struct Netns {
    name: String,
    host_link: String,
    peer_link: String,
    host_ip: String,
    peer_ip: String,
}

impl Netns {
    fn create() -> Result<Netns, String> {
        let pid = std::process::id();
        let subnet = pid % (1 << 15);
        let (hi, lo) = (18 + (subnet >> 14), (subnet >> 6) & 0xff);
        let base = (subnet & 0x3f) * 4;
        let ns = Netns {
            name: format!("procwire-test-{pid}"),
            host_link: format!("pwh{pid}"),
            peer_link: format!("pwn{pid}"),
            host_ip: format!("198.{hi}.{lo}.{}", base + 1),
            peer_ip: format!("198.{hi}.{lo}.{}", base + 2),
        };
        let host_link = ns.host_link.clone();
        run(&["ip", "netns", "add", &ns.name])?;
        run(&["ip", "link", "add", &host_link, "type", "veth", "peer", "name", &ns.peer_link])?;
        run(&["ip", "link", "set", &ns.peer_link, "netns", &ns.name])?;
        run(&["ip", "addr", "add", &format!("{}/30", ns.host_ip), "dev", &host_link])?;
        run(&["ip", "link", "set", &host_link, "up"])?;
        run(&["ip", "-n", &ns.name, "addr", "add", &format!("{}/30", ns.peer_ip), "dev", &ns.peer_link])?;
        run(&["ip", "-n", &ns.name, "link", "set", &ns.peer_link, "up"])?;
        run(&["ip", "-n", &ns.name, "link", "set", "lo", "up"])?;
        // A permanent neighbour entry: once the link is down, packets to the peer vanish in
        // silence (as behind a router), instead of failing address resolution.
        let out = Command::new("ip")
            .args(["-n", &ns.name, "-o", "link", "show", &ns.peer_link])
            .output()
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mac = text
            .split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .ok_or_else(|| format!("no MAC address in {text:?}"))?
            .to_string();
        run(&["ip", "neigh", "replace", &ns.peer_ip, "lladdr", &mac, "dev", &host_link, "nud", "permanent"])?;
        Ok(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth end inside it, and so the pair.
        let _ = run(&["ip", "netns", "delete", &self.name]);
        let _ = run(&["ip", "link", "delete", &self.host_link]);
    }
}

#[test]
fn a_tcp_peer_that_vanishes_without_fin_gives_timeouts_then_keepalive_reports_the_loss() {
    if !is_root() {
        eprintln!("skipped: creating a network namespace needs root");
        return;
    }
    let ns = match Netns::create() {
        Ok(ns) => ns,
        Err(e) => {
            eprintln!("skipped: `ip netns` does not work here ({e})");
            return;
        }
    };
    let idle = Duration::from_secs(1);
    let listener = Listener::builder()
        .authkey(KEY)
        .tcp_keepalive(Some(idle))
        .bind(format!("tcp:{}:0", ns.host_ip))
        .unwrap();
    // The peer process runs inside the namespace.
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns.name]).arg(exe);
    cmd.args(["child", "--exact", "--ignored", "--nocapture", "--test-threads=1", "-q"]);
    cmd.env(common::ROLE, "netns-peer");
    cmd.env("PROCWIRE_TEST_ADDR", listener.address().to_string());
    cmd.env("PROCWIRE_TEST_LISTEN", format!("tcp:{}:0", ns.peer_ip));
    let mut child = common::spawn(&mut cmd);
    let line = child.line();
    let peer_addr: Address =
        line.strip_prefix("addr ").unwrap_or_else(|| panic!("{line:?}")).parse().unwrap();
    let mut accepted = listener.accept_timeout(LIMIT).unwrap();
    let mut connected = Client::builder().authkey(KEY).tcp_keepalive(Some(idle)).connect(&peer_addr).unwrap();
    assert_eq!(child.line(), "ready");
    for c in [&mut accepted, &mut connected] {
        c.set_read_timeout(Some(LIMIT));
        c.send_bytes(b"ping").unwrap();
        assert_eq!(c.recv_bytes().unwrap(), b"ping");
    }

    // The cable is pulled, then the peer dies: its FIN and RST go nowhere.
    run(&["ip", "-n", &ns.name, "link", "set", &ns.peer_link, "down"]).unwrap();
    kill(child);
    for c in [&mut accepted, &mut connected] {
        c.set_read_timeout(Some(Duration::from_millis(300)));
        assert!(matches!(c.recv_bytes(), Err(Error::Timeout(_))));
    }
    // Data sent into the void is not acknowledged either (TCP_USER_TIMEOUT ends that).
    connected.send_bytes(b"into the void").unwrap();
    let start = Instant::now();
    for c in [&mut accepted, &mut connected] {
        c.set_read_timeout(Some(LIMIT));
        match c.recv_bytes() {
            Err(Error::Io(e)) => {
                use std::io::ErrorKind::{HostUnreachable, TimedOut};
                assert!(matches!(e.kind(), TimedOut | HostUnreachable), "{e}");
                assert!(e.to_string().contains("connection lost"), "{e}");
                println!("lost connection reported as {:?}: {e}", e.kind());
            }
            other => panic!("expected the loss of the connection, got {other:?}"),
        }
    }
    println!("keepalive (idle {idle:?}) reported both lost connections after {:?}", start.elapsed());
}

/// A tmpfs mounted on a fresh directory, unmounted on drop.
struct Mount {
    dir: tempfile::TempDir,
}

impl Mount {
    fn tmpfs(options: &str) -> Result<Mount, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().to_str().ok_or("temporary path is not UTF-8")?.to_string();
        run(&["mount", "-t", "tmpfs", "-o", options, "procwire-test", &path])?;
        Ok(Mount { dir })
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let path = self.dir.path().to_string_lossy().to_string();
        if run(&["umount", &path]).is_err() {
            let _ = run(&["umount", "-l", &path]);
        }
    }
}

fn bind_error(addr: &Address) -> std::io::Error {
    match Listener::builder().authkey(KEY).bind(addr) {
        Err(Error::Io(e)) => e,
        other => panic!("{addr}: expected an I/O error, got {other:?}"),
    }
}

#[test]
fn binding_on_a_full_or_read_only_filesystem_or_an_unwritable_directory_is_a_clear_error() {
    if !is_root() {
        // Without root: a directory we may not write to.
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
        let addr = Address::Unix(dir.path().join("s.sock"));
        let e = bind_error(&addr);
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
        assert!(e.to_string().starts_with(&format!("cannot bind {addr}: ")), "{e}");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        eprintln!("skipped the full and read-only filesystem cases: mounting a tmpfs needs root");
        return;
    }
    // A filesystem without a free inode: a socket file needs one (and no data blocks).
    let full = match Mount::tmpfs("size=64k,nr_inodes=8,mode=0755") {
        Ok(m) => m,
        Err(e) => {
            eprintln!("skipped: cannot mount a tmpfs here ({e})");
            return;
        }
    };
    let mut n = 0;
    while std::fs::write(full.dir.path().join(format!("f{n}")), b"x").is_ok() {
        n += 1;
        assert!(n < 100, "the inode limit does not hold");
    }
    let addr = Address::Unix(full.dir.path().join("s.sock"));
    let e = bind_error(&addr);
    assert_eq!(e.kind(), std::io::ErrorKind::StorageFull, "{e}");
    assert!(e.to_string().starts_with(&format!("cannot bind {addr}: ")), "{e}");
    assert!(e.to_string().contains("No space left on device"), "{e}");
    // Room again: the same address binds, so the error really was the full filesystem.
    std::fs::remove_file(full.dir.path().join("f0")).unwrap();
    drop(Listener::builder().authkey(KEY).bind(&addr).unwrap());

    let read_only = Mount::tmpfs("ro,size=64k").unwrap();
    let addr = Address::Unix(read_only.dir.path().join("s.sock"));
    let e = bind_error(&addr);
    assert_eq!(e.kind(), std::io::ErrorKind::ReadOnlyFilesystem, "{e}");
    assert!(e.to_string().contains("Read-only file system"), "{e}");
    drop(read_only);
    drop(full);
}

#[test]
fn keepalive_options_reach_the_sockets_on_both_sides() {
    let idle = Duration::from_secs(7);
    let l = Listener::builder()
        .authkey(KEY)
        .tcp_keepalive(Some(idle))
        .bind(Address::fresh(Family::Tcp).unwrap())
        .unwrap();
    let bound = l.address().clone();
    let t =
        std::thread::spawn(move || Client::builder().authkey(KEY).tcp_keepalive(Some(idle)).connect(&bound));
    let accepted = l.accept_timeout(LIMIT).unwrap();
    let connected = t.join().unwrap().unwrap();
    for c in [&accepted, &connected] {
        let s = socket2::SockRef::from(c);
        assert!(s.keepalive().unwrap());
        assert_eq!(s.tcp_keepalive_time().unwrap(), idle);
        assert_eq!(s.tcp_keepalive_interval().unwrap(), idle);
        assert_eq!(s.tcp_keepalive_retries().unwrap(), 3);
        assert_eq!(s.tcp_user_timeout().unwrap(), Some(idle * 4));
        // And off again.
        c.set_keepalive(None).unwrap();
        assert!(!s.keepalive().unwrap());
        assert_eq!(s.tcp_user_timeout().unwrap(), None);
    }
    // Without the option, nothing is set; on other transports the option does nothing.
    let plain = Listener::builder().authkey(KEY).bind(Address::fresh(Family::Tcp).unwrap()).unwrap();
    let bound = plain.address().clone();
    let t = std::thread::spawn(move || Client::builder().authkey(KEY).connect(&bound));
    let accepted = plain.accept_timeout(LIMIT).unwrap();
    assert!(!socket2::SockRef::from(&accepted).keepalive().unwrap());
    assert!(!socket2::SockRef::from(&t.join().unwrap().unwrap()).keepalive().unwrap());
    let unix = Listener::builder()
        .authkey(KEY)
        .tcp_keepalive(Some(idle))
        .bind(Address::fresh(Family::Unix).unwrap())
        .unwrap();
    let bound = unix.address().clone();
    let t =
        std::thread::spawn(move || Client::builder().authkey(KEY).tcp_keepalive(Some(idle)).connect(&bound));
    unix.accept_timeout(LIMIT).unwrap();
    t.join().unwrap().unwrap();
}

/// A client process that writes the header of an answer before it even reads the challenge,
/// and exits at once.
const HEADER_AND_GONE: &str = "\
import socket, sys
family, rest = sys.argv[1].split(':', 1)
if family == 'unix':
    s = socket.socket(socket.AF_UNIX)
    s.connect('\\0' + rest[1:] if rest.startswith('@') else rest)
else:
    host, port = rest.rsplit(':', 1)
    s = socket.create_connection((host.strip('[]'), int(port)))
s.sendall(b'\\x00\\x00\\x00\\x28')
";

#[test]
fn a_client_that_said_something_and_left_before_the_challenge_is_reported_not_dropped() {
    for addr in common::transports() {
        let l = Listener::builder().authkey(KEY).bind(&addr).unwrap();
        let bound = l.address().clone();
        // It has come and gone before the listener takes it from the queue.
        let status = Command::new("python3")
            .args(["-c", HEADER_AND_GONE, &bound.to_string()])
            .status()
            .expect("python3 is needed for this test");
        assert!(status.success(), "{bound}: the Python client failed");
        match l.accept_timeout(Duration::from_secs(10)) {
            Err(Error::AuthenticationFailed(m)) => assert!(m.contains("hung up"), "{bound}: {m}"),
            other => panic!("{bound}: expected AuthenticationFailed, got {other:?}"),
        }
        // A probe that says nothing is still dropped silently.
        if let Address::Unix(p) = &bound {
            drop(std::os::unix::net::UnixStream::connect(p).unwrap());
            assert!(l.accept_timeout(Duration::from_millis(300)).unwrap_err().is_timeout(), "{bound}");
        }
    }
}
