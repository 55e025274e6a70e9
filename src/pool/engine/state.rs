//! The scheduler's state: the queue of chunks, the jobs they belong to and what came of them,
//! and each worker slot's chunks in flight; all under the pool's one lock.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::mpsc;
use std::sync::{Arc, Weak};
use std::thread;
use std::time::{Duration, Instant};

use crate::Error;
use crate::RemoteKind;
use crate::process::Child;
use crate::util::lock;

use super::{ChunkOut, Shared};

/// A worker has at least this much work queued behind the chunk it runs (in estimated time).
pub(super) const COVER: Duration = Duration::from_millis(2);
/// The most chunks in flight to one worker.
pub(super) const MAX_WINDOW: usize = 4096;

/// A run of tasks of one job that travels as one CHUNK.
#[derive(Clone, Debug)]
pub(in crate::pool) struct Chunk {
    pub(super) id: u64,
    pub(super) job: u64,
    /// Its place among the job's chunks.
    pub(super) index: usize,
    /// The job's index of its first task.
    pub(super) first: usize,
    pub(super) fid: usize,
    pub(super) n: usize,
    pub(super) args: Arc<Vec<u8>>,
    pub(super) range: Range<usize>,
    /// Times it was lost with a worker.
    pub(super) tries: u8,
    /// A task of a lost chunk retried alone: the split it belongs to, and its place there.
    pub(super) part: Option<(u64, usize)>,
}

/// The parts of a lost chunk retried task by task.
#[derive(Debug)]
pub(super) struct Split {
    pub(super) job: u64,
    pub(super) index: usize,
    pub(super) parts: Vec<Option<ChunkOut>>,
    pub(super) left: usize,
}

/// The finished outputs of a job, by chunk.
pub(in crate::pool) type Outputs = Arc<Vec<ChunkOut>>;
pub(super) type Callback = Box<dyn FnOnce(Outputs) + Send>;

#[derive(Debug)]
pub(super) enum JobOut {
    /// `map`, `apply`: all at once when done.
    Collect { outs: Vec<Option<ChunkOut>>, finished: Option<Outputs> },
    /// `imap`: chunk by chunk.
    Stream { by_index: HashMap<usize, ChunkOut>, arrived: VecDeque<(usize, ChunkOut)> },
}

pub(super) struct Job {
    /// Chunks submitted so far.
    pub(super) chunks: usize,
    /// No more chunks will be submitted.
    pub(super) sealed: bool,
    pub(super) done: usize,
    pub(super) failed: usize,
    pub(super) out: JobOut,
    pub(super) callback: Option<Callback>,
    /// An AsyncResult, MapResult or IMap still holds it.
    pub(super) handle: bool,
}

impl Job {
    pub(super) fn complete(&self) -> bool {
        self.sealed && self.done == self.chunks
    }
}

/// A worker process of a slot.
#[derive(Debug)]
pub(in crate::pool) struct Worker {
    pub(in crate::pool) name: String,
    pub(in crate::pool) child: Child,
}

#[derive(Debug, Default)]
pub(super) struct Slot {
    /// Changes with every worker: a writer of an earlier worker stops.
    pub(super) generation: u64,
    pub(super) worker: Option<Arc<Worker>>,
    pub(super) starting: bool,
    /// Sent and not answered, oldest first.
    pub(super) in_flight: VecDeque<Chunk>,
    pub(super) in_flight_bytes: usize,
    /// Tasks sent to this worker, for maxtasksperchild.
    pub(super) assigned: u64,
    /// Function ids this worker was told about.
    pub(super) defined: Vec<bool>,
    pub(super) exit_sent: bool,
    pub(super) writer_waiting: bool,
}

pub(in crate::pool) struct State {
    pub(super) pending: VecDeque<Chunk>,
    pub(super) jobs: HashMap<u64, Job>,
    pub(super) splits: HashMap<u64, Split>,
    pub(super) slots: Vec<Slot>,
    pub(super) functions: Vec<&'static str>,
    /// Per function: the running time of one task (with its decoding and encoding), in ns.
    pub(super) estimates: Vec<Option<f64>>,
    pub(super) next_job: u64,
    pub(super) next_chunk: u64,
    pub(super) next_worker: u64,
    pub(in crate::pool) closed: bool,
    pub(in crate::pool) terminated: Option<Instant>,
    /// Why the pool cannot run tasks any more (an initializer failed, workers cannot start).
    pub(super) broken: Option<String>,
    /// `imap` jobs that may still submit chunks.
    pub(super) open_jobs: usize,
    /// Supervisor and writer threads still running.
    pub(super) threads: usize,
    pub(super) callbacks: Option<mpsc::Sender<Box<dyn FnOnce() + Send>>>,
    pub(super) callbacks_pending: usize,
}

/// How many chunks to keep in flight to a worker for chunks estimated at `chunk_ns` each:
/// one while there is no estimate (a first chunk may be long: nothing waits behind it), then
/// the one running and enough to cover [`COVER`], at least one, so that the worker starts its
/// next chunk without waiting for the pool to react to its result (on a machine whose CPUs are
/// all busy, that reaction can take milliseconds).
pub(super) fn window(chunk_ns: Option<f64>) -> usize {
    match chunk_ns {
        None => 1,
        Some(t) => {
            let cover = COVER.as_nanos() as f64 / t.max(1.0);
            (1 + (cover.ceil() as usize).max(1)).min(MAX_WINDOW)
        }
    }
}

impl State {
    pub(super) fn fid(&mut self, name: &'static str) -> usize {
        match self.functions.iter().position(|f| *f == name) {
            Some(i) => i,
            None => {
                self.functions.push(name);
                self.estimates.push(None);
                self.functions.len() - 1
            }
        }
    }

    pub(super) fn live_workers(&self) -> usize {
        self.slots.iter().filter(|s| s.worker.is_some() && !s.exit_sent).count()
    }

    /// Records what became of a chunk (or of a part of a split one).
    pub(super) fn chunk_done(&mut self, shared: &Arc<Shared>, c: &Chunk, out: ChunkOut) {
        let Some((split_id, i)) = c.part else {
            return self.deliver(shared, c.job, c.index, out);
        };
        let Some(split) = self.splits.get_mut(&split_id) else { return };
        if split.parts[i].replace(out).is_none() {
            split.left -= 1;
        }
        if split.left == 0 {
            let split = self.splits.remove(&split_id).expect("looked at");
            let parts = split.parts.into_iter().map(|p| p.expect("every part is in")).collect();
            self.deliver(shared, split.job, split.index, ChunkOut::Parts(parts));
        }
    }

    /// Records what became of a job's chunk; finishes the job when it was the last.
    pub(super) fn deliver(&mut self, shared: &Arc<Shared>, job_id: u64, index: usize, out: ChunkOut) {
        let Some(job) = self.jobs.get_mut(&job_id) else { return };
        job.done += 1;
        job.failed += out.failed();
        match &mut job.out {
            JobOut::Collect { outs, .. } => outs[index] = Some(out),
            JobOut::Stream { arrived, .. } if job.handle => arrived.push_back((index, out)),
            JobOut::Stream { .. } => {}
        }
        if job.complete() {
            self.finish(shared, job_id);
        }
    }

    pub(super) fn finish(&mut self, shared: &Arc<Shared>, job_id: u64) {
        let Some(job) = self.jobs.get_mut(&job_id) else { return };
        if let JobOut::Collect { outs, finished } = &mut job.out
            && finished.is_none()
        {
            let all: Vec<ChunkOut> =
                outs.drain(..).map(|o| o.expect("a finished job has every chunk")).collect();
            let all = Arc::new(all);
            *finished = Some(all.clone());
            if let Some(cb) = job.callback.take() {
                self.run_callback(shared, Box::new(move || cb(all)));
            }
        }
        let Some(job) = self.jobs.get(&job_id) else { return };
        if !job.handle {
            self.jobs.remove(&job_id);
        }
    }

    /// Queues `f` for the pool's callback thread (started on first use).
    pub(in crate::pool) fn run_callback(&mut self, shared: &Arc<Shared>, f: Box<dyn FnOnce() + Send>) {
        if self.callbacks.is_none() {
            let (tx, rx) = mpsc::channel::<Box<dyn FnOnce() + Send>>();
            let weak: Weak<Shared> = Arc::downgrade(shared);
            let spawned = thread::Builder::new().name("procwire-pool-callbacks".into()).spawn(move || {
                for f in rx {
                    // A panicking callback is its own business; the next ones still run.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
                    if let Some(shared) = weak.upgrade() {
                        lock(&shared.state).callbacks_pending -= 1;
                        shared.changed.notify_all();
                    }
                }
            });
            if spawned.is_err() {
                // No thread for callbacks: run it here rather than never.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
                return;
            }
            self.callbacks = Some(tx);
        }
        if let Some(tx) = &self.callbacks {
            self.callbacks_pending += 1;
            if let Err(mpsc::SendError(f)) = tx.send(f) {
                self.callbacks_pending -= 1;
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            }
        }
    }

    /// Fails every chunk not answered yet (queued and in flight) with `kind` and `message`.
    pub(super) fn fail_all(&mut self, shared: &Arc<Shared>, kind: RemoteKind, message: &str) {
        let mut lost: Vec<Chunk> = self.pending.drain(..).collect();
        for s in &mut self.slots {
            lost.extend(s.in_flight.drain(..));
            s.in_flight_bytes = 0;
        }
        for c in lost {
            self.chunk_done(
                shared,
                &c,
                ChunkOut::Failed { n: c.n, kind: kind.clone(), message: message.to_string() },
            );
        }
    }

    /// Whether submissions are refused, and why.
    pub(super) fn refusal(&self) -> Option<Error> {
        if let Some(why) = &self.broken {
            return Some(Error::Remote { kind: RemoteKind::Pool, message: why.clone() });
        }
        if self.terminated.is_some() {
            return Some(Error::InvalidInput("the pool was terminated".into()));
        }
        None
    }
}
