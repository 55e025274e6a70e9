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
//! let result = pool.map_async(&SQUARE, 0..10)?;
//! assert_eq!(result.get()?, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
//! # Ok::<(), procwire::Error>(())
//! ```
//!
//! The rules are the process version's: the same [`Function`](super::process::Function)s, tasks in chunks of
//! `chunksize` with the same default ([`default_chunksize`] for `map` and `starmap`, 1 for the
//! `imap`s), a panicking task fails alone ([`Error::Remote`](crate::Error::Remote) of kind `"panic"`) while its
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

pub use crate::pool::default_chunksize;

use crate::pool::generic::{self, Threads};

/// Settings for a [`Pool`], from [`Pool::builder`]; see [`generic::PoolBuilder`].
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
pub type PoolBuilder = generic::PoolBuilder<Threads>;

/// A pool of worker threads that run [`Function`](super::process::Function) tasks; see the [module
/// documentation](self) and [`generic::Pool`], which has its methods.
pub type Pool = generic::Pool<Threads>;

/// The result of [`Pool::apply_async`], as CPython's `AsyncResult`; see
/// [`generic::AsyncResult`].
pub type AsyncResult<R> = generic::AsyncResult<Threads, R>;

/// The result of [`Pool::map_async`] and [`Pool::starmap_async`], as CPython's `MapResult`;
/// see [`generic::MapResult`].
pub type MapResult<R> = generic::MapResult<Threads, R>;

/// The iterator of [`Pool::imap`] and [`Pool::imap_unordered`]: each task's result; see
/// [`generic::IMap`].
pub type IMap<R, I> = generic::IMap<Threads, R, I>;

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use super::*;
    use crate::dummy::process::Function;
    use crate::{Error, RemoteKind};

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
        assert!(matches!(
            r.get_timeout(Duration::ZERO),
            Err(Error::Remote { kind: RemoteKind::Terminated, .. })
        ));
        assert!(pool.join_timeout(Duration::from_secs(60)).unwrap(), "the pool ended in time");
        assert!(started.elapsed() >= Duration::from_millis(100), "join waited for the running task");
        assert!(
            matches!(r.get(), Err(Error::Remote { kind: RemoteKind::Terminated, .. })),
            "its result was dropped"
        );
    }

    #[test]
    fn results_need_not_be_clone_for_map_apply_and_imap() {
        let pool = Pool::new(2).unwrap();
        assert_eq!(pool.apply(&NEXT_TOKEN, Token(1)).unwrap(), Token(2));
        let got: Vec<u64> =
            pool.map(&NEXT_TOKEN, (0..5).map(Token)).unwrap().into_iter().map(|t| t.0).collect();
        assert_eq!(got, [1, 2, 3, 4, 5]);
        let mut it = pool.imap(&NEXT_TOKEN, (0..3).map(Token)).unwrap();
        assert_eq!(it.next().unwrap().unwrap(), Token(1));
    }

    #[test]
    fn a_dropped_imap_leaves_a_closed_pool_joinable() {
        let pool = Pool::new(1).unwrap();
        let mut it = pool.imap(&SLEEP_MS, std::iter::repeat(1)).unwrap();
        assert_eq!(it.next().unwrap().unwrap(), 1);
        pool.close();
        drop(it);
        assert!(pool.join_timeout(Duration::from_secs(60)).unwrap(), "the pool ended in time");
    }
}
