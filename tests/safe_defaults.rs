//! Safe defaults: keyless TCP refused on both sides unless allowed, keyless Unix sockets kept
//! (as CPython), the socket file's mode keeping other users out, the handshake's message cap
//! and the default maximum message size, and keys that no Debug output shows.

#![cfg(unix)]

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{role, say};
use procwire::auth::{AuthKey, Handshake, Role};
use procwire::connection::DEFAULT_MAX_MESSAGE_SIZE;
use procwire::{Address, Client, Error, Family, Listener};

const LIMIT: Duration = Duration::from_secs(30);
/// A key whose bytes are easy to look for in any rendering.
const SECRET: &str = "s3cr3t-K3Y-never-printed";

/// Entry point of the child processes of this file.
#[test]
#[ignore = "runs only as a child process of the other tests"]
fn child() {
    let role = role().expect("child started without a role");
    match role.as_str() {
        // Connect to the Unix socket in PROCWIRE_TEST_ADDR and say how that went.
        "connect" => {
            let addr: Address = std::env::var("PROCWIRE_TEST_ADDR").unwrap().parse().unwrap();
            match Client::builder().authkey(SECRET).connect(&addr) {
                Ok(_) => say("connected"),
                Err(Error::Io(e)) => say(&format!("io {:?}", e.kind())),
                Err(e) => say(&format!("other {e}")),
            }
        }
        // Connect to PROCWIRE_TEST_ADDR with a wrong key, then with the right one; echo one
        // message and say which pid the listener's side has.
        "peer" => {
            let addr: Address = std::env::var("PROCWIRE_TEST_ADDR").unwrap().parse().unwrap();
            let wrong = Client::builder().authkey("not the key").connect(&addr);
            say(&format!("wrong key refused: {}", wrong.is_err()));
            let mut c = Client::builder().authkey(SECRET).connect(&addr).unwrap();
            let who = c.peer_credentials().and_then(|c| c.pid);
            say(&format!("listener pid {who:?}"));
            c.send_bytes(b"hi").unwrap();
            assert_eq!(c.recv_bytes().unwrap(), b"hi");
        }
        // Bind PROCWIRE_TEST_ADDR with mode 0660 under umask 077, and say the file's mode.
        "umask" => {
            // SAFETY: umask has no preconditions; this child process creates no other files.
            unsafe { libc::umask(0o077) };
            let addr: Address = std::env::var("PROCWIRE_TEST_ADDR").unwrap().parse().unwrap();
            let _l = Listener::builder().authkey(SECRET).socket_mode(0o660).bind(&addr).unwrap();
            let Address::Unix(path) = &addr else { unreachable!() };
            let mode = std::fs::symlink_metadata(path).unwrap().permissions().mode();
            say(&format!("mode {:o}", mode & 0o7777));
        }
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

fn refused_for_tcp(e: &Error, builder: &str) {
    match e {
        Error::InvalidInput(text) => {
            assert!(text.contains("without an authkey"), "{text}");
            assert!(text.contains(&format!("{builder}::allow_unauthenticated_tcp(true)")), "{text}");
        }
        other => panic!("expected an InvalidInput error, got {other:?}"),
    }
}

#[test]
fn keyless_tcp_is_refused_on_both_sides_unless_allowed() {
    let mut families = vec![Family::Tcp];
    if common::ipv6_works() {
        families.push(Family::Tcp6);
    }
    for family in families {
        let addr = Address::fresh(family).unwrap();
        refused_for_tcp(&Listener::bind(&addr).unwrap_err(), "ListenerBuilder");
        refused_for_tcp(&Listener::builder().bind(&addr).unwrap_err(), "ListenerBuilder");

        // A keyed listener is fine; a keyless client is refused before it connects at all.
        let keyed = Listener::builder().authkey(SECRET).bind(&addr).unwrap();
        refused_for_tcp(&Client::connect(keyed.address()).unwrap_err(), "ClientBuilder");
        refused_for_tcp(&Client::builder().connect(keyed.address()).unwrap_err(), "ClientBuilder");
        assert!(
            keyed.accept_timeout(Duration::from_millis(300)).unwrap_err().is_timeout(),
            "the refused client must not have connected"
        );

        // Opting out on both sides works, and there is no handshake then.
        let open = Listener::builder().allow_unauthenticated_tcp(true).bind(&addr).unwrap();
        let bound = open.address().clone();
        let t = std::thread::spawn(move || {
            Client::builder().allow_unauthenticated_tcp(true).connect(&bound).and_then(|mut c| {
                c.send_bytes(b"no key")?;
                Ok(c)
            })
        });
        let mut server = open.accept_timeout(LIMIT).unwrap();
        let _client = t.join().unwrap().unwrap();
        assert_eq!(server.recv_bytes().unwrap(), b"no key");

        // The opt-out does not weaken a keyed pair.
        let keyed_anyway =
            Listener::builder().authkey(SECRET).allow_unauthenticated_tcp(true).bind(&addr).unwrap();
        let bound = keyed_anyway.address().clone();
        let t = std::thread::spawn(move || {
            Client::builder().authkey("wrong").allow_unauthenticated_tcp(true).connect(&bound)
        });
        assert!(matches!(keyed_anyway.accept_timeout(LIMIT), Err(Error::AuthenticationFailed(_))));
        assert!(matches!(t.join().unwrap(), Err(Error::AuthenticationFailed(_))));
    }
}

#[test]
fn keyless_unix_sockets_stay_allowed_as_in_cpython() {
    let mut addrs = vec![Address::fresh(Family::Unix).unwrap()];
    if cfg!(target_os = "linux") {
        addrs.push(Address::fresh(Family::UnixAbstract).unwrap());
    }
    for addr in addrs {
        let l = Listener::bind(&addr).unwrap();
        let bound = l.address().clone();
        let t = std::thread::spawn(move || Client::connect(&bound));
        let mut server = l.accept_timeout(LIMIT).unwrap();
        let mut client = t.join().unwrap().unwrap();
        client.send_bytes(b"local").unwrap();
        assert_eq!(server.recv_bytes().unwrap(), b"local");
    }
}

/// Runs the "connect" child as user and group `nobody` against `addr`; returns its line.
fn connect_as_nobody(addr: &Address) -> String {
    use std::os::unix::process::CommandExt;
    let mut cmd = common::child_command("connect", &[("PROCWIRE_TEST_ADDR", addr.to_string())]);
    cmd.uid(65534).gid(65534);
    let mut child = common::spawn(&mut cmd);
    let line = child.line();
    let _ = child.finish(LIMIT);
    line
}

#[test]
fn the_socket_file_mode_keeps_other_users_out() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "skipped: switching to another user needs root (the 0600 mode itself is checked in tests/listener.rs)"
        );
        return;
    }
    // Another user must be able to reach the directory and run this test binary, so that the
    // socket file's own mode is what decides.
    let exe = std::env::current_exe().unwrap();
    let readable_by_all = exe
        .ancestors()
        .skip(1)
        .all(|d| std::fs::metadata(d).map(|m| m.permissions().mode() & 0o005 == 0o005).unwrap_or(false))
        && std::fs::metadata(&exe).map(|m| m.permissions().mode() & 0o005 == 0o005).unwrap_or(false);
    if !readable_by_all {
        eprintln!("skipped: user nobody cannot run {} (a directory on its path is private)", exe.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();

    let private = Address::Unix(dir.path().join("private.sock"));
    let l = Listener::builder().authkey(SECRET).bind(&private).unwrap();
    let mode = std::fs::metadata(dir.path().join("private.sock")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(connect_as_nobody(&private), "io PermissionDenied");
    drop(l);

    // The same user gets in when the mode lets it: what kept it out above was the mode.
    let open = Address::Unix(dir.path().join("open.sock"));
    let l = Listener::builder().authkey(SECRET).socket_mode(0o666).bind(&open).unwrap();
    std::thread::scope(|s| {
        let accepted = s.spawn(|| l.accept_timeout(LIMIT));
        assert_eq!(connect_as_nobody(&open), "connected");
        accepted.join().unwrap().unwrap();
    });
}

/// Connects a raw stream to the keyed listener `l`, writes `bytes` where the listener expects
/// the answer to its challenge, and returns the stream and what `accept` made of it.
fn raw_answer(l: &Listener, bytes: &[u8]) -> (std::os::unix::net::UnixStream, procwire::Result<()>) {
    let Address::Unix(path) = l.address() else { panic!("not a path address") };
    let mut s = std::os::unix::net::UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    s.write_all(bytes).unwrap();
    (s, l.accept_timeout(LIMIT).map(drop))
}

#[test]
fn handshake_messages_are_capped_at_256_bytes_before_any_allocation() {
    let l = Listener::builder().authkey(SECRET).bind(Address::fresh(Family::Unix).unwrap()).unwrap();
    // A short header one byte over the cap, and a long header announcing 1 TiB.
    let (mut over, r) = raw_answer(&l, &257u32.to_be_bytes());
    assert!(matches!(r, Err(Error::MessageTooLarge { len: 257, max: 256 })), "{r:?}");
    let mut huge = [0xff; 12];
    huge[4..].copy_from_slice(&(1u64 << 40).to_be_bytes());
    let (_huge, r) = raw_answer(&l, &huge);
    assert!(matches!(r, Err(Error::MessageTooLarge { len, max: 256 }) if len == 1 << 40), "{r:?}");
    // Exactly 256 bytes is read (and fails verification: it is no answer).
    let mut at_cap = 256u32.to_be_bytes().to_vec();
    at_cap.extend_from_slice(&[b'x'; 256]);
    let (_at_cap, r) = raw_answer(&l, &at_cap);
    assert!(matches!(r, Err(Error::AuthenticationFailed(_))), "{r:?}");
    // The refused client got the challenge and then the end of the stream, nothing else.
    let mut got = Vec::new();
    over.read_to_end(&mut got).unwrap();
    assert!(got[4..].starts_with(b"#CHALLENGE#") && got.len() == 4 + 59, "{got:?}");
    // And the listener still serves an honest client.
    let addr = l.address().clone();
    let t = std::thread::spawn(move || Client::builder().authkey(SECRET).connect(&addr));
    l.accept_timeout(LIMIT).unwrap();
    t.join().unwrap().unwrap();
}

#[test]
fn the_default_maximum_message_size_is_64_mib_on_both_sides() {
    assert_eq!(DEFAULT_MAX_MESSAGE_SIZE, 64 << 20);
    for addr in [Address::fresh(Family::Unix).unwrap(), Address::fresh(Family::Tcp).unwrap()] {
        let l = Listener::builder().authkey(SECRET).bind(&addr).unwrap();
        let bound = l.address().clone();
        let t = std::thread::spawn(move || Client::builder().authkey(SECRET).connect(&bound));
        let mut server = l.accept_timeout(LIMIT).unwrap();
        let mut client = t.join().unwrap().unwrap();
        assert_eq!(server.max_message_size(), DEFAULT_MAX_MESSAGE_SIZE);
        assert_eq!(client.max_message_size(), DEFAULT_MAX_MESSAGE_SIZE);
        // One byte over: refused as soon as the header is read, nothing sent after it.
        let mut raw = std::fs::File::from(std::os::fd::AsFd::as_fd(&client).try_clone_to_owned().unwrap());
        raw.write_all(&((64u32 << 20) + 1).to_be_bytes()).unwrap();
        match server.recv_bytes() {
            Err(Error::MessageTooLarge { len, max }) => {
                assert_eq!((len, max), ((64 << 20) + 1, 64 << 20));
            }
            other => panic!("{addr}: expected MessageTooLarge, got {other:?}"),
        }
        assert!(server.recv_bytes().is_err(), "the side that refused a message stays unusable");
        // Exactly the maximum is accepted.
        client.send_bytes(b"").unwrap();
        let bound = l.address().clone();
        let t = std::thread::spawn(move || Client::builder().authkey(SECRET).connect(&bound));
        let mut server = l.accept_timeout(LIMIT).unwrap();
        let mut client = t.join().unwrap().unwrap();
        let sender = std::thread::spawn(move || client.send_bytes(&vec![0x5a; 64 << 20]).map(|()| client));
        assert_eq!(server.recv_bytes().unwrap().len(), 64 << 20);
        drop(sender.join().unwrap().unwrap());
        assert!(matches!(server.recv_bytes(), Err(Error::Closed)));
    }
}

#[test]
fn keys_never_appear_in_debug_output() {
    let key = AuthKey::new(SECRET);
    let shows_key = |text: &str| {
        let decimal = format!("{:?}", SECRET.as_bytes());
        let hex: String = SECRET.bytes().map(|b| format!("{b:02x}")).collect();
        text.contains(SECRET) || text.contains(&decimal[1..20]) || text.contains(&hex[..16])
    };
    let listener_builder = Listener::builder().authkey(key.clone());
    let client_builder = Client::builder().authkey(key.clone());
    let handshake = Handshake::new(Role::Listener, key.clone());
    let listener = listener_builder.clone().bind(Address::fresh(Family::Unix).unwrap()).unwrap();
    let addr = listener.address().clone();
    let t = std::thread::spawn(move || Client::builder().authkey("a different key").connect(&addr));
    let refused = listener.accept_timeout(LIMIT).unwrap_err();
    let client_side = t.join().unwrap().unwrap_err();
    let texts = [
        format!("{key:?}"),
        format!("{key:#?}"),
        format!("{listener_builder:?}"),
        format!("{listener_builder:#?}"),
        format!("{client_builder:?}"),
        format!("{handshake:?}"),
        format!("{listener:?}"),
        format!("{refused:?}"),
        format!("{refused}"),
        format!("{client_side}"),
    ];
    for text in &texts {
        assert!(!shows_key(text), "key shown in {text}");
    }
    // The checker itself sees a key where there is one.
    assert!(shows_key(&format!("{:?}", key.as_bytes())));
    assert!(shows_key(SECRET));
    assert_eq!(texts[0], format!("AuthKey({} bytes)", SECRET.len()));
}

/// The requested mode holds whatever the umask: it is set on the socket before `bind` (Linux,
/// where the umask then takes bits away) and completed on the file, not through a link.
#[test]
fn socket_mode_is_exact_under_a_restrictive_umask() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("unix:{}", dir.path().join("umask.sock").display());
    let mut c = common::spawn_child("umask", &[("PROCWIRE_TEST_ADDR", addr)]);
    assert_eq!(c.line(), "mode 660");
}

/// A Unix-socket peer is named by its process in the listener's errors, and both ends see the
/// other's pid, uid and gid.
#[test]
fn unix_peers_are_named_by_their_credentials() {
    let listener = Listener::builder().authkey(SECRET).bind(Address::fresh(Family::Unix).unwrap()).unwrap();
    let mut c = common::spawn_child("peer", &[("PROCWIRE_TEST_ADDR", listener.address().to_string())]);
    let pid = c.child.id();
    // SAFETY: getuid and getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let refused = listener.accept_timeout(LIMIT).unwrap_err();
    assert!(matches!(refused, Error::AuthenticationFailed(_)), "{refused}");
    let want = if cfg!(any(target_os = "linux", target_os = "android")) {
        format!("(peer pid {pid}, uid {uid})")
    } else {
        format!("(peer uid {uid})")
    };
    assert!(refused.to_string().contains(&want), "{refused} should name {want}");
    assert_eq!(c.line(), "wrong key refused: true");
    let mut conn = listener.accept_timeout(LIMIT).unwrap();
    let creds = conn.peer_credentials().expect("a Unix socket has peer credentials");
    assert_eq!((creds.uid, creds.gid), (uid, gid));
    if cfg!(any(target_os = "linux", target_os = "android")) {
        assert_eq!(creds.pid, Some(pid));
        assert_eq!(c.line(), format!("listener pid Some({})", std::process::id()));
    } else {
        assert_eq!(c.line(), "listener pid None");
    }
    let m = conn.recv_bytes().unwrap();
    conn.send_bytes(&m).unwrap();
    // Other transports have none.
    let (a, _b) = procwire::dummy::pipe(true).unwrap();
    assert_eq!(a.peer_credentials(), None);
    let tcp = Listener::builder().authkey(SECRET).bind(Address::fresh(Family::Tcp).unwrap()).unwrap();
    let addr = tcp.address().clone();
    let t = std::thread::spawn(move || Client::builder().authkey(SECRET).connect(&addr));
    assert_eq!(tcp.accept_timeout(LIMIT).unwrap().peer_credentials(), None);
    assert_eq!(t.join().unwrap().unwrap().peer_credentials(), None);
}
