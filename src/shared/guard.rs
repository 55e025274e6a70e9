//! The guard of a locked [`Value`](super::Value) or [`Array`](super::Array), and poisoning:
//! a holder that died or panicked marks the memory so that every later locker learns of it.

use std::fmt;
use std::io;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::invalid;
use super::segment::Segment;
#[cfg(doc)]
use super::{Array, Value};
use crate::sys::shm::Lock;
use crate::{Error, Result};

/// Holds the lock of a [`Value`] or an [`Array`]; derefs to the data (`T` or `[T]`). The lock
/// is released when the guard is dropped.
pub struct Guard<'a, D: ?Sized> {
    seg: &'a Segment,
    lock: &'a Lock,
    /// Into the data of `seg`, which only a holder of the lock touches.
    data: *mut D,
    poisoned: bool,
    /// Whether this thread was panicking already when it locked (then its end does not poison).
    panicking: bool,
}

impl<D: ?Sized> Guard<'_, D> {
    /// Whether a holder of the lock died (or a thread panicked holding a guard) since the
    /// poison was last cleared: the data may be half-written. While this is so, `get`, `set`,
    /// `with_lock` and `to_vec` fail with [`Error::PreviousOwnerDied`] in every process.
    pub fn previous_owner_died(&self) -> bool {
        self.poisoned
    }

    /// Says the data is whole again (after looking at it or repairing it through this guard):
    /// clears the poison for every process.
    pub fn clear_poison(&mut self) {
        self.seg.poison().store(0, Ordering::Relaxed);
        self.poisoned = false;
    }
}

impl<D: ?Sized> Deref for Guard<'_, D> {
    type Target = D;
    fn deref(&self) -> &D {
        // SAFETY: the pointer is into the mapping, which the guard keeps borrowed, and this
        // guard holds the lock, which every access to the data of a locked segment takes (no
        // handle reaches it otherwise).
        unsafe { &*self.data }
    }
}

impl<D: ?Sized> DerefMut for Guard<'_, D> {
    fn deref_mut(&mut self) -> &mut D {
        // SAFETY: as deref; the `&mut self` borrow makes it the only reference from this guard.
        unsafe { &mut *self.data }
    }
}

impl<D: ?Sized> Drop for Guard<'_, D> {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.panicking {
            // A panic in the middle of an update: as a death, the data may be half-written.
            self.seg.poison().store(1, Ordering::Relaxed);
        }
        // SAFETY: this guard locked it, on this thread (a guard is not Send).
        unsafe { self.lock.unlock(&self.seg.map) };
    }
}

impl<D: ?Sized + fmt::Debug> fmt::Debug for Guard<'_, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard").field("data", &&**self).field("previous_owner_died", &self.poisoned).finish()
    }
}

/// Takes the lock of `seg` (at most `timeout`, when given); `what` names the data in a timeout.
pub(super) fn lock<'a, D: ?Sized>(
    seg: &'a Segment,
    data: *mut D,
    timeout: Option<Duration>,
    what: &str,
) -> Result<Guard<'a, D>> {
    let Some(l) = &seg.lock else {
        return Err(invalid("shared memory without a lock".into()));
    };
    // SAFETY: the lock of the mapping that `seg` keeps alive.
    let died =
        unsafe { l.lock(&seg.map, timeout) }.map_err(|e| match (e.kind(), e.raw_os_error(), timeout) {
            (io::ErrorKind::TimedOut, None, Some(t)) => Error::Timeout(format!(
                "after {t:?} waiting for the lock of a shared {what}: another holder kept it"
            )),
            _ => Error::Io(e),
        })?;
    let poison = seg.poison();
    if died {
        // Under the lock, before anyone else can see the data: every later locker, in any
        // process, learns of the death (the OS tells only this one).
        poison.store(1, Ordering::Relaxed);
    }
    let poisoned = poison.load(Ordering::Relaxed) != 0;
    Ok(Guard { seg, lock: l, data, poisoned, panicking: std::thread::panicking() })
}

/// A guard for copying in or out: refused while the data is poisoned.
pub(super) fn unpoisoned<D: ?Sized>(g: Guard<'_, D>) -> Result<Guard<'_, D>> {
    if g.poisoned { Err(Error::PreviousOwnerDied) } else { Ok(g) }
}
