//! The sending side of a [`Link`]: puts and control messages wait in one buffer, in order,
//! for the feeder thread (or for a thread that must see its own message written before it
//! returns), which writes them in batches.

use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use super::{CONTROL_TIMEOUT, Link, Rx, broken_error, describe};
use crate::queue::wire;
use crate::util::{deadline_of, lock, wait_deadline};
use crate::{Error, Result, Sender};

/// A feeder idle this long gives unused reserved slots back.
const RELEASE_IDLE: Duration = Duration::from_millis(5);
/// Over shared memory, how long a feeder that wrote this recently lets puts gather before it
/// writes again, and the bytes that end the wait sooner (see [`Link::gather`]).
const GATHER: Duration = Duration::from_micros(20);
const GATHER_BYTES: usize = 16 << 10;

/// The sending side: puts wait in `pending` for the feeder (or for a thread that must see its
/// own message written before it returns).
#[derive(Default)]
pub(super) struct Tx {
    /// `None` while a thread is writing with it.
    sender: Option<Sender>,
    pending: Vec<u8>,
    /// Bytes appended to `pending` so far, and bytes written so far.
    enq: u64,
    done: u64,
    broken: Option<String>,
    waiters: usize,
    feeder_waiting: bool,
    stop: bool,
}

impl Tx {
    pub(super) fn new(sender: Sender) -> Tx {
        Tx { sender: Some(sender), ..Tx::default() }
    }
}

impl Link {
    /// Queues an encoded item for the feeder.
    pub(super) fn queue_put(&self, item: &[u8]) -> Result<()> {
        let mut tx = lock(&self.tx);
        if let Some(why) = &tx.broken {
            return Err(broken_error(why));
        }
        if tx.stop {
            return Err(Error::Closed);
        }
        let before = tx.pending.len();
        wire::push_frame(&mut tx.pending, wire::PUT, item);
        tx.enq += (tx.pending.len() - before) as u64;
        if tx.feeder_waiting {
            self.tx_cv.notify_all();
        }
        Ok(())
    }

    /// The feeder stops once it has written everything queued; later puts fail.
    pub(super) fn stop_feeder(&self) {
        lock(&self.tx).stop = true;
        self.tx_cv.notify_all();
    }

    /// The feeder: writes what puts queued, in batches, until stopped and drained.
    pub(super) fn feed(&self) {
        let mut tx = lock(&self.tx);
        // Whether reserved slots were given back since the last write (bounded queues only).
        let mut released = self.info.maxsize.is_none();
        let mut wrote: Option<Instant> = None;
        loop {
            while tx.pending.is_empty() || tx.sender.is_none() {
                if tx.stop && tx.pending.is_empty() || tx.broken.is_some() {
                    return;
                }
                tx.feeder_waiting = true;
                if released {
                    tx = self.tx_cv.wait(tx).unwrap_or_else(|p| p.into_inner());
                    tx.feeder_waiting = false;
                    continue;
                }
                let (g, timeout) =
                    self.tx_cv.wait_timeout(tx, RELEASE_IDLE).unwrap_or_else(|p| p.into_inner());
                tx = g;
                tx.feeder_waiting = false;
                if timeout.timed_out() && tx.pending.is_empty() {
                    drop(tx);
                    self.release_idle_slots();
                    released = true;
                    tx = lock(&self.tx);
                }
            }
            if self.shared_memory && wrote.is_some_and(|w| w.elapsed() < GATHER) {
                tx = self.gather(tx);
            }
            tx = self.write_pending(tx, None);
            wrote = Some(Instant::now());
            released = self.info.maxsize.is_none();
        }
    }

    /// Lets puts that stream in gather for up to [`GATHER`] (or [`GATHER_BYTES`]). A ring
    /// write costs next to nothing, so a feeder that wrote each put as it came would hand the
    /// server one item at a time, and the server would wake its getter for each; over a
    /// socket, the write's own system call lets them gather. A thread that waits for its own
    /// message to be written writes it meanwhile (the sender stays free).
    fn gather<'a>(&'a self, mut tx: MutexGuard<'a, Tx>) -> MutexGuard<'a, Tx> {
        let until = Instant::now() + GATHER;
        while tx.pending.len() < GATHER_BYTES && !tx.stop && tx.broken.is_none() && Instant::now() < until {
            drop(tx);
            std::thread::yield_now();
            tx = lock(&self.tx);
        }
        tx
    }

    /// Gives back reserved slots this handle did not use, so other producers can have them.
    fn release_idle_slots(&self) {
        let n = {
            let mut st = lock(&self.st);
            std::mem::take(&mut st.put_credit)
        };
        if n > 0 {
            let mut f = Vec::new();
            wire::push_count(&mut f, wire::RELEASE, n);
            let _ = self.send_now(&f, deadline_of(Some(CONTROL_TIMEOUT)));
        }
    }

    /// Writes everything pending with the sender (which must be free), then hands it back.
    fn write_pending<'a>(
        &'a self,
        mut tx: MutexGuard<'a, Tx>,
        deadline: Option<Instant>,
    ) -> MutexGuard<'a, Tx> {
        let Some(mut sender) = tx.sender.take() else { return tx };
        let batch = std::mem::take(&mut tx.pending);
        let end = tx.enq;
        drop(tx);
        let r = sender.write_frames(&batch, deadline);
        let mut tx = lock(&self.tx);
        tx.sender = Some(sender);
        match r {
            Ok(()) => tx.done = end,
            Err(e) => {
                tx.broken.get_or_insert(describe(&e));
            }
        }
        if tx.pending.is_empty() {
            let mut batch = batch;
            batch.clear();
            tx.pending = batch;
        }
        if tx.waiters > 0 || tx.feeder_waiting {
            self.tx_cv.notify_all();
        }
        tx
    }

    /// Appends `frames` after everything queued and returns once all of it is written.
    pub(crate) fn send_now(&self, frames: &[u8], deadline: Option<Instant>) -> Result<()> {
        let target = self.enqueue(frames);
        self.wait_written(target, deadline)
    }

    /// Appends `frames` to what goes out next; returns the stream position they end at.
    fn enqueue(&self, frames: &[u8]) -> u64 {
        let mut tx = lock(&self.tx);
        tx.pending.extend_from_slice(frames);
        tx.enq += frames.len() as u64;
        tx.enq
    }

    /// Sends `frames` in the order of the state change the caller made under `st`: they are
    /// queued before `st` is released (the order `st` then `tx` is the allowed one), so two
    /// threads' messages reach the server in the order their changes were made.
    pub(super) fn send_locked(&self, st: MutexGuard<'_, Rx>, frames: &[u8]) -> Result<()> {
        let target = self.enqueue(frames);
        drop(st);
        self.wait_written(target, deadline_of(Some(CONTROL_TIMEOUT)))
    }

    /// Waits until the stream position `target` is written, writing if nobody else is.
    fn wait_written(&self, target: u64, deadline: Option<Instant>) -> Result<()> {
        let mut tx = lock(&self.tx);
        loop {
            if tx.done >= target {
                return Ok(());
            }
            if let Some(why) = &tx.broken {
                return Err(broken_error(why));
            }
            if tx.sender.is_some() {
                tx = self.write_pending(tx, deadline);
                continue;
            }
            tx.waiters += 1;
            let (g, waited) = wait_deadline(&self.tx_cv, tx, deadline);
            tx = g;
            tx.waiters -= 1;
            if !waited {
                return Err(Error::Timeout("writing to the queue".into()));
            }
        }
    }

    pub(super) fn send_value(&self, op: u8, v: u64) -> Result<()> {
        let mut f = Vec::new();
        wire::push_count(&mut f, op, v);
        self.send_now(&f, deadline_of(Some(CONTROL_TIMEOUT)))
    }
}
