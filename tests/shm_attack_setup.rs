//! A hostile side at the set-up of a shared-memory connection, with real processes: a fake
//! `shm:` listener that offers a keyless client (in a child) something other than a region
//! it made (no descriptor, a pipe, a file, a memory file unsealed, empty, too small for the
//! capacity its header declares, sealed against writing, far larger than its rings), and a
//! client that answers a real listener's offer with an offer of its own.

#![cfg(target_os = "linux")]

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use common::{pattern, role, say, spawn_child};
use procwire::{Address, Client, Error, Family, Listener};

const LIMIT: Duration = Duration::from_secs(30);
const HELLO: &[u8] = b"procwire-shm-1:hello";
const OFFER: &[u8] = b"procwire-shm-1:offer";
/// The first bytes of a region, and its smallest ring.
const MAGIC: &[u8; 8] = b"PWSHMRG2";
const RING: u64 = 4096;

fn frame(body: &[u8]) -> Vec<u8> {
    [&(body.len() as u32).to_be_bytes()[..], body].concat()
}

/// Entry point of every child process of this file.
#[test]
#[ignore = "runs only as a child process of the other tests"]
fn child() {
    let role = role().expect("child started without a role");
    let addr: Address = std::env::var("PROCWIRE_TEST_ADDR").unwrap().parse().unwrap();
    match role.as_str() {
        // Connect without a key; say how it went, and how a first receive went.
        "connect" => {
            let b = Client::builder().handshake_timeout(Duration::from_secs(5));
            match b.read_timeout(Some(Duration::from_secs(2))).connect(&addr) {
                Ok(mut c) => {
                    let status = std::fs::read_to_string("/proc/self/status").unwrap();
                    let vm = status.lines().find(|l| l.starts_with("VmSize")).unwrap_or("").to_string();
                    say(&format!("ok {vm}"));
                    say(&format!("recv {:?}", c.recv_bytes().map(|m| m.len())));
                }
                Err(e) => say(&format!("err {e:?}")),
            }
        }
        // An honest client that echoes, for a listener another client attacks.
        "echo" => {
            let mut c = Client::builder().read_timeout(Some(LIMIT)).connect(&addr).unwrap();
            while let Ok(m) = c.recv_bytes() {
                c.send_bytes(&m).unwrap();
            }
        }
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

/// A new memory file of `len` bytes whose header declares rings of `cap` bytes, with `seals`.
fn memfd(len: u64, cap: u64, allow_sealing: bool, seals: i32) -> OwnedFd {
    let flags = libc::MFD_CLOEXEC | if allow_sealing { libc::MFD_ALLOW_SEALING } else { 0 };
    // SAFETY: a NUL-terminated name and valid flags.
    let fd = unsafe { libc::memfd_create(c"procwire-shared".as_ptr(), flags) };
    assert!(fd >= 0);
    // SAFETY: a new descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut file = std::fs::File::from(fd);
    file.set_len(len).unwrap();
    if len >= 16 {
        file.write_all(&[&MAGIC[..], &cap.to_le_bytes()].concat()).unwrap();
    }
    let fd = OwnedFd::from(file);
    if seals != 0 {
        // SAFETY: a valid descriptor; F_ADD_SEALS takes an int.
        assert_eq!(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) }, 0);
    }
    fd
}

/// The bytes of one region as procwire makes it, with rings of `cap` bytes.
fn region_len(cap: u64) -> u64 {
    128 + 2 * (512 + cap)
}

/// Sends `data` with `fds` attached to its first byte.
fn send_with_fds(sock: &UnixStream, data: &[u8], fds: &[RawFd]) {
    let space = if fds.is_empty() {
        0
    } else {
        // SAFETY: a pure size computation.
        unsafe { libc::CMSG_SPACE(std::mem::size_of_val(fds) as u32) as usize }
    };
    let mut cbuf = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec { iov_base: data.as_ptr().cast_mut().cast(), iov_len: data.len() };
    // SAFETY: all zeroes is an empty msghdr.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: the control buffer has room (CMSG_SPACE) and is aligned for a cmsghdr.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(fds) as u32) as _;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(c).cast::<RawFd>(), fds.len());
        }
    }
    // SAFETY: msg points at live buffers for the call.
    let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    assert_eq!(n, data.len() as isize);
}

/// Runs a keyless client in a child against a fake listener that answers its hello with
/// `offer` and `fds`; returns the child's first line.
fn offer_to_client(offer: &[u8], fds: &[RawFd]) -> String {
    let addr = Address::fresh(Family::Shm).unwrap();
    let Address::Shm(path) = &addr else { unreachable!() };
    let l = UnixListener::bind(path).unwrap();
    let mut child = spawn_child("connect", &[("PROCWIRE_TEST_ADDR", addr.to_string())]);
    let (mut sock, _) = l.accept().unwrap();
    sock.set_read_timeout(Some(LIMIT)).unwrap();
    let mut hello = vec![0; 4 + HELLO.len()];
    sock.read_exact(&mut hello).unwrap();
    assert_eq!(hello, frame(HELLO));
    send_with_fds(&sock, offer, fds);
    let line = child.line();
    eprintln!("{line}");
    let _ = std::fs::remove_file(path);
    line
}

/// A pipe's reading end.
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: room for two descriptors.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: new descriptors nothing else owns.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn refused(line: &str, what: &str) {
    assert!(
        line.starts_with("err Protocol(") && line.contains(what),
        "expected a protocol error saying {what:?}: {line}"
    );
}

#[test]
fn an_offer_without_a_descriptor_or_with_a_pipe_or_a_file_is_refused() {
    let offer = frame(OFFER);
    refused(&offer_to_client(&offer, &[]), "sent no shared memory");
    let (r, _w) = pipe();
    refused(&offer_to_client(&offer, &[r.as_raw_fd()]), "not sealed");
    let path = std::env::temp_dir().join(format!("procwire-attack-{}", std::process::id()));
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(region_len(RING)).unwrap();
    refused(&offer_to_client(&offer, &[file.as_raw_fd()]), "not sealed");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn an_unsealed_empty_or_too_small_memory_file_is_refused() {
    let offer = frame(OFFER);
    let shrink = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
    let unsealed = memfd(region_len(RING), RING, false, 0);
    refused(&offer_to_client(&offer, &[unsealed.as_raw_fd()]), "not sealed");
    let empty = memfd(0, RING, true, shrink);
    refused(&offer_to_client(&offer, &[empty.as_raw_fd()]), "empty");
    let small = memfd(4096, 4 << 20, true, shrink);
    refused(&offer_to_client(&offer, &[small.as_raw_fd()]), "does not fit");
    let odd = memfd(region_len(8192), 5000, true, shrink);
    refused(&offer_to_client(&offer, &[odd.as_raw_fd()]), "does not fit");
}

#[test]
fn a_memory_file_sealed_against_writing_is_a_protocol_error() {
    let offer = frame(OFFER);
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_FUTURE_WRITE;
    let fd = memfd(region_len(RING), RING, true, seals);
    refused(&offer_to_client(&offer, &[fd.as_raw_fd()]), "sealed against writing");
}

#[test]
fn extra_descriptors_are_dropped_and_a_region_larger_than_its_rings_is_refused() {
    let offer = frame(OFFER);
    let shrink = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
    let good = memfd(region_len(RING), RING, true, shrink);
    let (r, _w) = pipe();
    let line = offer_to_client(&offer, &[good.as_raw_fd(), r.as_raw_fd()]);
    assert!(line.starts_with("ok"), "{line}");
    // A terabyte the offer chose, for rings of 4 KiB: refused (else the client would keep
    // that much of its address space mapped for the connection's life).
    let huge = memfd(1 << 40, RING, true, shrink);
    refused(&offer_to_client(&offer, &[huge.as_raw_fd()]), "larger than its rings");
}

#[test]
fn a_client_that_answers_the_offer_with_its_own_harms_no_other_client() {
    let addr = Address::fresh(Family::Shm).unwrap();
    let Address::Shm(path) = &addr else { unreachable!() };
    let l = Listener::builder().handshake_timeout(Duration::from_secs(5)).bind(&addr).unwrap();
    // The hostile client: its hello, then an offer of its own with a region, then garbage.
    let mut raw = UnixStream::connect(path).unwrap();
    raw.write_all(&frame(HELLO)).unwrap();
    let mut bad = l.accept_timeout(LIMIT).unwrap();
    let region = memfd(region_len(RING), RING, true, libc::F_SEAL_SHRINK);
    send_with_fds(&raw, &frame(OFFER), &[region.as_raw_fd()]);
    raw.write_all(&[0xff; 64]).unwrap();
    // An honest client meanwhile.
    let _child = spawn_child("echo", &[("PROCWIRE_TEST_ADDR", addr.to_string())]);
    let mut good = l.accept_timeout(LIMIT).unwrap();
    bad.set_read_timeout(Some(Duration::from_secs(5)));
    match bad.recv_bytes() {
        Err(Error::Protocol(m)) => eprintln!("hostile client: {m}"),
        other => panic!("expected a protocol error, got {other:?}"),
    }
    good.set_read_timeout(Some(LIMIT));
    let m = pattern(100_000, 5);
    good.send_bytes(&m).unwrap();
    assert_eq!(good.recv_bytes().unwrap(), m);
}
