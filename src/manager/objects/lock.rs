//! `lock` and `rlock`, with their optional lease.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{
    Ctx, Fault, Object, Outcome, Owner, Woke, args, block, deadline, gone_fault, lock, no_method, reply,
};
use crate::RemoteKind;

/// Who holds a lock, how many times, and until when its lease runs.
#[derive(Clone, Copy)]
struct Held {
    owner: Owner,
    count: u64,
    until: Option<Instant>,
}

#[derive(Default)]
struct LockState {
    held: Option<Held>,
    /// Recent holders whose lease ran out, most recent last: their `release` is an error of
    /// kind [`LEASE_EXPIRED`](crate::manager::LEASE_EXPIRED).
    expired: VecDeque<Owner>,
}

/// How many holders whose lease ran out a lock remembers.
const EXPIRED_KEPT: usize = 64;

impl LockState {
    /// Takes the lock back from a holder whose lease has run out.
    fn expire(&mut self, now: Instant) -> bool {
        match self.held {
            Some(h) if h.until.is_some_and(|u| now >= u) => {
                self.held = None;
                self.expired.retain(|o| *o != h.owner);
                if self.expired.len() == EXPIRED_KEPT {
                    self.expired.pop_front();
                }
                self.expired.push_back(h.owner);
                true
            }
            _ => false,
        }
    }
}

/// `lock` (reentrant: `rlock`): held by one thread of one client at a time, and with a lease
/// for at most that long after each acquire.
pub(crate) struct Lock {
    reentrant: bool,
    lease: Option<Duration>,
    st: Mutex<LockState>,
    cv: Condvar,
}

impl Lock {
    /// A lock; `lease` in seconds (`None`: held until released).
    pub(crate) fn new(reentrant: bool, lease: Option<f64>) -> Result<Lock, Fault> {
        let lease = match lease {
            None => None,
            Some(s) => match Duration::try_from_secs_f64(s) {
                Ok(d) if !d.is_zero() => Some(d),
                _ => return Err(Fault::new(RemoteKind::Value, "a lease is a positive number of seconds")),
            },
        };
        Ok(Lock { reentrant, lease, st: Mutex::new(LockState::default()), cv: Condvar::new() })
    }
}

impl Object for Lock {
    fn call(&self, ctx: &mut Ctx<'_>, method: &str, a: &[u8]) -> Outcome {
        let name = if self.reentrant { "rlock" } else { "lock" };
        match method {
            "acquire" => {
                let (thread, blocking, timeout): (u64, bool, Option<f64>) = args(method, a)?;
                let me = ctx.owner(thread);
                let deadline = deadline(blocking, timeout)?;
                let mut st = lock(&self.st);
                loop {
                    let now = Instant::now();
                    if st.expire(now) {
                        self.cv.notify_all();
                    }
                    let until = self.lease.and_then(|l| now.checked_add(l));
                    match &mut st.held {
                        None => {
                            st.held = Some(Held { owner: me, count: 1, until });
                            st.expired.retain(|o| *o != me);
                            return reply(true);
                        }
                        Some(h) if self.reentrant && h.owner == me => {
                            h.count += 1;
                            h.until = until;
                            return reply(true);
                        }
                        Some(_) => {}
                    }
                    if deadline.is_some_and(|d| now >= d) {
                        return reply(false);
                    }
                    // Wake up when the holder's lease runs out, if that comes first.
                    let until = st.held.and_then(|h| h.until);
                    let wake = match (deadline, until) {
                        (Some(d), Some(u)) => Some(d.min(u)),
                        (d, u) => d.or(u),
                    };
                    let (g, woke) = block(&self.cv, st, wake, ctx);
                    st = g;
                    if let Woke::Gone = woke {
                        return Err(gone_fault());
                    }
                }
            }
            "release" => {
                let thread: u64 = args(method, a)?;
                let me = ctx.owner(thread);
                let mut st = lock(&self.st);
                st.expire(Instant::now());
                let mine = st.held.is_some_and(|h| h.owner == me);
                if !mine && st.expired.contains(&me) {
                    st.expired.retain(|o| *o != me);
                    return Err(Fault::new(
                        RemoteKind::LeaseExpired,
                        format!("the lease on this {name} ran out and the manager took it back"),
                    ));
                }
                match &mut st.held {
                    None if self.reentrant => {
                        Err(Fault::new(RemoteKind::Runtime, "cannot release un-acquired lock"))
                    }
                    None => Err(Fault::new(RemoteKind::Runtime, "release unlocked lock")),
                    Some(h) if self.reentrant && h.owner != me => {
                        Err(Fault::new(RemoteKind::Runtime, "cannot release un-acquired lock"))
                    }
                    Some(h) => {
                        // As threading.Lock, a plain lock may be released by any thread.
                        h.count -= 1;
                        if h.count == 0 || !self.reentrant {
                            st.held = None;
                            self.cv.notify_all();
                        }
                        reply(())
                    }
                }
            }
            "locked" => {
                let mut st = lock(&self.st);
                st.expire(Instant::now());
                reply(st.held.is_some())
            }
            _ => Err(no_method(name, method)),
        }
    }

    fn session_ended(&self, session: u64) {
        let mut st = lock(&self.st);
        st.expired.retain(|o| o.session != session);
        if st.held.is_some_and(|h| h.owner.session == session) {
            st.held = None;
            self.cv.notify_all();
        }
    }
}
