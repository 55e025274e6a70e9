//! `condition`: a reentrant lock with wait and notify.

use std::collections::{HashSet, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use super::{
    Ctx, Fault, Object, Outcome, Owner, Woke, args, block, deadline, gone_fault, lock, no_method, reply,
};
use crate::RemoteKind;

#[derive(Default)]
struct CondState {
    /// The condition's lock: reentrant, as threading.Condition's default RLock.
    owner: Option<(Owner, u64)>,
    waiting: VecDeque<u64>,
    notified: HashSet<u64>,
    next: u64,
}

/// `condition`: a reentrant lock with wait and notify.
#[derive(Default)]
pub(crate) struct Condition {
    st: Mutex<CondState>,
    cv: Condvar,
}

impl Condition {
    fn take_lock<'a>(
        &'a self,
        mut st: MutexGuard<'a, CondState>,
        me: Owner,
        count: u64,
        deadline: Option<Instant>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(MutexGuard<'a, CondState>, bool), Fault> {
        loop {
            match &mut st.owner {
                None => {
                    st.owner = Some((me, count));
                    return Ok((st, true));
                }
                Some((o, n)) if *o == me => {
                    *n += count;
                    return Ok((st, true));
                }
                Some(_) => {}
            }
            let (g, woke) = block(&self.cv, st, deadline, ctx);
            st = g;
            match woke {
                Woke::Maybe => {}
                Woke::TimedOut => return Ok((st, false)),
                Woke::Gone => return Err(gone_fault()),
            }
        }
    }
}

fn owns(st: &CondState, me: Owner) -> bool {
    st.owner.is_some_and(|(o, _)| o == me)
}

impl Object for Condition {
    fn call(&self, ctx: &mut Ctx<'_>, method: &str, a: &[u8]) -> Outcome {
        match method {
            "acquire" => {
                let (thread, blocking, timeout): (u64, bool, Option<f64>) = args(method, a)?;
                let deadline = deadline(blocking, timeout)?;
                let st = lock(&self.st);
                let (_st, got) = self.take_lock(st, ctx.owner(thread), 1, deadline, ctx)?;
                reply(got)
            }
            "release" => {
                let thread: u64 = args(method, a)?;
                let mut st = lock(&self.st);
                if !owns(&st, ctx.owner(thread)) {
                    return Err(Fault::new(RemoteKind::Runtime, "cannot release un-acquired lock"));
                }
                if let Some((_, n)) = &mut st.owner {
                    *n -= 1;
                    if *n == 0 {
                        st.owner = None;
                        self.cv.notify_all();
                    }
                }
                reply(())
            }
            "wait" => {
                let (thread, timeout): (u64, Option<f64>) = args(method, a)?;
                let me = ctx.owner(thread);
                let deadline = deadline(true, timeout)?;
                let mut st = lock(&self.st);
                let Some((_, count)) = st.owner.filter(|(o, _)| *o == me) else {
                    return Err(Fault::new(RemoteKind::Runtime, "cannot wait on un-acquired lock"));
                };
                st.owner = None;
                st.next += 1;
                let ticket = st.next;
                st.waiting.push_back(ticket);
                self.cv.notify_all();
                let notified = loop {
                    if st.notified.remove(&ticket) {
                        break true;
                    }
                    let (g, woke) = block(&self.cv, st, deadline, ctx);
                    st = g;
                    match woke {
                        Woke::Maybe => {}
                        Woke::TimedOut => {
                            st.waiting.retain(|t| *t != ticket);
                            break st.notified.remove(&ticket);
                        }
                        Woke::Gone => {
                            st.waiting.retain(|t| *t != ticket);
                            st.notified.remove(&ticket);
                            return Err(gone_fault());
                        }
                    }
                };
                let _ = self.take_lock(st, me, count, None, ctx)?;
                reply(notified)
            }
            "notify" | "notify_all" => {
                let (thread, n): (u64, Option<u64>) = args(method, a)?;
                let mut st = lock(&self.st);
                if !owns(&st, ctx.owner(thread)) {
                    return Err(Fault::new(RemoteKind::Runtime, "cannot notify on un-acquired lock"));
                }
                let n = if method == "notify_all" { u64::MAX } else { n.unwrap_or(1) };
                for _ in 0..n {
                    let Some(t) = st.waiting.pop_front() else { break };
                    st.notified.insert(t);
                }
                self.cv.notify_all();
                reply(())
            }
            _ => Err(no_method("condition", method)),
        }
    }

    fn session_ended(&self, session: u64) {
        let mut st = lock(&self.st);
        if st.owner.is_some_and(|(o, _)| o.session == session) {
            st.owner = None;
            self.cv.notify_all();
        }
    }
}
