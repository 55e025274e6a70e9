//! The [`Threads`] backend: the pool's front over worker threads of this process. Chunks wait
//! in one queue that idle workers take from; each job keeps its typed results, chunk by chunk,
//! under its own lock.
//!
//! Lock order: the pool's lock is never taken while a job's is held.

use std::collections::VecDeque;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Instant;

use super::generic::sealed::{self, Gathered, Settings};
use super::generic::{DROP_JOIN, PoolBuilder, Threads, join_when};
use crate::RemoteKind;
use crate::process::Function;
use crate::process::threads::spawn_named;
use crate::util::{deadline_of, lock, panic_message, wait_until};
use crate::{Error, Result};

static NEXT_JOB: AtomicU64 = AtomicU64::new(1);

/// Why a task failed; becomes [`Error::Remote`] each time it is asked for.
#[derive(Clone, Debug)]
struct Failure {
    kind: RemoteKind,
    message: String,
}

impl Failure {
    fn error(&self) -> Error {
        Error::Remote { kind: self.kind.clone(), message: self.message.clone() }
    }
}

type Outcome<R> = std::result::Result<R, Failure>;

/// A job's results: chunk by chunk, in the order of submission.
struct JobState<R> {
    /// `None`: not finished. A chunk taken by an `imap` leaves an empty vector.
    chunks: Vec<Option<Vec<Outcome<R>>>>,
    /// The number of tasks in each chunk.
    sizes: Vec<usize>,
    /// Finished chunks not taken yet, in the order they finished (`imap_unordered`).
    arrived: VecDeque<usize>,
    done: usize,
    failed: usize,
    /// No more chunks will be added.
    sealed: bool,
    callback: Option<Box<dyn FnOnce() + Send>>,
}

impl<R> JobState<R> {
    fn complete(&self) -> bool {
        self.sealed && self.done == self.chunks.len()
    }
}

struct Job<R> {
    id: u64,
    ordered: bool,
    st: Mutex<JobState<R>>,
    cv: Condvar,
}

impl<R> Job<R> {
    fn new(ordered: bool) -> Arc<Job<R>> {
        Arc::new(Job {
            id: NEXT_JOB.fetch_add(1, Ordering::Relaxed),
            ordered,
            st: Mutex::new(JobState {
                chunks: Vec::new(),
                sizes: Vec::new(),
                arrived: VecDeque::new(),
                done: 0,
                failed: 0,
                sealed: false,
                callback: None,
            }),
            cv: Condvar::new(),
        })
    }

    /// Stores chunk `index`'s results, unless it was failed already (by terminate).
    fn deliver(&self, index: usize, results: Vec<Outcome<R>>) {
        let callback = {
            let mut st = lock(&self.st);
            if st.chunks.get(index).is_none_or(Option::is_some) {
                return;
            }
            st.failed += results.iter().filter(|r| r.is_err()).count();
            st.chunks[index] = Some(results);
            if !self.ordered {
                st.arrived.push_back(index);
            }
            st.done += 1;
            self.cv.notify_all();
            if st.complete() { st.callback.take() } else { None }
        };
        if let Some(cb) = callback {
            cb();
        }
    }

    /// Adds a chunk of `n` tasks; its index.
    fn add_chunk(&self, n: usize) -> usize {
        let mut st = lock(&self.st);
        st.chunks.push(None);
        st.sizes.push(n);
        st.chunks.len() - 1
    }

    /// No more chunks will be added; whether it was open until now.
    fn seal(&self) -> bool {
        let (was_open, callback) = {
            let mut st = lock(&self.st);
            let was_open = !std::mem::replace(&mut st.sealed, true);
            self.cv.notify_all();
            (was_open, if st.complete() { st.callback.take() } else { None })
        };
        if let Some(cb) = callback {
            cb();
        }
        was_open
    }

    /// Waits until every chunk finished; `None` after `deadline`.
    fn wait_complete(&self, deadline: Option<Instant>) -> Option<std::sync::MutexGuard<'_, JobState<R>>> {
        let mut st = lock(&self.st);
        while !st.complete() {
            st = wait_until(&self.cv, st, deadline)?;
        }
        Some(st)
    }

    /// Takes chunk `index` (ordered) or the next finished one; `Err` after `deadline`, and
    /// `Ok(None)` when a sealed job has no more.
    fn take_chunk(
        &self,
        index: Option<usize>,
        deadline: Option<Instant>,
    ) -> std::result::Result<Option<Vec<Outcome<R>>>, ()> {
        let mut st = lock(&self.st);
        loop {
            let found = match index {
                Some(i) => st.chunks.get(i).is_some_and(Option::is_some).then_some(i),
                None => st.arrived.pop_front(),
            };
            if let Some(i) = found {
                return Ok(st.chunks[i].replace(Vec::new()));
            }
            let none_left = match index {
                Some(i) => st.sealed && i >= st.chunks.len(),
                None => st.complete(),
            };
            if none_left {
                return Ok(None);
            }
            st = wait_until(&self.cv, st, deadline).ok_or(())?;
        }
    }
}

/// A job as the pool sees it: what terminate and a failed initializer fail.
trait Abort: Send + Sync {
    /// Fails every chunk that has not finished with `failure`, and seals the job.
    fn abort(&self, failure: &Failure);
}

impl<R: Send> Abort for Job<R> {
    fn abort(&self, failure: &Failure) {
        let callback = {
            let mut st = lock(&self.st);
            for i in 0..st.chunks.len() {
                if st.chunks[i].is_none() {
                    let n = st.sizes[i];
                    st.chunks[i] = Some((0..n).map(|_| Err(failure.clone())).collect());
                    st.failed += n;
                    st.done += 1;
                    if !self.ordered {
                        st.arrived.push_back(i);
                    }
                }
            }
            st.sealed = true;
            self.cv.notify_all();
            st.callback.take()
        };
        if let Some(cb) = callback {
            cb();
        }
    }
}

/// A chunk of tasks waiting for a worker.
trait Chunk: Send {
    fn job(&self) -> u64;
    fn len(&self) -> usize;
    /// Runs the tasks and delivers their results, stopping early when the pool stops.
    fn run(self: Box<Self>, stop: &AtomicBool);
}

struct Tasks<A, R> {
    job: Arc<Job<R>>,
    index: usize,
    f: fn(A) -> R,
    items: Vec<A>,
}

impl<A: Send, R: Send> Chunk for Tasks<A, R> {
    fn job(&self) -> u64 {
        self.job.id
    }

    fn len(&self) -> usize {
        self.items.len()
    }

    fn run(self: Box<Self>, stop: &AtomicBool) {
        let Tasks { job, index, f, items } = *self;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if stop.load(Ordering::SeqCst) {
                // Terminated: the job's chunks were failed already.
                return;
            }
            out.push(
                catch_unwind(AssertUnwindSafe(|| f(item)))
                    .map_err(|p| Failure { kind: RemoteKind::Panic, message: panic_message(&*p) }),
            );
        }
        job.deliver(index, out);
    }
}

/// An initializer with its argument, run once by each worker thread.
type Initializer = Arc<dyn Fn() + Send + Sync>;

/// The pool's settings.
struct Config {
    processes: usize,
    initializer: Option<Initializer>,
    maxtasks: Option<u64>,
    prefix: String,
}

struct State {
    pending: VecDeque<Box<dyn Chunk>>,
    /// Jobs that may still have unfinished chunks.
    jobs: Vec<Weak<dyn Abort>>,
    closed: bool,
    terminated: bool,
    /// Why the pool cannot run tasks any more (an initializer failed).
    broken: Option<String>,
    /// `imap` jobs that may still add chunks: workers stay for them after close.
    open_streams: usize,
    /// Worker threads running.
    threads: usize,
    next_worker: u64,
    callbacks_pending: usize,
}

/// What the pool's handles and worker threads share (`pub` in this private module, as a
/// backend's associated type must be).
pub struct Shared {
    config: Config,
    st: Mutex<State>,
    /// Chunks arrived, or the pool is stopping (workers wait here).
    work: Condvar,
    /// A thread ended or a callback ran (join waits here).
    changed: Condvar,
    /// Set by terminate and by a failed initializer: workers stop between tasks.
    stop: AtomicBool,
    /// Completion callbacks run one at a time.
    callback_turn: Mutex<()>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = lock(&self.st);
        f.debug_struct("Pool")
            .field("processes", &self.config.processes)
            .field("pending_chunks", &st.pending.len())
            .field("threads", &st.threads)
            .field("closed", &st.closed)
            .field("terminated", &st.terminated)
            .finish()
    }
}

impl Shared {
    /// Why no chunks can be added any more, even to an open `imap`.
    fn stopped(st: &State) -> Option<Error> {
        if let Some(why) = &st.broken {
            return Some(Error::Remote { kind: RemoteKind::Pool, message: why.clone() });
        }
        if st.terminated {
            return Some(Error::InvalidInput("the pool was terminated".into()));
        }
        None
    }

    /// Why no new job can be submitted.
    fn refusal(st: &State) -> Option<Error> {
        if let Some(e) = Shared::stopped(st) {
            return Some(e);
        }
        if st.closed {
            return Some(Error::InvalidInput("the pool is closed: it takes no new work".into()));
        }
        None
    }

    fn register<R: Send + 'static>(st: &mut State, job: &Arc<Job<R>>) {
        st.jobs.retain(|j| j.strong_count() > 0);
        let weak: Weak<Job<R>> = Arc::downgrade(job);
        st.jobs.push(weak);
    }

    /// Queues `items` as chunks of `job`.
    fn push_chunks<A, R>(
        &self,
        st: &mut State,
        job: &Arc<Job<R>>,
        f: fn(A) -> R,
        items: Vec<A>,
        chunksize: usize,
    ) where
        A: Send + 'static,
        R: Send + 'static,
    {
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            let chunk: Vec<A> = items.by_ref().take(chunksize).collect();
            let index = job.add_chunk(chunk.len());
            st.pending.push_back(Box::new(Tasks { job: job.clone(), index, f, items: chunk }));
            self.work.notify_one();
        }
    }

    /// Fails every unfinished job with `failure` (the state lock must not be held).
    fn abort_all(&self, failure: &Failure) {
        let jobs: Vec<Arc<dyn Abort>> = {
            let mut st = lock(&self.st);
            st.pending.clear();
            st.open_streams = 0;
            st.jobs.drain(..).filter_map(|j| j.upgrade()).collect()
        };
        for j in jobs {
            j.abort(failure);
        }
    }

    fn thread_ended(&self) {
        let mut st = lock(&self.st);
        st.threads -= 1;
        self.changed.notify_all();
    }

    /// Starts worker `PREFIX-N`, counting it as running.
    fn start_worker(self: &Arc<Self>) -> Result<()> {
        let name = {
            let mut st = lock(&self.st);
            st.threads += 1;
            let n = st.next_worker;
            st.next_worker += 1;
            format!("{}-{n}", self.config.prefix)
        };
        let sh = self.clone();
        let worker_name = name.clone();
        spawn_named(&name, move || work(sh, worker_name)).inspect_err(|_| self.thread_ended())
    }
}

/// A worker thread: the initializer, then chunks until the pool stops or `maxtasksperchild`.
fn work(shared: Arc<Shared>, name: String) {
    if let Some(init) = &shared.config.initializer
        && let Err(p) = catch_unwind(AssertUnwindSafe(|| init()))
    {
        let why = format!("the initializer failed in worker thread {name}: {}", panic_message(&*p));
        {
            let mut st = lock(&shared.st);
            st.broken.get_or_insert(why.clone());
            shared.stop.store(true, Ordering::SeqCst);
            shared.work.notify_all();
        }
        shared.abort_all(&Failure { kind: RemoteKind::Initializer, message: why });
        shared.thread_ended();
        return;
    }
    let mut ran: u64 = 0;
    loop {
        let chunk = {
            let mut st = lock(&shared.st);
            loop {
                if st.terminated || st.broken.is_some() {
                    break None;
                }
                if let Some(c) = st.pending.pop_front() {
                    break Some(c);
                }
                if st.closed && st.open_streams == 0 {
                    break None;
                }
                st = shared.work.wait(st).unwrap_or_else(|p| p.into_inner());
            }
        };
        let Some(chunk) = chunk else { break };
        ran += chunk.len() as u64;
        chunk.run(&shared.stop);
        // A fresh thread takes over; if none can start, this one carries on.
        if shared.config.maxtasks.is_some_and(|m| ran >= m) && shared.start_worker().is_ok() {
            break;
        }
    }
    shared.thread_ended();
}

/// A submitted job, with the pool it belongs to. Dropping a stream's handle drops its chunks
/// no worker has started, and seals it.
pub struct Handle<R> {
    shared: Arc<Shared>,
    job: Arc<Job<R>>,
    stream: bool,
}

impl<R> Handle<R> {
    fn seal(&self) {
        // A sealed stream no longer keeps a closed pool's workers.
        if self.job.seal() && self.stream {
            let mut st = lock(&self.shared.st);
            st.open_streams = st.open_streams.saturating_sub(1);
            self.shared.work.notify_all();
        }
    }
}

impl<R> Drop for Handle<R> {
    fn drop(&mut self) {
        if self.stream {
            let id = self.job.id;
            lock(&self.shared.st).pending.retain(|c| c.job() != id);
            self.seal();
        }
    }
}

/// Clones of every result of a finished job.
fn cloned<R: Clone>(st: &JobState<R>) -> impl Iterator<Item = Result<R>> + '_ {
    st.chunks.iter().flatten().flatten().map(|r| r.clone().map_err(|f| f.error()))
}

impl sealed::Backend for Threads {
    type Pool = Shared;
    type Init = Initializer;
    type Job<R> = Handle<R>;

    fn start(settings: Settings<Initializer>) -> Result<Arc<Shared>> {
        let shared = Arc::new(Shared {
            config: Config {
                processes: settings.processes,
                initializer: settings.initializer.map(|(_, f)| f),
                maxtasks: settings.maxtasks,
                prefix: settings.prefix,
            },
            st: Mutex::new(State {
                pending: VecDeque::new(),
                jobs: Vec::new(),
                closed: false,
                terminated: false,
                broken: None,
                open_streams: 0,
                threads: 0,
                next_worker: 1,
                callbacks_pending: 0,
            }),
            work: Condvar::new(),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            callback_turn: Mutex::new(()),
        });
        for _ in 0..settings.processes {
            if let Err(e) = shared.start_worker() {
                Self::terminate(&shared);
                let _ = Self::join(&shared, deadline_of(Some(DROP_JOIN)));
                return Err(e);
            }
        }
        Ok(shared)
    }

    fn processes(pool: &Shared) -> usize {
        pool.config.processes
    }

    fn pids(_: &Shared) -> Vec<u32> {
        Vec::new()
    }

    fn close(pool: &Arc<Shared>) {
        let mut st = lock(&pool.st);
        st.closed = true;
        pool.work.notify_all();
    }

    fn terminate(pool: &Arc<Shared>) {
        {
            let mut st = lock(&pool.st);
            if st.terminated {
                return;
            }
            st.terminated = true;
            st.closed = true;
            pool.stop.store(true, Ordering::SeqCst);
            pool.work.notify_all();
        }
        pool.abort_all(&Failure {
            kind: RemoteKind::Terminated,
            message: "the pool was terminated before this task finished".into(),
        });
    }

    fn join(pool: &Shared, deadline: Option<Instant>) -> Result<()> {
        let st = lock(&pool.st);
        let closed = st.closed;
        join_when(&pool.changed, st, closed, deadline, |st| (st.threads, st.callbacks_pending))
    }

    fn window(_: &Shared, _: &'static str, _: usize) -> usize {
        // An idle worker takes its next chunk from the shared queue itself: no chunks are
        // in flight to a worker, only the one it runs.
        1
    }

    fn job_id<R>(job: &Handle<R>) -> u64 {
        job.job.id
    }

    fn wait<R>(job: &Handle<R>, deadline: Option<Instant>) -> bool {
        job.job.wait_complete(deadline).is_some()
    }

    fn failed<R>(job: &Handle<R>) -> Option<usize> {
        let st = lock(&job.job.st);
        st.complete().then_some(st.failed)
    }

    fn seal<R>(job: &Handle<R>) {
        job.seal();
    }
}

impl<A: Send + 'static, R: Send + 'static> sealed::Runs<A, R> for Threads {
    type Args = Vec<A>;

    fn gather<I: Iterator<Item = A>>(items: &mut I, max: usize, _first: usize) -> Gathered<Vec<A>> {
        let args: Vec<A> = items.by_ref().take(max).collect();
        Gathered { n: args.len(), args, failure: None }
    }

    fn submit(pool: &Arc<Shared>, f: &Function<A, R>, args: Vec<A>, chunksize: usize) -> Result<Handle<R>> {
        let job = Job::new(true);
        {
            let mut st = lock(&pool.st);
            if let Some(e) = Shared::refusal(&st) {
                return Err(e);
            }
            Shared::register(&mut st, &job);
            pool.push_chunks(&mut st, &job, f.parts().1, args, chunksize);
        }
        job.seal();
        Ok(Handle { shared: pool.clone(), job, stream: false })
    }

    fn open(pool: &Arc<Shared>, _: &Function<A, R>, ordered: bool) -> Result<Handle<R>> {
        let job = Job::new(ordered);
        let mut st = lock(&pool.st);
        if let Some(e) = Shared::refusal(&st) {
            return Err(e);
        }
        Shared::register(&mut st, &job);
        st.open_streams += 1;
        Ok(Handle { shared: pool.clone(), job, stream: true })
    }

    fn add(
        job: &Handle<R>,
        f: &Function<A, R>,
        args: Vec<A>,
        chunksize: usize,
        _: usize,
        _: usize,
    ) -> Result<()> {
        let mut st = lock(&job.shared.st);
        if let Some(e) = Shared::stopped(&st) {
            return Err(e);
        }
        job.shared.push_chunks(&mut st, &job.job, f.parts().1, args, chunksize);
        Ok(())
    }

    fn take(job: &Handle<R>, deadline: Option<Instant>, each: &mut dyn FnMut(Result<R>)) -> bool {
        let Some(mut st) = job.job.wait_complete(deadline) else { return false };
        for chunk in st.chunks.iter_mut() {
            chunk.take().into_iter().flatten().for_each(|r| each(r.map_err(|f| f.error())));
        }
        true
    }

    fn next_chunk(
        job: &Handle<R>,
        index: Option<usize>,
        deadline: Option<Instant>,
        each: &mut dyn FnMut(Result<R>),
    ) -> Option<bool> {
        match job.job.take_chunk(index, deadline) {
            Ok(Some(out)) => {
                out.into_iter().for_each(|r| each(r.map_err(|f| f.error())));
                Some(true)
            }
            Ok(None) => Some(false),
            Err(()) => None,
        }
    }
}

impl<R: Clone + Send + 'static> sealed::Gets<R> for Threads {
    fn get(job: &Handle<R>, deadline: Option<Instant>, each: &mut dyn FnMut(Result<R>)) -> bool {
        let Some(st) = job.job.wait_complete(deadline) else { return false };
        cloned(&st).for_each(each);
        true
    }

    fn on_complete(job: &Handle<R>, f: Box<dyn FnOnce(Vec<Result<R>>) + Send>) {
        let j = job.job.clone();
        let shared = Arc::downgrade(&job.shared);
        let run = move || {
            let shared = shared.upgrade();
            {
                let _turn = shared.as_ref().map(|s| lock(&s.callback_turn));
                let all = cloned(&lock(&j.st)).collect();
                let _ = catch_unwind(AssertUnwindSafe(|| f(all)));
            }
            if let Some(s) = shared {
                let mut st = lock(&s.st);
                st.callbacks_pending -= 1;
                s.changed.notify_all();
            }
        };
        // Counted first: the pool's lock is never taken while a job's is held.
        lock(&job.shared.st).callbacks_pending += 1;
        let mut st = lock(&job.job.st);
        if st.complete() {
            drop(st);
            run();
        } else {
            st.callback = Some(Box::new(run));
        }
    }
}

impl PoolBuilder<Threads> {
    /// A function each worker thread runs once with a clone of `args` before its first task
    /// (its result is ignored). If it panics, the pool stops: tasks fail with
    /// [`Error::Remote`] of kind `"initializer"` carrying the panic message, and new work is
    /// refused with kind `"pool"`.
    pub fn initializer<A, R>(self, f: &Function<A, R>, args: A) -> Self
    where
        A: Clone + Send + Sync + 'static,
        R: 'static,
    {
        let (name, f) = f.parts();
        self.with_initializer(
            name,
            Arc::new(move || {
                f(args.clone());
            }),
        )
    }
}
