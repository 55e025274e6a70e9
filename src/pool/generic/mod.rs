//! The pool written once over its [`Backend`]: [`pool::Pool`](crate::pool::Pool) is
//! `Pool<Processes>` and [`dummy::pool::Pool`](crate::dummy::pool::Pool) is `Pool<Threads>`.
//! The builder, the chunking and the result state machines ([`AsyncResult`], [`MapResult`],
//! [`IMap`]) are here; a backend only runs chunks and keeps their results. Code that should
//! work with either takes a `Pool<B>` with `B: Backend` (and [`Runs`] for its task types).
//!
//! Each backend's module says what differs between them; the items here say it where they
//! behave differently.

mod backend;
mod chunked;
mod results;

use std::fmt;
use std::sync::{Arc, Condvar, MutexGuard};
use std::time::{Duration, Instant};

pub(crate) use backend::sealed;
pub use backend::{Backend, Gets, Processes, Runs, Threads};
pub use chunked::Chunked;
pub use results::{AsyncResult, IMap, MapResult};

use crate::process::Function;
use crate::util::{deadline_of, wait_until};
use crate::{Error, Result};

/// How long dropping a pool (or one that failed to start) waits for its workers.
pub(crate) const DROP_JOIN: Duration = Duration::from_secs(10);

fn invalid(message: &str) -> Error {
    Error::InvalidInput(message.to_string())
}

/// CPython's default chunk size for `map`: `len / (4 * workers)`, rounded up.
///
/// ```
/// use procwire::pool::default_chunksize;
/// assert_eq!(default_chunksize(100_000, 2), 12_500);
/// assert_eq!(default_chunksize(10, 4), 1);
/// assert_eq!(default_chunksize(32, 4), 2);
/// assert_eq!(default_chunksize(33, 4), 3);
/// assert_eq!(default_chunksize(0, 4), 1);
/// ```
pub fn default_chunksize(len: usize, workers: usize) -> usize {
    let per = 4 * workers.max(1);
    len.div_ceil(per).max(1)
}

/// A backend's `join`: after close or terminate, waits on `changed` until the pool's state
/// counts (by `counts`) no worker threads and no callbacks to run.
pub(crate) fn join_when<T>(
    changed: &Condvar,
    mut st: MutexGuard<'_, T>,
    closed: bool,
    deadline: Option<Instant>,
    counts: impl Fn(&T) -> (usize, usize),
) -> Result<()> {
    if !closed {
        return Err(Error::InvalidInput("close or terminate the pool before joining it".into()));
    }
    loop {
        let (threads, callbacks) = counts(&st);
        if threads == 0 && callbacks == 0 {
            return Ok(());
        }
        st = wait_until(changed, st, deadline).ok_or_else(|| {
            Error::Timeout(format!("joining the pool ({threads} threads and {callbacks} callbacks to go)"))
        })?;
    }
}

fn chunksize_or(chunksize: Option<usize>, default: impl FnOnce() -> usize) -> Result<usize> {
    match chunksize {
        Some(0) => Err(invalid("chunksize must be at least 1")),
        Some(n) => Ok(n),
        None => Ok(default()),
    }
}

/// Settings for a [`Pool`], from [`Pool::builder`].
///
/// ```
/// # use procwire::dummy as pw; // the same with `use procwire as pw`
/// use pw::pool::Pool;
/// use pw::process::Function;
///
/// fn connect_db(url: String) {
///     // Runs once in each worker, before its first task.
/// }
/// static CONNECT_DB: Function<String, ()> = Function::new("connect_db", connect_db);
///
/// # fn main() -> procwire::Result<()> {
/// pw::process::init(&[&CONNECT_DB]);
/// let pool = Pool::builder()
///     .processes(8)
///     .initializer(&CONNECT_DB, "postgres://localhost/app".to_string())
///     .maxtasksperchild(10_000)
///     .name_prefix("indexer")
///     .build()?;
/// # Ok(())
/// # }
/// ```
pub struct PoolBuilder<B: Backend> {
    processes: Option<usize>,
    initializer: Option<(&'static str, B::Init)>,
    maxtasks: Option<u64>,
    prefix: String,
    retry_lost: bool,
    shared_memory: bool,
    chunksize: Option<usize>,
}

impl<B: Backend> fmt::Debug for PoolBuilder<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("processes", &self.processes)
            .field("initializer", &self.initializer.as_ref().map(|i| i.0))
            .field("maxtasksperchild", &self.maxtasks)
            .field("name_prefix", &self.prefix)
            .field("retry_lost", &self.retry_lost)
            .field("shared_memory", &self.shared_memory)
            .field("chunksize", &self.chunksize)
            .finish()
    }
}

impl<B: Backend> Default for PoolBuilder<B> {
    fn default() -> Self {
        PoolBuilder {
            processes: None,
            initializer: None,
            maxtasks: None,
            prefix: "PoolWorker".into(),
            retry_lost: false,
            shared_memory: true,
            chunksize: None,
        }
    }
}

impl<B: Backend> PoolBuilder<B> {
    /// The number of workers (default: the number of CPUs,
    /// [`std::thread::available_parallelism`]). 0 is an error in [`build`](PoolBuilder::build).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// Sets the initializer as its backend prepared it (see each backend's `initializer`).
    pub(crate) fn with_initializer(mut self, name: &'static str, init: B::Init) -> Self {
        self.initializer = Some((name, init));
        self
    }

    /// Replaces a worker once it has been given `n` tasks (at least 1; a chunk is never split
    /// between workers, so a worker may run a little more), as CPython's `maxtasksperchild`:
    /// a fresh process takes over, which frees what a task leaked; with threads, a fresh
    /// thread, which runs the initializer again and frees thread-local state only.
    pub fn maxtasksperchild(mut self, n: u64) -> Self {
        self.maxtasks = Some(n.max(1));
        self
    }

    /// Workers are named `PREFIX-N` (default `PoolWorker-N`, N counting from 1 in each pool);
    /// a worker sees its name as [`current_name`](crate::process::current_name) (a worker
    /// thread's is also its OS thread name).
    pub fn name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// A task whose worker process died while running it runs once more, alone in its chunk,
    /// on another worker before it is reported as failed (default: off, as the task may have
    /// done part of its work already). Recorded only with threads: a worker thread is never
    /// lost on its own.
    pub fn retry_lost(mut self, retry: bool) -> Self {
        self.retry_lost = retry;
        self
    }

    /// Whether worker processes talk to the pool through memory they share with it (default:
    /// on, where shared-memory connections work: Linux, Apple's systems and Windows), instead
    /// of a Unix socket pair (a named pipe pair on Windows): a chunk and its results then cross without a system call while both
    /// sides are busy, and a sleeping side is woken through the socket (see
    /// [`PipeKind::SharedMemory`](crate::PipeKind::SharedMemory)). A worker that dies is
    /// noticed and replaced the same way either way. Recorded only with processes: worker
    /// threads share the pool's memory anyway.
    pub fn shared_memory(mut self, on: bool) -> Self {
        self.shared_memory = on;
        self
    }

    /// How many tasks go to a worker in one message for [`Pool::map`] and the rest of the
    /// map family (at least 1; 0 is an error in [`build`](PoolBuilder::build)). Default:
    /// [`default_chunksize`] for `map`, 1 for `imap`, as CPython's.
    /// [`Pool::with_chunksize`] sets it for some calls only.
    pub fn chunksize(mut self, n: usize) -> Self {
        self.chunksize = Some(n);
        self
    }

    /// Starts the workers and returns once all of them run (an initializer may still be
    /// running). A worker that cannot start is an error here, and the others are stopped.
    pub fn build(self) -> Result<Pool<B>> {
        if self.chunksize == Some(0) {
            return Err(invalid("chunksize must be at least 1"));
        }
        let processes = match self.processes {
            Some(0) => return Err(invalid("a pool needs at least one process")),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let pool = B::start(sealed::Settings {
            processes,
            initializer: self.initializer,
            maxtasks: self.maxtasks,
            prefix: self.prefix,
            retry_lost: self.retry_lost,
            shared_memory: self.shared_memory,
        })?;
        Ok(Pool { pool, chunksize: self.chunksize })
    }
}

/// A pool of workers that run [`Function`] tasks: processes or threads, as its backend `B`
/// says; see the [module documentation](self).
///
/// Methods take `&self`: a pool can be shared between threads (in an `Arc`), and several
/// calls can run at once; their chunks are served in the order they were submitted. Dropping
/// a pool terminates it (as leaving CPython's `with Pool() as p:` does).
pub struct Pool<B: Backend> {
    pool: Arc<B::Pool>,
    chunksize: Option<usize>,
}

impl<B: Backend> fmt::Debug for Pool<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.pool.fmt(f)
    }
}

impl<B: Backend> Pool<B> {
    /// A pool of `processes` workers (at least 1); [`Pool::builder`] has the other settings.
    pub fn new(processes: usize) -> Result<Self> {
        Self::builder().processes(processes).build()
    }

    /// Settings for a new pool (by default one worker per CPU).
    pub fn builder() -> PoolBuilder<B> {
        PoolBuilder::default()
    }

    /// The number of workers.
    pub fn processes(&self) -> usize {
        B::processes(&self.pool)
    }

    /// The process ids of the worker processes running now (fewer while one is being
    /// replaced); always empty for threads, which have none.
    pub fn pids(&self) -> Vec<u32> {
        B::pids(&self.pool)
    }

    /// Submits `items` as one job in chunks of `chunksize` (`None`: [`default_chunksize`]).
    fn submit<A, R>(
        &self,
        f: &Function<A, R>,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
    ) -> Result<(B::Job<R>, usize)>
    where
        B: Runs<A, R>,
    {
        let g = B::gather(&mut items.into_iter(), usize::MAX, 0);
        if let Some(e) = g.failure {
            return Err(e);
        }
        let chunksize = chunksize_or(chunksize, || default_chunksize(g.n, self.processes()))?;
        Ok((B::submit(&self.pool, f, g.args, chunksize)?, g.n))
    }

    /// Runs `f(args)` in a worker and waits for its result.
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
        B: Runs<A, R>,
    {
        let (job, _) = self.submit(f, [args], Some(1))?;
        let mut first = None;
        B::take(&job, None, &mut |r| {
            first.get_or_insert(r);
        });
        first.unwrap_or_else(|| Err(results::no_result()))
    }

    /// Submits `f(args)`; its result comes through the returned [`AsyncResult`]. Dropping
    /// that does not cancel the task.
    pub fn apply_async<A, R>(&self, f: &Function<A, R>, args: A) -> Result<AsyncResult<B, R>>
    where
        B: Runs<A, R>,
    {
        Ok(AsyncResult::new(self.submit(f, [args], Some(1))?.0))
    }

    /// Runs `f` over every item and returns the results in order, or the first failed task's
    /// error. The items go to the workers in chunks of the pool's
    /// [`chunksize`](PoolBuilder::chunksize) (default: [`default_chunksize`]); another size
    /// for one call is [`with_chunksize`](Pool::with_chunksize)`(n).map(..)`.
    ///
    /// ```
    /// # use procwire::dummy::{pool::Pool, process::Function};
    /// # static SQUARE: Function<u64, u64> = Function::new("square", |x| x * x);
    /// # let pool = Pool::new(2)?;
    /// assert_eq!(pool.map(&SQUARE, 1..=4)?, [1, 4, 9, 16]);
    /// assert_eq!(pool.with_chunksize(100).map(&SQUARE, 1..=4)?, [1, 4, 9, 16]);
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn map<A, R, I>(&self, f: &Function<A, R>, items: I) -> Result<Vec<R>>
    where
        B: Runs<A, R>,
        I: IntoIterator<Item = A>,
    {
        self.chunked().map(f, items)
    }

    /// As [`map`](Pool::map), without waiting: the items are prepared (encoded, or collected
    /// for threads) and submitted now, and the results come through the returned
    /// [`MapResult`].
    pub fn map_async<A, R, I>(&self, f: &Function<A, R>, items: I) -> Result<MapResult<B, R>>
    where
        B: Runs<A, R>,
        I: IntoIterator<Item = A>,
    {
        self.chunked().map_async(f, items)
    }

    /// CPython's `starmap`, which unpacks each item into the function's arguments. A Rust
    /// function of several arguments takes them as one tuple, so this is [`map`](Pool::map)
    /// over tuples, under the name Python code uses.
    ///
    /// ```
    /// # use procwire::dummy::{pool::Pool, process::Function};
    /// static POW: Function<(u64, u32), u64> = Function::new("pow", |(b, e)| b.pow(e));
    /// # let pool = Pool::new(2)?;
    /// assert_eq!(pool.starmap(&POW, [(2, 3), (3, 2)])?, [8, 9]);
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn starmap<A, R, I>(&self, f: &Function<A, R>, items: I) -> Result<Vec<R>>
    where
        B: Runs<A, R>,
        I: IntoIterator<Item = A>,
    {
        self.chunked().map(f, items)
    }

    /// CPython's `starmap_async`: [`map_async`](Pool::map_async) over tuples (see
    /// [`starmap`](Pool::starmap)).
    pub fn starmap_async<A, R, I>(&self, f: &Function<A, R>, items: I) -> Result<MapResult<B, R>>
    where
        B: Runs<A, R>,
        I: IntoIterator<Item = A>,
    {
        self.chunked().map_async(f, items)
    }

    /// Runs `f` over the items lazily and yields each task's result in order. Items are taken
    /// from `items` as results are consumed, a bounded number ahead (enough to keep every
    /// worker busy), so an endless iterator works. Dropping the iterator drops the chunks no
    /// worker has yet. Chunks are of the pool's [`chunksize`](PoolBuilder::chunksize)
    /// (default 1, as CPython's).
    ///
    /// ```
    /// # use procwire::dummy::{pool::Pool, process::Function};
    /// # static SQUARE: Function<u64, u64> = Function::new("square", |x| x * x);
    /// # let pool = Pool::new(2)?;
    /// let firsts: Vec<u64> = pool.with_chunksize(16).imap(&SQUARE, 0..)?.take(5).collect::<Result<_, _>>()?;
    /// assert_eq!(firsts, [0, 1, 4, 9, 16]);
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn imap<A, R, I>(&self, f: &Function<A, R>, items: I) -> Result<IMap<B, R, I::IntoIter>>
    where
        B: Runs<A, R>,
        I: IntoIterator<Item = A>,
    {
        self.chunked().imap(f, items)
    }

    /// As [`imap`](Pool::imap), yielding results in the order their chunks finish (the tasks
    /// of one chunk in order).
    pub fn imap_unordered<A, R, I>(&self, f: &Function<A, R>, items: I) -> Result<IMap<B, R, I::IntoIter>>
    where
        B: Runs<A, R>,
        I: IntoIterator<Item = A>,
    {
        self.chunked().imap_unordered(f, items)
    }

    /// The map family of methods with chunks of `chunksize` tasks (at least 1) for the calls
    /// made through it, instead of the pool's [`chunksize`](PoolBuilder::chunksize). Larger
    /// chunks cost fewer messages per task; smaller ones spread uneven tasks better.
    pub fn with_chunksize(&self, chunksize: usize) -> Chunked<'_, B> {
        Chunked { pool: self, chunksize: Some(chunksize) }
    }

    fn chunked(&self) -> Chunked<'_, B> {
        Chunked { pool: self, chunksize: self.chunksize }
    }

    /// Takes no new work (submitting is an error afterwards); work already submitted, `imap`
    /// iterators included, still runs, and the workers end when it is done.
    pub fn close(&self) {
        B::close(&self.pool);
    }

    /// Stops the pool now: every task that has not finished fails at once with
    /// [`Error::Remote`] of kind `"terminated"`. Worker processes get SIGTERM (SIGKILL a
    /// second later); a worker thread cannot be stopped, so a task that is running goes on
    /// until it returns and its result is dropped. Then [`join`](Pool::join) waits for the
    /// workers.
    pub fn terminate(&self) {
        B::terminate(&self.pool);
    }

    /// After [`close`](Pool::close) or [`terminate`](Pool::terminate): waits until every
    /// worker has ended (a process has been reaped) and every completion callback has run.
    /// An error if neither was called.
    ///
    /// ```
    /// # use procwire::dummy::{pool::Pool, process::Function};
    /// # static SQUARE: Function<u64, u64> = Function::new("square", |x| x * x);
    /// let pool = Pool::new(2)?;
    /// let squares = pool.map_async(&SQUARE, 0..1000)?;
    /// pool.close();
    /// pool.join()?;
    /// assert_eq!(squares.get()?.len(), 1000);
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn join(&self) -> Result<()> {
        B::join(&self.pool, None)
    }

    /// As [`join`](Pool::join), waiting at most `timeout`: whether everything ended by then.
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool> {
        match B::join(&self.pool, deadline_of(Some(timeout))) {
            Ok(()) => Ok(true),
            Err(Error::Timeout(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl<B: Backend> Drop for Pool<B> {
    fn drop(&mut self) {
        B::terminate(&self.pool);
        let _ = B::join(&self.pool, deadline_of(Some(DROP_JOIN)));
    }
}
