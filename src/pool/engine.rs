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

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant};

use crate::connection::{Receiver, Sender};
use crate::process::{Child, spawn_child};
use crate::util::{lock, wait_until};
use crate::{Error, Result};

use super::WORKER_ENTRY;
use super::wire::{self, WorkerStart};

/// A worker has at least this much work queued behind the chunk it runs (in estimated time).
const COVER: Duration = Duration::from_millis(2);
/// The most chunks in flight to one worker.
const MAX_WINDOW: usize = 4096;
/// The most argument bytes in flight to one worker (beyond its first chunk).
const MAX_IN_FLIGHT_BYTES: usize = 4 << 20;
/// How often a supervisor with nothing to read checks on its worker.
const CHECK_EVERY: Duration = Duration::from_millis(200);
/// How long a terminated worker has to exit after SIGTERM before it gets SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(1);
/// Attempts to start a replacement worker before the slot gives up.
const RESPAWN_ATTEMPTS: u32 = 3;

/// The pool's settings.
#[derive(Debug)]
pub(super) struct Config {
    pub(super) processes: usize,
    pub(super) initializer: Option<(&'static str, Vec<u8>)>,
    pub(super) maxtasks: Option<u64>,
    pub(super) prefix: String,
    pub(super) retry_lost: bool,
}

/// A run of tasks of one job that travels as one CHUNK.
#[derive(Clone, Debug)]
pub(super) struct Chunk {
    id: u64,
    job: u64,
    /// Its place among the job's chunks.
    index: usize,
    /// The job's index of its first task.
    first: usize,
    fid: usize,
    n: usize,
    args: Arc<Vec<u8>>,
    range: Range<usize>,
    /// Times it was lost with a worker.
    tries: u8,
    /// A task of a lost chunk retried alone: the split it belongs to, and its place there.
    part: Option<(u64, usize)>,
}

/// What became of a chunk's tasks.
#[derive(Debug)]
pub(super) enum ChunkOut {
    /// The worker's outcomes, one per task (SPEC.md §12.4), `failed` of them failures.
    Data { n: usize, failed: usize, bytes: Vec<u8> },
    /// Every task failed the same way without an outcome of its own.
    Failed { n: usize, kind: &'static str, message: String },
    /// A lost chunk whose tasks were retried one by one.
    Parts(Vec<ChunkOut>),
}

impl ChunkOut {
    /// Calls `each` with every task's result, in order.
    pub(super) fn decode<R: serde::de::DeserializeOwned>(&self, mut each: impl FnMut(Result<R>)) {
        self.decode_into(&mut each);
    }

    fn decode_into<R: serde::de::DeserializeOwned>(&self, each: &mut dyn FnMut(Result<R>)) {
        match self {
            ChunkOut::Data { n, bytes, .. } => {
                let mut body = &bytes[..];
                let mut scratch = [0u8; wire::SCRATCH];
                let mut lost: Option<String> = None;
                for _ in 0..*n {
                    if let Some(why) = &lost {
                        each(Err(Error::Decode(why.clone())));
                        continue;
                    }
                    match wire::take_outcome::<R>(&mut body, &mut scratch) {
                        Ok(r) => each(Ok(r)),
                        Err((e, true)) => each(Err(e)),
                        Err((e, false)) => {
                            lost = Some(format!("an earlier result of the same chunk did not decode ({e})"));
                            each(Err(e));
                        }
                    }
                }
            }
            ChunkOut::Failed { n, kind, message } => {
                for _ in 0..*n {
                    each(Err(Error::Remote { kind: (*kind).into(), message: message.clone() }));
                }
            }
            ChunkOut::Parts(parts) => {
                for p in parts {
                    p.decode_into(each);
                }
            }
        }
    }

    /// How many tasks failed.
    fn failed(&self) -> usize {
        match self {
            ChunkOut::Data { failed, .. } => *failed,
            ChunkOut::Failed { n, .. } => *n,
            ChunkOut::Parts(parts) => parts.iter().map(ChunkOut::failed).sum(),
        }
    }
}

/// The parts of a lost chunk retried task by task.
#[derive(Debug)]
struct Split {
    job: u64,
    index: usize,
    parts: Vec<Option<ChunkOut>>,
    left: usize,
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

/// The finished outputs of a job, by chunk.
pub(super) type Outputs = Arc<Vec<ChunkOut>>;
type Callback = Box<dyn FnOnce(Outputs) + Send>;

#[derive(Debug)]
enum JobOut {
    /// `map`, `apply`: all at once when done.
    Collect { outs: Vec<Option<ChunkOut>>, finished: Option<Outputs> },
    /// `imap`: chunk by chunk.
    Stream { by_index: HashMap<usize, ChunkOut>, arrived: VecDeque<(usize, ChunkOut)> },
}

struct Job {
    /// Chunks submitted so far.
    chunks: usize,
    /// No more chunks will be submitted.
    sealed: bool,
    done: usize,
    failed: usize,
    out: JobOut,
    callback: Option<Callback>,
    /// An AsyncResult, MapResult or IMap still holds it.
    handle: bool,
}

impl Job {
    fn complete(&self) -> bool {
        self.sealed && self.done == self.chunks
    }
}

/// A worker process of a slot.
#[derive(Debug)]
pub(super) struct Worker {
    pub(super) name: String,
    pub(super) child: Child,
}

#[derive(Debug, Default)]
struct Slot {
    /// Changes with every worker: a writer of an earlier worker stops.
    generation: u64,
    worker: Option<Arc<Worker>>,
    starting: bool,
    /// Sent and not answered, oldest first.
    in_flight: VecDeque<Chunk>,
    in_flight_bytes: usize,
    /// Tasks sent to this worker, for maxtasksperchild.
    assigned: u64,
    /// Function ids this worker was told about.
    defined: Vec<bool>,
    exit_sent: bool,
    writer_waiting: bool,
}

pub(super) struct State {
    pending: VecDeque<Chunk>,
    jobs: HashMap<u64, Job>,
    splits: HashMap<u64, Split>,
    slots: Vec<Slot>,
    functions: Vec<&'static str>,
    /// Per function: the running time of one task (with its decoding and encoding), in ns.
    estimates: Vec<Option<f64>>,
    next_job: u64,
    next_chunk: u64,
    next_worker: u64,
    pub(super) closed: bool,
    pub(super) terminated: Option<Instant>,
    /// Why the pool cannot run tasks any more (an initializer failed, workers cannot start).
    broken: Option<String>,
    /// `imap` jobs that may still submit chunks.
    open_jobs: usize,
    /// Supervisor and writer threads still running.
    threads: usize,
    callbacks: Option<mpsc::Sender<Box<dyn FnOnce() + Send>>>,
    callbacks_pending: usize,
}

/// What the pool's threads and handles share.
pub(super) struct Shared {
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

/// How many chunks to keep in flight to a worker for chunks estimated at `chunk_ns` each:
/// one while there is no estimate (a first chunk may be long: nothing waits behind it), then
/// the one running and enough to cover [`COVER`], at least one, so that the worker starts its
/// next chunk without waiting for the pool to react to its result (on a machine whose CPUs are
/// all busy, that reaction can take milliseconds).
fn window(chunk_ns: Option<f64>) -> usize {
    match chunk_ns {
        None => 1,
        Some(t) => {
            let cover = COVER.as_nanos() as f64 / t.max(1.0);
            (1 + (cover.ceil() as usize).max(1)).min(MAX_WINDOW)
        }
    }
}

impl State {
    fn fid(&mut self, name: &'static str) -> usize {
        match self.functions.iter().position(|f| *f == name) {
            Some(i) => i,
            None => {
                self.functions.push(name);
                self.estimates.push(None);
                self.functions.len() - 1
            }
        }
    }

    fn live_workers(&self) -> usize {
        self.slots.iter().filter(|s| s.worker.is_some() && !s.exit_sent).count()
    }

    /// Records what became of a chunk (or of a part of a split one).
    fn chunk_done(&mut self, shared: &Arc<Shared>, c: &Chunk, out: ChunkOut) {
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
    fn deliver(&mut self, shared: &Arc<Shared>, job_id: u64, index: usize, out: ChunkOut) {
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

    fn finish(&mut self, shared: &Arc<Shared>, job_id: u64) {
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
    pub(super) fn run_callback(&mut self, shared: &Arc<Shared>, f: Box<dyn FnOnce() + Send>) {
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
    fn fail_all(&mut self, shared: &Arc<Shared>, kind: &'static str, message: &str) {
        let mut lost: Vec<Chunk> = self.pending.drain(..).collect();
        for s in &mut self.slots {
            lost.extend(s.in_flight.drain(..));
            s.in_flight_bytes = 0;
        }
        for c in lost {
            self.chunk_done(shared, &c, ChunkOut::Failed { n: c.n, kind, message: message.to_string() });
        }
    }

    /// Whether submissions are refused, and why.
    fn refusal(&self) -> Option<Error> {
        if let Some(why) = &self.broken {
            return Some(Error::Remote { kind: "pool".into(), message: why.clone() });
        }
        if self.terminated.is_some() {
            return Some(Error::Io(std::io::Error::other("the pool was terminated")));
        }
        None
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
            return Err(Error::Io(std::io::Error::other("the pool is closed: it takes no new work")));
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

    /// How many chunks of `function` (of `chunksize` tasks) an `imap` keeps submitted ahead
    /// of the caller, to keep every worker's window full.
    pub(super) fn lookahead(&self, function: &'static str, chunksize: usize) -> usize {
        let mut st = lock(&self.state);
        let fid = st.fid(function);
        let w = window(st.estimates[fid].map(|t| t * chunksize as f64));
        let n = self.config.processes;
        (4 * n).max(2 * n * w)
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
            st.fail_all(self, "terminated", "the pool was terminated before this task finished");
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
        let mut st = lock(&self.state);
        if !st.closed {
            return Err(Error::Io(std::io::Error::other("close or terminate the pool before joining it")));
        }
        while st.threads > 0 || st.callbacks_pending > 0 {
            let (threads, callbacks) = (st.threads, st.callbacks_pending);
            st = wait_until(&self.changed, st, deadline).ok_or_else(|| {
                Error::Timeout(format!(
                    "joining the pool ({threads} threads and {callbacks} callbacks to go)"
                ))
            })?;
        }
        Ok(())
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

/// Starts the worker of slot `k` and its writer thread.
fn start_worker(shared: &Arc<Shared>, k: usize) -> Result<(Receiver, Arc<Worker>, u64)> {
    let name = {
        let mut st = lock(&shared.state);
        if let Some(e) = st.refusal() {
            return Err(e);
        }
        st.slots[k].starting = true;
        let n = st.next_worker;
        st.next_worker += 1;
        format!("{}-{n}", shared.config.prefix)
    };
    let r = (|| {
        let mut args = Vec::new();
        ciborium::into_writer(&WorkerStart { version: wire::VERSION }, &mut args)
            .map_err(|e| Error::Encode(e.to_string()))?;
        spawn_child(WORKER_ENTRY, &args, &name, true)
    })();
    let (conn, child) = match r {
        Ok(x) => x,
        Err(e) => {
            lock(&shared.state).slots[k].starting = false;
            return Err(e);
        }
    };
    let (mut tx, rx) = conn.split();
    let worker = Arc::new(Worker { name, child });
    let init_fid = shared.config.initializer.as_ref().map(|(f, _)| lock(&shared.state).fid(f));
    if let (Some(fid), Some((f, a))) = (init_fid, &shared.config.initializer) {
        let mut frames = Vec::new();
        push_function(&mut frames, fid, f);
        let at = wire::start_frame(&mut frames, wire::INIT);
        wire::push_uint(&mut frames, fid as u64);
        frames.extend_from_slice(a);
        wire::end_frame(&mut frames, at);
        // Before the writer starts, so these come first. A worker that died at once fails
        // this write, and the supervisor then sees how it ended.
        let _ = tx.write_frames(&frames, None);
    }
    let mut st = lock(&shared.state);
    let terminated = st.terminated.is_some();
    let slot = &mut st.slots[k];
    slot.starting = false;
    slot.generation += 1;
    let generation = slot.generation;
    slot.worker = Some(worker.clone());
    slot.in_flight.clear();
    slot.in_flight_bytes = 0;
    slot.assigned = 0;
    slot.exit_sent = false;
    slot.defined.clear();
    if let Some(fid) = init_fid {
        slot.defined.resize(fid + 1, false);
        slot.defined[fid] = true;
    }
    if terminated {
        drop(st);
        let _ = worker.child.signal(false);
        return Ok((rx, worker, generation));
    }
    st.threads += 1;
    drop(st);
    let sh = shared.clone();
    let spawned = thread::Builder::new()
        .name(format!("procwire-pool-w{k}"))
        .spawn(move || writer(&sh, k, generation, tx));
    if spawned.is_err() {
        thread_ended(shared);
        let _ = worker.child.signal(true);
    }
    Ok((rx, worker, generation))
}

fn push_function(frames: &mut Vec<u8>, fid: usize, name: &str) {
    let at = wire::start_frame(frames, wire::FUNCTION);
    wire::push_uint(frames, fid as u64);
    wire::push_text(frames, name);
    wire::end_frame(frames, at);
}

/// What a writer does next.
enum Take {
    Send,
    /// Send, then EXIT: the worker retires (maxtasksperchild) or the pool is closed.
    Exit,
    Wait,
    Stop,
}

/// Moves chunks for slot `k` from the queue to its flight; `batch` gets them.
fn take(
    st: &mut State,
    cfg: &Config,
    k: usize,
    generation: u64,
    batch: &mut Vec<Chunk>,
    defs: &mut Vec<usize>,
) -> Take {
    if st.terminated.is_some() || st.slots[k].generation != generation || st.slots[k].exit_sent {
        return Take::Stop;
    }
    let live = st.live_workers().max(1);
    let in_flight: usize = st.slots.iter().map(|s| s.in_flight.len()).sum();
    // No worker takes more than its share of what there is to do.
    let share = (st.pending.len() + in_flight).div_ceil(live).max(1);
    while let Some(c) = st.pending.front() {
        let slot = &st.slots[k];
        let w = window(st.estimates[c.fid].map(|t| t * c.n as f64)).min(share);
        if slot.in_flight.len() >= w
            || (!slot.in_flight.is_empty() && slot.in_flight_bytes + c.range.len() > MAX_IN_FLIGHT_BYTES)
            || cfg.maxtasks.is_some_and(|m| slot.assigned >= m)
        {
            break;
        }
        let c = st.pending.pop_front().expect("looked at");
        let slot = &mut st.slots[k];
        if slot.defined.len() <= c.fid {
            slot.defined.resize(c.fid + 1, false);
        }
        if !slot.defined[c.fid] {
            slot.defined[c.fid] = true;
            defs.push(c.fid);
        }
        slot.in_flight_bytes += c.range.len();
        slot.assigned += c.n as u64;
        slot.in_flight.push_back(c.clone());
        batch.push(c);
    }
    let slot = &st.slots[k];
    let retire = cfg.maxtasks.is_some_and(|m| slot.assigned >= m);
    let finished = st.closed && st.pending.is_empty() && st.open_jobs == 0;
    if retire || finished {
        st.slots[k].exit_sent = true;
        Take::Exit
    } else if batch.is_empty() {
        Take::Wait
    } else {
        Take::Send
    }
}

/// The writer thread of slot `k`'s worker of `generation`.
fn writer(shared: &Arc<Shared>, k: usize, generation: u64, mut tx: Sender) {
    let mut frames = Vec::new();
    let mut batch = Vec::new();
    let mut defs = Vec::new();
    loop {
        let mut names = Vec::new();
        let action = {
            let mut st = lock(&shared.state);
            loop {
                match take(&mut st, &shared.config, k, generation, &mut batch, &mut defs) {
                    Take::Wait => {
                        st.slots[k].writer_waiting = true;
                        st = shared.writers[k].wait(st).unwrap_or_else(|p| p.into_inner());
                        st.slots[k].writer_waiting = false;
                    }
                    other => {
                        names.extend(defs.drain(..).map(|fid| (fid, st.functions[fid])));
                        break other;
                    }
                }
            }
        };
        if matches!(action, Take::Stop) {
            break;
        }
        for (fid, name) in names {
            push_function(&mut frames, fid, name);
        }
        for c in batch.drain(..) {
            let at = wire::start_frame(&mut frames, wire::CHUNK);
            wire::push_uint(&mut frames, c.id);
            wire::push_uint(&mut frames, c.fid as u64);
            wire::push_uint(&mut frames, c.n as u64);
            frames.extend_from_slice(&c.args[c.range.clone()]);
            wire::end_frame(&mut frames, at);
        }
        let exit = matches!(action, Take::Exit);
        if exit {
            let at = wire::start_frame(&mut frames, wire::EXIT);
            wire::end_frame(&mut frames, at);
        }
        // A failed write means the worker is gone: its supervisor sees that and cleans up.
        if tx.write_frames(&frames, None).is_err() || exit {
            break;
        }
        frames.clear();
        if frames.capacity() > 4 << 20 {
            frames = Vec::new();
        }
    }
    thread_ended(shared);
}

/// One message from a worker.
enum Got {
    Result { id: u64, elapsed: u64, failed: u64, bytes: Vec<u8> },
    InitFailed(String),
}

fn parse(frame: &[u8], scratch: &mut [u8]) -> Result<Got> {
    let Some((&op, mut body)) = frame.split_first() else {
        return Err(Error::Protocol("an empty pool message".into()));
    };
    match op {
        wire::RESULT => {
            let id = wire::take_uint(&mut body)?;
            let elapsed = wire::take_uint(&mut body)?;
            let failed = wire::take_uint(&mut body)?;
            Ok(Got::Result { id, elapsed, failed, bytes: body.to_vec() })
        }
        wire::INIT_FAILED => Ok(Got::InitFailed(wire::take_value(&mut body, scratch)?)),
        _ => Err(Error::Protocol(format!("unknown pool message {op:#04x} from a worker"))),
    }
}

/// How a worker's connection ended.
enum End {
    /// End of stream, or the worker exited.
    Gone,
    InitFailed(String),
    Broken(Error),
}

/// The supervisor of slot `k`: starts its worker, reads its results, and replaces it.
fn supervise(shared: &Arc<Shared>, k: usize, first: mpsc::Sender<Result<()>>) {
    let mut first = Some(first);
    let mut failures = 0;
    loop {
        let (mut rx, worker, generation) = match start_worker(shared, k) {
            Ok(x) => x,
            Err(e) => {
                if let Some(tx) = first.take() {
                    let _ = tx.send(Err(e));
                    break;
                }
                failures += 1;
                if failures < RESPAWN_ATTEMPTS && lock(&shared.state).refusal().is_none() {
                    thread::sleep(Duration::from_millis(100) * 2u32.pow(failures));
                    continue;
                }
                give_up(shared, &e);
                break;
            }
        };
        failures = 0;
        if let Some(tx) = first.take() {
            let _ = tx.send(Ok(()));
        }
        let end = read_results(shared, k, generation, &mut rx, &worker);
        drop(rx);
        if let End::Broken(_) = &end {
            let _ = worker.child.signal(true);
        }
        let code = reap(&worker);
        if !worker_ended(shared, k, &worker, end, code) {
            break;
        }
    }
    thread_ended(shared);
}

/// A slot could not start a worker: if no worker is left, nothing can run.
fn give_up(shared: &Arc<Shared>, e: &Error) {
    let mut st = lock(&shared.state);
    if st.live_workers() == 0 && !st.slots.iter().any(|s| s.starting) && st.terminated.is_none() {
        let why = format!("no worker process could be started: {e}");
        st.fail_all(shared, "pool", &why);
        st.broken = Some(why);
        shared.changed.notify_all();
    }
}

/// Reads results until the worker's connection ends.
fn read_results(shared: &Arc<Shared>, k: usize, generation: u64, rx: &mut Receiver, worker: &Worker) -> End {
    let mut got = Vec::new();
    let mut scratch = [0u8; wire::SCRATCH];
    let mut exited = false;
    loop {
        let mut bad = None;
        let r = rx.recv_batch(Some(Instant::now() + CHECK_EVERY), &mut |frame| {
            match parse(frame, &mut scratch) {
                Ok(g) => got.push(g),
                Err(e) => bad = Some(e),
            }
            if bad.is_some() { Err(Error::Closed) } else { Ok(()) }
        });
        if !got.is_empty()
            && let Err(e) = apply(shared, k, generation, &mut got)
        {
            return e;
        }
        if let Some(e) = bad {
            return End::Broken(e);
        }
        match r {
            Ok(()) => {}
            Err(Error::Timeout(_)) => {
                // The stream stays open while a grandchild holds it: look at the process too,
                // and once it has exited, read what it wrote before for one more round.
                if exited {
                    return End::Gone;
                }
                exited = !matches!(worker.child.exitcode(), Ok(None));
                let terminated = lock(&shared.state).terminated;
                if terminated.is_some_and(|t| t.elapsed() > TERM_GRACE) {
                    let _ = worker.child.signal(true);
                }
            }
            Err(Error::Closed | Error::Truncated { .. }) => return End::Gone,
            Err(e) => return End::Broken(e),
        }
    }
}

/// Applies a batch of messages from slot `k`'s worker.
fn apply(
    shared: &Arc<Shared>,
    k: usize,
    generation: u64,
    got: &mut Vec<Got>,
) -> std::result::Result<(), End> {
    let mut st = lock(&shared.state);
    let mut end = Ok(());
    for g in got.drain(..) {
        match g {
            Got::Result { id, elapsed, failed, bytes } => {
                let slot = &mut st.slots[k];
                if slot.generation != generation {
                    break;
                }
                let Some(c) = slot.in_flight.pop_front() else {
                    // After terminate or a failed initializer: its chunks were failed already.
                    if st.terminated.is_some() || st.broken.is_some() {
                        continue;
                    }
                    end = Err(End::Broken(Error::Protocol(format!(
                        "a result for chunk {id}, which was not sent"
                    ))));
                    break;
                };
                if c.id != id {
                    end = Err(End::Broken(Error::Protocol(format!(
                        "a result for chunk {id} where chunk {} was next",
                        c.id
                    ))));
                    slot.in_flight.push_front(c);
                    break;
                }
                slot.in_flight_bytes -= c.range.len();
                let per_task = elapsed as f64 / c.n.max(1) as f64;
                let est = &mut st.estimates[c.fid];
                *est = Some(est.map_or(per_task, |e| 0.75 * e + 0.25 * per_task));
                let failed = usize::try_from(failed).unwrap_or(usize::MAX).min(c.n);
                st.chunk_done(shared, &c, ChunkOut::Data { n: c.n, failed, bytes });
            }
            Got::InitFailed(why) => {
                end = Err(End::InitFailed(why));
                break;
            }
        }
    }
    if st.slots[k].writer_waiting {
        shared.writers[k].notify_one();
    }
    drop(st);
    shared.changed.notify_all();
    end
}

/// Waits for an ended worker's exit code (killing it if it does not exit).
fn reap(worker: &Worker) -> Option<i32> {
    if let Ok(Some(code)) = worker.child.join(Some(Duration::from_secs(2))) {
        return Some(code);
    }
    let _ = worker.child.signal(true);
    worker.child.join(Some(Duration::from_secs(5))).ok().flatten()
}

/// Why a worker's tasks were lost, for their error messages.
fn describe(worker: &Worker, code: Option<i32>) -> String {
    let how = match code {
        Some(c) if c < 0 => {
            let sig = -c;
            let what = match sig {
                9 => " (SIGKILL: killed, for example by the out-of-memory killer)",
                6 => " (SIGABRT: aborted, for example after a failed allocation)",
                11 => " (SIGSEGV: a segmentation fault)",
                15 => " (SIGTERM)",
                _ => "",
            };
            format!("was killed by signal {sig}{what}")
        }
        Some(c) => format!("exited with code {c}"),
        None => "ended (its exit code could not be read)".to_string(),
    };
    format!("worker process {} (pid {}) {how}", worker.name, worker.child.pid())
}

/// Cleans up after slot `k`'s worker ended; whether to start a replacement.
fn worker_ended(shared: &Arc<Shared>, k: usize, worker: &Worker, end: End, code: Option<i32>) -> bool {
    let mut st = lock(&shared.state);
    let slot = &mut st.slots[k];
    slot.worker = None;
    slot.generation += 1;
    let lost: Vec<Chunk> = slot.in_flight.drain(..).collect();
    slot.in_flight_bytes = 0;
    shared.writers[k].notify_all();
    let again = match end {
        _ if st.terminated.is_some() => false,
        End::InitFailed(why) => {
            let why = format!("the initializer failed in {}: {why}", describe(worker, code));
            st.pending.extend(lost);
            st.fail_all(shared, "initializer", &why);
            st.broken = Some(why);
            false
        }
        end => {
            let mut lost = lost.into_iter();
            if let Some(c) = lost.next() {
                let mut why = describe(worker, code);
                if let End::Broken(e) = &end {
                    why = format!("{why} after a protocol error ({e})");
                }
                let parts = if shared.config.retry_lost && c.tries == 0 { split(&mut st, &c) } else { None };
                for c in lost.rev() {
                    st.pending.push_front(c);
                }
                match parts {
                    Some(parts) => {
                        for p in parts.into_iter().rev() {
                            st.pending.push_front(p);
                        }
                    }
                    None => {
                        let which = if c.n == 1 {
                            "while running this task".to_string()
                        } else {
                            format!(
                                "while running this task's chunk (tasks {} to {} of the call)",
                                c.first,
                                c.first + c.n - 1
                            )
                        };
                        let retried = if c.tries > 0 { " (it was the task's second try)" } else { "" };
                        let message = format!("{why} {which}{retried}");
                        st.chunk_done(shared, &c, ChunkOut::Failed { n: c.n, kind: "exit", message });
                    }
                }
                shared.wake_writers(&st);
            }
            st.broken.is_none() && (!st.closed || !st.pending.is_empty() || st.open_jobs > 0)
        }
    };
    shared.changed.notify_all();
    again
}

/// A lost chunk to retry: itself marked as tried if it has one task, else one chunk per task
/// (so that a task that kills its worker again fails alone), gathered by a [`Split`].
fn split(st: &mut State, c: &Chunk) -> Option<Vec<Chunk>> {
    if c.n == 1 {
        return Some(vec![Chunk { tries: 1, ..c.clone() }]);
    }
    let split_id = st.next_chunk;
    st.next_chunk += 1;
    let mut parts = Vec::with_capacity(c.n);
    let mut body = &c.args[c.range.clone()];
    let mut pos = c.range.start;
    for i in 0..c.n {
        let before = body.len();
        skip_value(&mut body).ok()?;
        let len = before - body.len();
        let id = st.next_chunk;
        st.next_chunk += 1;
        parts.push(Chunk {
            id,
            first: c.first + i,
            n: 1,
            range: pos..pos + len,
            tries: 1,
            part: Some((split_id, i)),
            ..c.clone()
        });
        pos += len;
    }
    st.splits.insert(
        split_id,
        Split { job: c.job, index: c.index, parts: (0..c.n).map(|_| None).collect(), left: c.n },
    );
    Some(parts)
}

/// Skips one CBOR value at the front of `body`.
fn skip_value(body: &mut &[u8]) -> Result<()> {
    let mut scratch = [0u8; wire::SCRATCH];
    wire::take_value::<serde::de::IgnoredAny>(body, &mut scratch).map(|_| ())
}
