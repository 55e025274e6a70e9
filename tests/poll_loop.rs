//! A nonblocking listener in a caller's poll loop: poll(2) on the listener's descriptor, then
//! accept until `WouldBlock`. Honest clients are accepted while a silent one holds a pending
//! handshake, no accept call waits, and the silent one times out on schedule.

#![cfg(unix)]

use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use procwire::{Address, Client, Error, Family, Listener};

const KEY: &str = "poll-loop-key";
const HONEST: usize = 4;

/// A client that connects and never says a word.
fn connect_silently(addr: &Address) -> Box<dyn std::any::Any> {
    match addr {
        Address::Tcp { host, port } => {
            Box::new(std::net::TcpStream::connect((host.as_str(), *port)).unwrap())
        }
        Address::Unix(p) => Box::new(std::os::unix::net::UnixStream::connect(p).unwrap()),
        other => panic!("no raw client for {other}"),
    }
}

/// Waits up to `timeout` for the descriptor to be readable.
fn poll_readable(fd: i32, timeout: Duration) -> bool {
    let mut p = [libc::pollfd { fd, events: libc::POLLIN, revents: 0 }];
    // SAFETY: one valid pollfd, its length passed with it.
    let n = unsafe { libc::poll(p.as_mut_ptr(), 1, timeout.as_millis() as libc::c_int) };
    assert!(n >= 0, "poll: {}", std::io::Error::last_os_error());
    n == 1
}

fn serve_in_a_poll_loop(family: Family) {
    let listener = Listener::builder()
        .authkey(KEY)
        .handshake_timeout(Duration::from_millis(1000))
        .bind(Address::fresh(family).unwrap())
        .unwrap();
    listener.set_nonblocking(true);
    let addr = listener.address().clone();
    let _silent = connect_silently(&addr);
    let clients: Vec<_> = (0..HONEST)
        .map(|i| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                // Staggered, so that some arrive while others are half-way through.
                std::thread::sleep(Duration::from_millis(20 * i as u64));
                let mut c = Client::builder().authkey(KEY).connect(&addr).unwrap();
                c.send(&(i as u32)).unwrap();
                assert_eq!(c.recv::<u32>().unwrap(), i as u32 * 10);
            })
        })
        .collect();

    let fd = listener.as_raw_fd();
    let started = Instant::now();
    let mut accepted = Vec::new();
    let mut silent_timed_out = None;
    while (accepted.len() < HONEST || silent_timed_out.is_none())
        && started.elapsed() < Duration::from_secs(20)
    {
        // While honest clients are under way the descriptor must wake for them (their replies
        // arrive on the handshakes' own sockets, not the listening one). After that, a short
        // timeout, so that the silent handshake's deadline is looked at.
        if accepted.len() < HONEST {
            assert!(poll_readable(fd, Duration::from_secs(5)), "no wake-up for a handshake under way");
        } else {
            poll_readable(fd, Duration::from_millis(100));
        }
        loop {
            let t = Instant::now();
            let r = listener.accept();
            assert!(
                t.elapsed() < Duration::from_millis(500),
                "a nonblocking accept waited {:?}",
                t.elapsed()
            );
            match r {
                Ok(c) => accepted.push(c),
                Err(Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => break,
                Err(Error::Timeout(m)) => silent_timed_out = Some((started.elapsed(), m)),
                Err(e) => panic!("unexpected accept error: {e}"),
            }
        }
    }
    assert_eq!(accepted.len(), HONEST, "honest clients accepted");
    let (after, msg) = silent_timed_out.expect("the silent client's handshake timed out");
    assert!(after >= Duration::from_millis(1000), "timed out early, after {after:?}: {msg}");
    assert!(msg.contains("handshake"), "{msg}");
    for mut c in accepted {
        let i: u32 = c.recv().unwrap();
        c.send(&(i * 10)).unwrap();
    }
    for t in clients {
        t.join().unwrap();
    }
}

#[test]
fn a_poll_loop_accepts_honest_clients_past_a_silent_one_over_unix_sockets() {
    serve_in_a_poll_loop(Family::Unix);
}

#[test]
fn a_poll_loop_accepts_honest_clients_past_a_silent_one_over_tcp() {
    serve_in_a_poll_loop(Family::Tcp);
}

#[test]
#[should_panic(expected = "in-process listener has no file descriptor")]
fn an_in_process_listener_has_no_descriptor() {
    let l = Listener::bind("inproc:poll-loop-no-fd").unwrap();
    let _ = l.as_raw_fd();
}

/// A handshake that ends without a connection (here a client that hangs up without a word)
/// leaves the listener's poll set even while another process holds a copy of its socket: the
/// set tracks the socket, not the descriptor, so only an explicit removal takes it out. Were it
/// left in, the hung-up socket would keep the listener's descriptor readable while `accept`
/// has nothing: a poll loop would spin until the copy closes.
#[test]
fn an_abandoned_handshake_leaves_the_poll_set_even_if_a_forked_child_holds_its_socket() {
    let listener = Listener::builder().authkey(KEY).bind(Address::fresh(Family::default()).unwrap()).unwrap();
    listener.set_nonblocking(true);
    let client = connect_silently(listener.address());
    let fd = listener.as_raw_fd();
    assert!(poll_readable(fd, Duration::from_secs(5)), "the connection never showed");
    assert!(matches!(listener.accept(), Err(Error::Io(e)) if e.kind() == ErrorKind::WouldBlock));
    // Hung up before the fork, so that the child holds only the listener's side of it.
    drop(client);
    // SAFETY: the child only sleeps and exits (both async-signal-safe) and touches no memory of
    // ours; it holds copies of every descriptor, the pending handshake's socket among them.
    let child = unsafe { libc::fork() };
    assert!(child >= 0, "fork: {}", std::io::Error::last_os_error());
    if child == 0 {
        // SAFETY: as above.
        unsafe {
            libc::sleep(30);
            libc::_exit(0);
        }
    }
    assert!(poll_readable(fd, Duration::from_secs(5)), "the hang-up never showed");
    while !matches!(listener.accept(), Err(Error::Io(ref e)) if e.kind() == ErrorKind::WouldBlock) {}
    let spins = poll_readable(fd, Duration::from_millis(300));
    // SAFETY: our own child, killed and reaped once.
    unsafe {
        libc::kill(child, libc::SIGKILL);
        libc::waitpid(child, std::ptr::null_mut(), 0);
    }
    assert!(!spins, "the listener's descriptor stays readable with nothing to accept");
}
