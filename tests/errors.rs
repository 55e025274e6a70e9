//! What an [`Error`] lets a caller find out: the OS error behind an I/O failure, a decode
//! failure in words, remote kinds as an enum, misuse as its own kind, and the `io::Error` an
//! `Error` becomes.

use std::error::Error as _;
use std::io;
use std::time::Duration;

use procwire::{Address, AuthKey, Error, Family, Listener, RemoteKind};

/// ENOENT on Unix, ERROR_FILE_NOT_FOUND on Windows: both 2.
const NOT_FOUND: i32 = 2;

/// The OS error at the end of `e`'s source chain, checking that the first link is the
/// `io::Error` of an [`Error::Io`].
fn os_error_behind(e: &Error) -> i32 {
    let io = e.source().and_then(|s| s.downcast_ref::<io::Error>()).expect("an io::Error as the source");
    assert!(std::ptr::eq(io, e.io_error().unwrap()));
    let mut link: &(dyn std::error::Error + 'static) = io;
    loop {
        if let Some(code) = link.downcast_ref::<io::Error>().and_then(io::Error::raw_os_error) {
            return code;
        }
        link = link.source().unwrap_or_else(|| panic!("no OS error behind {e}"));
    }
}

fn missing_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("procwire-no-such-dir-{}", std::process::id())).join(name)
}

#[test]
fn a_missing_authkey_file_keeps_the_os_error_behind_the_message() {
    let path = missing_path("key");
    let e = AuthKey::from_file(&path).unwrap_err();
    assert!(e.to_string().starts_with(&format!("reading authkey file {}: ", path.display())), "{e}");
    assert_eq!(e.io_error().map(io::Error::kind), Some(io::ErrorKind::NotFound));
    assert_eq!(e.raw_os_error(), Some(NOT_FOUND));
    assert_eq!(os_error_behind(&e), NOT_FOUND);
}

#[cfg(unix)]
#[test]
fn binding_or_connecting_a_socket_in_a_missing_directory_keeps_the_os_error() {
    let addr: Address = format!("unix:{}", missing_path("s.sock").display()).parse().unwrap();
    let e = Listener::bind(&addr).unwrap_err();
    assert!(e.to_string().starts_with(&format!("cannot bind {addr}: ")), "{e}");
    assert_eq!(e.raw_os_error(), Some(NOT_FOUND));
    assert_eq!(os_error_behind(&e), NOT_FOUND);

    let e = procwire::Client::connect(&addr).unwrap_err();
    assert!(e.to_string().starts_with(&format!("cannot connect to {addr}: ")), "{e}");
    assert_eq!(e.raw_os_error(), Some(NOT_FOUND));
    assert_eq!(os_error_behind(&e), NOT_FOUND);
}

#[test]
fn a_type_mismatch_says_what_serde_says_and_names_the_type() {
    let (mut a, mut b) = procwire::pipe(true).unwrap();
    a.send(&std::collections::BTreeMap::from([("k", 1)])).unwrap();
    let e = b.recv::<String>().unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, Error::Decode(_)), "{e:?}");
    assert!(!text.contains("Semantic("), "{text}");
    assert_eq!(
        text,
        "could not decode message: invalid type: map, expected string (decoding alloc::string::String)"
    );
    // The connection stays usable.
    a.send(&7u8).unwrap();
    assert_eq!(b.recv::<u8>().unwrap(), 7);
}

#[test]
fn manager_pool_and_process_errors_match_by_kind() {
    use procwire::dummy as pw;
    let m = pw::manager::Manager::start().unwrap();
    let l = m.list(Vec::<u8>::new()).unwrap();
    let e = l.pop().unwrap_err();
    assert_eq!(e.remote_kind(), Some(&RemoteKind::Index));
    assert!(e.is_remote());
    assert_eq!(e.to_string(), "remote error: index: pop from empty list");
    let barrier = m.barrier(2).unwrap();
    let e = barrier.wait_timeout(Duration::from_millis(10)).unwrap_err();
    assert!(matches!(e, Error::Remote { kind: RemoteKind::BrokenBarrier, .. }), "{e}");

    fn panics(x: u8) -> u8 {
        panic!("no {x} today")
    }
    static PANICS: pw::process::Function<u8, u8> = pw::process::Function::new("errors_panics", panics);
    let pool = pw::pool::Pool::new(1).unwrap();
    let e = pool.apply(&PANICS, 7).unwrap_err();
    assert!(
        matches!(&e, Error::Remote { kind: RemoteKind::Panic, message } if message == "no 7 today"),
        "{e}"
    );
    let mut p = pw::process::Process::new(&PANICS, 8);
    p.start().unwrap();
    let e = p.result_timeout(Duration::from_secs(60)).unwrap_err();
    assert_eq!(e.remote_kind(), Some(&RemoteKind::Panic), "{e}");
    assert!(!e.is_closed() && !e.is_timeout());
}

#[test]
fn misuse_is_invalid_input_not_an_os_error() {
    let e = procwire::pool::Pool::new(0).unwrap_err();
    assert!(matches!(&e, Error::InvalidInput(_)), "{e:?}");
    assert_eq!(e.raw_os_error(), None);
    let tcp = Address::fresh(Family::Tcp).unwrap();
    let e = Listener::bind(&tcp).unwrap_err();
    assert!(matches!(&e, Error::InvalidInput(m) if m.contains("without an authkey")), "{e:?}");
    assert_eq!(io::Error::from(e).kind(), io::ErrorKind::InvalidInput);

    fn one(x: u8) -> u8 {
        x
    }
    static ONE: procwire::dummy::process::Function<u8, u8> =
        procwire::dummy::process::Function::new("errors_one", one);
    let mut p = procwire::dummy::process::Process::new(&ONE, 1);
    p.start().unwrap();
    let e = p.start().unwrap_err();
    assert!(matches!(&e, Error::InvalidInput(m) if m.ends_with("was started already")), "{e:?}");
    assert_eq!(p.join_timeout(Duration::from_secs(60)).unwrap(), Some(0));
}

#[test]
fn a_closed_peer_is_closed_and_an_unexpected_eof() {
    let (a, mut b) = procwire::pipe(true).unwrap();
    drop(a);
    let e = b.recv_bytes().unwrap_err();
    assert!(e.is_closed(), "{e:?}");
    let io = io::Error::from(e);
    assert_eq!(io.kind(), io::ErrorKind::UnexpectedEof);
    assert!(matches!(io.get_ref().and_then(|e| e.downcast_ref::<Error>()), Some(Error::Closed)));
}

#[test]
fn errors_become_io_errors_of_the_matching_kind() {
    let cases = [
        (Error::Timeout("waiting".into()), io::ErrorKind::TimedOut),
        (Error::Truncated { received: 1, expected: 9 }, io::ErrorKind::UnexpectedEof),
        (Error::MessageTooLarge { len: 10, max: 4 }, io::ErrorKind::InvalidData),
        (Error::Decode("x".into()), io::ErrorKind::InvalidData),
        (Error::AuthenticationFailed("digest".into()), io::ErrorKind::PermissionDenied),
        (Error::Remote { kind: RemoteKind::Value, message: "m".into() }, io::ErrorKind::Other),
    ];
    for (e, kind) in cases {
        let text = e.to_string();
        let io = io::Error::from(e);
        assert_eq!(io.kind(), kind, "{text}");
        assert_eq!(io.to_string(), text);
    }
    // An I/O error comes back as itself.
    let e = Error::Io(io::Error::from_raw_os_error(NOT_FOUND));
    assert_eq!(io::Error::from(e).raw_os_error(), Some(NOT_FOUND));
}
