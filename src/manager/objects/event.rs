//! `event`: a flag that can be waited for.

use std::sync::{Condvar, Mutex};

use super::{Ctx, Object, Outcome, Woke, args, block, deadline, gone_fault, lock, no_method, reply};

/// `event`: a flag that can be waited for.
#[derive(Default)]
pub(crate) struct Event {
    st: Mutex<bool>,
    cv: Condvar,
}

impl Object for Event {
    fn call(&self, ctx: &mut Ctx<'_>, method: &str, a: &[u8]) -> Outcome {
        match method {
            "set" => {
                *lock(&self.st) = true;
                self.cv.notify_all();
                reply(())
            }
            "clear" => {
                *lock(&self.st) = false;
                reply(())
            }
            "is_set" => reply(*lock(&self.st)),
            "wait" => {
                let timeout: Option<f64> = args(method, a)?;
                let deadline = deadline(true, timeout)?;
                let mut st = lock(&self.st);
                loop {
                    if *st {
                        return reply(true);
                    }
                    let (g, woke) = block(&self.cv, st, deadline, ctx);
                    st = g;
                    match woke {
                        Woke::Maybe => {}
                        Woke::TimedOut => return reply(*st),
                        Woke::Gone => return Err(gone_fault()),
                    }
                }
            }
            _ => Err(no_method("event", method)),
        }
    }
}
