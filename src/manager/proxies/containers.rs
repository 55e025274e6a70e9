//! Proxies of the containers: dict, list, value, namespace, and the queue.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Proxy;
use crate::Result;
#[cfg(doc)]
use crate::manager::Manager;
use crate::manager::wire::Maybe;
use crate::queue::Queue;

fn one<T>(mut v: Maybe<T>) -> Option<T> {
    v.pop()
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

    /// Whether there are no entries.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    plain_calls! {
        /// The number of entries.
        fn len() -> usize;
        /// The keys, in insertion order.
        fn keys() -> Vec<K>;
        /// The values, in insertion order of their keys.
        fn values() -> Vec<V>;
        /// The entries, in insertion order.
        fn items() -> Vec<(K, V)>;
        /// Removes every entry.
        fn clear() -> ();
    }

    /// Inserts every entry of `items`, in one request.
    pub fn update(&self, items: &[(K, V)]) -> Result<()> {
        self.p.call("update", &items)
    }
}

proxy_type! {
    /// A shared list of `T`. Indices are `i64` and, as in Python, negative ones count from the
    /// end; one out of range is an [`Error::Remote`](crate::Error::Remote) of kind `index`. From [`Manager::list`].
    ListProxy[T] "list"
}

impl<T: Serialize + DeserializeOwned> ListProxy<T> {
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

    plain_calls! {
        /// The number of items.
        fn len() -> usize;
        /// Reverses the list in place.
        fn reverse() -> ();
        /// Sorts the list in place, in the order of CBOR values (numbers by value, text
        /// lexicographically; values of different kinds by kind).
        fn sort() -> ();
        /// A copy of every item.
        fn to_vec() -> Vec<T>;
        /// Removes every item.
        fn clear() -> ();
    }
}

proxy_type! {
    /// One shared value of type `T`, like `Manager().Value`. From [`Manager::value`].
    ValueProxy[T] "value"
}

impl<T: Serialize + DeserializeOwned> ValueProxy<T> {
    plain_calls! {
        /// The value.
        fn get() -> T;
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

    plain_calls! {
        /// Every attribute, by name, as CBOR values.
        fn items() -> BTreeMap<String, ciborium::Value>;
    }
}

/// A [`Queue`] hosted by a manager: the manager's process serves it, and this proxy keeps it
/// alive. Use it as the queue itself (it dereferences to [`Queue<T>`]); items go straight
/// between the processes and the queue, not through the manager's request loop. From
/// [`Manager::queue`]. (`Q` is the queue's type: `procwire::dummy`'s manager hands out its
/// in-memory queues in the same proxy.)
pub struct QueueProxy<T, Q = Queue<T>> {
    p: Proxy,
    q: Q,
    _t: PhantomData<fn() -> T>,
}

impl<T, Q: Clone> Clone for QueueProxy<T, Q> {
    fn clone(&self) -> Self {
        QueueProxy::new(self.p.clone(), self.q.clone())
    }
}

impl<T, Q: fmt::Debug> fmt::Debug for QueueProxy<T, Q> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueProxy").field("proxy", &self.p).field("queue", &self.q).finish()
    }
}

impl<T, Q> Deref for QueueProxy<T, Q> {
    type Target = Q;
    fn deref(&self) -> &Q {
        &self.q
    }
}

impl<T, Q> QueueProxy<T, Q> {
    /// The untyped proxy.
    pub fn proxy(&self) -> &Proxy {
        &self.p
    }

    /// The proxy `p` of the manager's object for the queue `q`.
    pub(crate) fn new(p: Proxy, q: Q) -> Self {
        QueueProxy { p, q, _t: PhantomData }
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
        Ok(QueueProxy::new(p, q))
    }
}
