//! Waking: the [`Signal`] a waiter on many channels and listeners sleeps on, and the fences of
//! the sleep handshake between a busy side and a side about to sleep.

use std::sync::atomic::{AtomicBool, Ordering, compiler_fence, fence};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::util::{lock, wait_deadline};

/// A flag one waiter sleeps on while it watches many channels and listeners.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    fired: Mutex<bool>,
    cv: Condvar,
}

impl Signal {
    fn fire(&self) {
        *lock(&self.fired) = true;
        self.cv.notify_all();
    }

    /// Sleeps until fired, `deadline`, or at most [`RECHECK`] (the caller looks again); clears
    /// the flag.
    pub(crate) fn wait(&self, deadline: Option<Instant>) {
        let recheck = Instant::now().checked_add(RECHECK);
        let deadline = match (deadline, recheck) {
            (Some(d), Some(r)) => Some(d.min(r)),
            (d, r) => d.or(r),
        };
        let mut fired = lock(&self.fired);
        while !*fired {
            let (g, more) = wait_deadline(&self.cv, fired, deadline);
            fired = g;
            if !more {
                break;
            }
        }
        *fired = false;
    }
}

pub(super) fn fire_all(watchers: &[Arc<Signal>]) {
    for w in watchers {
        w.fire();
    }
}

pub(super) fn unwatch(watchers: &mut Vec<Arc<Signal>>, s: &Arc<Signal>) {
    if let Some(i) = watchers.iter().position(|w| Arc::ptr_eq(w, s)) {
        watchers.swap_remove(i);
    }
}

/// Whether process-wide barriers work here (Linux `membarrier`, Windows
/// `FlushProcessWriteBuffers`): then the busy side of a sleep handshake, which runs at every
/// write and read, needs only a compiler fence, and the side about to sleep pays for both.
/// A real fence at every write would make the writer wait for its store to reach the reader's
/// core.
static ASYMMETRIC: OnceLock<bool> = OnceLock::new();

/// The longest a sleeper waits before it looks again even if nobody signalled it: a bound on
/// the cost of a signal lost if a process barrier failed after working before.
pub(super) const RECHECK: Duration = Duration::from_secs(1);

/// Set if a process barrier failed after working before: busy sides go back to real fences
/// (sleepers' [`RECHECK`] covers the switch-over).
static DEGRADED: AtomicBool = AtomicBool::new(false);

fn asymmetric() -> bool {
    *ASYMMETRIC.get_or_init(crate::sys::process_barrier) && !DEGRADED.load(Ordering::Relaxed)
}

/// The fence of the busy side: between publishing and looking for sleepers.
pub(super) fn busy_fence() {
    if asymmetric() {
        compiler_fence(Ordering::SeqCst);
    } else {
        fence(Ordering::SeqCst);
    }
}

/// The fence of the side about to sleep: between saying so and looking for news.
pub(crate) fn sleeper_fence() {
    if asymmetric() && !crate::sys::process_barrier() {
        DEGRADED.store(true, Ordering::SeqCst);
    }
    if !asymmetric() {
        fence(Ordering::SeqCst);
    }
}
