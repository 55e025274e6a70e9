//! A pool of worker processes, shaped like CPython's `multiprocessing.Pool`: [`Pool`] with
//! `apply`, `map`, `imap`, `imap_unordered`, `starmap` and their `_async` forms, whose results
//! come back as [`AsyncResult`], [`MapResult`] or an [`IMap`] iterator.
//!
//! ```no_run
//! use std::time::Duration;
//! use procwire::pool::Pool;
//!
//! #[procwire::function] // also makes `static SQUARE: Function<u64, u64>`
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! fn main() -> procwire::Result<()> {
//!     procwire::process::init(&[]); // first in main: a worker runs its tasks from here
//!     let pool = Pool::new(4)?;
//!     let result = pool.map_async(&SQUARE, 0..10)?;
//!     assert_eq!(result.get()?, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
//!     Ok(())
//! }
//! ```
//!
//! # Tasks
//!
//! A task is a call of a [`Function`](crate::process::Function) (a registered `fn` item, found by the workers the way a
//! [`Process`](crate::process::Process) child finds its function: made by
//! `#[procwire::function]` or in the list given to [`init`](crate::process::init), which `main`
//! calls first) on one argument; arguments and
//! results are serde values (CBOR on the wire). A function of several arguments takes a tuple.
//! Workers are procwire child processes started as in [`process`](crate::process) (in test
//! binaries too, with [`use_test_entry`](crate::process::use_test_entry)), as daemons: they
//! die with the pool's process.
//!
//! - A task that panics is an error for that task only ([`Error::Remote`](crate::Error::Remote) of kind `"panic"`
//!   with the panic message); the worker carries on with the next. A function the workers
//!   cannot run (not registered nor in their [`init`](crate::process::init) list, or arguments that do not
//!   decode there) fails its tasks with kind `"start"`, and a result that cannot be encoded
//!   with kind `"encode"`.
//! - A worker that dies (killed, aborted, out of memory, `std::process::exit` in a task) never
//!   hangs the caller, unlike CPython's pool: the task it was running fails with
//!   [`Error::Remote`](crate::Error::Remote) of kind `"exit"`, whose message names the worker, its pid and how it
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
//! writes each chunk's results before it starts the next chunk. The messages are in
//! spec/pool.md.
//!
//! Dropping a pool terminates it (as leaving CPython's `with Pool() as p:` does): the workers
//! get SIGTERM (SIGKILL a second later if they are still there), tasks that did not finish fail
//! with kind `"terminated"`, and the drop returns once the workers are reaped. To let queued
//! tasks finish first, [`close`](Pool::close) and [`join`](Pool::join) the pool.
//!
//! # Platforms
//!
//! Unix and Windows, as [`process`](crate::process): on Windows a worker killed from outside
//! (`TerminateProcess`) is replaced as on Unix.

mod engine;
pub mod generic;
mod processes;
mod threads;
mod wire;
mod worker;

pub use generic::default_chunksize;
pub(crate) use worker::WORKER;

/// The name under which a child process runs as a pool worker (reserved).
pub(crate) const WORKER_ENTRY: &str = "procwire.pool.worker";

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
pub type PoolBuilder = generic::PoolBuilder<generic::Processes>;

/// A pool of worker processes that run [`Function`](crate::process::Function) tasks; see the
/// [module documentation](self) and [`generic::Pool`], which has its methods.
pub type Pool = generic::Pool<generic::Processes>;

/// The result of [`Pool::apply_async`], as CPython's `AsyncResult`; see
/// [`generic::AsyncResult`].
pub type AsyncResult<R> = generic::AsyncResult<generic::Processes, R>;

/// The result of [`Pool::map_async`] and [`Pool::starmap_async`], as CPython's `MapResult`;
/// see [`generic::MapResult`].
pub type MapResult<R> = generic::MapResult<generic::Processes, R>;

/// The iterator of [`Pool::imap`] and [`Pool::imap_unordered`]: each task's result; see
/// [`generic::IMap`].
pub type IMap<R, I> = generic::IMap<generic::Processes, R, I>;
