//! A manager of shared objects in this process: the [`manager`](crate::manager) API with its
//! objects and proxy types ([`DictProxy`], [`LockProxy`], ...), served in this process and
//! called on the caller's own thread (no connection, socket or server thread). Values are
//! serde types kept as CBOR, as there: dict keys are equal when their encodings are, lists
//! sort in the order of CBOR values, errors are the same [`Error::Remote`] kinds, and custom
//! types work ([`Manager::with_registry`]).
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
//! # Differences from the process version
//!
//! - A proxy is shared by cloning it; there is no `connect`, and a proxy deserializes only in
//!   this process, while its manager lives.
//! - [`Manager::queue`] makes a [`dummy` queue](super::queue::Queue): items need `Clone`, not
//!   serde, and the manager's shutdown does not close it.
//! - A thread that ends holding a lock keeps it (as in `threading`); the process version's
//!   manager releases what a dead client process held.
//! - After [`Manager::shutdown`] every call, and every call blocked in a wait (within 0.1 s),
//!   fails with [`Error::Closed`]; objects are freed with their last proxy.
//!
//! [`Error::Remote`]: crate::Error::Remote
//! [`Error::Closed`]: crate::Error::Closed

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::manager::{
    BarrierProxy, ConditionProxy, DictProxy, EventProxy, LEASE_EXPIRED, ListProxy, LockProxy, NamespaceProxy,
    Proxy, RLockProxy, Registry, SERVE, SemaphoreProxy, TypeBuilder, ValueProxy,
};

use super::queue::{Queue, QueueBuilder};
use crate::Result;

/// A handle to a manager of objects in this process: creates shared objects and returns their
/// proxies, which keep them alive. Clones share the manager.
#[derive(Clone, Debug)]
pub struct Manager {
    m: crate::manager::Manager,
}

/// Methods that only pass their arguments on (generic ones over serde types).
macro_rules! forward {
    ($($(#[$doc:meta])* fn $name:ident$([$($g:ident),*])?($($a:ident: $t:ty),*) -> $r:ty;)*) => {$(
        $(#[$doc])*
        pub fn $name$(<$($g: Serialize + DeserializeOwned),*>)?(&self, $($a: $t),*) -> Result<$r> {
            self.m.$name($($a),*)
        }
    )*};
}

impl Manager {
    /// A manager of the built-in types in this process (the process version starts a child;
    /// here there is nothing to start, and [`SERVE`] need not be listed anywhere).
    pub fn start() -> Result<Manager> {
        Manager::with_registry(Registry::new())
    }

    /// A manager of the types of `registry` in this process ([`create`](Manager::create)
    /// makes them; its `queue` type is the one [`queue`](Manager::queue) needs).
    ///
    /// ```
    /// use procwire::dummy::manager::{Manager, Registry};
    ///
    /// let mut reg = Registry::new();
    /// reg.register("Counter", |start: u64| start).method("add", |c: &mut u64, n: u64| { *c += n; *c });
    /// let m = Manager::with_registry(reg)?;
    /// let counter = m.create("Counter", &40u64)?;
    /// assert_eq!(counter.call::<_, u64>("add", &2u64)?, 42);
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn with_registry(mut registry: Registry) -> Result<Manager> {
        // The items of a queue stay in its handles; the manager holds a token of it, so that
        // it counts and frees queues as it does the process version's.
        registry.register("queue", |_: Option<u64>| ());
        Ok(Manager { m: crate::manager::Manager::in_process(registry)? })
    }

    /// Creates an object of a registered type from `args` and returns its untyped proxy
    /// (an unknown type id is an [`Error::Remote`](crate::Error::Remote) of kind `create`).
    pub fn create<A: Serialize>(&self, typeid: &str, args: &A) -> Result<Proxy> {
        self.m.create(typeid, args)
    }

    /// A new unbounded queue.
    pub fn queue<T: Clone + Send + 'static>(&self) -> Result<QueueProxy<T>> {
        self.queue_of(None)
    }

    /// A new queue of at most `maxsize` items.
    pub fn queue_with_maxsize<T: Clone + Send + 'static>(&self, maxsize: usize) -> Result<QueueProxy<T>> {
        self.queue_of(Some(maxsize))
    }

    fn queue_of<T: Clone + Send + 'static>(&self, maxsize: Option<usize>) -> Result<QueueProxy<T>> {
        let p = self.m.create("queue", &maxsize.map(|m| m as u64))?;
        let b = maxsize.map_or_else(QueueBuilder::new, |m| QueueBuilder::new().maxsize(m));
        Ok(QueueProxy::new(p, b.build()?))
    }

    forward! {
        /// A new shared dict.
        fn dict[K, V]() -> DictProxy<K, V>;
        /// A new shared list holding `items`.
        fn list[T](items: impl IntoIterator<Item = T>) -> ListProxy<T>;
        /// A new shared value.
        fn value[T](value: &T) -> ValueProxy<T>;
        /// A new shared namespace, with no attributes.
        fn namespace() -> NamespaceProxy;
        /// A new shared lock.
        fn lock() -> LockProxy;
        /// A new shared reentrant lock.
        fn rlock() -> RLockProxy;
        /// A new shared lock with a lease, as the process version's
        /// [`lock_with_lease`](crate::manager::Manager::lock_with_lease).
        fn lock_with_lease(lease: Duration) -> LockProxy;
        /// A new shared reentrant lock with a lease.
        fn rlock_with_lease(lease: Duration) -> RLockProxy;
        /// A new shared semaphore with `value` permits.
        fn semaphore(value: u64) -> SemaphoreProxy;
        /// A new shared bounded semaphore with `value` permits.
        fn bounded_semaphore(value: u64) -> SemaphoreProxy;
        /// A new shared condition.
        fn condition() -> ConditionProxy;
        /// A new shared event, not set.
        fn event() -> EventProxy;
        /// A new shared barrier for `parties` parties (at least 1: 0 is an error of kind `value`).
        fn barrier(parties: u64) -> BarrierProxy;
        /// The number of objects alive (those some proxy still holds).
        fn object_count() -> usize;
        /// Shuts the manager down: its objects are dropped, and every proxy of it (a call
        /// blocked in a wait too) fails with [`Error::Closed`](crate::Error::Closed).
        fn shutdown() -> ();
    }
}

/// A [`Queue`] made by a manager: use it as the queue itself (it dereferences to
/// [`Queue<T>`]). From [`Manager::queue`]; the manager's shutdown does not close it.
pub type QueueProxy<T> = crate::manager::QueueProxy<T, Queue<T>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_count_as_objects_and_proxies_deserialize_here() {
        let m = Manager::start().unwrap();
        let q = m.queue::<std::sync::Arc<str>>().unwrap();
        q.put(&"not serde".into()).unwrap();
        assert_eq!(&*q.get().unwrap(), "not serde");
        let v = m.value(&7u8).unwrap();
        let mut bytes = Vec::new();
        ciborium::into_writer(&v, &mut bytes).unwrap();
        let again: ValueProxy<u8> = ciborium::from_reader(&bytes[..]).unwrap();
        assert_eq!(again.get().unwrap(), 7);
        assert_eq!(m.object_count().unwrap(), 2);
        drop((q, v, again));
        assert_eq!(m.object_count().unwrap(), 0, "freed with the last proxy");
    }
}
