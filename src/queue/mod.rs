//! [`Queue`] and [`JoinableQueue`]: multi-producer, multi-consumer FIFO queues shared between
//! processes, like `multiprocessing.Queue` and `JoinableQueue`.
//!
//! The process that creates a queue serves it: the items live in its memory, its own handles
//! use them directly, and a few threads of it serve the handles of other processes over
//! authenticated [`Connection`](crate::Connection)s (the messages are in spec/queue.md). A
//! handle is sent to a child as a [`Process`](crate::process::Process) argument (it serializes
//! as the queue's address and key), and an unrelated process opens one with
//! [`Queue::connect`]. The queue lives as long as its creator holds a handle: after that,
//! other processes' handles get [`Error::Closed`].
//!
//! # Delivery
//!
//! No item is lost or delivered twice while processes come and go:
//! - A put from another process is written by a background thread of that handle (puts in a
//!   burst leave in one write). Dropping the handle, or [`Queue::close`], writes every put
//!   made so far and waits until the server has them, so items a producer put before it
//!   finished are in the queue before anything another process puts once it learns that (the
//!   usual "stop" sentinels); a process that ends with `std::process::exit` or a signal skips
//!   that and loses its unwritten puts.
//! - A consumer in another process asks for items ahead of its gets (its *prefetch*, at most
//!   [`DEFAULT_PREFETCH`] by default, growing from 1 only while it finds its buffer empty), so
//!   a get rarely waits a round trip. Each get acknowledges its item with a write before it
//!   returns; items sent to a consumer and not acknowledged go back to the front of the queue
//!   when its connection ends (the process died, or dropped the handle). A get that times out
//!   withdraws its request, so nothing waits in a consumer that stopped asking. A consumer that
//!   stops calling get while it holds prefetched items keeps them until it gets again or
//!   drops its handle: set [`Queue::set_prefetch`] to 0 when each get should fetch exactly one
//!   item (a round trip each, as fair as it gets between slow consumers).
//!
//! ```
//! use procwire::queue::Queue;
//!
//! let q: Queue<(u32, String)> = Queue::new()?;
//! q.put(&(1, "one".to_string()))?;
//! assert_eq!(q.get()?, (1, "one".to_string()));
//! assert_eq!(q.try_get()?, None);
//! # Ok::<(), procwire::Error>(())
//! ```

mod remote;
mod server;
mod wire;

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use self::remote::Remote;
use self::server::Server;
use crate::connection::DEFAULT_MAX_MESSAGE_SIZE;
use crate::util::deadline_of;
use crate::util::lock;
use crate::{Address, AuthKey, Error, Family, Result};

/// The most items a consumer in another process asks for ahead of its gets, by default.
pub const DEFAULT_PREFETCH: u64 = 64;

/// Options for a new queue: maxsize, address, key, prefetch, largest item.
///
/// ```
/// use procwire::queue::{Queue, QueueBuilder};
///
/// let q: Queue<u64> = QueueBuilder::new().maxsize(100).prefetch(8).build()?;
/// assert_eq!(q.maxsize(), Some(100));
/// # Ok::<(), procwire::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct QueueBuilder {
    maxsize: Option<u64>,
    address: Option<Address>,
    authkey: Option<AuthKey>,
    prefetch: u64,
    max_item_size: u64,
}

impl Default for QueueBuilder {
    fn default() -> Self {
        QueueBuilder {
            maxsize: None,
            address: None,
            authkey: None,
            prefetch: DEFAULT_PREFETCH,
            max_item_size: DEFAULT_MAX_MESSAGE_SIZE - 1,
        }
    }
}

impl QueueBuilder {
    /// The default options: unbounded, a fresh address, a random key.
    pub fn new() -> Self {
        QueueBuilder::default()
    }

    /// Bounds the queue: a put waits while `n` items are in it (`n` of 0 is taken as 1).
    /// Items prefetched by consumers count until they are taken, and slots handed to a
    /// producer in another process count until it fills them or gives them back (it does
    /// after 5 ms without a put).
    pub fn maxsize(mut self, n: usize) -> Self {
        self.maxsize = Some(n.max(1) as u64);
        self
    }

    /// Where other processes reach the queue (default: a fresh address of the platform's
    /// default family, [`Address::fresh`]). Give a TCP address to reach it from other hosts.
    pub fn address(mut self, address: Address) -> Self {
        self.address = Some(address);
        self
    }

    /// The key other processes must prove they hold (default: 32 random bytes, which travel
    /// with handles sent to child processes).
    pub fn authkey(mut self, key: impl Into<AuthKey>) -> Self {
        self.authkey = Some(key.into());
        self
    }

    /// The prefetch limit of this handle and of handles made from it (see the
    /// [module docs](self)).
    pub fn prefetch(mut self, n: u64) -> Self {
        self.prefetch = n;
        self
    }

    /// The largest encoded item (default: just under 64 MiB). A larger one is refused by put
    /// with [`Error::MessageTooLarge`].
    pub fn max_item_size(mut self, n: u64) -> Self {
        self.max_item_size = n.max(1);
        self
    }

    /// Creates the queue, served by this process.
    pub fn build<T: Serialize + DeserializeOwned>(self) -> Result<Queue<T>> {
        Ok(Queue::from_handle(self.start(false)?))
    }

    /// Creates a [`JoinableQueue`], served by this process.
    pub fn build_joinable<T: Serialize + DeserializeOwned>(self) -> Result<JoinableQueue<T>> {
        Ok(JoinableQueue { q: Queue::from_handle(self.start(true)?) })
    }

    fn start(self, joinable: bool) -> Result<Handle> {
        let address = match self.address {
            Some(a) => a,
            None => Address::fresh(Family::default())?,
        };
        let key = match self.authkey {
            Some(k) => k,
            None => AuthKey::random()?,
        };
        let server = Server::start(&address, key, self.maxsize, joinable, self.max_item_size)?;
        let owner = Arc::new(Owner { server });
        register(&owner);
        Ok(Handle::Local(Local {
            owner,
            closed: Arc::new(AtomicBool::new(false)),
            prefetch: Arc::new(AtomicU64::new(self.prefetch)),
        }))
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
struct Local {
    owner: Arc<Owner>,
    closed: Arc<AtomicBool>,
    prefetch: Arc<AtomicU64>,
}

/// A handle of a queue served elsewhere; connects on first use.
struct Lazy {
    address: Address,
    key: AuthKey,
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
        let remote = Remote::connect(
            &self.address,
            self.key.clone(),
            self.prefetch.load(Ordering::Relaxed),
            self.max_item_size,
        )?;
        let info = remote.link.info;
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

#[derive(Clone)]
enum Handle {
    Local(Local),
    Remote(Arc<Lazy>),
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

    fn put(&self, item: Vec<u8>, deadline: Option<Instant>) -> Result<bool> {
        match self {
            Handle::Local(l) => {
                if l.closed.load(Ordering::Relaxed) {
                    return Err(Error::Closed);
                }
                let s = &l.owner.server;
                let mut st = lock(&s.st);
                while !s.has_room(&mut st) {
                    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                    if left.is_some_and(|l| l.is_zero()) {
                        return Ok(false);
                    }
                    st.local_putters += 1;
                    st = match left {
                        None => s.local_cv.wait(st).unwrap_or_else(|p| p.into_inner()),
                        Some(l) => s.local_cv.wait_timeout(st, l).unwrap_or_else(|p| p.into_inner()).0,
                    };
                    st.local_putters -= 1;
                }
                s.push_local(&mut st, Bytes::from(item));
                s.grant(&mut st);
                Ok(true)
            }
            Handle::Remote(r) => r.get()?.put(&item, deadline),
        }
    }

    fn get(&self, deadline: Option<Instant>) -> Result<Option<Bytes>> {
        match self {
            Handle::Local(l) => {
                let s = &l.owner.server;
                let mut st = lock(&s.st);
                loop {
                    if let Some(item) = s.pop_local(&mut st) {
                        return Ok(Some(item));
                    }
                    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                    if left.is_some_and(|l| l.is_zero()) {
                        return Ok(None);
                    }
                    st.local_getters += 1;
                    st = match left {
                        None => s.local_cv.wait(st).unwrap_or_else(|p| p.into_inner()),
                        Some(l) => s.local_cv.wait_timeout(st, l).unwrap_or_else(|p| p.into_inner()).0,
                    };
                    st.local_getters -= 1;
                    if st.local_getters == 0 {
                        // Items kept back for local getters may go to other processes now.
                        s.distribute(&mut st);
                    }
                }
            }
            Handle::Remote(r) => Ok(r.get()?.link.get(deadline)?.map(Bytes::from)),
        }
    }

    fn qsize(&self) -> Result<u64> {
        match self {
            Handle::Local(l) => Ok(lock(&l.owner.server.st).qsize()),
            Handle::Remote(r) => r.get()?.link.qsize(),
        }
    }

    fn close(&self) -> Result<()> {
        match self {
            Handle::Local(l) => {
                l.closed.store(true, Ordering::Relaxed);
                Ok(())
            }
            Handle::Remote(r) => r.get()?.close(),
        }
    }

    fn set_prefetch(&self, n: u64) {
        match self {
            Handle::Local(l) => l.prefetch.store(n, Ordering::Relaxed),
            Handle::Remote(r) => {
                r.prefetch.store(n, Ordering::Relaxed);
                if let Some(remote) = &*lock(&r.remote) {
                    remote.link.set_prefetch(n);
                }
            }
        }
    }

    fn prefetch(&self) -> u64 {
        match self {
            Handle::Local(l) => l.prefetch.load(Ordering::Relaxed),
            Handle::Remote(r) => r.prefetch.load(Ordering::Relaxed),
        }
    }

    fn key(&self) -> &AuthKey {
        match self {
            Handle::Local(l) => &l.owner.server.key,
            Handle::Remote(r) => &r.key,
        }
    }

    fn max_item_size(&self) -> u64 {
        match self {
            Handle::Local(l) => l.owner.server.max_item_size,
            Handle::Remote(r) => r.max_item_size,
        }
    }

    fn task_done(&self) -> Result<()> {
        match self {
            Handle::Local(l) => {
                let s = &l.owner.server;
                let mut st = lock(&s.st);
                s.task_done_locked(&mut st, 1)
            }
            Handle::Remote(r) => r.get()?.link.task_done(),
        }
    }

    fn join(&self, deadline: Option<Instant>) -> Result<bool> {
        match self {
            Handle::Local(l) => {
                let s = &l.owner.server;
                let mut st = lock(&s.st);
                while Server::unfinished(&st) > 0 {
                    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                    if left.is_some_and(|l| l.is_zero()) {
                        return Ok(false);
                    }
                    st.local_joiners += 1;
                    st = match left {
                        None => s.local_cv.wait(st).unwrap_or_else(|p| p.into_inner()),
                        Some(l) => s.local_cv.wait_timeout(st, l).unwrap_or_else(|p| p.into_inner()).0,
                    };
                    st.local_joiners -= 1;
                }
                Ok(true)
            }
            Handle::Remote(r) => r.get()?.link.join(deadline),
        }
    }
}

/// A FIFO queue of `T`s shared between processes (see the [module docs](self) for who serves
/// it and the delivery rules).
///
/// Every method takes `&self`; clones share one connection per process, and a `Queue` may be
/// used from many threads at once. Items travel as CBOR.
///
/// A handle sent to another process (as a [`Process`](crate::process::Process) argument, or
/// any serde channel) serializes as the queue's address, key and settings: send it only over
/// a channel you trust, as it lets the receiver in.
///
/// ```
/// use procwire::queue::Queue;
/// use std::time::Duration;
///
/// let q: Queue<u32> = Queue::with_maxsize(2)?;
/// assert!(q.try_put(&1)?);
/// assert!(q.try_put(&2)?);
/// assert!(!q.put_timeout(&3, Duration::from_millis(10))?, "full");
/// assert_eq!(q.qsize()?, 2);
/// assert_eq!(q.get()?, 1);
/// assert_eq!(q.get_timeout(Duration::from_millis(10))?, Some(2));
/// assert_eq!(q.get_timeout(Duration::from_millis(10))?, None);
/// # Ok::<(), procwire::Error>(())
/// ```
pub struct Queue<T> {
    h: Handle,
    _item: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue { h: self.h.clone(), _item: PhantomData }
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("address", self.h.address())
            .field("maxsize", &self.h.maxsize())
            .field("served_here", &matches!(self.h, Handle::Local(_)))
            .finish()
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// An unbounded queue served by this process, at a fresh address with a random key.
    pub fn new() -> Result<Self> {
        QueueBuilder::default().build()
    }

    /// A queue of at most `maxsize` items (see [`QueueBuilder::maxsize`]).
    pub fn with_maxsize(maxsize: usize) -> Result<Self> {
        QueueBuilder::default().maxsize(maxsize).build()
    }

    /// Opens the queue served at `address` (by any process, on any host it can reach) with its
    /// key. Fails if it is a [`JoinableQueue`] (use [`JoinableQueue::connect`]).
    pub fn connect(address: &Address, key: impl Into<AuthKey>) -> Result<Self> {
        let h = connect_handle(address, key.into(), false)?;
        Ok(Queue::from_handle(h))
    }

    fn from_handle(h: Handle) -> Self {
        Queue { h, _item: PhantomData }
    }

    /// Puts `item` at the end, waiting while the queue is full.
    ///
    /// From another process than the queue's creator, put returns once the item is queued for
    /// this handle's writer thread; an error of that thread (the queue went away) is returned
    /// by a later put or by [`close`](Queue::close).
    pub fn put(&self, item: &T) -> Result<()> {
        self.put_until(item, None).map(drop)
    }

    /// Puts `item`, waiting at most `timeout` for room; `false` if there was none.
    pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<bool> {
        self.put_until(item, deadline_of(Some(timeout)))
    }

    /// Puts `item` only if there is room now; `false` if the queue is full.
    pub fn try_put(&self, item: &T) -> Result<bool> {
        self.put_until(item, Some(Instant::now()))
    }

    fn put_until(&self, item: &T, deadline: Option<Instant>) -> Result<bool> {
        let bytes = wire::encode_item(item)?;
        let max = self.h.max_item_size();
        if bytes.len() as u64 > max {
            return Err(Error::MessageTooLarge { len: bytes.len() as u64, max });
        }
        self.h.put(bytes, deadline)
    }

    /// Takes the item at the front, waiting for one. An item that does not decode as `T` is
    /// an [`Error::Decode`] (and is gone from the queue).
    pub fn get(&self) -> Result<T> {
        match self.get_until(None)? {
            Some(v) => Ok(v),
            None => Err(Error::Timeout("a get without a timeout timed out".into())),
        }
    }

    /// Takes the item at the front, waiting at most `timeout`; `None` if none came.
    pub fn get_timeout(&self, timeout: Duration) -> Result<Option<T>> {
        self.get_until(deadline_of(Some(timeout)))
    }

    /// Takes the item at the front if there is one now. From another process this asks the
    /// server (a round trip).
    pub fn try_get(&self) -> Result<Option<T>> {
        self.get_until(Some(Instant::now()))
    }

    fn get_until(&self, deadline: Option<Instant>) -> Result<Option<T>> {
        match self.h.get(deadline)? {
            Some(b) => crate::connection::decode(&b).map(Some),
            None => Ok(None),
        }
    }

    /// The number of items in the queue, counting those prefetched by consumers and not yet
    /// taken. Other processes may change it at any moment.
    pub fn qsize(&self) -> Result<usize> {
        Ok(self.h.qsize()? as usize)
    }

    /// Whether [`qsize`](Queue::qsize) is 0.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.h.qsize()? == 0)
    }

    /// Whether [`qsize`](Queue::qsize) reached the maxsize (never, without one).
    pub fn is_full(&self) -> Result<bool> {
        match self.h.maxsize() {
            None => Ok(false),
            Some(m) => Ok(self.h.qsize()? >= m),
        }
    }

    /// This process will put no more items with this handle (and its clones): writes every
    /// put made so far and waits until the queue has them, reporting a failure, and makes
    /// later puts fail with [`Error::Closed`]. Gets still work. Dropping the last handle does
    /// the same silently.
    pub fn close(&self) -> Result<()> {
        self.h.close()
    }
}

impl<T> Queue<T> {
    /// The address other processes reach the queue at.
    pub fn address(&self) -> &Address {
        self.h.address()
    }

    /// The key other processes need ([`Queue::connect`]).
    pub fn authkey(&self) -> &AuthKey {
        self.h.key()
    }

    /// The maxsize, if the queue has one.
    pub fn maxsize(&self) -> Option<usize> {
        self.h.maxsize().map(|m| m as usize)
    }

    /// Sets how many items this handle may ask for ahead of its gets (see the
    /// [module docs](self)); 0: none, each get fetches its item. Handles made from this one
    /// (clones, and copies sent to other processes) start with this value too. No effect on
    /// the creator's own handles, which take items directly.
    pub fn set_prefetch(&self, n: u64) {
        self.h.set_prefetch(n);
    }
}

fn connect_handle(address: &Address, key: AuthKey, joinable: bool) -> Result<Handle> {
    let remote = Remote::connect(address, key.clone(), DEFAULT_PREFETCH, DEFAULT_MAX_MESSAGE_SIZE - 1)?;
    let info = remote.link.info;
    if info.joinable != joinable {
        return Err(Error::Protocol(if joinable {
            format!("the queue at {address} is not a JoinableQueue")
        } else {
            format!("the queue at {address} is a JoinableQueue: open it with JoinableQueue::connect")
        }));
    }
    Ok(Handle::Remote(Arc::new(Lazy {
        address: address.clone(),
        key,
        maxsize: info.maxsize,
        joinable,
        max_item_size: DEFAULT_MAX_MESSAGE_SIZE - 1,
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
        }
    }

    fn into_handle(self) -> std::result::Result<Handle, String> {
        if let Some(owner) = registered(&self.address) {
            return Ok(Handle::Local(Local {
                owner,
                closed: Arc::new(AtomicBool::new(false)),
                prefetch: Arc::new(AtomicU64::new(self.prefetch)),
            }));
        }
        let address: Address = self.address.parse().map_err(|e: Error| e.to_string())?;
        Ok(Handle::Remote(Arc::new(Lazy {
            address,
            key: AuthKey::new(self.authkey),
            maxsize: self.maxsize,
            joinable: self.joinable,
            max_item_size: self.max_item_size,
            prefetch: AtomicU64::new(self.prefetch),
            remote: Mutex::new(None),
        })))
    }
}

impl<T> Serialize for Queue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        HandleRef::of(&self.h).serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let r = HandleRef::deserialize(d)?;
        if r.joinable {
            return Err(serde::de::Error::custom("a JoinableQueue handle where a Queue was expected"));
        }
        let h = r.into_handle().map_err(serde::de::Error::custom)?;
        Ok(Queue { h, _item: PhantomData })
    }
}

/// A [`Queue`] that counts unfinished tasks, like `multiprocessing.JoinableQueue`: every put
/// adds one, [`task_done`](JoinableQueue::task_done) removes one, and
/// [`join`](JoinableQueue::join) waits until none is left. Everything else is the
/// [`Queue`]'s, through `Deref`.
///
/// A put counts once it reaches the server: join writes this handle's own puts first, but a
/// put another process has not written yet (see [`Queue::put`]) is not waited for.
///
/// ```
/// use procwire::queue::JoinableQueue;
///
/// let q: JoinableQueue<String> = JoinableQueue::new()?;
/// q.put(&"task".to_string())?;
/// let worker = { let q = q.clone(); std::thread::spawn(move || -> procwire::Result<()> {
///     let _task = q.get()?;
///     q.task_done()
/// }) };
/// q.join()?;
/// worker.join().unwrap()?;
/// # Ok::<(), procwire::Error>(())
/// ```
pub struct JoinableQueue<T> {
    q: Queue<T>,
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue { q: self.q.clone() }
    }
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("JoinableQueue").field(&self.q).finish()
    }
}

impl<T> Deref for JoinableQueue<T> {
    type Target = Queue<T>;
    fn deref(&self) -> &Queue<T> {
        &self.q
    }
}

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    /// An unbounded joinable queue served by this process.
    pub fn new() -> Result<Self> {
        QueueBuilder::default().build_joinable()
    }

    /// A joinable queue of at most `maxsize` items.
    pub fn with_maxsize(maxsize: usize) -> Result<Self> {
        QueueBuilder::default().maxsize(maxsize).build_joinable()
    }

    /// Opens the joinable queue served at `address` with its key.
    pub fn connect(address: &Address, key: impl Into<AuthKey>) -> Result<Self> {
        Ok(JoinableQueue { q: Queue::from_handle(connect_handle(address, key.into(), true)?) })
    }

    /// Marks one task (an item someone got) as done. More calls than puts is an
    /// [`Error::Remote`] of kind `value`, as CPython's `ValueError`.
    pub fn task_done(&self) -> Result<()> {
        self.q.h.task_done()
    }

    /// Waits until every item put so far was marked done.
    pub fn join(&self) -> Result<()> {
        self.q.h.join(None).map(drop)
    }

    /// As [`join`](JoinableQueue::join), waiting at most `timeout`; `false` if tasks remain.
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool> {
        self.q.h.join(deadline_of(Some(timeout)))
    }
}

impl<T> Serialize for JoinableQueue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.q.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for JoinableQueue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let r = HandleRef::deserialize(d)?;
        if !r.joinable {
            return Err(serde::de::Error::custom("a Queue handle where a JoinableQueue was expected"));
        }
        let h = r.into_handle().map_err(serde::de::Error::custom)?;
        Ok(JoinableQueue { q: Queue { h, _item: PhantomData } })
    }
}
