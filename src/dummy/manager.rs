//! A manager of shared objects in this process: the [`manager`](crate::manager) API with
//! objects that live behind an `Arc` and a `Mutex`, used from threads through the same proxy
//! types (a dict, a list, a value, a namespace, a queue, and the synchronization primitives of
//! `threading`: lock, rlock, semaphore, condition, event, barrier).
//!
//! ```
//! use procwire::dummy::manager::Manager;
//!
//! let manager = Manager::start()?;
//! let l = manager.list(0..10)?;
//! l.reverse()?;
//! assert_eq!(l.to_vec()?, vec![9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
//! # Ok::<(), procwire::Error>(())
//! ```
//!
//! Every method returns a [`Result`] as the proxy's does, with the same error kinds:
//! [`Error::Remote`] of kind `index`, `value`, `attribute`, `runtime` or `broken_barrier`
//! where the manager raises them.
//!
//! # Differences from the process version
//!
//! - Values are kept as they are, not as CBOR: types need `Clone` (a proxy method takes
//!   `&T` and returns `T`), dict keys `Eq + Hash` (not "equal encodings"), list search
//!   `PartialEq` and [`ListProxy::sort`] `Ord` (the order of the type, not of CBOR values).
//!   [`NamespaceProxy`] keeps serde values as CBOR, as the process version does, so it
//!   takes any serde type.
//! - A proxy is shared by cloning it; proxies do not serialize, the manager has no address
//!   or key, and there is no `connect`, `ManagerServer` or untyped `Proxy`.
//! - Custom types ([`Registry`](crate::manager::Registry)) are not provided: between threads,
//!   share an `Arc<Mutex<T>>` of your type.
//! - A thread that ends holding a lock does not give it back (CPython's `threading` does not
//!   either); the process version's manager releases what a dead client process held.
//! - After [`Manager::shutdown`] every call, and every call blocked in a wait, fails with
//!   [`Error::Closed`]; the objects themselves are freed with their last proxy.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::manager::SERVE;

use super::queue::{Queue, QueueBuilder};
use crate::util::deadline_of;
use crate::util::{lock, wait_until};
use crate::{Error, Result};

fn remote(kind: &str, message: impl Into<String>) -> Error {
    Error::Remote { kind: kind.into(), message: message.into() }
}

/// What every object of a manager shares: whether it was shut down, and its objects.
struct Core {
    dead: AtomicBool,
    objects: Mutex<Vec<Weak<dyn Wake>>>,
}

trait Wake: Send + Sync {
    /// Wakes every thread waiting on the object (the manager is shutting down).
    fn wake(&self);
}

/// One shared object: its state, a condition variable for its waits, and its manager.
struct Obj<S> {
    st: Mutex<S>,
    cv: Condvar,
    core: Arc<Core>,
}

impl<S: Send> Wake for Obj<S> {
    fn wake(&self) {
        let _st = lock(&self.st);
        self.cv.notify_all();
    }
}

impl<S> Obj<S> {
    /// The state, or [`Error::Closed`] after shutdown.
    fn lock(&self) -> Result<MutexGuard<'_, S>> {
        if self.core.dead.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        Ok(lock(&self.st))
    }

    /// Waits for a notification until `deadline`: `Ok(None)` once it passed, and
    /// [`Error::Closed`] when the manager shuts down meanwhile.
    fn wait<'a>(&self, g: MutexGuard<'a, S>, deadline: Option<Instant>) -> Result<Option<MutexGuard<'a, S>>> {
        let g = wait_until(&self.cv, g, deadline);
        if self.core.dead.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        Ok(g)
    }
}

/// The end of a wait: `Some(now)` for a non-blocking attempt.
fn deadline(blocking: bool, timeout: Option<Duration>) -> Option<Instant> {
    if blocking { deadline_of(timeout) } else { Some(Instant::now()) }
}

/// A handle to a manager of objects in this process: creates shared objects and returns their
/// proxies. Clones share the manager.
///
/// The objects live as long as their proxies; [`shutdown`](Manager::shutdown) makes every
/// proxy fail.
#[derive(Clone)]
pub struct Manager {
    core: Arc<Core>,
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager").field("shut_down", &self.core.dead.load(Ordering::SeqCst)).finish()
    }
}

impl Manager {
    /// A manager of the built-in types in this process (the process version starts a child;
    /// here there is nothing to start, and [`SERVE`] need not be listed anywhere).
    pub fn start() -> Result<Manager> {
        Ok(Manager { core: Arc::new(Core { dead: AtomicBool::new(false), objects: Mutex::new(Vec::new()) }) })
    }

    /// The number of objects alive (those some proxy still holds).
    pub fn object_count(&self) -> Result<usize> {
        if self.core.dead.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        let mut objects = lock(&self.core.objects);
        objects.retain(|o| o.strong_count() > 0);
        Ok(objects.len())
    }

    /// Shuts the manager down: every proxy of it stops working ([`Error::Closed`]), and
    /// threads blocked in one of its objects' waits wake up with that error.
    pub fn shutdown(&self) -> Result<()> {
        self.core.dead.store(true, Ordering::SeqCst);
        let objects: Vec<Arc<dyn Wake>> =
            lock(&self.core.objects).drain(..).filter_map(|o| o.upgrade()).collect();
        for o in objects {
            o.wake();
        }
        Ok(())
    }

    fn create<S: Send + 'static>(&self, state: S) -> Result<Arc<Obj<S>>> {
        if self.core.dead.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        let obj = Arc::new(Obj { st: Mutex::new(state), cv: Condvar::new(), core: self.core.clone() });
        let weak: Weak<Obj<S>> = Arc::downgrade(&obj);
        let mut objects = lock(&self.core.objects);
        objects.retain(|o| o.strong_count() > 0);
        objects.push(weak);
        Ok(obj)
    }

    /// A new shared dict.
    pub fn dict<K: Eq + Hash + Clone + Send + 'static, V: Clone + Send + 'static>(
        &self,
    ) -> Result<DictProxy<K, V>> {
        Ok(DictProxy { o: self.create(DictState { map: HashMap::new(), next: 0 })? })
    }

    /// A new shared list holding `items`.
    pub fn list<T: Clone + Send + 'static>(
        &self,
        items: impl IntoIterator<Item = T>,
    ) -> Result<ListProxy<T>> {
        Ok(ListProxy { o: self.create(items.into_iter().collect())? })
    }

    /// A new shared value (a clone of `value`).
    pub fn value<T: Clone + Send + 'static>(&self, value: &T) -> Result<ValueProxy<T>> {
        Ok(ValueProxy { o: self.create(value.clone())? })
    }

    /// A new shared namespace, with no attributes.
    pub fn namespace(&self) -> Result<NamespaceProxy> {
        Ok(NamespaceProxy { o: self.create(BTreeMap::new())? })
    }

    /// A new queue of at most `maxsize` items (`None`: unbounded).
    pub fn queue<T: Clone + Send + 'static>(&self, maxsize: Option<usize>) -> Result<QueueProxy<T>> {
        let mut b = QueueBuilder::new();
        if let Some(m) = maxsize {
            b = b.maxsize(m);
        }
        Ok(QueueProxy { o: self.create(())?, q: b.build()? })
    }

    /// A new shared lock.
    pub fn lock(&self) -> Result<LockProxy> {
        Ok(LockProxy { o: self.create(LockState::default())? })
    }

    /// A new shared reentrant lock.
    pub fn rlock(&self) -> Result<RLockProxy> {
        Ok(RLockProxy { o: self.create(LockState::default())? })
    }

    /// A new shared semaphore with `value` permits.
    pub fn semaphore(&self, value: u64) -> Result<SemaphoreProxy> {
        Ok(SemaphoreProxy { o: self.create(SemState { value, initial: value, bounded: false })? })
    }

    /// A new shared bounded semaphore with `value` permits.
    pub fn bounded_semaphore(&self, value: u64) -> Result<SemaphoreProxy> {
        Ok(SemaphoreProxy { o: self.create(SemState { value, initial: value, bounded: true })? })
    }

    /// A new shared condition.
    pub fn condition(&self) -> Result<ConditionProxy> {
        Ok(ConditionProxy { o: self.create(CondState::default())? })
    }

    /// A new shared event, not set.
    pub fn event(&self) -> Result<EventProxy> {
        Ok(EventProxy { o: self.create(false)? })
    }

    /// A new shared barrier for `parties` parties (at least 1: 0 is an error of kind `value`).
    pub fn barrier(&self, parties: u64) -> Result<BarrierProxy> {
        if parties == 0 {
            return Err(remote("value", "a barrier needs at least one party"));
        }
        let st = BarrierState { count: 0, generation: 0, broken: false, reset_generation: None };
        Ok(BarrierProxy { o: self.create(st)?, parties })
    }
}

macro_rules! proxy_type {
    ($(#[$m:meta])* $name:ident [$($g:ident),*] $state:ty) => {
        $(#[$m])*
        pub struct $name<$($g = ()),*> {
            o: Arc<Obj<$state>>,
        }

        impl<$($g),*> Clone for $name<$($g),*> {
            fn clone(&self) -> Self {
                $name { o: self.o.clone() }
            }
        }

        impl<$($g),*> fmt::Debug for $name<$($g),*> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "<{} at {:p}>", stringify!($name), Arc::as_ptr(&self.o))
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Containers

struct DictState<K, V> {
    /// Key -> (insertion number, value).
    map: HashMap<K, (u64, V)>,
    next: u64,
}

impl<K: Eq + Hash, V> DictState<K, V> {
    fn insert(&mut self, k: K, v: V) -> Option<V> {
        if let Some(e) = self.map.get_mut(&k) {
            return Some(std::mem::replace(&mut e.1, v));
        }
        self.next += 1;
        self.map.insert(k, (self.next, v));
        None
    }

    fn ordered(&self) -> Vec<(&K, &V)> {
        let mut v: Vec<_> = self.map.iter().map(|(k, (n, v))| (*n, k, v)).collect();
        v.sort_unstable_by_key(|e| e.0);
        v.into_iter().map(|(_, k, v)| (k, v)).collect()
    }
}

proxy_type! {
    /// A shared map from `K` to `V`, kept in insertion order. From [`Manager::dict`].
    ///
    /// ```
    /// # let manager = procwire::dummy::manager::Manager::start()?;
    /// let d = manager.dict::<String, Vec<u8>>()?;
    /// assert_eq!(d.insert(&"a".into(), &vec![1])?, None);
    /// assert_eq!(d.insert(&"a".into(), &vec![2])?, Some(vec![1]));
    /// assert_eq!(d.items()?, vec![("a".to_string(), vec![2])]);
    /// # Ok::<(), procwire::Error>(())
    /// ```
    DictProxy[K, V] DictState<K, V>
}

impl<K: Eq + Hash + Clone, V: Clone> DictProxy<K, V> {
    /// The value of `key`, if present.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        Ok(self.o.lock()?.map.get(key).map(|e| e.1.clone()))
    }

    /// Sets `key` to `value`; the value it had, if any.
    pub fn insert(&self, key: &K, value: &V) -> Result<Option<V>> {
        Ok(self.o.lock()?.insert(key.clone(), value.clone()))
    }

    /// The value of `key`, inserting `default` first if it has none (Python's `setdefault`).
    pub fn setdefault(&self, key: &K, default: &V) -> Result<V> {
        let mut st = self.o.lock()?;
        if let Some(e) = st.map.get(key) {
            return Ok(e.1.clone());
        }
        st.insert(key.clone(), default.clone());
        Ok(default.clone())
    }

    /// Removes `key`; the value it had, if any.
    pub fn remove(&self, key: &K) -> Result<Option<V>> {
        Ok(self.o.lock()?.map.remove(key).map(|e| e.1))
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &K) -> Result<bool> {
        Ok(self.o.lock()?.map.contains_key(key))
    }

    /// The number of entries.
    pub fn len(&self) -> Result<usize> {
        Ok(self.o.lock()?.map.len())
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The keys, in insertion order.
    pub fn keys(&self) -> Result<Vec<K>> {
        Ok(self.o.lock()?.ordered().into_iter().map(|(k, _)| k.clone()).collect())
    }

    /// The values, in insertion order of their keys.
    pub fn values(&self) -> Result<Vec<V>> {
        Ok(self.o.lock()?.ordered().into_iter().map(|(_, v)| v.clone()).collect())
    }

    /// The entries, in insertion order.
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        Ok(self.o.lock()?.ordered().into_iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    /// Inserts every entry of `items`, at once.
    pub fn update(&self, items: &[(K, V)]) -> Result<()> {
        let mut st = self.o.lock()?;
        for (k, v) in items {
            st.insert(k.clone(), v.clone());
        }
        Ok(())
    }

    /// Removes every entry.
    pub fn clear(&self) -> Result<()> {
        self.o.lock()?.map.clear();
        Ok(())
    }
}

proxy_type! {
    /// A shared list of `T`. Indices are `i64` and, as in Python, negative ones count from the
    /// end; one out of range is an [`Error::Remote`] of kind `index`. From [`Manager::list`].
    ListProxy[T] Vec<T>
}

fn index(i: i64, len: usize) -> Result<usize> {
    let j = if i < 0 { i + len as i64 } else { i };
    if j < 0 || j >= len as i64 {
        return Err(remote("index", format!("list index {i} out of range (length {len})")));
    }
    Ok(j as usize)
}

impl<T: Clone> ListProxy<T> {
    /// The number of items.
    pub fn len(&self) -> Result<usize> {
        Ok(self.o.lock()?.len())
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The item at `index`.
    pub fn get(&self, index: i64) -> Result<T> {
        let v = self.o.lock()?;
        Ok(v[self::index(index, v.len())?].clone())
    }

    /// Replaces the item at `index`.
    pub fn set(&self, index: i64, item: &T) -> Result<()> {
        let mut v = self.o.lock()?;
        let i = self::index(index, v.len())?;
        v[i] = item.clone();
        Ok(())
    }

    /// Appends `item` (Python's `append`).
    pub fn push(&self, item: &T) -> Result<()> {
        self.o.lock()?.push(item.clone());
        Ok(())
    }

    /// Appends every item of `items`, at once.
    pub fn extend(&self, items: &[T]) -> Result<()> {
        self.o.lock()?.extend_from_slice(items);
        Ok(())
    }

    /// Inserts `item` before `index` (clamped to the ends, as in Python).
    pub fn insert(&self, index: i64, item: &T) -> Result<()> {
        let mut v = self.o.lock()?;
        let len = v.len() as i64;
        let j = if index < 0 { (index + len).max(0) } else { index.min(len) };
        v.insert(j as usize, item.clone());
        Ok(())
    }

    /// Removes and returns the last item (kind `index` if the list is empty).
    pub fn pop(&self) -> Result<T> {
        self.pop_index(None)
    }

    /// Removes and returns the item at `index`.
    pub fn pop_at(&self, index: i64) -> Result<T> {
        self.pop_index(Some(index))
    }

    fn pop_index(&self, i: Option<i64>) -> Result<T> {
        let mut v = self.o.lock()?;
        if v.is_empty() {
            return Err(remote("index", "pop from empty list"));
        }
        let i = index(i.unwrap_or(-1), v.len())?;
        Ok(v.remove(i))
    }

    /// Reverses the list in place.
    pub fn reverse(&self) -> Result<()> {
        self.o.lock()?.reverse();
        Ok(())
    }

    /// A copy of every item.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        Ok(self.o.lock()?.clone())
    }

    /// Removes every item.
    pub fn clear(&self) -> Result<()> {
        self.o.lock()?.clear();
        Ok(())
    }
}

impl<T: Clone + PartialEq> ListProxy<T> {
    /// Removes the first item equal to `item` (kind `value` if there is none).
    pub fn remove(&self, item: &T) -> Result<()> {
        let mut v = self.o.lock()?;
        match v.iter().position(|x| x == item) {
            Some(i) => {
                v.remove(i);
                Ok(())
            }
            None => Err(remote("value", "list.remove(x): x not in list")),
        }
    }

    /// The index of the first item equal to `item` (kind `value` if there is none).
    pub fn index(&self, item: &T) -> Result<usize> {
        self.o
            .lock()?
            .iter()
            .position(|x| x == item)
            .ok_or_else(|| remote("value", "list.index(x): x not in list"))
    }

    /// How many items equal `item`.
    pub fn count(&self, item: &T) -> Result<usize> {
        Ok(self.o.lock()?.iter().filter(|x| *x == item).count())
    }

    /// Whether an item equals `item`.
    pub fn contains(&self, item: &T) -> Result<bool> {
        Ok(self.o.lock()?.contains(item))
    }
}

impl<T: Clone + Ord> ListProxy<T> {
    /// Sorts the list in place, in `T`'s order (stable). The process version sorts in the
    /// order of CBOR values, which agrees for numbers and for text.
    pub fn sort(&self) -> Result<()> {
        self.o.lock()?.sort();
        Ok(())
    }
}

proxy_type! {
    /// One shared value of type `T`, like `Manager().Value`. From [`Manager::value`].
    ValueProxy[T] T
}

impl<T: Clone> ValueProxy<T> {
    /// A clone of the value.
    pub fn get(&self) -> Result<T> {
        Ok(self.o.lock()?.clone())
    }

    /// Replaces the value.
    pub fn set(&self, value: &T) -> Result<()> {
        *self.o.lock()? = value.clone();
        Ok(())
    }

    /// Replaces the value and returns the one it had, atomically.
    pub fn swap(&self, value: &T) -> Result<T> {
        Ok(std::mem::replace(&mut *self.o.lock()?, value.clone()))
    }
}

proxy_type! {
    /// A shared bag of named attributes of any serde type, like `Manager().Namespace()`,
    /// kept as CBOR values as in the process version. Reading a missing one is an
    /// [`Error::Remote`] of kind `attribute`. From [`Manager::namespace`].
    ///
    /// ```
    /// # let manager = procwire::dummy::manager::Manager::start()?;
    /// let ns = manager.namespace()?;
    /// ns.set("answer", &42u32)?;
    /// assert_eq!(ns.get::<u32>("answer")?, 42);
    /// assert!(ns.get::<u32>("question").is_err());
    /// # Ok::<(), procwire::Error>(())
    /// ```
    NamespaceProxy[] BTreeMap<String, ciborium::Value>
}

fn missing(name: &str) -> Error {
    remote("attribute", format!("'Namespace' object has no attribute '{name}'"))
}

impl NamespaceProxy {
    /// The attribute `name`, decoded as `T` (a value of another type is [`Error::Decode`]).
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        let st = self.o.lock()?;
        let v = st.get(name).ok_or_else(|| missing(name))?;
        v.deserialized().map_err(|e| Error::Decode(e.to_string()))
    }

    /// Sets the attribute `name` ([`Error::Encode`] if `value` does not encode).
    pub fn set<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        let v = ciborium::Value::serialized(value).map_err(|e| Error::Encode(e.to_string()))?;
        self.o.lock()?.insert(name.to_string(), v);
        Ok(())
    }

    /// Deletes the attribute `name`.
    pub fn del(&self, name: &str) -> Result<()> {
        self.o.lock()?.remove(name).map(drop).ok_or_else(|| missing(name))
    }

    /// Whether the attribute `name` exists.
    pub fn contains(&self, name: &str) -> Result<bool> {
        Ok(self.o.lock()?.contains_key(name))
    }

    /// Every attribute, by name, as CBOR values.
    pub fn items(&self) -> Result<BTreeMap<String, ciborium::Value>> {
        Ok(self.o.lock()?.clone())
    }
}

/// A [`Queue`] made by a manager: use it as the queue itself (it dereferences to
/// [`Queue<T>`]). From [`Manager::queue`]. It is an ordinary in-memory queue: the manager's
/// shutdown does not close it.
pub struct QueueProxy<T> {
    o: Arc<Obj<()>>,
    q: Queue<T>,
}

impl<T> Clone for QueueProxy<T> {
    fn clone(&self) -> Self {
        QueueProxy { o: self.o.clone(), q: self.q.clone() }
    }
}

impl<T> fmt::Debug for QueueProxy<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueProxy").field("queue", &self.q).finish()
    }
}

impl<T> Deref for QueueProxy<T> {
    type Target = Queue<T>;
    fn deref(&self) -> &Queue<T> {
        &self.q
    }
}

// ---------------------------------------------------------------------------------------------
// Synchronization primitives

/// A lock's holder and how many times it holds it.
#[derive(Default)]
struct LockState {
    owner: Option<(ThreadId, u64)>,
}

fn me() -> ThreadId {
    std::thread::current().id()
}

/// Acquires a lock (`reentrant`: the holder may acquire it again).
fn acquire(o: &Obj<LockState>, reentrant: bool, deadline: Option<Instant>) -> Result<bool> {
    let me = me();
    let mut st = o.lock()?;
    loop {
        match &mut st.owner {
            None => {
                st.owner = Some((me, 1));
                return Ok(true);
            }
            Some((t, n)) if reentrant && *t == me => {
                *n += 1;
                return Ok(true);
            }
            Some(_) => {}
        }
        st = match o.wait(st, deadline)? {
            Some(g) => g,
            None => return Ok(false),
        };
    }
}

fn release(o: &Obj<LockState>, reentrant: bool) -> Result<()> {
    let mut st = o.lock()?;
    match &mut st.owner {
        None if reentrant => Err(remote("runtime", "cannot release un-acquired lock")),
        None => Err(remote("runtime", "release unlocked lock")),
        Some((t, _)) if reentrant && *t != me() => Err(remote("runtime", "cannot release un-acquired lock")),
        Some((_, n)) => {
            // As threading.Lock, a plain lock may be released by any thread.
            *n -= 1;
            if *n == 0 || !reentrant {
                st.owner = None;
                o.cv.notify_all();
            }
            Ok(())
        }
    }
}

macro_rules! lock_methods {
    ($reentrant:expr) => {
        /// Acquires, waiting as long as it takes.
        pub fn acquire(&self) -> Result<()> {
            acquire(&self.o, $reentrant, None).map(drop)
        }

        /// Acquires, waiting at most `timeout`; `false` if that was not enough.
        pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
            acquire(&self.o, $reentrant, deadline_of(Some(timeout)))
        }

        /// Acquires if that is possible at once; `false` if not.
        pub fn try_acquire(&self) -> Result<bool> {
            acquire(&self.o, $reentrant, Some(Instant::now()))
        }

        /// Releases (an error of kind `runtime` if it was not held).
        pub fn release(&self) -> Result<()> {
            release(&self.o, $reentrant)
        }
    };
}

proxy_type! {
    /// A shared `threading.Lock`: held by one thread at a time; any thread may release it.
    /// From [`Manager::lock`].
    ///
    /// ```
    /// # let manager = procwire::dummy::manager::Manager::start()?;
    /// # use std::time::Duration;
    /// let l = manager.lock()?;
    /// l.acquire()?;
    /// assert!(!l.acquire_timeout(Duration::from_millis(10))?);
    /// l.release()?;
    /// assert!(l.try_acquire()?);
    /// # Ok::<(), procwire::Error>(())
    /// ```
    LockProxy[] LockState
}

impl LockProxy {
    lock_methods!(false);

    /// Whether some thread holds it.
    pub fn locked(&self) -> Result<bool> {
        Ok(self.o.lock()?.owner.is_some())
    }
}

proxy_type! {
    /// A shared `threading.RLock`: the thread that holds it may acquire it again, and must
    /// release it as many times. From [`Manager::rlock`].
    RLockProxy[] LockState
}

impl RLockProxy {
    lock_methods!(true);
}

struct SemState {
    value: u64,
    initial: u64,
    bounded: bool,
}

proxy_type! {
    /// A shared `threading.Semaphore` or `BoundedSemaphore` (where releasing over the initial
    /// value is an error of kind `value`). From [`Manager::semaphore`] and
    /// [`Manager::bounded_semaphore`].
    SemaphoreProxy[] SemState
}

impl SemaphoreProxy {
    /// Takes a permit, waiting as long as it takes.
    pub fn acquire(&self) -> Result<()> {
        self.acquire_until(None).map(drop)
    }

    /// Takes a permit, waiting at most `timeout`; `false` if none came.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        self.acquire_until(deadline_of(Some(timeout)))
    }

    /// Takes a permit if one is free now.
    pub fn try_acquire(&self) -> Result<bool> {
        self.acquire_until(Some(Instant::now()))
    }

    fn acquire_until(&self, deadline: Option<Instant>) -> Result<bool> {
        let mut st = self.o.lock()?;
        loop {
            if st.value > 0 {
                st.value -= 1;
                return Ok(true);
            }
            st = match self.o.wait(st, deadline)? {
                Some(g) => g,
                None => return Ok(false),
            };
        }
    }

    /// Gives back one permit.
    pub fn release(&self) -> Result<()> {
        self.release_n(1)
    }

    /// Gives back `n` permits (kind `value` for 0, or past a bounded semaphore's initial value).
    pub fn release_n(&self, n: u64) -> Result<()> {
        if n == 0 {
            return Err(remote("value", "n must be one or more"));
        }
        let mut st = self.o.lock()?;
        let value = st.value.saturating_add(n);
        if st.bounded && value > st.initial {
            return Err(remote("value", "Semaphore released too many times"));
        }
        st.value = value;
        self.o.cv.notify_all();
        Ok(())
    }

    /// The number of free permits.
    pub fn value(&self) -> Result<u64> {
        Ok(self.o.lock()?.value)
    }
}

#[derive(Default)]
struct CondState {
    /// The condition's lock: reentrant, as threading.Condition's default RLock.
    lock: LockState,
    waiting: VecDeque<u64>,
    notified: HashSet<u64>,
    next: u64,
}

proxy_type! {
    /// A shared `threading.Condition` (with its own reentrant lock). From
    /// [`Manager::condition`].
    ///
    /// ```
    /// # let manager = procwire::dummy::manager::Manager::start()?;
    /// let (cond, ready) = (manager.condition()?, manager.value(&false)?);
    /// let waiter = { let (cond, ready) = (cond.clone(), ready.clone()); std::thread::spawn(move || -> procwire::Result<bool> {
    ///     cond.acquire()?;
    ///     let seen = cond.wait_for(|| ready.get(), None)?;
    ///     cond.release()?;
    ///     Ok(seen)
    /// }) };
    /// cond.acquire()?;
    /// ready.set(&true)?;
    /// cond.notify_all()?;
    /// cond.release()?;
    /// assert!(waiter.join().unwrap()?);
    /// # Ok::<(), procwire::Error>(())
    /// ```
    ConditionProxy[] CondState
}

impl ConditionProxy {
    /// Acquires, waiting as long as it takes.
    pub fn acquire(&self) -> Result<()> {
        self.take_lock(None).map(drop)
    }

    /// Acquires, waiting at most `timeout`; `false` if that was not enough.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        self.take_lock(deadline_of(Some(timeout)))
    }

    /// Acquires if that is possible at once; `false` if not.
    pub fn try_acquire(&self) -> Result<bool> {
        self.take_lock(deadline(false, None))
    }

    fn take_lock(&self, deadline: Option<Instant>) -> Result<bool> {
        let st = self.o.lock()?;
        Ok(self.relock(st, 1, deadline)?.1)
    }

    /// Takes the lock `count` times for this thread, waiting until `deadline`.
    fn relock<'a>(
        &'a self,
        mut st: MutexGuard<'a, CondState>,
        count: u64,
        deadline: Option<Instant>,
    ) -> Result<(MutexGuard<'a, CondState>, bool)> {
        let me = me();
        loop {
            match &mut st.lock.owner {
                None => {
                    st.lock.owner = Some((me, count));
                    return Ok((st, true));
                }
                Some((t, n)) if *t == me => {
                    *n += count;
                    return Ok((st, true));
                }
                Some(_) => {}
            }
            st = match self.o.wait(st, deadline)? {
                Some(g) => g,
                None => return Ok((self.o.lock()?, false)),
            };
        }
    }

    /// Releases (an error of kind `runtime` if this thread does not hold it).
    pub fn release(&self) -> Result<()> {
        let mut st = self.o.lock()?;
        match &mut st.lock.owner {
            Some((t, n)) if *t == me() => {
                *n -= 1;
                if *n == 0 {
                    st.lock.owner = None;
                    self.o.cv.notify_all();
                }
                Ok(())
            }
            _ => Err(remote("runtime", "cannot release un-acquired lock")),
        }
    }

    /// Releases the lock, waits until notified or `timeout` passes (`None`: no limit), and
    /// acquires the lock again; whether it was notified. The calling thread must hold the lock
    /// (kind `runtime` otherwise).
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        let deadline = deadline_of(timeout);
        let mut st = self.o.lock()?;
        let Some((_, count)) = st.lock.owner.filter(|(t, _)| *t == me()) else {
            return Err(remote("runtime", "cannot wait on un-acquired lock"));
        };
        st.lock.owner = None;
        st.next += 1;
        let ticket = st.next;
        st.waiting.push_back(ticket);
        self.o.cv.notify_all();
        let notified = loop {
            if st.notified.remove(&ticket) {
                break true;
            }
            match wait_until(&self.o.cv, st, deadline) {
                Some(g) => st = g,
                None => {
                    st = lock(&self.o.st);
                    st.waiting.retain(|t| *t != ticket);
                    break st.notified.remove(&ticket);
                }
            }
            if self.o.core.dead.load(Ordering::SeqCst) {
                st.waiting.retain(|t| *t != ticket);
                st.notified.remove(&ticket);
                return Err(Error::Closed);
            }
        };
        drop(self.relock(st, count, None)?);
        Ok(notified)
    }

    /// Waits until `predicate` is true (checking it first, and after every wake-up, with the
    /// lock held), at most `timeout`; the predicate's last result.
    pub fn wait_for(
        &self,
        mut predicate: impl FnMut() -> Result<bool>,
        timeout: Option<Duration>,
    ) -> Result<bool> {
        let deadline = deadline_of(timeout);
        loop {
            if predicate()? {
                return Ok(true);
            }
            let left = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Ok(false),
                },
                None => None,
            };
            self.wait(left)?;
        }
    }

    /// Wakes up at most `n` threads waiting (the caller must hold the lock).
    pub fn notify(&self, n: u64) -> Result<()> {
        self.notify_n(n)
    }

    /// Wakes up every thread waiting (the caller must hold the lock).
    pub fn notify_all(&self) -> Result<()> {
        self.notify_n(u64::MAX)
    }

    fn notify_n(&self, n: u64) -> Result<()> {
        let mut st = self.o.lock()?;
        if !st.lock.owner.is_some_and(|(t, _)| t == me()) {
            return Err(remote("runtime", "cannot notify on un-acquired lock"));
        }
        for _ in 0..n {
            let Some(t) = st.waiting.pop_front() else { break };
            st.notified.insert(t);
        }
        self.o.cv.notify_all();
        Ok(())
    }
}

proxy_type! {
    /// A shared `threading.Event`. From [`Manager::event`].
    EventProxy[] bool
}

impl EventProxy {
    /// Sets the flag, waking every waiter.
    pub fn set(&self) -> Result<()> {
        *self.o.lock()? = true;
        self.o.cv.notify_all();
        Ok(())
    }

    /// Clears the flag.
    pub fn clear(&self) -> Result<()> {
        *self.o.lock()? = false;
        Ok(())
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> Result<bool> {
        Ok(*self.o.lock()?)
    }

    /// Waits until the flag is set, at most `timeout` (`None`: no limit); whether it is.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        let deadline = deadline_of(timeout);
        let mut st = self.o.lock()?;
        loop {
            if *st {
                return Ok(true);
            }
            st = match self.o.wait(st, deadline)? {
                Some(g) => g,
                None => return Ok(*self.o.lock()?),
            };
        }
    }
}

struct BarrierState {
    count: u64,
    generation: u64,
    broken: bool,
    /// A generation that `reset` ended while threads waited in it: they fail.
    reset_generation: Option<u64>,
}

fn broken() -> Error {
    remote("broken_barrier", "the barrier is broken")
}

/// A shared `threading.Barrier` for a number of parties. A broken barrier is an
/// [`Error::Remote`] of kind `broken_barrier`. From [`Manager::barrier`].
pub struct BarrierProxy {
    o: Arc<Obj<BarrierState>>,
    parties: u64,
}

impl Clone for BarrierProxy {
    fn clone(&self) -> Self {
        BarrierProxy { o: self.o.clone(), parties: self.parties }
    }
}

impl fmt::Debug for BarrierProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<BarrierProxy of {} parties at {:p}>", self.parties, Arc::as_ptr(&self.o))
    }
}

impl BarrierProxy {
    /// Waits until every party waits, at most `timeout` (`None`: no limit); an index from
    /// 0 to parties - 1, different for each party (0 for the last to arrive). A timeout breaks
    /// the barrier for everyone, as in `threading`.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<u64> {
        let deadline = deadline_of(timeout);
        let mut st = self.o.lock()?;
        if st.broken {
            return Err(broken());
        }
        let index = self.parties - 1 - st.count;
        st.count += 1;
        if st.count == self.parties {
            st.count = 0;
            st.generation += 1;
            self.o.cv.notify_all();
            return Ok(index);
        }
        let generation = st.generation;
        loop {
            if st.generation != generation {
                return if st.reset_generation == Some(generation) { Err(broken()) } else { Ok(index) };
            }
            if st.broken {
                return Err(broken());
            }
            st = match self.o.wait(st, deadline)? {
                Some(g) => g,
                None => {
                    let mut st = self.o.lock()?;
                    if st.generation != generation {
                        return if st.reset_generation == Some(generation) {
                            Err(broken())
                        } else {
                            Ok(index)
                        };
                    }
                    // As threading: a wait that times out breaks the barrier for everyone.
                    st.broken = true;
                    self.o.cv.notify_all();
                    return Err(broken());
                }
            };
        }
    }

    /// Back to the empty state; parties waiting get `broken_barrier`.
    pub fn reset(&self) -> Result<()> {
        let mut st = self.o.lock()?;
        if st.count > 0 {
            st.reset_generation = Some(st.generation);
        }
        st.generation += 1;
        st.count = 0;
        st.broken = false;
        self.o.cv.notify_all();
        Ok(())
    }

    /// Breaks the barrier.
    pub fn abort(&self) -> Result<()> {
        self.o.lock()?.broken = true;
        self.o.cv.notify_all();
        Ok(())
    }

    /// The number of parties.
    pub fn parties(&self) -> Result<u64> {
        self.o.lock().map(|_| self.parties)
    }

    /// The number of parties waiting now.
    pub fn n_waiting(&self) -> Result<u64> {
        let st = self.o.lock()?;
        Ok(if st.broken { 0 } else { st.count })
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> Result<bool> {
        Ok(self.o.lock()?.broken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_wakes_a_blocked_waiter_with_closed() {
        let m = Manager::start().unwrap();
        let ev = m.event().unwrap();
        let waiter = {
            let ev = ev.clone();
            std::thread::spawn(move || ev.wait(None))
        };
        // Waiting or about to: either way the wait ends with Closed.
        std::thread::sleep(Duration::from_millis(20));
        m.shutdown().unwrap();
        assert!(matches!(waiter.join().unwrap(), Err(Error::Closed)));
        assert!(matches!(m.lock(), Err(Error::Closed)));
    }

    #[test]
    fn values_need_not_be_serde() {
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        struct Key(u8);
        let m = Manager::start().unwrap();
        let d = m.dict::<Key, std::sync::Arc<str>>().unwrap();
        d.insert(&Key(1), &"one".into()).unwrap();
        assert_eq!(d.get(&Key(1)).unwrap().as_deref(), Some("one"));
        let l = m.list([Key(3), Key(1)]).unwrap();
        l.sort().unwrap();
        assert_eq!(l.to_vec().unwrap(), [Key(1), Key(3)]);
    }

    #[test]
    fn a_timed_out_barrier_wait_breaks_the_barrier_for_the_others() {
        let m = Manager::start().unwrap();
        let b = m.barrier(3).unwrap();
        let other = {
            let b = b.clone();
            std::thread::spawn(move || b.wait(Some(Duration::from_secs(60))))
        };
        assert!(
            matches!(b.wait(Some(Duration::from_millis(50))), Err(Error::Remote { kind, .. }) if kind == "broken_barrier")
        );
        assert!(matches!(other.join().unwrap(), Err(Error::Remote { kind, .. }) if kind == "broken_barrier"));
    }
}
