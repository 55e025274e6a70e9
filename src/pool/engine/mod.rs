//! The parent's side of a pool: per worker, a supervisor thread that starts the worker, reads
//! its results and replaces it when it ends, and a writer thread that sends it chunks.
//!
//! Chunks wait in one queue, oldest first. A writer takes chunks for its worker while the
//! worker has fewer in flight than its *window*: the chunk it runs and enough queued behind it
//! to cover the time the parent needs to react to a result (judged per function from the
//! workers' own timings), so that a worker never idles waiting for its next chunk; no worker
//! takes more than its share of what is queued. A worker answers its chunks in order, each
//! before it starts the next: when it dies, the first chunk it has not answered is the one that
//! killed it, and the others were never started.

mod outcome;
mod state;
mod supervisor;
mod writer;

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Instant;

use super::generic::join_when;
use crate::RemoteKind;
use crate::util::{lock, wait_until};
use crate::{Error, Result};

pub(super) use outcome::ChunkOut;
pub(super) use state::Outputs;
use state::{Callback, Chunk, Job, JobOut, Slot, State, Worker, window};
use supervisor::supervise;

/// The pool's settings.
#[derive(Debug)]
pub(super) struct Config {
    pub(super) processes: usize,
    pub(super) initializer: Option<(&'static str, Vec<u8>)>,
    pub(super) maxtasks: Option<u64>,
    pub(super) prefix: String,
    pub(super) retry_lost: bool,
    /// Whether the workers' connections are shared-memory pipes.
    pub(super) shared_memory: bool,
}

/// Tasks to submit: `args` holds their CBOR arguments one after the other, `ends[i]` is where
/// task `i`'s arguments end, and they go in chunks of `chunksize` (at least 1) tasks.
#[derive(Debug)]
pub(super) struct Tasks<'a> {
    pub(super) function: &'static str,
    pub(super) args: Vec<u8>,
    pub(super) ends: &'a [usize],
    pub(super) chunksize: usize,
}

/// What the pool's threads and handles share.
pub struct Shared {
    pub(super) state: Mutex<State>,
    /// Results arrived, threads ended, callbacks ran.
    pub(super) changed: Condvar,
    /// Per slot: its writer waits here for chunks or room.
    writers: Vec<Condvar>,
    pub(super) config: Config,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Shared {
    pub(super) fn new(config: Config) -> Arc<Shared> {
        let n = config.processes;
        Arc::new(Shared {
            state: Mutex::new(State {
                pending: VecDeque::new(),
                jobs: HashMap::new(),
                splits: HashMap::new(),
                slots: (0..n).map(|_| Slot::default()).collect(),
                functions: Vec::new(),
                estimates: Vec::new(),
                next_job: 1,
                next_chunk: 1,
                next_worker: 1,
                closed: false,
                terminated: None,
                broken: None,
                open_jobs: 0,
                threads: 0,
                callbacks: None,
                callbacks_pending: 0,
            }),
            changed: Condvar::new(),
            writers: (0..n).map(|_| Condvar::new()).collect(),
            config,
        })
    }

    fn wake_writers(&self, st: &State) {
        for (k, s) in st.slots.iter().enumerate() {
            if s.writer_waiting {
                self.writers[k].notify_one();
            }
        }
    }

    /// A new job with the chunks of `tasks`. `stream`: an `imap` job that
    /// [`Shared::add_chunks`] extends and [`Shared::seal`] closes; otherwise it is collected,
    /// and sealed at once.
    pub(super) fn submit(self: &Arc<Self>, tasks: Tasks<'_>, stream: bool) -> Result<u64> {
        let mut st = lock(&self.state);
        if let Some(e) = st.refusal() {
            return Err(e);
        }
        if st.closed {
            return Err(Error::InvalidInput("the pool is closed: it takes no new work".into()));
        }
        let id = st.next_job;
        st.next_job += 1;
        let out = if stream {
            st.open_jobs += 1;
            JobOut::Stream { by_index: HashMap::new(), arrived: VecDeque::new() }
        } else {
            let n_chunks = tasks.ends.len().div_ceil(tasks.chunksize);
            JobOut::Collect { outs: (0..n_chunks).map(|_| None).collect(), finished: None }
        };
        st.jobs.insert(
            id,
            Job { chunks: 0, sealed: !stream, done: 0, failed: 0, out, callback: None, handle: true },
        );
        self.push_chunks(&mut st, id, tasks, 0, 0);
        if st.jobs.get(&id).is_some_and(Job::complete) {
            st.finish(self, id);
        }
        Ok(id)
    }

    /// Adds the chunks of `tasks` to an open `imap` job, numbering them on from `first_chunk`
    /// and their tasks from `first_task`.
    pub(super) fn add_chunks(
        self: &Arc<Self>,
        job: u64,
        tasks: Tasks<'_>,
        first_chunk: usize,
        first_task: usize,
    ) -> Result<()> {
        let mut st = lock(&self.state);
        if let Some(e) = st.refusal() {
            return Err(e);
        }
        self.push_chunks(&mut st, job, tasks, first_chunk, first_task);
        Ok(())
    }

    fn push_chunks(&self, st: &mut State, job: u64, tasks: Tasks<'_>, first_chunk: usize, first_task: usize) {
        let fid = st.fid(tasks.function);
        let args = Arc::new(tasks.args);
        let mut start = 0;
        let mut added = 0;
        for (i, ends) in tasks.ends.chunks(tasks.chunksize).enumerate() {
            let end = ends[ends.len() - 1];
            let id = st.next_chunk;
            st.next_chunk += 1;
            st.pending.push_back(Chunk {
                id,
                job,
                index: first_chunk + i,
                first: first_task + i * tasks.chunksize,
                fid,
                n: ends.len(),
                args: args.clone(),
                range: start..end,
                tries: 0,
                part: None,
            });
            start = end;
            added += 1;
        }
        if let Some(j) = st.jobs.get_mut(&job) {
            j.chunks += added;
        }
        if added > 0 {
            self.wake_writers(st);
        }
    }

    /// Marks an `imap` job complete once its submitted chunks are done.
    pub(super) fn seal(self: &Arc<Self>, job: u64) {
        let mut st = lock(&self.state);
        let Some(j) = st.jobs.get_mut(&job) else { return };
        if !j.sealed {
            j.sealed = true;
            st.open_jobs -= 1;
            // A closed pool's workers may now be told to exit.
            self.wake_writers(&st);
        }
        if st.jobs.get(&job).is_some_and(Job::complete) {
            st.finish(self, job);
        }
    }

    /// The handle of `job` is gone: its results have nobody to go to. An unfinished `imap`
    /// job's chunks not sent yet are dropped.
    pub(super) fn release(self: &Arc<Self>, job: u64) {
        let mut st = lock(&self.state);
        let Some(j) = st.jobs.get_mut(&job) else { return };
        j.handle = false;
        if let JobOut::Stream { by_index, arrived } = &mut j.out {
            by_index.clear();
            arrived.clear();
            // Chunks not sent yet, and lost chunks retried in parts, count as never submitted.
            let mut dropped = 0;
            st.pending.retain(|c| {
                let keep = c.job != job;
                dropped += usize::from(!keep && c.part.is_none());
                keep
            });
            let before = st.splits.len();
            st.splits.retain(|_, s| s.job != job);
            dropped += before - st.splits.len();
            let j = st.jobs.get_mut(&job).expect("still there");
            j.chunks -= dropped;
            if !j.sealed {
                j.sealed = true;
                st.open_jobs -= 1;
                self.wake_writers(&st);
            }
        }
        if st.jobs.get(&job).is_some_and(Job::complete) {
            st.jobs.remove(&job);
        }
    }

    /// The outputs of a finished collected job; `None` while it runs.
    pub(super) fn finished(&self, st: &State, job: u64) -> Option<Outputs> {
        match &st.jobs.get(&job)?.out {
            JobOut::Collect { finished, .. } => finished.clone(),
            JobOut::Stream { .. } => None,
        }
    }

    /// Waits until `job` (collected) is finished, at most until `deadline`.
    pub(super) fn wait_finished(&self, job: u64, deadline: Option<Instant>) -> Option<Outputs> {
        let mut st = lock(&self.state);
        loop {
            if let Some(out) = self.finished(&st, job) {
                return Some(out);
            }
            st = wait_until(&self.changed, st, deadline)?;
        }
    }

    /// Tasks of a finished job that failed.
    pub(super) fn failed_tasks(&self, job: u64) -> Option<usize> {
        let st = lock(&self.state);
        self.finished(&st, job)?;
        st.jobs.get(&job).map(|j| j.failed)
    }

    /// Sets the callback of a collected job, or queues it at once if the job is finished.
    pub(super) fn on_finished(self: &Arc<Self>, job: u64, cb: Callback) {
        let mut st = lock(&self.state);
        match self.finished(&st, job) {
            Some(out) => st.run_callback(self, Box::new(move || cb(out))),
            None => {
                if let Some(j) = st.jobs.get_mut(&job) {
                    j.callback = Some(cb);
                }
            }
        }
    }

    /// Takes the next chunk of an `imap` job (`Some(index)`: that one; `None`: the first to
    /// arrive), waiting at most until `deadline`. `Ok(None)` after a timeout.
    pub(super) fn take_chunk(
        &self,
        job: u64,
        index: Option<usize>,
        deadline: Option<Instant>,
    ) -> Option<ChunkOut> {
        let mut st = lock(&self.state);
        loop {
            if let Some(j) = st.jobs.get_mut(&job)
                && let JobOut::Stream { by_index, arrived } = &mut j.out
            {
                match index {
                    None => {
                        if let Some((_, out)) = arrived.pop_front() {
                            return Some(out);
                        }
                        if let Some(&k) = by_index.keys().next() {
                            return by_index.remove(&k);
                        }
                    }
                    Some(i) => {
                        if let Some(out) = by_index.remove(&i) {
                            return Some(out);
                        }
                        while let Some((k, out)) = arrived.pop_front() {
                            if k == i {
                                return Some(out);
                            }
                            by_index.insert(k, out);
                        }
                    }
                }
            }
            st = wait_until(&self.changed, st, deadline)?;
        }
    }

    /// How many chunks of `function` (of `chunksize` tasks) a worker takes in flight at once.
    pub(super) fn window(&self, function: &'static str, chunksize: usize) -> usize {
        let mut st = lock(&self.state);
        let fid = st.fid(function);
        window(st.estimates[fid].map(|t| t * chunksize as f64))
    }

    pub(super) fn pids(&self) -> Vec<u32> {
        let st = lock(&self.state);
        st.slots.iter().filter_map(|s| s.worker.as_ref().map(|w| w.child.pid())).collect()
    }

    pub(super) fn close(&self) {
        let mut st = lock(&self.state);
        st.closed = true;
        self.wake_writers(&st);
    }

    pub(super) fn terminate(self: &Arc<Self>) {
        let workers: Vec<Arc<Worker>> = {
            let mut st = lock(&self.state);
            if st.terminated.is_some() {
                return;
            }
            st.terminated = Some(Instant::now());
            st.closed = true;
            st.fail_all(self, RemoteKind::Terminated, "the pool was terminated before this task finished");
            for id in st.jobs.keys().copied().collect::<Vec<_>>() {
                let j = st.jobs.get_mut(&id).expect("listed");
                if !j.sealed {
                    j.sealed = true;
                    st.open_jobs -= 1;
                    if st.jobs.get(&id).is_some_and(Job::complete) {
                        st.finish(self, id);
                    }
                }
            }
            for k in 0..st.slots.len() {
                self.writers[k].notify_all();
            }
            self.changed.notify_all();
            st.slots.iter().filter_map(|s| s.worker.clone()).collect()
        };
        for w in workers {
            let _ = w.child.signal(false);
        }
    }

    /// Waits until every thread of the pool ended and every queued callback ran.
    pub(super) fn join(&self, deadline: Option<Instant>) -> Result<()> {
        let st = lock(&self.state);
        let closed = st.closed;
        join_when(&self.changed, st, closed, deadline, |st| (st.threads, st.callbacks_pending))
    }
}

/// Starts the pool's supervisors; returns once every first worker runs, or the first error.
pub(super) fn start(shared: &Arc<Shared>) -> Result<()> {
    let n = shared.config.processes;
    let (tx, rx) = mpsc::channel();
    for k in 0..n {
        lock(&shared.state).threads += 1;
        let sh = shared.clone();
        let tx = tx.clone();
        let spawned =
            thread::Builder::new().name(format!("procwire-pool-{k}")).spawn(move || supervise(&sh, k, tx));
        if let Err(e) = spawned {
            lock(&shared.state).threads -= 1;
            return Err(Error::Io(e));
        }
    }
    drop(tx);
    for _ in 0..n {
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(Error::Io(std::io::Error::other(
                    "a pool thread ended before its worker started",
                )));
            }
        }
    }
    Ok(())
}

/// A thread of the pool ends.
fn thread_ended(shared: &Shared) {
    lock(&shared.state).threads -= 1;
    shared.changed.notify_all();
}
