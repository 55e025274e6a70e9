//! `semaphore` and `bounded_semaphore`, with the permits each session holds.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};

use super::{Ctx, Fault, Object, Outcome, Woke, args, block, deadline, gone_fault, lock, no_method, reply};
use crate::RemoteKind;

struct SemState {
    value: u64,
    /// Permits each session took and nobody gave back; their sum never exceeds the permits
    /// missing below the initial value.
    held: HashMap<u64, u64>,
}

impl SemState {
    /// Trims holdings to the permits actually missing, `prefer`'s own first.
    fn trim(&mut self, initial: u64, prefer: u64) {
        let missing = initial.saturating_sub(self.value);
        let mut sum: u64 = self.held.values().sum();
        while sum > missing {
            let s = if self.held.get(&prefer).is_some_and(|n| *n > 0) {
                prefer
            } else {
                match self.held.iter().find(|(_, n)| **n > 0) {
                    Some((s, _)) => *s,
                    None => break,
                }
            };
            if let Some(n) = self.held.get_mut(&s) {
                *n -= 1;
                if *n == 0 {
                    self.held.remove(&s);
                }
            }
            sum -= 1;
        }
    }
}

/// `semaphore` and `bounded_semaphore`.
pub(crate) struct Semaphore {
    initial: u64,
    bounded: bool,
    st: Mutex<SemState>,
    cv: Condvar,
}

impl Semaphore {
    pub(crate) fn new(value: u64, bounded: bool) -> Semaphore {
        Semaphore {
            initial: value,
            bounded,
            st: Mutex::new(SemState { value, held: HashMap::new() }),
            cv: Condvar::new(),
        }
    }
}

impl Object for Semaphore {
    fn call(&self, ctx: &mut Ctx<'_>, method: &str, a: &[u8]) -> Outcome {
        match method {
            "acquire" => {
                let (blocking, timeout): (bool, Option<f64>) = args(method, a)?;
                let deadline = deadline(blocking, timeout)?;
                let mut st = lock(&self.st);
                loop {
                    if st.value > 0 {
                        st.value -= 1;
                        *st.held.entry(ctx.session).or_default() += 1;
                        st.trim(self.initial, ctx.session);
                        return reply(true);
                    }
                    let (g, woke) = block(&self.cv, st, deadline, ctx);
                    st = g;
                    match woke {
                        Woke::Maybe => {}
                        Woke::TimedOut => return reply(false),
                        Woke::Gone => return Err(gone_fault()),
                    }
                }
            }
            "release" => {
                let n: u64 = args(method, a)?;
                if n == 0 {
                    return Err(Fault::new(RemoteKind::Value, "n must be one or more"));
                }
                let mut st = lock(&self.st);
                let value = st.value.saturating_add(n);
                if self.bounded && value > self.initial {
                    return Err(Fault::new(RemoteKind::Value, "Semaphore released too many times"));
                }
                st.value = value;
                st.trim(self.initial, ctx.session);
                self.cv.notify_all();
                reply(())
            }
            "value" => reply(lock(&self.st).value),
            _ => Err(no_method(if self.bounded { "bounded_semaphore" } else { "semaphore" }, method)),
        }
    }

    fn session_ended(&self, session: u64) {
        let mut st = lock(&self.st);
        if let Some(n) = st.held.remove(&session) {
            st.value = st.value.saturating_add(n);
            self.cv.notify_all();
        }
    }
}
