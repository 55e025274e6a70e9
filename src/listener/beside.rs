//! A shared-memory listener beside a server's own, for the servers of the crate's consumers
//! (manager, queue): clients on the server's host reach it through memory, every other
//! client (TCP from another host, CPython) through the server's own address, unchanged. The
//! handles a server gives out carry both addresses, and a client picks before it connects.

use super::ListenerBuilder;
use crate::{Address, Family, Listener, Result};

/// A listener at a fresh `shm:` address with `builder`'s options (key, limits), for a server
/// that asked for one (`on`) and does not encrypt; `None` where shared memory does not work
/// or the listener cannot be made.
pub(crate) fn bind_beside(builder: &ListenerBuilder, on: bool, encrypt: bool) -> Option<Listener> {
    if !on || encrypt || !crate::transport::SHARED_MEMORY {
        return None;
    }
    // Only a faster way in: where it cannot be made (no writable temporary directory, Unix
    // sockets forbidden), the server goes on at its own address alone.
    Address::fresh(Family::Shm).and_then(|a| builder.clone().bind(a)).ok()
}

/// Whether `shm`, a server's shared-memory address, names a socket on this host and shared
/// memory works here.
pub(crate) fn is_near(shm: &Address) -> bool {
    match shm {
        // A handle that travelled to another host names a path that is not there (fresh
        // addresses are random directories): that client takes the main address.
        Address::Shm(path) => crate::transport::SHARED_MEMORY && crate::transport::is_socket(path),
        _ => false,
    }
}

/// The address to reach a server at: its shared-memory one (`shm`, as a handle carries it)
/// when that [is near](is_near), else `main`.
fn nearest<'a>(main: &'a Address, shm: Option<&'a Address>) -> &'a Address {
    shm.filter(|a| is_near(a)).unwrap_or(main)
}

/// Connects to a server with `connect`: at its shared-memory address (see [`nearest`]) when
/// that is the nearer, else or when that fails, at `main`.
pub(crate) fn connect_nearest<T>(
    main: &Address,
    shm: Option<&Address>,
    mut connect: impl FnMut(&Address) -> Result<T>,
) -> Result<T> {
    let to = nearest(main, shm);
    if to == main {
        return connect(main);
    }
    // The socket file may outlive its server's shared-memory listener (a stale file after a
    // crash) or be another's by now: the main address still serves every client. Not after
    // the listener refused our key, though: the server's two listeners share theirs, and a
    // second attempt would only be refused again (and logged twice by the server). A
    // handshake that broke off (a listener shedding load) does try the main address.
    connect(to).or_else(|e| {
        if crate::auth::refused_by_listener(&e) {
            return Err(e);
        }
        crate::trace::event!(DEBUG, address = %to, error = %e, "shared-memory address failed, trying the main one");
        let _ = e;
        connect(main)
    })
}

/// What a server with the shared-memory address `shm` tells a client that asked (`ask`) on
/// `conn`: the address, unless the client came through it already.
pub(crate) fn to_tell(shm: Option<&Address>, ask: bool, conn: &crate::Connection) -> Option<String> {
    shm.filter(|_| ask && !conn.is_shared_memory()).map(Address::to_string)
}

/// After `first`, a connection at a server's main address on which the server told its
/// shared-memory address (`told`, as text): a connection there instead, made by `connect`,
/// and that address, when it [is near](is_near) and the connection works; else `first`
/// (dropped only once the other is made, so the server never sees the client without one).
pub(crate) fn move_nearer<T>(
    first: T,
    told: Option<String>,
    connect: impl FnOnce(&Address) -> Result<T>,
) -> (T, Option<Address>) {
    let Some(near) = told.and_then(|t| t.parse::<Address>().ok()).filter(is_near) else {
        return (first, None);
    };
    match connect(&near) {
        Ok(c) => (c, Some(near)),
        Err(e) => {
            crate::trace::event!(DEBUG, address = %near, error = %e, "shared-memory address failed, staying on the main one");
            let _ = e;
            (first, None)
        }
    }
}

// Unix sockets underneath, and shared memory where it works (see `transport::SHARED_MEMORY`).
#[cfg(all(test, any(target_os = "linux", target_os = "android", target_vendor = "apple")))]
mod tests {
    use super::*;
    use crate::Client;
    use std::cell::RefCell;
    use std::time::Duration;

    /// A server's main listener with `key` at a fresh Unix path, answering one client in a
    /// thread.
    fn main_listener(builder: &ListenerBuilder) -> Address {
        let main = builder.clone().bind(Address::fresh(Family::Unix).unwrap()).unwrap();
        let addr = main.address().clone();
        std::thread::spawn(move || drop(main.accept_timeout(Duration::from_secs(5))));
        addr
    }

    #[test]
    fn a_refused_key_is_not_tried_again_at_the_main_address() {
        let builder = Listener::builder().authkey("right");
        let main = main_listener(&builder);
        let shm = bind_beside(&builder, true, false).expect("a shared-memory listener");
        let near = shm.address().clone();
        std::thread::spawn(move || drop(shm.accept_timeout(Duration::from_secs(5))));
        let tried = RefCell::new(Vec::new());
        let r = connect_nearest(&main, Some(&near), |to| {
            tried.borrow_mut().push(to.clone());
            Client::builder().authkey("wrong").connect(to)
        });
        assert!(matches!(r, Err(crate::Error::AuthenticationFailed(_))), "{r:?}");
        assert_eq!(tried.into_inner(), vec![near]);
    }

    /// Connects with the right key to `main`, or first to `near` (a plain Unix socket at an
    /// `shm:` path that `serve` answers, or nobody when `serve` is `None`), and says where it
    /// tried.
    fn fall_back(serve: Option<fn(std::os::unix::net::UnixStream)>) -> Vec<Address> {
        let main = main_listener(&Listener::builder().authkey("right"));
        let Address::Shm(path) = Address::fresh(Family::Shm).unwrap() else { unreachable!() };
        let socket = std::os::unix::net::UnixListener::bind(&path).unwrap();
        match serve {
            Some(serve) => drop(std::thread::spawn(move || serve(socket.accept().unwrap().0))),
            None => drop(socket),
        }
        let near = Address::Shm(path.clone());
        assert!(is_near(&near));
        let tried = RefCell::new(Vec::new());
        let c = connect_nearest(&main, Some(&near), |to| {
            tried.borrow_mut().push(to.clone());
            Client::builder().authkey("right").connect(to)
        })
        .expect("the main address serves");
        assert!(!c.is_shared_memory());
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
        tried.into_inner()
    }

    #[test]
    fn a_stale_shared_memory_socket_falls_back_to_the_main_address() {
        // A socket file nobody listens on, as a crashed server leaves it.
        let tried = fall_back(None);
        assert_eq!(tried.len(), 2);
        assert!(matches!((&tried[0], &tried[1]), (Address::Shm(_), Address::Unix(_))), "{tried:?}");
    }

    #[test]
    fn a_handshake_that_breaks_off_falls_back_to_the_main_address() {
        // A listener that hangs up at once, as one shedding load does: no refusal of the key.
        let tried = fall_back(Some(drop));
        assert_eq!(tried.len(), 2);
        assert!(matches!((&tried[0], &tried[1]), (Address::Shm(_), Address::Unix(_))), "{tried:?}");
    }
}
