//! [`ListenerBuilder`]: the options of a listener, and binding.

#[cfg(doc)]
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Condvar, Mutex};

use super::{EndpointOptions, Listener, State};
#[cfg(doc)]
use crate::Error;
use crate::transport::RawListener;
use crate::{Address, Result, ToAddress};

/// Options for [`Listener::bind`]; get one from [`Listener::builder`].
///
/// ```
/// use std::time::Duration;
/// use procwire::{Address, Family, Listener};
/// let listener = Listener::builder()
///     .authkey(b"secret".as_slice())
///     .backlog(64)
///     .handshake_timeout(Duration::from_secs(2))
///     .max_message_size(1 << 20)
///     .bind(&Address::fresh(Family::default())?)?;
/// # Ok::<(), procwire::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct ListenerBuilder {
    pub(super) endpoint: EndpointOptions,
    pub(super) backlog: i32,
    pub(super) max_pending: usize,
    pub(super) mode: u32,
}

impl Default for ListenerBuilder {
    fn default() -> Self {
        ListenerBuilder { endpoint: EndpointOptions::default(), backlog: 128, max_pending: 1024, mode: 0o600 }
    }
}

impl ListenerBuilder {
    super::listener_setters!(keyless_example: "
```
use procwire::{Address, Family, Listener};
let addr = Address::fresh(Family::Tcp)?;
assert!(Listener::builder().bind(&addr).is_err());
let _open = Listener::builder().allow_unauthenticated_tcp(true).bind(&addr)?;
# Ok::<(), procwire::Error>(())
```");

    /// Encrypts every connection, keyed by the [`authkey`](Self::authkey) (required): a Noise
    /// handshake instead of CPython's, then every byte sealed (see [`crate::secure`]). Clients
    /// must set [`ClientBuilder::encrypt`](super::ClientBuilder::encrypt) too; a plain or
    /// CPython client is refused at once (it receives a hello it rejects).
    ///
    /// ```
    /// use procwire::{Client, Listener};
    /// let listener = Listener::builder().authkey("key").encrypt(true).bind("tcp:127.0.0.1:0")?;
    /// let addr = listener.address().clone();
    /// let t = std::thread::spawn(move || Client::builder().authkey("key").encrypt(true).connect(&addr));
    /// let mut server_side = listener.accept()?;
    /// let mut client_side = t.join().unwrap()?;
    /// assert!(client_side.is_encrypted());
    /// client_side.send_bytes(b"private")?;
    /// assert_eq!(server_side.recv_bytes()?, b"private");
    /// # Ok::<(), procwire::Error>(())
    /// ```
    #[cfg(feature = "encrypt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "encrypt")))]
    pub fn encrypt(self, on: bool) -> Self {
        self.encrypt_if(on)
    }

    /// [`encrypt`](Self::encrypt) for the crate's managers and queues, which carry the flag
    /// in every build: without the feature, `true` makes connecting or binding fail.
    pub(crate) fn encrypt_if(mut self, on: bool) -> Self {
        self.endpoint.encrypt = on;
        self
    }

    /// How many handshakes may be under way at once (default 1024), so that a flood of
    /// silent connections costs at most this many descriptors (and, within one round of the
    /// listener, up to 64 newly accepted ones more).
    ///
    /// A new connection that finds the table full is still accepted: the pending handshake
    /// that has gone longest without progress (since it was accepted or last sent bytes) is
    /// dropped for it, and reported by [`accept`](Listener::accept) as an [`Error::Timeout`].
    /// An honest client moves its handshake forward at every round trip, so it is dropped only
    /// if more than `n` connections arrive or move within one of its round trips; peers that
    /// connect and stay silent cannot make it wait for their handshake timeout.
    pub fn max_pending_handshakes(mut self, n: usize) -> Self {
        self.max_pending = n.max(1);
        self
    }

    /// The size of each ring (one per direction) of the shared memory an `shm:` listener makes
    /// for each connection: a power of two from 4 KiB to 1 GiB, checked by `bind` (default
    /// [`DEFAULT_SHM_RING`](crate::connection::DEFAULT_SHM_RING)). A client that asks for a
    /// larger ring ([`ClientBuilder::shm_ring_size`](super::ClientBuilder::shm_ring_size)) gets
    /// it, up to 64 MiB. Memory is reserved as the ring is first used. No effect on other
    /// addresses.
    pub fn shm_ring_size(mut self, bytes: usize) -> Self {
        self.endpoint.shm_ring = Some(bytes);
        self
    }

    /// Binds and listens on `addr`.
    ///
    /// A Unix socket file left behind by a dead process is removed and bound again; one that a
    /// live listener answers on is an [`io::ErrorKind::AddrInUse`] error, and a path that is
    /// not a socket is never removed. The file is removed when the listener is dropped.
    ///
    /// A TCP address without an authkey is an [`Error::InvalidInput`] unless
    /// [`allow_unauthenticated_tcp`](Self::allow_unauthenticated_tcp) was set.
    pub fn bind(self, addr: impl ToAddress) -> Result<Listener> {
        let addr = &addr.to_address()?;
        self.check_keyless(addr)?;
        let raw = RawListener::bind(
            addr,
            &crate::transport::BindOptions { backlog: self.backlog, mode: self.mode },
        )?;
        // A shared-memory listener's socket is a Unix one: its own address form says more.
        let address = match addr {
            Address::Shm(_) => addr.clone(),
            _ => raw.local_addr().unwrap_or_else(|_| addr.clone()),
        };
        #[cfg(unix)]
        let poll_set = match raw.os_fd() {
            Some(fd) => {
                let set = crate::transport::PollSet::new()?;
                set.add(fd)?;
                Some(set)
            }
            None => None,
        };
        Ok(Listener {
            raw,
            address,
            opts: self,
            state: Mutex::new(State::default()),
            turn: Condvar::new(),
            last_peer: Mutex::new(None),
            ticks: AtomicU64::new(0),
            nonblocking: AtomicBool::new(false),
            #[cfg(unix)]
            poll_set,
        })
    }
}

impl ListenerBuilder {
    /// Refuses a TCP address without a key unless that was allowed, and a ring size no ring
    /// can have.
    pub(crate) fn check_keyless(&self, addr: &Address) -> Result<()> {
        self.endpoint.check_keyless(addr, "listen on", "ListenerBuilder")?;
        self.endpoint.check_shm_ring("ListenerBuilder")
    }
}
