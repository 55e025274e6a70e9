//! How this process reaches a manager: one [`Link`] per manager, shared by its handles and
//! proxies, over one of two flavors (as crossbeam-channel's one `Sender` over its flavors):
//! connections to a manager anywhere, or calls on the caller's thread into a manager whose
//! objects live in this process (`procwire::dummy`'s). Both encode requests and decode replies
//! the same way, so values, errors and object lifetimes are the same.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::objects::Near;
use super::server::{Inner, Registry};
use super::wire::{self, Plain, ReplyIn, RequestOut, VERSION};
use crate::listener::beside::{connect_nearest, move_nearer};
use crate::process::Channel;
use crate::util::lock;
use crate::{Address, AuthKey, Client, Connection, Error, Result};

/// How long a new connection waits for the manager's answer to its Hello, and a starting
/// manager for its address.
pub(super) const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long [`Manager::shutdown`](super::Manager::shutdown) waits for a manager child to exit
/// before killing it.
pub(super) const EXIT_GRACE: Duration = Duration::from_secs(5);

/// This process's session id: random, new after a fork.
fn session_id() -> Result<u64> {
    static SESSION: Mutex<Option<(u32, u64)>> = Mutex::new(None);
    let mut s = lock(&SESSION);
    let pid = std::process::id();
    match *s {
        Some((p, id)) if p == pid => Ok(id),
        _ => {
            let mut b = [0u8; 8];
            crate::util::fill_random(&mut b)?;
            let id = u64::from_le_bytes(b);
            *s = Some((pid, id));
            Ok(id)
        }
    }
}

/// A number for the calling thread: locks are owned by a thread of a process.
pub(crate) fn thread_token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static TOKEN: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    TOKEN.with(|t| *t)
}

/// A connection not in use, and its receive buffer.
type Idle = (Connection, Vec<u8>);

/// The way to one manager, and what this process knows of it.
pub(super) struct Link {
    pub(super) address: Address,
    /// The manager's shared-memory address, taken on its host (see [`connect_nearest`]):
    /// given with the address, or learned from the manager's answer to a Hello on this host.
    pub(super) shm: OnceLock<Address>,
    pub(super) key: AuthKey,
    /// Whether its connections are encrypted (it listens with `encrypt(true)`).
    pub(super) encrypted: bool,
    /// Shut down, or unreachable: dropped proxies do not try to tell it.
    pub(super) dead: AtomicBool,
    flavor: Flavor,
}

enum Flavor {
    /// Requests over connections.
    Remote(Box<Pool>),
    /// Requests handled by a server in this process, on the calling thread, as one session.
    Local { server: Arc<Inner>, session: u64 },
}

/// The connections of this process to one manager.
struct Pool {
    /// Idle connections with their receive buffers, and the process they belong to (a forked
    /// child does not use its parent's).
    idle: Mutex<(u32, Vec<Idle>)>,
    /// The child process serving the manager, when this process started it.
    owner: Mutex<Option<Channel>>,
}

impl Link {
    fn remote(
        address: Address,
        shm: Option<Address>,
        key: AuthKey,
        encrypted: bool,
        owner: Option<Channel>,
    ) -> Link {
        let pool = Pool { idle: Mutex::new((std::process::id(), Vec::new())), owner: Mutex::new(owner) };
        let flavor = Flavor::Remote(Box::new(pool));
        let shm = shm.map_or_else(OnceLock::new, OnceLock::from);
        Link { address, shm, key, encrypted, dead: AtomicBool::new(false), flavor }
    }

    /// A link to the manager served by `owner` at `address` (and `shm`), checked by one
    /// connection.
    pub(super) fn started(
        address: Address,
        shm: Option<Address>,
        key: AuthKey,
        encrypted: bool,
        owner: Channel,
    ) -> Result<Arc<Link>> {
        let link = register(Link::remote(address, shm, key, encrypted, Some(owner)));
        link.check()?;
        Ok(link)
    }

    /// A manager of the types of `registry`, served in this process: no connection, no
    /// socket, and an `inproc:` address that only names it (a proxy of it deserialized in this
    /// process finds it by that name).
    pub(super) fn local(registry: Registry) -> Result<Arc<Link>> {
        let address = Address::fresh(crate::Family::InProc)?;
        let server = Arc::new(Inner::new(
            registry,
            Near { address: address.clone(), encrypt: false, shared_memory: false, shm: None },
        ));
        let flavor = Flavor::Local { server, session: session_id()? };
        let key = AuthKey::random()?;
        Ok(register(Link {
            address,
            shm: OnceLock::new(),
            key,
            encrypted: false,
            dead: AtomicBool::new(false),
            flavor,
        }))
    }

    /// Whether this process started the manager's child.
    pub(super) fn owns_child(&self) -> bool {
        matches!(&self.flavor, Flavor::Remote(p) if lock(&p.owner).is_some())
    }

    /// Makes sure the manager answers (a connection that stays in the pool).
    pub(super) fn check(&self) -> Result<()> {
        if let Flavor::Remote(pool) = &self.flavor {
            let c = self.take(pool)?;
            pool.give_back(c);
        }
        Ok(())
    }

    /// Whether this process's connections to the manager go through shared memory (asks one).
    pub(super) fn is_shared_memory(&self) -> Result<bool> {
        match &self.flavor {
            Flavor::Remote(pool) => {
                let c = self.take(pool)?;
                let shared = c.0.is_shared_memory();
                pool.give_back(c);
                Ok(shared)
            }
            Flavor::Local { .. } => Ok(false),
        }
    }

    /// A connection, at the shared-memory address when this link knows one that is near. A
    /// link that knows none asks the manager in its Hello, and moves there (and keeps the
    /// address, for its later connections and the proxies it sends) when the manager tells
    /// one that is near and works.
    fn connect(&self) -> Result<Connection> {
        let known = self.shm.get();
        let (c, told) = connect_nearest(&self.address, known, |to| self.hello(to, known.is_none()))?;
        let (c, near) = move_nearer(c, told, |to| self.hello(to, false).map(|(c, _)| c));
        if let Some(near) = near {
            // Another thread may have learned it first: the same address.
            let _ = self.shm.set(near);
        }
        Ok(c)
    }

    /// A connection at `to` that said Hello, asking for the shared-memory address if `ask`,
    /// and what the manager answered (null from a manager without one, or one before the
    /// question, which ignores it).
    fn hello(&self, to: &Address, ask: bool) -> Result<(Connection, Option<String>)> {
        let mut c = Client::builder().authkey(self.key.clone()).encrypt_if(self.encrypted).connect(to)?;
        c.send(&Plain::Hello { version: VERSION, session: session_id()?, shm: ask })?;
        c.set_read_timeout(Some(START_TIMEOUT));
        let told = answer(c.recv::<ReplyIn<Option<String>>>()?);
        c.set_read_timeout(None);
        told.map(|t| (c, t))
    }

    fn take(&self, pool: &Pool) -> Result<Idle> {
        {
            let mut idle = lock(&pool.idle);
            let pid = std::process::id();
            if idle.0 != pid {
                *idle = (pid, Vec::new());
            }
            if let Some(c) = idle.1.pop() {
                return Ok(c);
            }
        }
        Ok((self.connect()?, Vec::new()))
    }

    /// One request and its reply.
    pub(super) fn request<A: Serialize, R: DeserializeOwned>(&self, req: &RequestOut<'_, A>) -> Result<R> {
        match &self.flavor {
            Flavor::Remote(pool) => self.over_connection(pool, req),
            Flavor::Local { server, session } => local(server, *session, req),
        }
    }

    /// One request and its reply, on an idle connection or a new one.
    fn over_connection<A: Serialize, R: DeserializeOwned>(
        &self,
        pool: &Pool,
        req: &RequestOut<'_, A>,
    ) -> Result<R> {
        let (mut c, mut buf) = self.take(pool)?;
        let r = c
            .send(req)
            .and_then(|()| c.recv_bytes_into(&mut buf))
            .and_then(|_| crate::connection::decode::<ReplyIn<R>>(&buf));
        match r {
            // A reply was read whole (one that does not decode too): the connection is fine.
            Ok(_) | Err(Error::Decode(_)) => pool.give_back((c, buf)),
            Err(_) => {}
        }
        answer(r?)
    }

    pub(super) fn shutdown(&self) -> Result<()> {
        let first = !self.dead.swap(true, Ordering::SeqCst);
        match &self.flavor {
            Flavor::Local { server, .. } => {
                server.shutdown();
                Ok(())
            }
            Flavor::Remote(pool) => {
                let r = if first { self.over_connection::<(), ()>(pool, &Plain::Shutdown) } else { Ok(()) };
                lock(&pool.idle).1.clear();
                if let Some(child) = lock(&pool.owner).take()
                    && child.join_timeout(EXIT_GRACE)?.is_none()
                {
                    child.kill()?;
                    child.join_timeout(EXIT_GRACE)?;
                }
                r
            }
        }
    }
}

impl Pool {
    /// Returns a connection taken by `take` in this process (which cleared the pool of a
    /// parent's connections already if it was forked).
    fn give_back(&self, c: Idle) {
        lock(&self.idle).1.push(c);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if self.owns_child() {
            let _ = self.shutdown();
        }
    }
}

fn answer<R>(r: ReplyIn<R>) -> Result<R> {
    match r {
        ReplyIn::Ok(v) => Ok(v),
        ReplyIn::Err { kind, message } => Err(Error::Remote { kind: kind.into(), message }),
    }
}

/// One request handled by `server` on this thread, encoded and decoded as over a connection.
/// Once the manager is shut down, every request (a wait it cut short too) is
/// [`Error::Closed`].
fn local<A: Serialize, R: DeserializeOwned>(
    server: &Inner,
    session: u64,
    req: &RequestOut<'_, A>,
) -> Result<R> {
    let mut bytes = Vec::new();
    ciborium::into_writer(req, &mut bytes).map_err(|e| crate::error::encode_error(&e))?;
    let req = wire::parse(&bytes).map_err(Error::Encode)?;
    match server.handle(session, req, None) {
        Ok(reply) => answer(crate::connection::decode::<ReplyIn<R>>(&reply)?),
        Err(_) if server.is_shut_down() => Err(Error::Closed),
        Err(f) => Err(Error::Remote { kind: f.kind, message: f.message }),
    }
}

/// Links of this process, so that proxies of one manager share connections.
static LINKS: Mutex<Vec<Weak<Link>>> = Mutex::new(Vec::new());

fn register(link: Link) -> Arc<Link> {
    let link = Arc::new(link);
    let mut links = lock(&LINKS);
    links.retain(|w| w.strong_count() > 0);
    links.push(Arc::downgrade(&link));
    link
}

/// The link of this process to the manager at `address` (and `shm`, when a proxy names it),
/// encrypted or not, new if there is none.
pub(super) fn link_for(address: &Address, shm: Option<Address>, key: &AuthKey, encrypted: bool) -> Arc<Link> {
    let mut links = lock(&LINKS);
    links.retain(|w| w.strong_count() > 0);
    let found = links.iter().filter_map(Weak::upgrade).find(|l| {
        &l.address == address
            && l.key.as_bytes() == key.as_bytes()
            && l.encrypted == encrypted
            && !l.dead.load(Ordering::SeqCst)
    });
    if let Some(l) = found {
        // A proxy that names the shared-memory address teaches it to a link that does not
        // know it yet (one of `Manager::connect` at a manager that does not tell it): the
        // link's next connections go there when it is near.
        if let Some(shm) = shm {
            let _ = l.shm.set(shm);
        }
        return l;
    }
    let l = Arc::new(Link::remote(address.clone(), shm, key.clone(), encrypted, None));
    links.push(Arc::downgrade(&l));
    l
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::Error;
    use crate::manager::{Manager, Registry};

    #[test]
    fn shutdown_wakes_a_blocked_waiter_with_closed() {
        let m = Manager::in_process(Registry::new()).unwrap();
        let ev = m.event().unwrap();
        let waiter = {
            let ev = ev.clone();
            std::thread::spawn(move || ev.wait())
        };
        // Waiting or about to: either way the wait ends with Closed.
        std::thread::sleep(Duration::from_millis(20));
        m.shutdown().unwrap();
        assert!(matches!(waiter.join().unwrap(), Err(Error::Closed)));
        assert!(matches!(m.lock(), Err(Error::Closed)));
        assert!(matches!(ev.set(), Err(Error::Closed)));
    }
}
