//! Proxies of the synchronization primitives of `threading`: lock, rlock, semaphore,
//! condition, event, barrier.

use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Proxy, secs};
use crate::Result;
#[cfg(doc)]
use crate::manager::Manager;
use crate::manager::thread_token;

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

    plain_calls! {
        /// Whether some thread holds it.
        fn locked() -> bool;
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

    plain_calls! {
        /// The number of free permits.
        fn value() -> u64;
    }
}

proxy_type! {
    /// A shared `threading.Condition` (with its own reentrant lock). From
    /// [`Manager::condition`].
    ConditionProxy[] "condition"
}

impl ConditionProxy {
    lock_methods!();

    /// Releases the lock, waits until notified, and acquires the lock again. The calling
    /// thread must hold the lock.
    pub fn wait(&self) -> Result<()> {
        self.wait_for_secs(None).map(drop)
    }

    /// As [`wait`](ConditionProxy::wait), waiting at most `timeout`; whether it was notified.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.wait_for_secs(Some(timeout))
    }

    fn wait_for_secs(&self, timeout: Option<Duration>) -> Result<bool> {
        self.p.call("wait", &(thread_token(), secs(timeout)))
    }

    /// Waits until `predicate` is true, checking it first and after every wake-up, with the
    /// lock held.
    pub fn wait_for(&self, predicate: impl FnMut() -> Result<bool>) -> Result<()> {
        self.wait_for_until(predicate, None).map(drop)
    }

    /// As [`wait_for`](ConditionProxy::wait_for), waiting at most `timeout`; the predicate's
    /// last result.
    pub fn wait_for_timeout(
        &self,
        predicate: impl FnMut() -> Result<bool>,
        timeout: Duration,
    ) -> Result<bool> {
        self.wait_for_until(predicate, Instant::now().checked_add(timeout))
    }

    fn wait_for_until(
        &self,
        mut predicate: impl FnMut() -> Result<bool>,
        deadline: Option<Instant>,
    ) -> Result<bool> {
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
            self.wait_for_secs(left)?;
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
    plain_calls! {
        /// Sets the flag, waking every waiter.
        fn set() -> ();
        /// Clears the flag.
        fn clear() -> ();
        /// Whether the flag is set.
        fn is_set() -> bool;
    }

    /// Waits until the flag is set.
    pub fn wait(&self) -> Result<()> {
        self.p.call::<_, bool>("wait", &secs(None)).map(drop)
    }

    /// Waits until the flag is set, at most `timeout`; whether it is.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.p.call("wait", &secs(Some(timeout)))
    }
}

proxy_type! {
    /// A shared `threading.Barrier` for a number of parties. A broken barrier is an
    /// [`Error::Remote`](crate::Error::Remote) of kind `broken_barrier`. From [`Manager::barrier`].
    BarrierProxy[] "barrier"
}

impl BarrierProxy {
    /// Waits until every party waits; an index from 0 to parties - 1, different for each
    /// party (0 for the last to arrive).
    pub fn wait(&self) -> Result<u64> {
        self.p.call("wait", &secs(None))
    }

    /// As [`wait`](BarrierProxy::wait), waiting at most `timeout`. A timeout breaks the
    /// barrier for everyone, as in `threading`.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u64> {
        self.p.call("wait", &secs(Some(timeout)))
    }

    plain_calls! {
        /// Back to the empty state; parties waiting get `broken_barrier`.
        fn reset() -> ();
        /// Breaks the barrier.
        fn abort() -> ();
        /// The number of parties.
        fn parties() -> u64;
        /// The number of parties waiting now.
        fn n_waiting() -> u64;
        /// Whether the barrier is broken.
        fn broken() -> bool;
    }
}
