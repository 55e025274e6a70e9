//! Typed proxies of the built-in types, and the [`Manager`] methods that create them.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Manager, Proxy};
use crate::Result;
use crate::queue::Queue;

/// A timeout as the wire carries it: seconds, `None` for none.
fn secs(t: Option<Duration>) -> Option<f64> {
    t.map(|d| d.as_secs_f64())
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

            pub(super) fn from_proxy(p: Proxy) -> Self {
                $name { p, _t: PhantomData }
            }
        }
    };
}

/// Methods without arguments that call the object's method of the same name.
macro_rules! plain_calls {
    ($($(#[$doc:meta])* fn $name:ident() -> $r:ty;)*) => {$(
        $(#[$doc])*
        pub fn $name(&self) -> Result<$r> {
            self.p.call(stringify!($name), &())
        }
    )*};
}

mod containers;
mod sync;

pub use self::containers::{DictProxy, ListProxy, NamespaceProxy, QueueProxy, ValueProxy};
pub use self::sync::{BarrierProxy, ConditionProxy, EventProxy, LockProxy, RLockProxy, SemaphoreProxy};

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

    /// A new unbounded queue served by the manager's process.
    pub fn queue<T: Serialize + DeserializeOwned>(&self) -> Result<QueueProxy<T>> {
        self.queue_of(None)
    }

    /// A new queue served by the manager's process, of at most `maxsize` items.
    pub fn queue_with_maxsize<T: Serialize + DeserializeOwned>(
        &self,
        maxsize: usize,
    ) -> Result<QueueProxy<T>> {
        self.queue_of(Some(maxsize))
    }

    fn queue_of<T: Serialize + DeserializeOwned>(&self, maxsize: Option<usize>) -> Result<QueueProxy<T>> {
        let p = self.create("queue", &maxsize.map(|m| m as u64))?;
        let q: Queue<T> = p.call("handle", &())?;
        Ok(QueueProxy::new(p, q))
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
    /// an [`Error::Remote`](crate::Error::Remote) of kind
    /// [`RemoteKind::LeaseExpired`](crate::RemoteKind::LeaseExpired).
    /// This bounds how long a holder that is alive but stuck (stopped, deadlocked, paging)
    /// blocks everyone else; a lock without a lease is held until released or until the
    /// holder's process ends. A lease shorter than a nanosecond is an error of kind `value`.
    ///
    /// ```
    /// # use procwire::manager::{Manager, ManagerServer, Registry};
    /// # use procwire::{Error, RemoteKind};
    /// # use std::time::Duration;
    /// # let key = procwire::AuthKey::random()?;
    /// # let server = ManagerServer::bind(&procwire::Address::fresh(procwire::Family::Tcp)?, key.clone(), Registry::new())?;
    /// # let manager = Manager::connect(server.address(), key)?;
    /// let l = manager.lock_with_lease(Duration::from_millis(50))?;
    /// l.acquire()?;
    /// std::thread::sleep(Duration::from_millis(100));
    /// assert!(!l.locked()?, "taken back");
    /// match l.release() {
    ///     Err(Error::Remote { kind: RemoteKind::LeaseExpired, .. }) => {}
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
