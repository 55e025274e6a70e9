//! A pool of worker processes, shaped like CPython's `multiprocessing.Pool`: [`Pool`] with
//! `apply`, `map`, `imap`, `imap_unordered`, `starmap` and their `_async` forms, whose results
//! come back as [`AsyncResult`], [`MapResult`] or an [`IMap`] iterator.
//!
//! ```no_run
//! use std::time::Duration;
//! use procwire::pool::Pool;
//! use procwire::process::Function;
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//! static SQUARE: Function<u64, u64> = Function::new("square", square);
//!
//! fn main() -> procwire::Result<()> {
//!     procwire::process::init(&[&SQUARE]); // first in main: a worker runs its tasks from here
//!     let pool = Pool::new(4)?;
//!     let result = pool.map_async(&SQUARE, 0..10, None)?;
//!     assert_eq!(result.get(Some(Duration::from_secs(1)))?, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
//!     Ok(())
//! }
//! ```
//!
//! # Tasks
//!
//! A task is a call of a [`Function`] (a registered `fn` item, found by the workers the way a
//! [`Process`](crate::process::Process) child finds its function: the list given to
//! [`init`](crate::process::init), which `main` calls first) on one argument; arguments and
//! results are serde values (CBOR on the wire). A function of several arguments takes a tuple.
//! Workers are procwire child processes started as in [`process`](crate::process) (in test
//! binaries too, with [`use_test_entry`](crate::process::use_test_entry)), as daemons: they
//! die with the pool's process.
//!
//! - A task that panics is an error for that task only ([`Error::Remote`] of kind `"panic"`
//!   with the panic message); the worker carries on with the next. A function the workers
//!   cannot run (not in their [`init`](crate::process::init) list, or arguments that do not
//!   decode there) fails its tasks with kind `"start"`, and a result that cannot be encoded
//!   with kind `"encode"`.
//! - A worker that dies (killed, aborted, out of memory, `std::process::exit` in a task) never
//!   hangs the caller, unlike CPython's pool: the task it was running fails with
//!   [`Error::Remote`] of kind `"exit"`, whose message names the worker, its pid and how it
//!   ended; tasks it had received but not started go to other workers; a replacement worker
//!   starts. With [`PoolBuilder::retry_lost`] the lost task runs once more first.
//! - `map` and `get` return the first failed task's error (as CPython raises the first
//!   exception); [`MapResult::get_each`] and the `imap` iterators give every task's own result.
//!
//! Tasks run in chunks: `chunksize` consecutive tasks travel together and come back together.
//! The default for `map` and `starmap` is CPython's: the number of tasks divided by four times
//! the number of workers, rounded up; for `imap` and `imap_unordered` it is 1. A chunk's results
//! come back together, so when a worker dies in a chunk of several tasks, all of that chunk's
//! tasks fail (their messages say which tasks were in it), or with `retry_lost` each of them is
//! retried alone.
//!
//! # How it works
//!
//! Each worker has its own connection to the pool, and two threads in the pool's process: one
//! writes it chunks, several at a time in one write, so that it always has the next chunk at
//! hand (how many depends on how long the function's chunks take, as the workers measure it);
//! the other reads its results as they come and replaces the worker when it ends. A worker
//! writes each chunk's results before it starts the next chunk. The messages are in SPEC.md,
//! section 12.4.
//!
//! Dropping a pool terminates it (as leaving CPython's `with Pool() as p:` does): the workers
//! get SIGTERM (SIGKILL a second later if they are still there), tasks that did not finish fail
//! with kind `"terminated"`, and the drop returns once the workers are reaped. To let queued
//! tasks finish first, [`close`](Pool::close) and [`join`](Pool::join) the pool.
//!
//! # Platforms
//!
//! Unix only for now, as [`process`](crate::process): on Windows, [`Pool::new`] fails with an
//! `Unsupported` I/O error.

mod engine;
mod wire;
mod worker;

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::process::{Entry, Function};
use crate::util::deadline_of;
use crate::{Error, Result};

use engine::{Config, Outputs, Shared, Tasks};
pub(crate) use worker::WORKER;

/// The name under which a child process runs as a pool worker (reserved).
pub(crate) const WORKER_ENTRY: &str = "procwire.pool.worker";

/// How long dropping a pool waits for its workers to be reaped.
const DROP_JOIN: Duration = Duration::from_secs(10);

fn invalid(message: &str) -> Error {
    Error::Io(io::Error::new(io::ErrorKind::InvalidInput, message.to_string()))
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

fn chunksize_or(chunksize: Option<usize>, default: impl FnOnce() -> usize) -> Result<usize> {
    match chunksize {
        Some(0) => Err(invalid("chunksize must be at least 1")),
        Some(n) => Ok(n),
        None => Ok(default()),
    }
}

/// Encodes every item; returns the bytes and where each item ends.
fn encode_all<A: Serialize>(items: impl IntoIterator<Item = A>) -> Result<(Vec<u8>, Vec<usize>)> {
    let items = items.into_iter();
    let mut args = Vec::with_capacity(items.size_hint().0 * 2);
    let mut ends = Vec::with_capacity(items.size_hint().0);
    for a in items {
        ciborium::into_writer(&a, &mut args).map_err(|e| Error::Encode(e.to_string()))?;
        ends.push(args.len());
    }
    Ok((args, ends))
}

/// Settings for a [`Pool`], from [`Pool::builder`].
///
/// ```no_run
/// use procwire::pool::Pool;
/// use procwire::process::Function;
///
/// fn connect_db(url: String) {
///     // Runs once in each worker, before its first task.
/// }
/// static CONNECT_DB: Function<String, ()> = Function::new("connect_db", connect_db);
///
/// # fn main() -> procwire::Result<()> {
/// procwire::process::init(&[&CONNECT_DB]);
/// let pool = Pool::builder()
///     .processes(8)
///     .initializer(&CONNECT_DB, "postgres://localhost/app".to_string())
///     .maxtasksperchild(10_000)
///     .name_prefix("indexer")
///     .build()?;
/// # Ok(())
/// # }
/// ```
pub struct PoolBuilder {
    processes: Option<usize>,
    initializer: Option<(&'static str, std::result::Result<Vec<u8>, String>)>,
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
    /// The number of worker processes (default: the number of CPUs,
    /// [`std::thread::available_parallelism`]). 0 is an error in [`build`](PoolBuilder::build).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// A function each worker runs once with `args` before its first task (its result is
    /// ignored). If it panics, the pool stops: tasks fail with [`Error::Remote`] of kind
    /// `"initializer"` carrying the panic message, and new work is refused with kind `"pool"`.
    pub fn initializer<A, R>(mut self, f: &Function<A, R>, args: A) -> Self
    where
        A: Serialize + DeserializeOwned,
        R: Serialize,
    {
        let mut v = Vec::new();
        let encoded = ciborium::into_writer(&args, &mut v).map(|()| v).map_err(|e| e.to_string());
        self.initializer = Some((f.name(), encoded));
        self
    }

    /// Replaces a worker once it has been given `n` tasks (at least 1; a chunk is never split
    /// between workers, so a worker may run a little more): a fresh process takes over, as
    /// CPython's `maxtasksperchild`, which frees what a task leaked.
    pub fn maxtasksperchild(mut self, n: u64) -> Self {
        self.maxtasks = Some(n.max(1));
        self
    }

    /// Workers are named `PREFIX-N` (default `PoolWorker-N`, N counting from 1 in each pool);
    /// a worker sees its name as [`current_name`](crate::process::current_name).
    pub fn name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// A task whose worker died while running it runs once more, alone in its chunk, on
    /// another worker before it is reported as failed (default: off, as the task may have
    /// done part of its work already).
    pub fn retry_lost(mut self, retry: bool) -> Self {
        self.retry_lost = retry;
        self
    }

    /// Starts the workers and returns once all of them run (an initializer may still be
    /// running). A worker that cannot start is an error here, and the others are stopped.
    pub fn build(self) -> Result<Pool> {
        let processes = match self.processes {
            Some(0) => return Err(invalid("a pool needs at least one process")),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let initializer = match self.initializer {
            Some((name, Ok(args))) => Some((name, args)),
            Some((_, Err(e))) => return Err(Error::Encode(e)),
            None => None,
        };
        let shared = Shared::new(Config {
            processes,
            initializer,
            maxtasks: self.maxtasks,
            prefix: self.prefix,
            retry_lost: self.retry_lost,
        });
        if let Err(e) = engine::start(&shared) {
            shared.terminate();
            let _ = shared.join(deadline_of(Some(DROP_JOIN)));
            return Err(e);
        }
        Ok(Pool { shared })
    }
}

/// A pool of worker processes that run [`Function`] tasks; see the [module
/// documentation](self).
///
/// Methods take `&self`: a pool can be shared between threads (in an `Arc`), and several
/// calls can run at once; their chunks are served in the order they were submitted.
#[derive(Debug)]
pub struct Pool {
    shared: Arc<Shared>,
}

impl Pool {
    /// A pool of `processes` workers (at least 1); [`Pool::builder`] has the other settings.
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

    /// The process ids of the workers running now (fewer while one is being replaced).
    pub fn pids(&self) -> Vec<u32> {
        self.shared.pids()
    }

    /// Runs `f(args)` in a worker and waits for its result.
    ///
    /// ```no_run
    /// # use procwire::{pool::Pool, process::Function};
    /// # static ADD: Function<(i64, i64), i64> = Function::new("add", |(a, b)| a + b);
    /// # let pool = Pool::new(2)?;
    /// assert_eq!(pool.apply(&ADD, (2, 3))?, 5);
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn apply<A, R>(&self, f: &Function<A, R>, args: A) -> Result<R>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.apply_async(f, args)?.get(None)
    }

    /// Submits `f(args)`; its result comes through the returned [`AsyncResult`]. Dropping
    /// that does not cancel the task.
    pub fn apply_async<A, R>(&self, f: &Function<A, R>, args: A) -> Result<AsyncResult<R>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let (bytes, ends) = encode_all([args])?;
        let job = self
            .shared
            .submit(Tasks { function: f.name(), args: bytes, ends: &ends, chunksize: 1 }, false)?;
        Ok(AsyncResult { handle: Handle { shared: self.shared.clone(), job }, _r: PhantomData })
    }

    /// Runs `f` over every item in chunks of `chunksize` (`None`: [`default_chunksize`]) and
    /// returns the results in order, or the first failed task's error.
    ///
    /// ```no_run
    /// # use procwire::{pool::Pool, process::Function};
    /// # static SQUARE: Function<u64, u64> = Function::new("square", |x| x * x);
    /// # let pool = Pool::new(2)?;
    /// assert_eq!(pool.map(&SQUARE, 1..=4, None)?, [1, 4, 9, 16]);
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn map<A, R, I>(&self, f: &Function<A, R>, items: I, chunksize: Option<usize>) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        self.map_async(f, items, chunksize)?.get(None)
    }

    /// As [`map`](Pool::map), without waiting: the items are encoded and submitted now, and
    /// the results come through the returned [`MapResult`].
    pub fn map_async<A, R, I>(
        &self,
        f: &Function<A, R>,
        items: I,
        chunksize: Option<usize>,
    ) -> Result<MapResult<R>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        let (bytes, ends) = encode_all(items)?;
        let chunksize = chunksize_or(chunksize, || default_chunksize(ends.len(), self.processes()))?;
        let job =
            self.shared.submit(Tasks { function: f.name(), args: bytes, ends: &ends, chunksize }, false)?;
        Ok(MapResult {
            handle: Handle { shared: self.shared.clone(), job },
            len: ends.len(),
            _r: PhantomData,
        })
    }

    /// CPython's `starmap`, which unpacks each item into the function's arguments. A Rust
    /// function of several arguments takes them as one tuple, so this is [`map`](Pool::map)
    /// over tuples, under the name Python code uses.
    ///
    /// ```no_run
    /// # use procwire::{pool::Pool, process::Function};
    /// static POW: Function<(u64, u32), u64> = Function::new("pow", |(b, e)| b.pow(e));
    /// # let pool = Pool::new(2)?;
    /// assert_eq!(pool.starmap(&POW, [(2, 3), (3, 2)], None)?, [8, 9]);
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn starmap<A, R, I>(&self, f: &Function<A, R>, items: I, chunksize: Option<usize>) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        self.map(f, items, chunksize)
    }

    /// CPython's `starmap_async`: [`map_async`](Pool::map_async) over tuples (see
    /// [`starmap`](Pool::starmap)).
    pub fn starmap_async<A, R, I>(
        &self,
        f: &Function<A, R>,
        items: I,
        chunksize: Option<usize>,
    ) -> Result<MapResult<R>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        self.map_async(f, items, chunksize)
    }

    /// Runs `f` over the items lazily and yields each task's result in order, in chunks of
    /// `chunksize` tasks (`None`: 1). Items are taken from `items` as results are consumed,
    /// a bounded number ahead (enough to keep every worker busy), so an endless iterator
    /// works. Dropping the iterator drops the chunks not sent to a worker yet.
    ///
    /// ```no_run
    /// # use procwire::{pool::Pool, process::Function};
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
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
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
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
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
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        let chunksize = chunksize_or(chunksize, || 1)?;
        let job =
            self.shared.submit(Tasks { function: f.name(), args: Vec::new(), ends: &[], chunksize }, true)?;
        Ok(IMap {
            handle: Handle { shared: self.shared.clone(), job },
            function: f.name(),
            items: Some(items.into_iter()),
            chunksize,
            ordered,
            submitted: 0,
            tasks: 0,
            taken: 0,
            buffer: VecDeque::new(),
            failure: None,
        })
    }

    /// Takes no new work (submitting is an error afterwards); work already submitted, `imap`
    /// iterators included, still runs, and the workers exit when it is done.
    pub fn close(&self) {
        self.shared.close();
    }

    /// Stops the workers now (SIGTERM, then SIGKILL after a second): tasks that did not finish
    /// fail with [`Error::Remote`] of kind `"terminated"`. Then [`join`](Pool::join) waits
    /// for them to be reaped.
    pub fn terminate(&self) {
        self.shared.terminate();
    }

    /// After [`close`](Pool::close) or [`terminate`](Pool::terminate): waits at most
    /// `timeout` (`None`: as long as it takes) until every worker has exited and been reaped
    /// and every completion callback has run. An error before either, and
    /// [`Error::Timeout`] when the time is up.
    ///
    /// ```no_run
    /// # use procwire::{pool::Pool, process::Function};
    /// # static SQUARE: Function<u64, u64> = Function::new("square", |x| x * x);
    /// let pool = Pool::new(2)?;
    /// let squares = pool.map_async(&SQUARE, 0..1000, None)?;
    /// pool.close();
    /// pool.join(None)?;
    /// assert_eq!(squares.get(None)?.len(), 1000);
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn join(&self, timeout: Option<Duration>) -> Result<()> {
        self.shared.join(deadline_of(timeout))
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.terminate();
        let _ = self.shared.join(deadline_of(Some(DROP_JOIN)));
    }
}

/// A submitted job: releases its results when dropped.
#[derive(Debug)]
struct Handle {
    shared: Arc<Shared>,
    job: u64,
}

impl Handle {
    fn outputs(&self, timeout: Option<Duration>) -> Result<Outputs> {
        self.shared
            .wait_finished(self.job, deadline_of(timeout))
            .ok_or_else(|| Error::Timeout("waiting for the result of a pool task".into()))
    }

    fn ready(&self) -> bool {
        self.shared.failed_tasks(self.job).is_some()
    }

    fn successful(&self) -> Option<bool> {
        self.shared.failed_tasks(self.job).map(|n| n == 0)
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.release(self.job);
    }
}

fn first_result<R: DeserializeOwned>(outs: &Outputs) -> Result<R> {
    let mut first = None;
    if let Some(o) = outs.first() {
        o.decode(|r| {
            first.get_or_insert(r);
        });
    }
    first.unwrap_or_else(|| Err(Error::Protocol("a pool task without a result".into())))
}

fn all_results<R: DeserializeOwned>(outs: &Outputs, len: usize) -> Result<Vec<R>> {
    let mut v = Vec::with_capacity(len);
    let mut error = None;
    for o in outs.iter() {
        o.decode(|r| match r {
            Ok(r) if error.is_none() => v.push(r),
            Ok(_) => {}
            Err(e) => {
                error.get_or_insert(e);
            }
        });
        if error.is_some() {
            break;
        }
    }
    error.map_or(Ok(v), Err)
}

fn each_result<R: DeserializeOwned>(outs: &Outputs, len: usize) -> Vec<Result<R>> {
    let mut v = Vec::with_capacity(len);
    for o in outs.iter() {
        o.decode(|r| v.push(r));
    }
    v
}

/// The result of [`Pool::apply_async`], as CPython's `AsyncResult`.
///
/// ```no_run
/// # use std::time::Duration;
/// # use procwire::{pool::Pool, process::Function};
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
    handle: Handle,
    _r: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for AsyncResult<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("job", &self.handle.job)
            .field("ready", &self.handle.ready())
            .finish()
    }
}

impl<R: DeserializeOwned> AsyncResult<R> {
    /// Waits at most `timeout` (`None`: as long as it takes) and returns the task's result:
    /// [`Error::Timeout`] if it is not there yet (ask again later), or the task's error
    /// ([`Error::Remote`] of kind `"panic"`, `"exit"`, `"terminated"`, ...). It can be called
    /// again: each call decodes the result anew.
    pub fn get(&self, timeout: Option<Duration>) -> Result<R> {
        first_result(&self.handle.outputs(timeout)?)
    }

    /// Waits at most `timeout` for the result; whether it is there.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        self.handle.outputs(timeout).is_ok()
    }

    /// Whether the result is there.
    pub fn ready(&self) -> bool {
        self.handle.ready()
    }

    /// Whether the task succeeded; `None` while it runs (CPython raises `ValueError` then).
    pub fn successful(&self) -> Option<bool> {
        self.handle.successful()
    }

    /// Calls `f` with the result once it is there (at once if it is), on the pool's callback
    /// thread; callbacks run one at a time in the order their tasks finish, so they should be
    /// quick. A panic in `f` is caught and ignored.
    ///
    /// ```no_run
    /// # use procwire::{pool::Pool, process::Function};
    /// # static SQUARE: Function<u64, u64> = Function::new("square", |x| x * x);
    /// # let pool = Pool::new(2)?;
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let _r = pool.apply_async(&SQUARE, 9)?.on_complete(move |r| tx.send(r.ok()).unwrap());
    /// assert_eq!(rx.recv().unwrap(), Some(81));
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn on_complete(self, f: impl FnOnce(Result<R>) + Send + 'static) -> Self
    where
        R: 'static,
    {
        self.handle.shared.on_finished(self.handle.job, Box::new(move |outs| f(first_result(&outs))));
        self
    }
}

/// The result of [`Pool::map_async`] and [`Pool::starmap_async`], as CPython's `MapResult`.
///
/// ```no_run
/// # use std::time::Duration;
/// # use procwire::{pool::Pool, process::Function};
/// # static SQUARE: Function<u64, u64> = Function::new("square", |x| x * x);
/// # let pool = Pool::new(2)?;
/// let r = pool.map_async(&SQUARE, 0..100, None)?;
/// let each = r.get_each(Some(Duration::from_secs(10)))?;
/// assert!(each.iter().all(|r| r.is_ok()));
/// # Ok::<(), procwire::Error>(())
/// ```
pub struct MapResult<R> {
    handle: Handle,
    len: usize,
    _r: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for MapResult<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapResult")
            .field("job", &self.handle.job)
            .field("len", &self.len)
            .field("ready", &self.handle.ready())
            .finish()
    }
}

impl<R: DeserializeOwned> MapResult<R> {
    /// Waits at most `timeout` (`None`: as long as it takes) and returns every result in
    /// order, or the first failed task's error; [`Error::Timeout`] if they are not all there
    /// yet (ask again later). It can be called again.
    pub fn get(&self, timeout: Option<Duration>) -> Result<Vec<R>> {
        all_results(&self.handle.outputs(timeout)?, self.len)
    }

    /// As [`get`](MapResult::get), with each task's own result: a failed task does not hide
    /// the others.
    pub fn get_each(&self, timeout: Option<Duration>) -> Result<Vec<Result<R>>> {
        Ok(each_result(&self.handle.outputs(timeout)?, self.len))
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
        self.handle.outputs(timeout).is_ok()
    }

    /// Whether all the results are there.
    pub fn ready(&self) -> bool {
        self.handle.ready()
    }

    /// Whether every task succeeded; `None` while some run.
    pub fn successful(&self) -> Option<bool> {
        self.handle.successful()
    }

    /// Calls `f` with the results (as [`get`](MapResult::get) returns them) once they are
    /// all there; see [`AsyncResult::on_complete`].
    pub fn on_complete(self, f: impl FnOnce(Result<Vec<R>>) + Send + 'static) -> Self
    where
        R: 'static,
    {
        let len = self.len;
        self.handle.shared.on_finished(self.handle.job, Box::new(move |outs| f(all_results(&outs, len))));
        self
    }
}

/// The iterator of [`Pool::imap`] and [`Pool::imap_unordered`]: each task's result.
pub struct IMap<R, I> {
    handle: Handle,
    function: &'static str,
    /// `None` once exhausted (or after an item that could not be encoded).
    items: Option<I>,
    chunksize: usize,
    ordered: bool,
    /// Chunks submitted, tasks submitted, chunks taken back.
    submitted: usize,
    tasks: usize,
    taken: usize,
    buffer: VecDeque<Result<R>>,
    failure: Option<Error>,
}

impl<R, I> fmt::Debug for IMap<R, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IMap")
            .field("function", &self.function)
            .field("ordered", &self.ordered)
            .field("chunksize", &self.chunksize)
            .field("submitted_tasks", &self.tasks)
            .finish()
    }
}

impl<R, I> IMap<R, I>
where
    R: DeserializeOwned,
    I: Iterator,
    I::Item: Serialize,
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
            if self.taken == self.submitted {
                return self.failure.take().map(Err);
            }
            let index = self.ordered.then_some(self.taken);
            match self.handle.shared.take_chunk(self.handle.job, index, deadline) {
                Some(out) => {
                    out.decode(|r| self.buffer.push_back(r));
                    self.taken += 1;
                }
                None => {
                    return Some(Err(Error::Timeout("waiting for the next result of a pool imap".into())));
                }
            }
        }
    }

    /// Submits chunks until the lookahead is full or the items run out.
    fn top_up(&mut self) {
        let Some(items) = self.items.as_mut() else { return };
        let shared = &self.handle.shared;
        let ahead = shared.lookahead(self.function, self.chunksize);
        let outstanding = self.submitted - self.taken;
        if outstanding >= ahead {
            return;
        }
        let want = (ahead - outstanding) * self.chunksize;
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        let mut exhausted = false;
        while ends.len() < want {
            let Some(item) = items.next() else {
                exhausted = true;
                break;
            };
            if let Err(e) = ciborium::into_writer(&item, &mut bytes) {
                self.failure = Some(Error::Encode(format!("item {}: {e}", self.tasks + ends.len())));
                bytes.truncate(ends.last().copied().unwrap_or(0));
                exhausted = true;
                break;
            }
            ends.push(bytes.len());
        }
        if !ends.is_empty() {
            let n_chunks = ends.len().div_ceil(self.chunksize);
            let tasks =
                Tasks { function: self.function, args: bytes, ends: &ends, chunksize: self.chunksize };
            match shared.add_chunks(self.handle.job, tasks, self.submitted, self.tasks) {
                Ok(()) => {
                    self.submitted += n_chunks;
                    self.tasks += ends.len();
                }
                Err(e) => {
                    self.failure.get_or_insert(e);
                    exhausted = true;
                }
            }
        }
        if exhausted {
            self.items = None;
            shared.seal(self.handle.job);
        }
    }
}

impl<R, I> Iterator for IMap<R, I>
where
    R: DeserializeOwned,
    I: Iterator,
    I::Item: Serialize,
{
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        self.next_timeout(None)
    }
}
