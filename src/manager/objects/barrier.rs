//! `barrier`: a number of parties wait for each other.

use std::sync::{Condvar, Mutex};

use super::{Ctx, Fault, Object, Outcome, Woke, args, block, deadline, lock, no_method, reply};
use crate::RemoteKind;

struct BarrierState {
    count: u64,
    generation: u64,
    broken: bool,
    /// A generation that `reset` ended while threads waited in it: they fail.
    reset_generation: Option<u64>,
}

/// `barrier`: `parties` callers wait for each other.
pub(crate) struct Barrier {
    parties: u64,
    st: Mutex<BarrierState>,
    cv: Condvar,
}

impl Barrier {
    pub(crate) fn new(parties: u64) -> Barrier {
        Barrier {
            parties,
            st: Mutex::new(BarrierState { count: 0, generation: 0, broken: false, reset_generation: None }),
            cv: Condvar::new(),
        }
    }
}

fn broken() -> Fault {
    Fault::new(RemoteKind::BrokenBarrier, "the barrier is broken")
}

impl Object for Barrier {
    fn call(&self, ctx: &mut Ctx<'_>, method: &str, a: &[u8]) -> Outcome {
        match method {
            "wait" => {
                let timeout: Option<f64> = args(method, a)?;
                let deadline = deadline(true, timeout)?;
                let mut st = lock(&self.st);
                if st.broken {
                    return Err(broken());
                }
                // As threading.Barrier: the last to arrive gets 0, the first parties - 1.
                let index = self.parties - 1 - st.count;
                st.count += 1;
                if st.count == self.parties {
                    st.count = 0;
                    st.generation += 1;
                    self.cv.notify_all();
                    return reply(index);
                }
                let generation = st.generation;
                loop {
                    if st.generation != generation {
                        return if st.reset_generation == Some(generation) {
                            Err(broken())
                        } else {
                            reply(index)
                        };
                    }
                    if st.broken {
                        return Err(broken());
                    }
                    let (g, woke) = block(&self.cv, st, deadline, ctx);
                    st = g;
                    match woke {
                        Woke::Maybe => {}
                        // As threading: a wait that times out (or a waiter that goes away)
                        // breaks the barrier for everyone.
                        Woke::TimedOut | Woke::Gone => {
                            if st.generation != generation {
                                continue;
                            }
                            st.broken = true;
                            self.cv.notify_all();
                            return Err(broken());
                        }
                    }
                }
            }
            "reset" => {
                let mut st = lock(&self.st);
                if st.count > 0 {
                    st.reset_generation = Some(st.generation);
                }
                st.generation += 1;
                st.count = 0;
                st.broken = false;
                self.cv.notify_all();
                reply(())
            }
            "abort" => {
                lock(&self.st).broken = true;
                self.cv.notify_all();
                reply(())
            }
            "parties" => reply(self.parties),
            "n_waiting" => {
                let st = lock(&self.st);
                reply(if st.broken { 0 } else { st.count })
            }
            "broken" => reply(lock(&self.st).broken),
            _ => Err(no_method("barrier", method)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::manager::{Manager, Registry};
    use crate::{Error, RemoteKind};

    #[test]
    fn a_timed_out_barrier_wait_breaks_the_barrier_for_the_others() {
        let m = Manager::in_process(Registry::new()).unwrap();
        let b = m.barrier(3).unwrap();
        let other = {
            let b = b.clone();
            std::thread::spawn(move || b.wait_timeout(Duration::from_secs(60)))
        };
        assert!(matches!(
            b.wait_timeout(Duration::from_millis(50)),
            Err(Error::Remote { kind: RemoteKind::BrokenBarrier, .. })
        ));
        assert!(matches!(other.join().unwrap(), Err(Error::Remote { kind: RemoteKind::BrokenBarrier, .. })));
    }
}
