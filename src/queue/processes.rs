//! The [`Processes`] backend: the queue's front over a [`Server`] in the creating process.
//! Its own handles take items from the server's memory directly; other processes' handles
//! reach it through a [`Remote`] connection, and a handle serializes as what they need for
//! that (address, key, settings).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Instant;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::generic::sealed::{self, Settings};
use super::generic::{DEFAULT_PREFETCH, JoinableQueue, Processes, Queue, QueueBuilder};
use super::remote::Remote;
use super::server::{Server, State};
use super::wire;
use crate::connection::DEFAULT_MAX_MESSAGE_SIZE;
use crate::listener::beside::{connect_nearest, move_nearer};
use crate::util::{lock, wait_deadline};
use crate::{Address, AuthKey, Error, Family, Result, ToAddress};

/// Where and with which key other processes reach a queue, whether encrypted, and whether
/// through shared memory from this host.
#[derive(Clone, Debug)]
pub struct Options {
    address: Option<Address>,
    authkey: Option<AuthKey>,
    encrypt: bool,
    shared_memory: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { address: None, authkey: None, encrypt: false, shared_memory: true }
    }
}

impl QueueBuilder<Processes> {
    /// Where other processes reach the queue (default: a fresh address of the platform's
    /// default family, [`Address::fresh`]). Give a TCP address to reach it from other hosts.
    pub fn address(mut self, address: Address) -> Self {
        self.settings.options.address = Some(address);
        self
    }

    /// The key other processes must prove they hold (default: 32 random bytes, which travel
    /// with handles sent to child processes).
    pub fn authkey(mut self, key: impl Into<AuthKey>) -> Self {
        self.settings.options.authkey = Some(key.into());
        self
    }

    /// Encrypts the connections of other processes' handles, keyed by the
    /// [`authkey`](Self::authkey) (see [`ListenerBuilder::encrypt`](crate::ListenerBuilder::encrypt)).
    /// Handles sent to other processes carry it and connect encrypted; an unrelated process
    /// opens the queue with [`Queue::connect_encrypted`], and a plain [`Queue::connect`] is
    /// refused at once. The creator's own handles use the queue in memory as before. Not with
    /// a shared-memory address. Default: off.
    ///
    /// ```
    /// use procwire::queue::{Queue, QueueBuilder};
    ///
    /// let q: Queue<String> = QueueBuilder::new().address("tcp:127.0.0.1:0".parse()?).encrypt(true).build()?;
    /// let there: Queue<String> = Queue::connect_encrypted(q.address(), q.authkey().clone())?;
    /// there.put(&"sealed on the way".to_string())?;
    /// assert_eq!(q.get()?, "sealed on the way");
    /// assert!(Queue::<String>::connect(q.address(), q.authkey().clone()).is_err());
    /// # Ok::<(), procwire::Error>(())
    /// ```
    #[cfg(feature = "encrypt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "encrypt")))]
    pub fn encrypt(self, on: bool) -> Self {
        self.encrypt_if(on)
    }

    /// Whether handles in other processes of this host reach the queue through memory they
    /// share with it (default: on, where shared-memory connections work: Linux, Apple's
    /// systems and Windows). The queue then also listens at a fresh `shm:` address beside its
    /// [`address`](Self::address), and the handles it sends to other processes carry both:
    /// one on this host connects through shared memory, any other (on another host) through
    /// the address, as does every handle of an encrypting queue. [`Queue::connect`] with the
    /// address asks the queue for the other one and, on its host, moves there. Off: only the
    /// address.
    ///
    /// ```
    /// use procwire::queue::{Queue, QueueBuilder};
    ///
    /// let q: Queue<u32> = QueueBuilder::new().shared_memory(false).build()?;
    /// assert_eq!(q.shared_memory_address(), None);
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn shared_memory(mut self, on: bool) -> Self {
        self.settings.options.shared_memory = on;
        self
    }

    /// [`encrypt`](Self::encrypt) in every build, for a manager's queues (without the
    /// feature, `true` makes `build` fail).
    pub(crate) fn encrypt_if(mut self, on: bool) -> Self {
        self.settings.options.encrypt = on;
        self
    }
}

impl<T> Queue<T, Processes> {
    /// The address other processes reach the queue at.
    pub fn address(&self) -> &Address {
        self.h.address()
    }

    /// The key other processes need ([`Queue::connect`]).
    pub fn authkey(&self) -> &AuthKey {
        self.h.key()
    }

    /// Whether other processes' connections to the queue are encrypted
    /// ([`QueueBuilder::encrypt`], feature `encrypt`).
    pub fn is_encrypted(&self) -> bool {
        self.h.encrypted()
    }

    /// The queue's shared-memory address, where handles on its host connect
    /// ([`QueueBuilder::shared_memory`]); `None` when it has none, or for a handle that did
    /// not learn it: one of [`Queue::connect`], or one that came from another process without
    /// it (made away from the queue's host), until it first connects on the queue's host, or
    /// when the queue does not tell it.
    pub fn shared_memory_address(&self) -> Option<&Address> {
        self.h.shm()
    }

    /// Whether this handle reaches the queue through memory shared with the serving process:
    /// it is another process's handle, connected (or connecting now) through the queue's
    /// shared-memory address. The creator's own handles use the queue's memory directly:
    /// `false`.
    pub fn is_shared_memory(&self) -> Result<bool> {
        match &self.h {
            Handle::Local(_) => Ok(false),
            Handle::Remote(r) => Ok(r.get()?.link.is_shared_memory()),
        }
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T, Processes> {
    /// Opens the queue served at `address` (by any process, on any host it can reach) with its
    /// key. Fails if it is a [`JoinableQueue`] (use [`JoinableQueue::connect`]). On the
    /// queue's host, the handle moves to the queue's shared-memory address, which the queue
    /// tells it ([`QueueBuilder::shared_memory`]).
    pub fn connect(address: impl ToAddress, key: impl Into<AuthKey>) -> Result<Self> {
        Ok(Queue::from_handle(connect_handle(&address.to_address()?, key.into(), false, false)?))
    }

    /// As [`connect`](Queue::connect), to a queue that encrypts
    /// ([`QueueBuilder::encrypt`]): this handle's connection is encrypted, keyed by `key`.
    /// At a queue that does not encrypt it fails at once with
    /// [`Error::AuthenticationFailed`] saying so.
    #[cfg(feature = "encrypt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "encrypt")))]
    pub fn connect_encrypted(address: impl ToAddress, key: impl Into<AuthKey>) -> Result<Self> {
        Ok(Queue::from_handle(connect_handle(&address.to_address()?, key.into(), true, false)?))
    }
}

impl<T: Serialize + DeserializeOwned> JoinableQueue<T, Processes> {
    /// Opens the joinable queue served at `address` with its key.
    pub fn connect(address: impl ToAddress, key: impl Into<AuthKey>) -> Result<Self> {
        let h = connect_handle(&address.to_address()?, key.into(), false, true)?;
        Ok(JoinableQueue { q: Queue::from_handle(h) })
    }

    /// As [`connect`](JoinableQueue::connect), to a queue that encrypts
    /// ([`QueueBuilder::encrypt`]).
    #[cfg(feature = "encrypt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "encrypt")))]
    pub fn connect_encrypted(address: impl ToAddress, key: impl Into<AuthKey>) -> Result<Self> {
        let h = connect_handle(&address.to_address()?, key.into(), true, true)?;
        Ok(JoinableQueue { q: Queue::from_handle(h) })
    }
}

/// The creator's hold on the server: the last local handle to go stops it.
struct Owner {
    server: Arc<Server>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.server.shutdown();
        let mut reg = lock(&REGISTRY);
        reg.retain(|(_, w)| w.strong_count() > 0);
    }
}

/// Queues served by this process, so a handle that comes back here uses them directly.
static REGISTRY: Mutex<Vec<(String, Weak<Owner>)>> = Mutex::new(Vec::new());

fn register(owner: &Arc<Owner>) {
    let mut reg = lock(&REGISTRY);
    reg.retain(|(_, w)| w.strong_count() > 0);
    reg.push((owner.server.address.to_string(), Arc::downgrade(owner)));
}

fn registered(address: &str) -> Option<Arc<Owner>> {
    lock(&REGISTRY).iter().find(|(a, _)| a == address).and_then(|(_, w)| w.upgrade())
}

#[derive(Clone)]
pub struct Local {
    owner: Arc<Owner>,
    closed: Arc<AtomicBool>,
    prefetch: Arc<AtomicU64>,
}

impl Local {
    fn new(owner: Arc<Owner>, prefetch: u64) -> Local {
        Local {
            owner,
            closed: Arc::new(AtomicBool::new(false)),
            prefetch: Arc::new(AtomicU64::new(prefetch)),
        }
    }

    /// Waits for the server's state to change, at most until `deadline` (then `false`),
    /// counted in the waiters `count` picks so the server knows whom to wake.
    fn wait<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        deadline: Option<Instant>,
        count: fn(&mut State) -> &mut usize,
    ) -> (MutexGuard<'a, State>, bool) {
        let s = &self.owner.server;
        *count(&mut st) += 1;
        let (mut st, waited) = wait_deadline(&s.local_cv, st, deadline);
        *count(&mut st) -= 1;
        (st, waited)
    }

    fn put(&self, item: Vec<u8>, deadline: Option<Instant>) -> Result<bool> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(Error::Closed);
        }
        let s = &self.owner.server;
        let mut st = lock(&s.st);
        while !s.has_room(&mut st) {
            let (g, waited) = self.wait(st, deadline, |st| &mut st.local_putters);
            st = g;
            if !waited {
                return Ok(false);
            }
        }
        s.push_local(&mut st, Bytes::from(item));
        s.grant(&mut st);
        Ok(true)
    }

    fn get(&self, deadline: Option<Instant>) -> Result<Option<Bytes>> {
        let s = &self.owner.server;
        let mut st = lock(&s.st);
        loop {
            if let Some(item) = s.pop_local(&mut st) {
                return Ok(Some(item));
            }
            if st.drained() {
                return Err(Error::Finished);
            }
            let (g, waited) = self.wait(st, deadline, |st| &mut st.local_getters);
            st = g;
            if !waited {
                return Ok(None);
            }
            if st.local_getters == 0 {
                // Items kept back for local getters may go to other processes now.
                s.distribute(&mut st);
            }
        }
    }

    fn join(&self, deadline: Option<Instant>) -> bool {
        let s = &self.owner.server;
        let mut st = lock(&s.st);
        while Server::unfinished(&st) > 0 {
            let (g, waited) = self.wait(st, deadline, |st| &mut st.local_joiners);
            st = g;
            if !waited {
                return false;
            }
        }
        true
    }
}

/// A handle of a queue served elsewhere; connects on first use.
pub struct Lazy {
    address: Address,
    /// The queue's shared-memory address, taken on its host (see [`connect_nearest`]): as the
    /// handle came, or as the queue told it when this handle, having come without it, first
    /// connected.
    shm: OnceLock<Address>,
    key: AuthKey,
    encrypted: bool,
    maxsize: Option<u64>,
    joinable: bool,
    max_item_size: u64,
    prefetch: AtomicU64,
    remote: Mutex<Option<Arc<Remote>>>,
}

impl Lazy {
    fn get(&self) -> Result<Arc<Remote>> {
        let mut r = lock(&self.remote);
        if let Some(r) = &*r {
            return Ok(r.clone());
        }
        let connect = |to: &Address, ask: bool| {
            Remote::connect(
                to,
                self.key.clone(),
                self.encrypted,
                self.prefetch.load(Ordering::Relaxed),
                self.max_item_size,
                ask,
            )
        };
        let remote = match self.shm.get() {
            Some(shm) => connect_nearest(&self.address, Some(shm), |to| connect(to, false))?,
            // A handle made where the address was not known (a `connect` handle away from the
            // queue's host, or an older version's) asks for it, as `connect` does.
            None => {
                let first = connect(&self.address, true)?;
                let told = first.link.info.shm.clone();
                let (remote, shm) = move_nearer(first, told, |to| connect(to, false));
                if let Some(shm) = shm {
                    let _ = self.shm.set(shm);
                }
                remote
            }
        };
        let info = &remote.link.info;
        if info.maxsize != self.maxsize || info.joinable != self.joinable {
            return Err(Error::Protocol(format!(
                "the queue at {} is not the one this handle was made for",
                self.address
            )));
        }
        let remote = Arc::new(remote);
        *r = Some(remote.clone());
        Ok(remote)
    }
}

/// A handle of the [`Processes`] backend: served here, or elsewhere.
#[derive(Clone)]
pub enum Handle {
    Local(Local),
    Remote(Arc<Lazy>),
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("address", self.address())
            .field("maxsize", &self.maxsize())
            .field("served_here", &matches!(self, Handle::Local(_)))
            .finish()
    }
}

impl Handle {
    fn address(&self) -> &Address {
        match self {
            Handle::Local(l) => &l.owner.server.address,
            Handle::Remote(r) => &r.address,
        }
    }

    fn maxsize(&self) -> Option<u64> {
        match self {
            Handle::Local(l) => l.owner.server.maxsize,
            Handle::Remote(r) => r.maxsize,
        }
    }

    fn joinable(&self) -> bool {
        match self {
            Handle::Local(l) => l.owner.server.joinable,
            Handle::Remote(r) => r.joinable,
        }
    }

    fn prefetch(&self) -> u64 {
        match self {
            Handle::Local(l) => l.prefetch.load(Ordering::Relaxed),
            Handle::Remote(r) => r.prefetch.load(Ordering::Relaxed),
        }
    }

    fn shm(&self) -> Option<&Address> {
        match self {
            Handle::Local(l) => l.owner.server.shm.as_ref(),
            Handle::Remote(r) => r.shm.get(),
        }
    }

    fn key(&self) -> &AuthKey {
        match self {
            Handle::Local(l) => &l.owner.server.key,
            Handle::Remote(r) => &r.key,
        }
    }

    fn encrypted(&self) -> bool {
        match self {
            Handle::Local(l) => l.owner.server.encrypted,
            Handle::Remote(r) => r.encrypted,
        }
    }

    fn max_item_size(&self) -> u64 {
        match self {
            Handle::Local(l) => l.owner.server.max_item_size,
            Handle::Remote(r) => r.max_item_size,
        }
    }
}

impl sealed::Backend for Processes {
    type Options = Options;
    type Handle<T> = Handle;

    fn maxsize<T>(h: &Handle) -> Option<usize> {
        h.maxsize().map(|m| m as usize)
    }

    fn qsize<T>(h: &Handle) -> Result<usize> {
        let n = match h {
            Handle::Local(l) => lock(&l.owner.server.st).qsize(),
            Handle::Remote(r) => r.get()?.link.qsize()?,
        };
        Ok(n as usize)
    }

    fn set_prefetch<T>(h: &Handle, n: u64) {
        match h {
            Handle::Local(l) => l.prefetch.store(n, Ordering::Relaxed),
            Handle::Remote(r) => {
                r.prefetch.store(n, Ordering::Relaxed);
                if let Some(remote) = &*lock(&r.remote) {
                    remote.link.set_prefetch(n);
                }
            }
        }
    }

    fn close<T>(h: &Handle) -> Result<()> {
        match h {
            Handle::Local(l) => {
                l.closed.store(true, Ordering::Relaxed);
                Ok(())
            }
            Handle::Remote(r) => r.get()?.close(),
        }
    }

    fn finish<T>(h: &Handle) -> Result<()> {
        match h {
            Handle::Local(l) => {
                let s = &l.owner.server;
                s.finish_local(&mut lock(&s.st));
                Ok(())
            }
            Handle::Remote(r) => r.get()?.link.finish_queue(),
        }
    }

    fn task_done<T>(h: &Handle) -> Result<()> {
        match h {
            Handle::Local(l) => {
                let s = &l.owner.server;
                s.task_done_locked(&mut lock(&s.st), 1)
            }
            Handle::Remote(r) => r.get()?.link.task_done(),
        }
    }

    fn join<T>(h: &Handle, deadline: Option<Instant>) -> Result<bool> {
        match h {
            Handle::Local(l) => Ok(l.join(deadline)),
            Handle::Remote(r) => r.get()?.link.join(deadline),
        }
    }
}

impl<T: Serialize + DeserializeOwned> sealed::Carries<T> for Processes {
    fn build(settings: Settings<Options>, joinable: bool) -> Result<Handle> {
        let address = match settings.options.address {
            Some(a) => a,
            None => Address::fresh(Family::default())?,
        };
        let key = match settings.options.authkey {
            Some(k) => k,
            None => AuthKey::random()?,
        };
        let maxsize = settings.maxsize.map(|m| m as u64);
        let (encrypt, shared_memory) = (settings.options.encrypt, settings.options.shared_memory);
        let server =
            Server::start(&address, key, encrypt, shared_memory, maxsize, joinable, settings.max_item_size)?;
        let owner = Arc::new(Owner { server });
        register(&owner);
        Ok(Handle::Local(Local::new(owner, settings.prefetch)))
    }

    fn put(h: &Handle, item: &T, deadline: Option<Instant>) -> Result<bool> {
        let bytes = wire::encode_item(item)?;
        let max = h.max_item_size();
        if bytes.len() as u64 > max {
            return Err(Error::MessageTooLarge { len: bytes.len() as u64, max });
        }
        match h {
            Handle::Local(l) => l.put(bytes, deadline),
            Handle::Remote(r) => r.get()?.put(&bytes, deadline),
        }
    }

    fn get(h: &Handle, deadline: Option<Instant>) -> Result<Option<T>> {
        let item = match h {
            Handle::Local(l) => l.get(deadline)?,
            Handle::Remote(r) => r.get()?.link.get(deadline)?.map(Bytes::from),
        };
        item.map(|b| crate::connection::decode(&b)).transpose()
    }
}

/// A handle connected to the queue at `address`: on the queue's host, at the shared-memory
/// address it tells when asked (and the handle keeps it, for its copies sent elsewhere).
fn connect_handle(address: &Address, key: AuthKey, encrypted: bool, joinable: bool) -> Result<Handle> {
    let max = DEFAULT_MAX_MESSAGE_SIZE - 1;
    let first = Remote::connect(address, key.clone(), encrypted, DEFAULT_PREFETCH, max, true)?;
    let told = first.link.info.shm.clone();
    let (remote, shm) = move_nearer(first, told, |to| {
        Remote::connect(to, key.clone(), encrypted, DEFAULT_PREFETCH, max, false)
    });
    let info = &remote.link.info;
    if info.joinable != joinable {
        return Err(Error::Protocol(if joinable {
            format!("the queue at {address} is not a JoinableQueue")
        } else {
            format!("the queue at {address} is a JoinableQueue: open it with JoinableQueue::connect")
        }));
    }
    Ok(Handle::Remote(Arc::new(Lazy {
        address: address.clone(),
        shm: shm.map_or_else(OnceLock::new, OnceLock::from),
        key,
        encrypted,
        maxsize: info.maxsize,
        joinable,
        max_item_size: max,
        prefetch: AtomicU64::new(DEFAULT_PREFETCH),
        remote: Mutex::new(Some(Arc::new(remote))),
    })))
}

/// What a handle serializes as.
#[derive(Serialize, Deserialize)]
struct HandleRef {
    address: String,
    authkey: Vec<u8>,
    maxsize: Option<u64>,
    joinable: bool,
    prefetch: u64,
    max_item_size: u64,
    /// Whether the queue encrypts (absent, as older versions write it: no).
    #[serde(default)]
    encrypted: bool,
    /// The queue's shared-memory address, for handles on its host (absent, as older versions
    /// and queues without one write it: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    shm: Option<String>,
}

impl HandleRef {
    fn of(h: &Handle) -> HandleRef {
        HandleRef {
            address: h.address().to_string(),
            authkey: h.key().as_bytes().to_vec(),
            maxsize: h.maxsize(),
            joinable: h.joinable(),
            prefetch: h.prefetch(),
            max_item_size: h.max_item_size(),
            encrypted: h.encrypted(),
            shm: h.shm().map(Address::to_string),
        }
    }

    /// Reads a handle of a queue that is `joinable` or not, as the caller expects.
    fn read<'de, D: Deserializer<'de>>(d: D, joinable: bool) -> std::result::Result<Handle, D::Error> {
        let r = HandleRef::deserialize(d)?;
        match (r.joinable, joinable) {
            (true, false) => {
                Err(serde::de::Error::custom("a JoinableQueue handle where a Queue was expected"))
            }
            (false, true) => {
                Err(serde::de::Error::custom("a Queue handle where a JoinableQueue was expected"))
            }
            _ => r.into_handle().map_err(serde::de::Error::custom),
        }
    }

    fn into_handle(self) -> std::result::Result<Handle, String> {
        if let Some(owner) = registered(&self.address) {
            return Ok(Handle::Local(Local::new(owner, self.prefetch)));
        }
        let address: Address = self.address.parse().map_err(|e: Error| e.to_string())?;
        let shm = self.shm.map(|s| s.parse::<Address>()).transpose().map_err(|e| e.to_string())?;
        Ok(Handle::Remote(Arc::new(Lazy {
            address,
            shm: shm.map_or_else(OnceLock::new, OnceLock::from),
            key: AuthKey::new(self.authkey),
            encrypted: self.encrypted,
            maxsize: self.maxsize,
            joinable: self.joinable,
            max_item_size: self.max_item_size,
            prefetch: AtomicU64::new(self.prefetch),
            remote: Mutex::new(None),
        })))
    }
}

impl<T> Serialize for Queue<T, Processes> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        HandleRef::of(&self.h).serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for Queue<T, Processes> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(Queue::from_handle(HandleRef::read(d, false)?))
    }
}

impl<T> Serialize for JoinableQueue<T, Processes> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.q.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for JoinableQueue<T, Processes> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(JoinableQueue { q: Queue::from_handle(HandleRef::read(d, true)?) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cbor<T: Serialize>(v: &T) -> Vec<u8> {
        let mut b = Vec::new();
        ciborium::into_writer(v, &mut b).unwrap();
        b
    }

    /// A plain handle as versions before encrypted queues wrote it: without the field.
    fn older() -> Vec<u8> {
        let r = HandleRef {
            address: "tcp:127.0.0.1:9".into(),
            authkey: b"key".to_vec(),
            maxsize: Some(3),
            joinable: false,
            prefetch: 5,
            max_item_size: 100,
            encrypted: false,
            shm: None,
        };
        let mut v = ciborium::Value::serialized(&r).unwrap();
        if let ciborium::Value::Map(m) = &mut v {
            m.retain(|(k, _)| k.as_text() != Some("encrypted"));
        }
        cbor(&v)
    }

    #[test]
    fn a_handle_without_the_flag_reads_as_plain_and_the_flag_travels() {
        let r: HandleRef = ciborium::from_reader(&older()[..]).unwrap();
        assert!(!r.encrypted);
        let h = r.into_handle().unwrap();
        assert!(!h.encrypted());
        let mut r = HandleRef::of(&h);
        r.encrypted = true;
        let back: HandleRef = ciborium::from_reader(&cbor(&r)[..]).unwrap();
        assert!(back.into_handle().unwrap().encrypted());
    }

    #[cfg(not(feature = "encrypt"))]
    #[test]
    fn an_encrypted_handle_without_the_feature_says_what_is_missing() {
        let mut r: HandleRef = ciborium::from_reader(&older()[..]).unwrap();
        r.encrypted = true;
        let q: Queue<u8, Processes> = Queue::from_handle(r.into_handle().unwrap());
        match q.put(&1) {
            Err(Error::InvalidInput(m)) => assert!(m.contains("feature `encrypt`"), "{m}"),
            other => panic!("expected a refusal naming the feature, got {other:?}"),
        }
    }
}
