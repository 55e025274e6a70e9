//! Typed proxies of the built-in types, and the [`Manager`] methods that create them.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::wire::Maybe;
use super::{Manager, Proxy, thread_token};
use crate::Result;
use crate::queue::Queue;

/// A timeout as the wire carries it: seconds, `None` for none.
fn secs(t: Option<Duration>) -> Option<f64> {
    t.map(|d| d.as_secs_f64())
}

fn one<T>(mut v: Maybe<T>) -> Option<T> {
    v.pop()
}

macro_rules! proxy_type {
    ($(#[$m:meta])* $name:ident [$($g:ident),*] $($typeid:literal)|+) => {
        $(#[$m])*
        pub struct $name<$($g = ()),*> {
            p: Proxy,
            _t: PhantomData<fn() -> ($($g,)*)>,
        }

        impl<$($g),*> Clone for $name<$($g),*> {
            fn clone(&self) -> Self {
                $name { p: self.p.clone(), _t: PhantomData }
            }
        }

        impl<$($g),*> fmt::Debug for $name<$($g),*> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.p.fmt(f)
            }
        }

        impl<$($g),*> Serialize for $name<$($g),*> {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                self.p.serialize(s)
            }
        }

        impl<'de, $($g),*> Deserialize<'de> for $name<$($g),*> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let p = Proxy::deserialize(d)?;
                if ![$($typeid),+].contains(&p.typeid()) {
                    return Err(serde::de::Error::custom(format!(
                        "a proxy of a {:?} where a {} was expected",
                        p.typeid(),
                        stringify!($name)
                    )));
                }
                Ok($name { p, _t: PhantomData })
            }
        }

        impl<$($g),*> $name<$($g),*> {
            /// The untyped proxy.
            pub fn proxy(&self) -> &Proxy {
                &self.p
            }

            fn from_proxy(p: Proxy) -> Self {
                $name { p, _t: PhantomData }
            }
        }
    };
}

proxy_type! {
    /// A shared map from `K` to `V` (CBOR keys and values in the manager, kept in insertion
    /// order; keys are equal when their encodings are). From [`Manager::dict`].
    ///
    /// ```
    /// # use procwire::manager::{Manager, ManagerServer, Registry};
    /// # let key = procwire::AuthKey::random()?;
    /// # let server = ManagerServer::bind(&procwire::Address::fresh(procwire::Family::Tcp)?, key.clone(), Registry::new())?;
    /// # let manager = Manager::connect(server.address(), key)?;
    /// let d = manager.dict::<String, Vec<u8>>()?;
    /// assert_eq!(d.insert(&"a".into(), &vec![1])?, None);
    /// assert_eq!(d.insert(&"a".into(), &vec![2])?, Some(vec![1]));
    /// assert_eq!(d.items()?, vec![("a".to_string(), vec![2])]);
    /// # Ok::<(), procwire::Error>(())
    /// ```
    DictProxy[K, V] "dict"
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> DictProxy<K, V> {
    /// The value of `key`, if present.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        self.p.call::<_, Maybe<V>>("get", key).map(one)
    }

    /// Sets `key` to `value`; the value it had, if any.
    pub fn insert(&self, key: &K, value: &V) -> Result<Option<V>> {
        self.p.call::<_, Maybe<V>>("insert", &(key, value)).map(one)
    }

    /// The value of `key`, inserting `default` first if it has none (Python's `setdefault`).
    pub fn setdefault(&self, key: &K, default: &V) -> Result<V> {
        self.p.call("setdefault", &(key, default))
    }

    /// Removes `key`; the value it had, if any.
    pub fn remove(&self, key: &K) -> Result<Option<V>> {
        self.p.call::<_, Maybe<V>>("remove", key).map(one)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &K) -> Result<bool> {
        self.p.call("contains", key)
    }

    /// The number of entries.
    pub fn len(&self) -> Result<usize> {
        self.p.call("len", &())
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The keys, in insertion order.
    pub fn keys(&self) -> Result<Vec<K>> {
        self.p.call("keys", &())
    }

    /// The values, in insertion order of their keys.
    pub fn values(&self) -> Result<Vec<V>> {
        self.p.call("values", &())
    }

    /// The entries, in insertion order.
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        self.p.call("items", &())
    }

    /// Inserts every entry of `items`, in one request.
    pub fn update(&self, items: &[(K, V)]) -> Result<()> {
        self.p.call("update", &items)
    }

    /// Removes every entry.
    pub fn clear(&self) -> Result<()> {
        self.p.call("clear", &())
    }
}

proxy_type! {
    /// A shared list of `T`. Indices are `i64` and, as in Python, negative ones count from the
    /// end; one out of range is an [`Error::Remote`](crate::Error::Remote) of kind `index`. From [`Manager::list`].
    ListProxy[T] "list"
}

impl<T: Serialize + DeserializeOwned> ListProxy<T> {
    /// The number of items.
    pub fn len(&self) -> Result<usize> {
        self.p.call("len", &())
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The item at `index`.
    pub fn get(&self, index: i64) -> Result<T> {
        self.p.call("get", &index)
    }

    /// Replaces the item at `index`.
    pub fn set(&self, index: i64, item: &T) -> Result<()> {
        self.p.call("set", &(index, item))
    }

    /// Appends `item` (Python's `append`).
    pub fn push(&self, item: &T) -> Result<()> {
        self.p.call("append", item)
    }

    /// Appends every item of `items`, in one request.
    pub fn extend(&self, items: &[T]) -> Result<()> {
        self.p.call("extend", &items)
    }

    /// Inserts `item` before `index` (clamped to the ends, as in Python).
    pub fn insert(&self, index: i64, item: &T) -> Result<()> {
        self.p.call("insert", &(index, item))
    }

    /// Removes and returns the last item (kind `index` if the list is empty).
    pub fn pop(&self) -> Result<T> {
        self.p.call("pop", &None::<i64>)
    }

    /// Removes and returns the item at `index`.
    pub fn pop_at(&self, index: i64) -> Result<T> {
        self.p.call("pop", &Some(index))
    }

    /// Removes the first item equal to `item` (kind `value` if there is none).
    pub fn remove(&self, item: &T) -> Result<()> {
        self.p.call("remove", item)
    }

    /// The index of the first item equal to `item` (kind `value` if there is none).
    pub fn index(&self, item: &T) -> Result<usize> {
        self.p.call("index", item)
    }

    /// How many items equal `item`.
    pub fn count(&self, item: &T) -> Result<usize> {
        self.p.call("count", item)
    }

    /// Whether an item equals `item`.
    pub fn contains(&self, item: &T) -> Result<bool> {
        self.p.call("contains", item)
    }

    /// Reverses the list in place.
    pub fn reverse(&self) -> Result<()> {
        self.p.call("reverse", &())
    }

    /// Sorts the list in place, in the order of CBOR values (numbers by value, text
    /// lexicographically; values of different kinds by kind).
    pub fn sort(&self) -> Result<()> {
        self.p.call("sort", &())
    }

    /// A copy of every item.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.p.call("to_vec", &())
    }

    /// Removes every item.
    pub fn clear(&self) -> Result<()> {
        self.p.call("clear", &())
    }
}

proxy_type! {
    /// One shared value of type `T`, like `Manager().Value`. From [`Manager::value`].
    ValueProxy[T] "value"
}

impl<T: Serialize + DeserializeOwned> ValueProxy<T> {
    /// The value.
    pub fn get(&self) -> Result<T> {
        self.p.call("get", &())
    }

    /// Replaces the value.
    pub fn set(&self, value: &T) -> Result<()> {
        self.p.call("set", value)
    }

    /// Replaces the value and returns the one it had, atomically.
    pub fn swap(&self, value: &T) -> Result<T> {
        self.p.call("swap", value)
    }
}

proxy_type! {
    /// A shared bag of named attributes of any serde type, like `Manager().Namespace()`.
    /// Reading a missing one is an [`Error::Remote`](crate::Error::Remote) of kind `attribute`. From
    /// [`Manager::namespace`].
    NamespaceProxy[] "namespace"
}

impl NamespaceProxy {
    /// The attribute `name`, decoded as `T`.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        self.p.call("get", &name)
    }

    /// Sets the attribute `name`.
    pub fn set<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        self.p.call("set", &(name, value))
    }

    /// Deletes the attribute `name`.
    pub fn del(&self, name: &str) -> Result<()> {
        self.p.call("del", &name)
    }

    /// Whether the attribute `name` exists.
    pub fn contains(&self, name: &str) -> Result<bool> {
        self.p.call("contains", &name)
    }

    /// Every attribute, by name, as CBOR values.
    pub fn items(&self) -> Result<BTreeMap<String, ciborium::Value>> {
        self.p.call("items", &())
    }
}

/// Acquires a lock-like object: `blocking` false tries once.
fn acquire(p: &Proxy, blocking: bool, timeout: Option<Duration>) -> Result<bool> {
    p.call("acquire", &(thread_token(), blocking, secs(timeout)))
}

macro_rules! lock_methods {
    () => {
        /// Acquires, waiting as long as it takes.
        pub fn acquire(&self) -> Result<()> {
            acquire(&self.p, true, None).map(drop)
        }

        /// Acquires, waiting at most `timeout`; `false` if that was not enough.
        pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
            acquire(&self.p, true, Some(timeout))
        }

        /// Acquires if that is possible at once; `false` if not.
        pub fn try_acquire(&self) -> Result<bool> {
            acquire(&self.p, false, None)
        }

        /// Releases (an error of kind `runtime` if it was not held).
        pub fn release(&self) -> Result<()> {
            self.p.call("release", &thread_token())
        }
    };
}

proxy_type! {
    /// A shared `threading.Lock`: held by one thread of one process at a time; any thread may
    /// release it. Released by the manager when the process holding it ends. From
    /// [`Manager::lock`].
    ///
    /// ```
    /// # use procwire::manager::{Manager, ManagerServer, Registry};
    /// # use std::time::Duration;
    /// # let key = procwire::AuthKey::random()?;
    /// # let server = ManagerServer::bind(&procwire::Address::fresh(procwire::Family::Tcp)?, key.clone(), Registry::new())?;
    /// # let manager = Manager::connect(server.address(), key)?;
    /// let l = manager.lock()?;
    /// l.acquire()?;
    /// assert!(!l.acquire_timeout(Duration::from_millis(10))?);
    /// l.release()?;
    /// assert!(l.try_acquire()?);
    /// # Ok::<(), procwire::Error>(())
    /// ```
    LockProxy[] "lock"
}

impl LockProxy {
    lock_methods!();

    /// Whether some thread holds it.
    pub fn locked(&self) -> Result<bool> {
        self.p.call("locked", &())
    }
}

proxy_type! {
    /// A shared `threading.RLock`: the thread that holds it may acquire it again, and must
    /// release it as many times. From [`Manager::rlock`].
    RLockProxy[] "rlock"
}

impl RLockProxy {
    lock_methods!();
}

proxy_type! {
    /// A shared `threading.Semaphore` or `BoundedSemaphore` (where releasing over the initial
    /// value is an error of kind `value`). Permits a process took and did not give back return
    /// to the semaphore when it ends. From [`Manager::semaphore`] and
    /// [`Manager::bounded_semaphore`].
    SemaphoreProxy[] "semaphore" | "bounded_semaphore"
}

impl SemaphoreProxy {
    /// Takes a permit, waiting as long as it takes.
    pub fn acquire(&self) -> Result<()> {
        self.acquire_until(true, None).map(drop)
    }

    /// Takes a permit, waiting at most `timeout`; `false` if none came.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        self.acquire_until(true, Some(timeout))
    }

    /// Takes a permit if one is free now.
    pub fn try_acquire(&self) -> Result<bool> {
        self.acquire_until(false, None)
    }

    fn acquire_until(&self, blocking: bool, timeout: Option<Duration>) -> Result<bool> {
        self.p.call("acquire", &(blocking, secs(timeout)))
    }

    /// Gives back one permit.
    pub fn release(&self) -> Result<()> {
        self.release_n(1)
    }

    /// Gives back `n` permits.
    pub fn release_n(&self, n: u64) -> Result<()> {
        self.p.call("release", &n)
    }

    /// The number of free permits.
    pub fn value(&self) -> Result<u64> {
        self.p.call("value", &())
    }
}

proxy_type! {
    /// A shared `threading.Condition` (with its own reentrant lock). From
    /// [`Manager::condition`].
    ConditionProxy[] "condition"
}

impl ConditionProxy {
    lock_methods!();

    /// Releases the lock, waits until notified or `timeout` passes (`None`: no limit), and
    /// acquires the lock again; whether it was notified. The calling thread must hold the lock.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        self.p.call("wait", &(thread_token(), secs(timeout)))
    }

    /// Waits until `predicate` is true (checking it first, and after every wake-up, with the
    /// lock held), at most `timeout`; the predicate's last result.
    pub fn wait_for(
        &self,
        mut predicate: impl FnMut() -> Result<bool>,
        timeout: Option<Duration>,
    ) -> Result<bool> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
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
        self.p.call("notify", &(thread_token(), Some(n)))
    }

    /// Wakes up every thread waiting (the caller must hold the lock).
    pub fn notify_all(&self) -> Result<()> {
        self.p.call("notify_all", &(thread_token(), None::<u64>))
    }
}

proxy_type! {
    /// A shared `threading.Event`. From [`Manager::event`].
    EventProxy[] "event"
}

impl EventProxy {
    /// Sets the flag, waking every waiter.
    pub fn set(&self) -> Result<()> {
        self.p.call("set", &())
    }

    /// Clears the flag.
    pub fn clear(&self) -> Result<()> {
        self.p.call("clear", &())
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> Result<bool> {
        self.p.call("is_set", &())
    }

    /// Waits until the flag is set, at most `timeout` (`None`: no limit); whether it is.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        self.p.call("wait", &secs(timeout))
    }
}

proxy_type! {
    /// A shared `threading.Barrier` for a number of parties. A broken barrier is an
    /// [`Error::Remote`](crate::Error::Remote) of kind `broken_barrier`. From [`Manager::barrier`].
    BarrierProxy[] "barrier"
}

impl BarrierProxy {
    /// Waits until every party waits, at most `timeout` (`None`: no limit); an index from
    /// 0 to parties - 1, different for each party (0 for the last to arrive). A timeout breaks
    /// the barrier for everyone, as in `threading`.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<u64> {
        self.p.call("wait", &secs(timeout))
    }

    /// Back to the empty state; parties waiting get `broken_barrier`.
    pub fn reset(&self) -> Result<()> {
        self.p.call("reset", &())
    }

    /// Breaks the barrier.
    pub fn abort(&self) -> Result<()> {
        self.p.call("abort", &())
    }

    /// The number of parties.
    pub fn parties(&self) -> Result<u64> {
        self.p.call("parties", &())
    }

    /// The number of parties waiting now.
    pub fn n_waiting(&self) -> Result<u64> {
        self.p.call("n_waiting", &())
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> Result<bool> {
        self.p.call("broken", &())
    }
}

/// A [`Queue`] hosted by a manager: the manager's process serves it, and this proxy keeps it
/// alive. Use it as the queue itself (it dereferences to [`Queue<T>`]); items go straight
/// between the processes and the queue, not through the manager's request loop. From
/// [`Manager::queue`].
pub struct QueueProxy<T> {
    p: Proxy,
    q: Queue<T>,
}

impl<T> Clone for QueueProxy<T> {
    fn clone(&self) -> Self {
        QueueProxy { p: self.p.clone(), q: self.q.clone() }
    }
}

impl<T> fmt::Debug for QueueProxy<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueProxy").field("proxy", &self.p).field("queue", &self.q).finish()
    }
}

impl<T> Deref for QueueProxy<T> {
    type Target = Queue<T>;
    fn deref(&self) -> &Queue<T> {
        &self.q
    }
}

impl<T> QueueProxy<T> {
    /// The untyped proxy.
    pub fn proxy(&self) -> &Proxy {
        &self.p
    }
}

impl<T> Serialize for QueueProxy<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (&self.p, &self.q).serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for QueueProxy<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (p, q) = <(Proxy, Queue<T>)>::deserialize(d)?;
        if p.typeid() != "queue" {
            return Err(serde::de::Error::custom(format!(
                "a proxy of a {:?} where a queue was expected",
                p.typeid()
            )));
        }
        Ok(QueueProxy { p, q })
    }
}

impl Manager {
    /// A new shared dict.
    pub fn dict<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned>(
        &self,
    ) -> Result<DictProxy<K, V>> {
        self.create("dict", &()).map(DictProxy::from_proxy)
    }

    /// A new shared list holding `items`.
    pub fn list<T: Serialize + DeserializeOwned>(
        &self,
        items: impl IntoIterator<Item = T>,
    ) -> Result<ListProxy<T>> {
        let items: Vec<T> = items.into_iter().collect();
        self.create("list", &items).map(ListProxy::from_proxy)
    }

    /// A new shared value.
    pub fn value<T: Serialize + DeserializeOwned>(&self, value: &T) -> Result<ValueProxy<T>> {
        self.create("value", value).map(ValueProxy::from_proxy)
    }

    /// A new shared namespace, with no attributes.
    pub fn namespace(&self) -> Result<NamespaceProxy> {
        self.create("namespace", &()).map(NamespaceProxy::from_proxy)
    }

    /// A new queue served by the manager's process, of at most `maxsize` items (`None`:
    /// unbounded).
    pub fn queue<T: Serialize + DeserializeOwned>(&self, maxsize: Option<usize>) -> Result<QueueProxy<T>> {
        let p = self.create("queue", &maxsize.map(|m| m as u64))?;
        let q: Queue<T> = p.call("handle", &())?;
        Ok(QueueProxy { p, q })
    }

    /// A new shared lock.
    pub fn lock(&self) -> Result<LockProxy> {
        self.create("lock", &()).map(LockProxy::from_proxy)
    }

    /// A new shared reentrant lock.
    pub fn rlock(&self) -> Result<RLockProxy> {
        self.create("rlock", &()).map(RLockProxy::from_proxy)
    }

    /// A new shared lock with a lease: a holder keeps it at most `lease` after its acquire,
    /// then the manager takes it back (a waiter gets it), and the holder's later `release` is
    /// an [`Error::Remote`](crate::Error::Remote) of kind [`LEASE_EXPIRED`](super::LEASE_EXPIRED).
    /// This bounds how long a holder that is alive but stuck (stopped, deadlocked, paging)
    /// blocks everyone else; a lock without a lease is held until released or until the
    /// holder's process ends. A lease shorter than a nanosecond is an error of kind `value`.
    ///
    /// ```
    /// # use procwire::manager::{LEASE_EXPIRED, Manager, ManagerServer, Registry};
    /// # use procwire::Error;
    /// # use std::time::Duration;
    /// # let key = procwire::AuthKey::random()?;
    /// # let server = ManagerServer::bind(&procwire::Address::fresh(procwire::Family::Tcp)?, key.clone(), Registry::new())?;
    /// # let manager = Manager::connect(server.address(), key)?;
    /// let l = manager.lock_with_lease(Duration::from_millis(50))?;
    /// l.acquire()?;
    /// std::thread::sleep(Duration::from_millis(100));
    /// assert!(!l.locked()?, "taken back");
    /// match l.release() {
    ///     Err(Error::Remote { kind, .. }) => assert_eq!(kind, LEASE_EXPIRED),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn lock_with_lease(&self, lease: Duration) -> Result<LockProxy> {
        self.create("lock", &Some(lease.as_secs_f64())).map(LockProxy::from_proxy)
    }

    /// A new shared reentrant lock with a lease, as [`lock_with_lease`](Manager::lock_with_lease):
    /// each acquire by the holder (a nested one too) starts the lease again.
    pub fn rlock_with_lease(&self, lease: Duration) -> Result<RLockProxy> {
        self.create("rlock", &Some(lease.as_secs_f64())).map(RLockProxy::from_proxy)
    }

    /// A new shared semaphore with `value` permits.
    pub fn semaphore(&self, value: u64) -> Result<SemaphoreProxy> {
        self.create("semaphore", &value).map(SemaphoreProxy::from_proxy)
    }

    /// A new shared bounded semaphore with `value` permits.
    pub fn bounded_semaphore(&self, value: u64) -> Result<SemaphoreProxy> {
        self.create("bounded_semaphore", &value).map(SemaphoreProxy::from_proxy)
    }

    /// A new shared condition.
    pub fn condition(&self) -> Result<ConditionProxy> {
        self.create("condition", &()).map(ConditionProxy::from_proxy)
    }

    /// A new shared event, not set.
    pub fn event(&self) -> Result<EventProxy> {
        self.create("event", &()).map(EventProxy::from_proxy)
    }

    /// A new shared barrier for `parties` parties (at least 1: 0 is an error of kind `value`).
    pub fn barrier(&self, parties: u64) -> Result<BarrierProxy> {
        self.create("barrier", &parties).map(BarrierProxy::from_proxy)
    }
}
