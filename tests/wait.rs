//! `wait` over many connections and listeners.

#![cfg(unix)]

use std::time::{Duration, Instant};

use procwire::{Address, Client, Family, Listener, Waitable, wait, wait_timeout};

/// 1,000 socketpairs need 2,000 descriptors: raise the soft limit to the hard one.
fn raise_fd_limit(want: u64) {
    let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid pointer.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut l), 0);
        if l.rlim_cur < want as libc::rlim_t {
            l.rlim_cur = l.rlim_max.min(want as libc::rlim_t);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &l), 0);
        }
    }
}

#[test]
fn wait_over_1000_connections_finds_the_few_that_are_ready() {
    raise_fd_limit(4096);
    let pairs: Vec<_> = (0..1000).map(|_| procwire::pipe(true).unwrap()).collect();
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for (a, b) in pairs {
        senders.push(a);
        receivers.push(b);
    }
    let objects: Vec<Waitable<'_>> = receivers.iter().map(Waitable::from).collect();
    assert!(wait_timeout(&objects, Duration::ZERO).unwrap().is_empty());
    for &i in &[3usize, 500, 999] {
        senders[i].send_bytes(&[i as u8]).unwrap();
    }
    let ready = wait_timeout(&objects, Duration::from_secs(5)).unwrap();
    assert_eq!(ready, [3, 500, 999]);
    drop(objects);
    // A receive takes the message; what stays buffered counts as ready without the socket.
    senders[7].send_bytes(b"one").unwrap();
    senders[7].send_bytes(b"two").unwrap();
    assert_eq!(receivers[7].recv_bytes().unwrap(), b"one");
    let objects: Vec<Waitable<'_>> = receivers.iter().map(Waitable::from).collect();
    let ready = wait(&objects).unwrap();
    assert_eq!(ready, [3, 7, 500, 999]);
}

#[test]
fn wait_times_out_empty_and_sees_a_closed_peer() {
    let (a, b) = procwire::pipe(true).unwrap();
    let start = Instant::now();
    assert!(wait_timeout(&[(&b).into()], Duration::from_millis(100)).unwrap().is_empty());
    assert!(start.elapsed() >= Duration::from_millis(90));
    drop(a);
    assert_eq!(wait_timeout(&[(&b).into()], Duration::from_secs(5)).unwrap(), [0]);
}

#[test]
fn wait_sees_a_listener_with_a_client_waiting() {
    let l = Listener::builder().authkey("k").bind(Address::fresh(Family::Unix).unwrap()).unwrap();
    let (_x, idle) = procwire::pipe(true).unwrap();
    let objects: [Waitable<'_>; 2] = [(&idle).into(), (&l).into()];
    assert!(wait_timeout(&objects, Duration::ZERO).unwrap().is_empty());
    let addr = l.address().clone();
    let t = std::thread::spawn(move || Client::builder().authkey("k").connect(&addr));
    assert_eq!(wait_timeout(&objects, Duration::from_secs(5)).unwrap(), [1]);
    l.accept_timeout(Duration::from_secs(5)).unwrap();
    t.join().unwrap().unwrap();
}

#[test]
fn wait_works_on_split_receivers() {
    let (a, mut b) = procwire::pipe(true).unwrap();
    let (_tx, rx) = a.split();
    assert!(wait_timeout(&[(&rx).into()], Duration::ZERO).unwrap().is_empty());
    b.send_bytes(b"x").unwrap();
    assert_eq!(wait_timeout(&[(&rx).into()], Duration::from_secs(5)).unwrap(), [0]);
}
