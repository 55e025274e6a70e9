//! A pool of worker threads with the [`pool`](crate::pool) API: [`Pool`] with `apply`, `map`,
//! `imap`, `imap_unordered`, `starmap` and their `_async` forms, whose results come back as
//! [`AsyncResult`], [`MapResult`] or an [`IMap`] iterator (`multiprocessing.dummy.Pool`, which
//! is CPython's `ThreadPool`).
//!
//! ```
//! use std::time::Duration;
//! use procwire::dummy::pool::Pool;
//! use procwire::dummy::process::Function;
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//! static SQUARE: Function<u64, u64> = Function::new("square", square);
//!
//! let pool = Pool::new(4)?;
//! let result = pool.map_async(&SQUARE, 0..10, None)?;
//! assert_eq!(result.get(Some(Duration::from_secs(10)))?, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
//! # Ok::<(), procwire::Error>(())
//! ```
//!
//! The rules are the process version's: the same [`Function`]s, tasks in chunks of
//! `chunksize` with the same default ([`default_chunksize`] for `map` and `starmap`, 1 for the
//! `imap`s), a panicking task fails alone ([`Error::Remote`] of kind `"panic"`) while its
//! worker carries on, `map` and `get` return the first failed task's error, workers are named
//! `PREFIX-N` ([`current_name`](super::process::current_name)), a failed initializer stops the
//! pool (kind `"initializer"`, then `"pool"`), and dropping a pool terminates it.
//!
//! # Differences from the process version
//!
//! - Arguments and results are moved, not encoded: they need `Send + 'static`, no serde.
//!   `get` on [`AsyncResult`] and [`MapResult`] can be called again, so it returns clones
//!   (`R: Clone`); [`Pool::map`], [`Pool::apply`] and the `imap` iterators hand over the
//!   results themselves. An initializer's argument is cloned for each worker.
//! - A thread cannot be stopped: [`Pool::terminate`] fails every task that has not finished
//!   at once (kind `"terminated"`), queued or running, and the workers take no more tasks;
//!   a task that is running goes on until it returns, and its result is dropped.
//!   [`Pool::join`] waits for those tasks; dropping the pool waits for them at most 10 s and
//!   then leaves them running, detached.
//! - A worker is never lost on its own: a task that calls `std::process::exit` or aborts
//!   ends the whole program, so [`PoolBuilder::retry_lost`] has nothing to retry.
//!   [`Pool::pids`] is empty (threads have no process ids).
//! - Completion callbacks ([`AsyncResult::on_complete`]) run on the worker thread that
//!   finished the job, or on the thread that calls `on_complete` (or
//!   [`terminate`](Pool::terminate)) when it is done already; still one at a time.
//! - `maxtasksperchild` replaces the worker thread by a fresh one, which runs the initializer
//!   again; thread-local state is what it frees (memory a task leaked stays leaked).

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

pub use crate::pool::default_chunksize;

use super::process::{Function, spawn_named};
use crate::util::deadline_of;
use crate::util::panic_message;
use crate::util::{lock, wait_until};
use crate::{Error, Result};

/// How long dropping a pool waits for tasks that are still running.
const DROP_JOIN: Duration = Duration::from_secs(10);

static NEXT_JOB: AtomicU64 = AtomicU64::new(1);

fn invalid(message: &str) -> Error {
    Error::Io(io::Error::new(io::ErrorKind::InvalidInput, message.to_string()))
}

fn chunksize_or(chunksize: Option<usize>, default: impl FnOnce() -> usize) -> Result<usize> {
    match chunksize {
        Some(0) => Err(invalid("chunksize must be at least 1")),
        Some(n) => Ok(n),
        None => Ok(default()),
    }
}

/// Why a task failed; becomes [`Error::Remote`] each time it is asked for.
#[derive(Clone, Debug)]
struct Failure {
    kind: &'static str,
    message: String,
}

impl Failure {
    fn error(&self) -> Error {
        Error::Remote { kind: self.kind.into(), message: self.message.clone() }
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

    fn seal(&self) {
        let callback = {
            let mut st = lock(&self.st);
            st.sealed = true;
            self.cv.notify_all();
            if st.complete() { st.callback.take() } else { None }
        };
        if let Some(cb) = callback {
            cb();
        }
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
                    .map_err(|p| Failure { kind: "panic", message: panic_message(&*p) }),
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

struct Shared {
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
    fn refusal(st: &State) -> Option<Error> {
        if let Some(why) = &st.broken {
            return Some(Error::Remote { kind: "pool".into(), message: why.clone() });
        }
        if st.terminated {
            return Some(Error::Io(io::Error::other("the pool was terminated")));
        }
        if st.closed {
            return Some(Error::Io(io::Error::other("the pool is closed: it takes no new work")));
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
        shared.abort_all(&Failure { kind: "initializer", message: why });
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

/// Settings for a [`Pool`], from [`Pool::builder`].
///
/// ```
/// use procwire::dummy::pool::Pool;
/// use procwire::dummy::process::Function;
///
/// fn connect_db(url: String) {
///     // Runs once in each worker thread, before its first task.
/// }
/// static CONNECT_DB: Function<String, ()> = Function::new("connect_db", connect_db);
///
/// let pool = Pool::builder()
///     .processes(8)
///     .initializer(&CONNECT_DB, "postgres://localhost/app".to_string())
///     .maxtasksperchild(10_000)
///     .name_prefix("indexer")
///     .build()?;
/// # Ok::<(), procwire::Error>(())
/// ```
pub struct PoolBuilder {
    processes: Option<usize>,
    initializer: Option<(&'static str, Initializer)>,
    maxtasks: Option<u64>,
    prefix: String,
    retry_lost: bool,
}

impl fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("processes", &self.processes)
            .field("initializer", &self.initializer.as_ref().map(|i| i.0))
            .field("maxtasksperchild", &self.maxtasks)
            .field("name_prefix", &self.prefix)
            .field("retry_lost", &self.retry_lost)
            .finish()
    }
}

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder {
            processes: None,
            initializer: None,
            maxtasks: None,
            prefix: "PoolWorker".into(),
            retry_lost: false,
        }
    }
}

impl PoolBuilder {
    /// The number of worker threads (default: the number of CPUs,
    /// [`std::thread::available_parallelism`]). 0 is an error in [`build`](PoolBuilder::build).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// A function each worker thread runs once with a clone of `args` before its first task
    /// (its result is ignored). If it panics, the pool stops: tasks fail with
    /// [`Error::Remote`] of kind `"initializer"` carrying the panic message, and new work is
    /// refused with kind `"pool"`.
    pub fn initializer<A, R>(mut self, f: &Function<A, R>, args: A) -> Self
    where
        A: Clone + Send + Sync + 'static,
        R: 'static,
    {
        let (name, f) = f.parts();
        self.initializer = Some((
            name,
            Arc::new(move || {
                f(args.clone());
            }),
        ));
        self
    }

    /// Replaces a worker thread by a new one once it has been given `n` tasks (at least 1;
    /// a chunk is never split, so a worker may run a little more).
    pub fn maxtasksperchild(mut self, n: u64) -> Self {
        self.maxtasks = Some(n.max(1));
        self
    }

    /// Workers are named `PREFIX-N` (default `PoolWorker-N`, N counting from 1 in each pool);
    /// a worker sees its name as [`current_name`](super::process::current_name), and it is
    /// its OS thread name.
    pub fn name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Recorded only: a worker thread is never lost on its own (see the [module
    /// documentation](self)).
    pub fn retry_lost(mut self, retry: bool) -> Self {
        self.retry_lost = retry;
        self
    }

    /// Starts the worker threads. A thread the OS refuses is an error here, and the others
    /// are stopped.
    pub fn build(self) -> Result<Pool> {
        let processes = match self.processes {
            Some(0) => return Err(invalid("a pool needs at least one process")),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let shared = Arc::new(Shared {
            config: Config {
                processes,
                initializer: self.initializer.map(|(_, f)| f),
                maxtasks: self.maxtasks,
                prefix: self.prefix,
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
        let pool = Pool { shared };
        for _ in 0..processes {
            pool.shared.start_worker()?;
        }
        Ok(pool)
    }
}

/// A pool of worker threads that run [`Function`] tasks; see the [module
/// documentation](self).
///
/// Methods take `&self`: a pool can be shared between threads (in an `Arc`), and several
/// calls can run at once; their chunks are served in the order they were submitted.
#[derive(Debug)]
pub struct Pool {
    shared: Arc<Shared>,
}

impl Pool {
    /// A pool of `processes` worker threads (at least 1); [`Pool::builder`] has the other
    /// settings.
    pub fn new(processes: usize) -> Result<Pool> {
        Pool::builder().processes(processes).build()
    }

    /// Settings for a new pool (by default one worker per CPU).
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// The number of workers.
    pub fn processes(&self) -> usize {
        self.shared.config.processes
    }

    /// Always empty: worker threads have no process ids (the process version lists its
    /// workers').
    pub fn pids(&self) -> Vec<u32> {
        Vec::new()
    }

    /// Creates a job of `items` in chunks of `chunksize`, sealed.
    fn submit<A, R>(&self, f: fn(A) -> R, items: Vec<A>, chunksize: usize) -> Result<Arc<Job<R>>>
    where
        A: Send + 'static,
        R: Send + 'static,
    {
        let job = Job::new(true);
        {
            let mut st = lock(&self.shared.st);
            if let Some(e) = Shared::refusal(&st) {
                return Err(e);
            }
            Shared::register(&mut st, &job);
            self.shared.push_chunks(&mut st, &job, f, items, chunksize);
        }
        job.seal();
        Ok(job)
    }

    /// Runs `f(args)` on a worker and waits for its result.
    ///
    /// ```
    /// # use procwire::dummy::{pool::Pool, process::Function};
    /// # static ADD: Function<(i64, i64), i64> = Function::new("add", |(a, b)| a + b);
    /// # let pool = Pool::new(2)?;
    /// assert_eq!(pool.apply(&ADD, (2, 3))?, 5);
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn apply<A, R>(&self, f: &Function<A, R>, args: A) -> Result<R>
    where
        A: Send + 'static,
        R: Send + 'static,
    {
        let job = self.submit(f.parts().1, vec![args], 1)?;
        let mut st = job.wait_complete(None).ok_or_else(no_result)?;
        take_all(&mut st).into_iter().next().unwrap_or_else(|| Err(no_result()))
    }

    /// Submits `f(args)`; its result comes through the returned [`AsyncResult`]. Dropping
    /// that does not cancel the task.
    pub fn apply_async<A, R>(&self, f: &Function<A, R>, args: A) -> Result<AsyncResult<R>>
    where
        A: Send + 'static,
        R: Send + 'static,
    {
        let job = self.submit(f.parts().1, vec![args], 1)?;
        Ok(AsyncResult { h: Handle { shared: self.shared.clone(), job } })
    }

    /// Runs `f` over every item in chunks of `chunksize` (`None`: [`default_chunksize`]) and
    /// returns the results in order, or the first failed task's error.
    ///
    /// ```
    /// # use procwire::dummy::{pool::Pool, process::Function};
    /// # static SQUARE: Function<u64, u64> = Function::new("square", |x| x * x);
    /// # let pool = Pool::new(2)?;
    /// assert_eq!(pool.map(&SQUARE, 1..=4, None)?, [1, 4, 9, 16]);
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn map<A, R, I>(&self, f: &Function<A, R>, items: I, chunksize: Option<usize>) -> Result<Vec<R>>
    where
        A: Send + 'static,
        R: Send + 'static,
        I: IntoIterator<Item = A>,
    {
        let job = self.map_job(f, items, chunksize)?.0;
        let mut st = job.wait_complete(None).ok_or_else(no_result)?;
        take_all(&mut st).into_iter().collect()
    }

    fn map_job<A, R, I>(
        &self,
        f: &Function<A, R>,
        items: I,
        chunksize: Option<usize>,
    ) -> Result<(Arc<Job<R>>, usize)>
    where
        A: Send + 'static,
        R: Send + 'static,
        I: IntoIterator<Item = A>,
    {
        let items: Vec<A> = items.into_iter().collect();
        let len = items.len();
        let chunksize = chunksize_or(chunksize, || default_chunksize(len, self.processes()))?;
        Ok((self.submit(f.parts().1, items, chunksize)?, len))
    }

    /// As [`map`](Pool::map), without waiting: the items are collected and queued now, and
    /// the results come through the returned [`MapResult`].
    pub fn map_async<A, R, I>(
        &self,
        f: &Function<A, R>,
        items: I,
        chunksize: Option<usize>,
    ) -> Result<MapResult<R>>
    where
        A: Send + 'static,
        R: Send + 'static,
        I: IntoIterator<Item = A>,
    {
        let (job, len) = self.map_job(f, items, chunksize)?;
        Ok(MapResult { h: Handle { shared: self.shared.clone(), job }, len })
    }

    /// CPython's `starmap`: a Rust function of several arguments takes them as one tuple, so
    /// this is [`map`](Pool::map) over tuples, under the name Python code uses.
    ///
    /// ```
    /// # use procwire::dummy::{pool::Pool, process::Function};
    /// static POW: Function<(u64, u32), u64> = Function::new("pow", |(b, e)| b.pow(e));
    /// # let pool = Pool::new(2)?;
    /// assert_eq!(pool.starmap(&POW, [(2, 3), (3, 2)], None)?, [8, 9]);
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn starmap<A, R, I>(&self, f: &Function<A, R>, items: I, chunksize: Option<usize>) -> Result<Vec<R>>
    where
        A: Send + 'static,
        R: Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map(f, items, chunksize)
    }

    /// CPython's `starmap_async`: [`map_async`](Pool::map_async) over tuples.
    pub fn starmap_async<A, R, I>(
        &self,
        f: &Function<A, R>,
        items: I,
        chunksize: Option<usize>,
    ) -> Result<MapResult<R>>
    where
        A: Send + 'static,
        R: Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async(f, items, chunksize)
    }

    /// Runs `f` over the items lazily and yields each task's result in order, in chunks of
    /// `chunksize` tasks (`None`: 1). Items are taken from `items` as results are consumed,
    /// a bounded number ahead (enough to keep every worker busy), so an endless iterator
    /// works. Dropping the iterator drops the chunks no worker has started.
    ///
    /// ```
    /// # use procwire::dummy::{pool::Pool, process::Function};
    /// # static SQUARE: Function<u64, u64> = Function::new("square", |x| x * x);
    /// # let pool = Pool::new(2)?;
    /// let firsts: Vec<u64> = pool.imap(&SQUARE, 0.., Some(16))?.take(5).collect::<Result<_, _>>()?;
    /// assert_eq!(firsts, [0, 1, 4, 9, 16]);
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn imap<A, R, I>(
        &self,
        f: &Function<A, R>,
        items: I,
        chunksize: Option<usize>,
    ) -> Result<IMap<R, I::IntoIter>>
    where
        A: Send + 'static,
        R: Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.imap_with(f, items, chunksize, true)
    }

    /// As [`imap`](Pool::imap), yielding results in the order their chunks finish (the tasks
    /// of one chunk in order).
    pub fn imap_unordered<A, R, I>(
        &self,
        f: &Function<A, R>,
        items: I,
        chunksize: Option<usize>,
    ) -> Result<IMap<R, I::IntoIter>>
    where
        A: Send + 'static,
        R: Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.imap_with(f, items, chunksize, false)
    }

    fn imap_with<A, R, I>(
        &self,
        f: &Function<A, R>,
        items: I,
        chunksize: Option<usize>,
        ordered: bool,
    ) -> Result<IMap<R, I::IntoIter>>
    where
        A: Send + 'static,
        R: Send + 'static,
        I: IntoIterator<Item = A>,
    {
        let chunksize = chunksize_or(chunksize, || 1)?;
        let job = Job::new(ordered);
        {
            let mut st = lock(&self.shared.st);
            if let Some(e) = Shared::refusal(&st) {
                return Err(e);
            }
            Shared::register(&mut st, &job);
            st.open_streams += 1;
        }
        Ok(IMap {
            h: Handle { shared: self.shared.clone(), job },
            f: f.parts().1,
            items: Some(items.into_iter()),
            chunksize,
            submitted: 0,
            taken: 0,
            buffer: VecDeque::new(),
            failure: None,
        })
    }

    /// Takes no new work (submitting is an error afterwards); work already submitted, `imap`
    /// iterators included, still runs, and the worker threads end when it is done.
    pub fn close(&self) {
        let mut st = lock(&self.shared.st);
        st.closed = true;
        self.shared.work.notify_all();
    }

    /// Stops the pool now: every task that has not finished fails at once with
    /// [`Error::Remote`] of kind `"terminated"`, and workers take no more tasks. A thread
    /// cannot be stopped, so a task that is running goes on until it returns (its result is
    /// dropped); [`join`](Pool::join) waits for that.
    pub fn terminate(&self) {
        {
            let mut st = lock(&self.shared.st);
            if st.terminated {
                return;
            }
            st.terminated = true;
            st.closed = true;
            self.shared.stop.store(true, Ordering::SeqCst);
            self.shared.work.notify_all();
        }
        self.shared.abort_all(&Failure {
            kind: "terminated",
            message: "the pool was terminated before this task finished".into(),
        });
    }

    /// After [`close`](Pool::close) or [`terminate`](Pool::terminate): waits at most
    /// `timeout` (`None`: as long as it takes) until every worker thread has ended and every
    /// completion callback has run. An error before either, and [`Error::Timeout`] when the
    /// time is up.
    ///
    /// ```
    /// # use procwire::dummy::{pool::Pool, process::Function};
    /// # static SQUARE: Function<u64, u64> = Function::new("square", |x| x * x);
    /// let pool = Pool::new(2)?;
    /// let squares = pool.map_async(&SQUARE, 0..1000, None)?;
    /// pool.close();
    /// pool.join(None)?;
    /// assert_eq!(squares.get(None)?.len(), 1000);
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn join(&self, timeout: Option<Duration>) -> Result<()> {
        let deadline = deadline_of(timeout);
        let mut st = lock(&self.shared.st);
        if !st.closed {
            return Err(Error::Io(io::Error::other("close or terminate the pool before joining it")));
        }
        while st.threads > 0 || st.callbacks_pending > 0 {
            let (threads, callbacks) = (st.threads, st.callbacks_pending);
            st = wait_until(&self.shared.changed, st, deadline).ok_or_else(|| {
                Error::Timeout(format!(
                    "joining the pool ({threads} threads and {callbacks} callbacks to go)"
                ))
            })?;
        }
        Ok(())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.terminate();
        let _ = self.join(Some(DROP_JOIN));
    }
}

fn no_result() -> Error {
    Error::Protocol("a pool task without a result".into())
}

/// Every result, taken out of a complete job.
fn take_all<R>(st: &mut JobState<R>) -> Vec<Result<R>> {
    st.chunks
        .iter_mut()
        .flat_map(|c| c.take().unwrap_or_default())
        .map(|r| r.map_err(|f| f.error()))
        .collect()
}

fn first_result<R: Clone>(st: &JobState<R>) -> Result<R> {
    match st.chunks.iter().flatten().flatten().next() {
        Some(r) => r.clone().map_err(|f| f.error()),
        None => Err(no_result()),
    }
}

fn all_results<R: Clone>(st: &JobState<R>) -> Result<Vec<R>> {
    st.chunks.iter().flatten().flatten().map(|r| r.clone().map_err(|f| f.error())).collect()
}

fn each_result<R: Clone>(st: &JobState<R>) -> Vec<Result<R>> {
    st.chunks.iter().flatten().flatten().map(|r| r.clone().map_err(|f| f.error())).collect()
}

/// A submitted job, with the pool it belongs to.
struct Handle<R> {
    shared: Arc<Shared>,
    job: Arc<Job<R>>,
}

impl<R: Send + 'static> Handle<R> {
    fn wait(&self, timeout: Option<Duration>) -> Result<std::sync::MutexGuard<'_, JobState<R>>> {
        self.job
            .wait_complete(deadline_of(timeout))
            .ok_or_else(|| Error::Timeout("waiting for the result of a pool task".into()))
    }

    fn ready(&self) -> bool {
        lock(&self.job.st).complete()
    }

    fn successful(&self) -> Option<bool> {
        let st = lock(&self.job.st);
        st.complete().then_some(st.failed == 0)
    }

    /// Runs `f` over the results once the job is complete (see [`AsyncResult::on_complete`]).
    fn on_complete(&self, f: impl FnOnce(&JobState<R>) + Send + 'static) {
        let job = self.job.clone();
        let shared = Arc::downgrade(&self.shared);
        let run = move || {
            let shared = shared.upgrade();
            {
                let _turn = shared.as_ref().map(|s| lock(&s.callback_turn));
                let st = lock(&job.st);
                let _ = catch_unwind(AssertUnwindSafe(|| f(&st)));
            }
            if let Some(s) = shared {
                let mut st = lock(&s.st);
                st.callbacks_pending -= 1;
                s.changed.notify_all();
            }
        };
        // Counted first: the pool's lock is never taken while a job's is held.
        lock(&self.shared.st).callbacks_pending += 1;
        let mut st = lock(&self.job.st);
        if st.complete() {
            drop(st);
            run();
        } else {
            st.callback = Some(Box::new(run));
        }
    }
}

/// The result of [`Pool::apply_async`], as CPython's `AsyncResult`.
///
/// ```
/// # use std::time::Duration;
/// # use procwire::dummy::{pool::Pool, process::Function};
/// # static SLOW_SQUARE: Function<u64, u64> = Function::new("slow_square", |x| x * x);
/// # let pool = Pool::new(2)?;
/// let r = pool.apply_async(&SLOW_SQUARE, 12)?;
/// if !r.wait(Some(Duration::from_millis(100))) {
///     println!("still running");
/// }
/// assert_eq!(r.get(None)?, 144);
/// assert_eq!(r.successful(), Some(true));
/// # Ok::<(), procwire::Error>(())
/// ```
pub struct AsyncResult<R> {
    h: Handle<R>,
}

impl<R> fmt::Debug for AsyncResult<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("job", &self.h.job.id)
            .field("ready", &lock(&self.h.job.st).complete())
            .finish()
    }
}

impl<R: Clone + Send + 'static> AsyncResult<R> {
    /// Waits at most `timeout` (`None`: as long as it takes) and returns a clone of the
    /// task's result: [`Error::Timeout`] if it is not there yet (ask again later), or the
    /// task's error ([`Error::Remote`] of kind `"panic"`, `"terminated"`, ...). It can be
    /// called again.
    pub fn get(&self, timeout: Option<Duration>) -> Result<R> {
        first_result(&*self.h.wait(timeout)?)
    }

    /// Waits at most `timeout` for the result; whether it is there.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        self.h.wait(timeout).is_ok()
    }

    /// Whether the result is there.
    pub fn ready(&self) -> bool {
        self.h.ready()
    }

    /// Whether the task succeeded; `None` while it runs.
    pub fn successful(&self) -> Option<bool> {
        self.h.successful()
    }

    /// Calls `f` with the result once it is there: on the worker thread that finished it,
    /// or at once on this thread if it is there already. Callbacks of one pool run one at a
    /// time, so they should be quick. A panic in `f` is caught and ignored.
    ///
    /// ```
    /// # use procwire::dummy::{pool::Pool, process::Function};
    /// # static SQUARE: Function<u64, u64> = Function::new("square", |x| x * x);
    /// # let pool = Pool::new(2)?;
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let _r = pool.apply_async(&SQUARE, 9)?.on_complete(move |r| tx.send(r.ok()).unwrap());
    /// assert_eq!(rx.recv().unwrap(), Some(81));
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn on_complete(self, f: impl FnOnce(Result<R>) + Send + 'static) -> Self {
        self.h.on_complete(move |st| f(first_result(st)));
        self
    }
}

/// The result of [`Pool::map_async`] and [`Pool::starmap_async`], as CPython's `MapResult`.
///
/// ```
/// # use std::time::Duration;
/// # use procwire::dummy::{pool::Pool, process::Function};
/// # static SQUARE: Function<u64, u64> = Function::new("square", |x| x * x);
/// # let pool = Pool::new(2)?;
/// let r = pool.map_async(&SQUARE, 0..100, None)?;
/// let each = r.get_each(Some(Duration::from_secs(10)))?;
/// assert!(each.iter().all(|r| r.is_ok()));
/// # Ok::<(), procwire::Error>(())
/// ```
pub struct MapResult<R> {
    h: Handle<R>,
    len: usize,
}

impl<R> fmt::Debug for MapResult<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapResult")
            .field("job", &self.h.job.id)
            .field("len", &self.len)
            .field("ready", &lock(&self.h.job.st).complete())
            .finish()
    }
}

impl<R: Clone + Send + 'static> MapResult<R> {
    /// Waits at most `timeout` (`None`: as long as it takes) and returns clones of every
    /// result in order, or the first failed task's error; [`Error::Timeout`] if they are not
    /// all there yet (ask again later). It can be called again.
    pub fn get(&self, timeout: Option<Duration>) -> Result<Vec<R>> {
        all_results(&*self.h.wait(timeout)?)
    }

    /// As [`get`](MapResult::get), with each task's own result: a failed task does not hide
    /// the others.
    pub fn get_each(&self, timeout: Option<Duration>) -> Result<Vec<Result<R>>> {
        Ok(each_result(&*self.h.wait(timeout)?))
    }

    /// The number of tasks.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no tasks.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Waits at most `timeout` for all the results; whether they are there.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        self.h.wait(timeout).is_ok()
    }

    /// Whether all the results are there.
    pub fn ready(&self) -> bool {
        self.h.ready()
    }

    /// Whether every task succeeded; `None` while some run.
    pub fn successful(&self) -> Option<bool> {
        self.h.successful()
    }

    /// Calls `f` with the results (as [`get`](MapResult::get) returns them) once they are
    /// all there; see [`AsyncResult::on_complete`].
    pub fn on_complete(self, f: impl FnOnce(Result<Vec<R>>) + Send + 'static) -> Self {
        self.h.on_complete(move |st| f(all_results(st)));
        self
    }
}

/// The iterator of [`Pool::imap`] and [`Pool::imap_unordered`]: each task's result.
pub struct IMap<R, I: Iterator> {
    h: Handle<R>,
    f: fn(I::Item) -> R,
    /// `None` once exhausted.
    items: Option<I>,
    chunksize: usize,
    /// Chunks submitted, chunks taken back.
    submitted: usize,
    taken: usize,
    buffer: VecDeque<Result<R>>,
    failure: Option<Error>,
}

impl<R, I: Iterator> fmt::Debug for IMap<R, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IMap")
            .field("ordered", &self.h.job.ordered)
            .field("chunksize", &self.chunksize)
            .field("submitted_chunks", &self.submitted)
            .finish()
    }
}

impl<R, I> IMap<R, I>
where
    R: Send + 'static,
    I: Iterator,
    I::Item: Send + 'static,
{
    /// The next result, waiting at most `timeout` (`None`: as long as it takes): `None` at
    /// the end, `Some(Err(Error::Timeout))` if it is not there yet (ask again later), as
    /// CPython's `next(timeout)`.
    pub fn next_timeout(&mut self, timeout: Option<Duration>) -> Option<Result<R>> {
        let deadline = deadline_of(timeout);
        loop {
            if let Some(r) = self.buffer.pop_front() {
                return Some(r);
            }
            self.top_up();
            if self.taken == self.submitted && self.items.is_none() {
                return self.failure.take().map(Err);
            }
            let index = self.h.job.ordered.then_some(self.taken);
            match self.h.job.take_chunk(index, deadline) {
                Ok(Some(out)) => {
                    self.buffer.extend(out.into_iter().map(|r| r.map_err(|f| f.error())));
                    self.taken += 1;
                }
                // Terminated: what was not submitted will not be.
                Ok(None) => {
                    self.items = None;
                    self.taken = self.submitted;
                }
                Err(()) => {
                    return Some(Err(Error::Timeout("waiting for the next result of a pool imap".into())));
                }
            }
        }
    }

    /// Submits chunks until two per worker are outstanding or the items run out.
    fn top_up(&mut self) {
        let Some(items) = self.items.as_mut() else { return };
        let shared = &self.h.shared;
        let ahead = 2 * shared.config.processes;
        let outstanding = self.submitted - self.taken;
        if outstanding >= ahead {
            return;
        }
        let want = (ahead - outstanding) * self.chunksize;
        let batch: Vec<I::Item> = items.by_ref().take(want).collect();
        let exhausted = batch.len() < want;
        if !batch.is_empty() {
            let n_chunks = batch.len().div_ceil(self.chunksize);
            let mut st = lock(&shared.st);
            if st.terminated || st.broken.is_some() {
                self.failure.get_or_insert_with(|| Shared::refusal(&st).unwrap_or_else(no_result));
                drop(st);
                self.finish();
                return;
            }
            shared.push_chunks(&mut st, &self.h.job, self.f, batch, self.chunksize);
            self.submitted += n_chunks;
        }
        if exhausted {
            self.finish();
        }
    }

    /// No more items: seals the job.
    fn finish(&mut self) {
        if self.items.take().is_some() {
            close_stream(&self.h);
        }
    }
}

fn close_stream<R>(h: &Handle<R>) {
    {
        let mut st = lock(&h.shared.st);
        st.open_streams = st.open_streams.saturating_sub(1);
        h.shared.work.notify_all();
    }
    h.job.seal();
}

impl<R, I: Iterator> Drop for IMap<R, I> {
    fn drop(&mut self) {
        let id = self.h.job.id;
        lock(&self.h.shared.st).pending.retain(|c| c.job() != id);
        if self.items.take().is_some() {
            close_stream(&self.h);
        }
    }
}

impl<R, I> Iterator for IMap<R, I>
where
    R: Send + 'static,
    I: Iterator,
    I::Item: Send + 'static,
{
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        self.next_timeout(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleep_ms(ms: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(ms));
        ms
    }
    static SLEEP_MS: Function<u64, u64> = Function::new("sleep_ms", sleep_ms);

    /// Neither `Clone` nor serde.
    #[derive(Debug, PartialEq)]
    struct Token(u64);
    fn next_token(x: Token) -> Token {
        Token(x.0 + 1)
    }
    static NEXT_TOKEN: Function<Token, Token> = Function::new("next_token", next_token);

    #[test]
    fn terminate_fails_a_running_task_at_once_and_join_waits_for_it() {
        // Set by the task itself: taken from the queue is not yet running (a chunk taken
        // after terminate is skipped), and a slow scheduler (Wine) shows the difference.
        static RUNNING: AtomicBool = AtomicBool::new(false);
        fn mark_and_sleep(ms: u64) -> u64 {
            RUNNING.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(ms));
            ms
        }
        static MARK_AND_SLEEP: Function<u64, u64> = Function::new("mark_and_sleep", mark_and_sleep);
        let pool = Pool::new(1).unwrap();
        let r = pool.apply_async(&MARK_AND_SLEEP, 300).unwrap();
        while !RUNNING.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        let started = Instant::now();
        pool.terminate();
        assert!(
            matches!(r.get(Some(Duration::ZERO)), Err(Error::Remote { kind, .. }) if kind == "terminated")
        );
        pool.join(Some(Duration::from_secs(60))).unwrap();
        assert!(started.elapsed() >= Duration::from_millis(100), "join waited for the running task");
        assert!(
            matches!(r.get(None), Err(Error::Remote { kind, .. }) if kind == "terminated"),
            "its result was dropped"
        );
    }

    #[test]
    fn results_need_not_be_clone_for_map_apply_and_imap() {
        let pool = Pool::new(2).unwrap();
        assert_eq!(pool.apply(&NEXT_TOKEN, Token(1)).unwrap(), Token(2));
        let got: Vec<u64> =
            pool.map(&NEXT_TOKEN, (0..5).map(Token), None).unwrap().into_iter().map(|t| t.0).collect();
        assert_eq!(got, [1, 2, 3, 4, 5]);
        let mut it = pool.imap(&NEXT_TOKEN, (0..3).map(Token), None).unwrap();
        assert_eq!(it.next().unwrap().unwrap(), Token(1));
    }

    #[test]
    fn a_dropped_imap_leaves_a_closed_pool_joinable() {
        let pool = Pool::new(1).unwrap();
        let mut it = pool.imap(&SLEEP_MS, std::iter::repeat(1), None).unwrap();
        assert_eq!(it.next().unwrap().unwrap(), 1);
        pool.close();
        drop(it);
        pool.join(Some(Duration::from_secs(60))).unwrap();
    }
}
