//! The same API over threads: `procwire::dummy` is to procwire what `processing.dummy` (and
//! later `multiprocessing.dummy`) is to its package. A program written against procwire uses
//! threads instead of processes when one `use` line changes:
//!
//! ```text
//! use procwire as pw;          // processes
//! use procwire::dummy as pw;   // threads
//! ```
//!
//! after which `pw::process::Process`, `pw::queue::{Queue, JoinableQueue}`, `pw::pool::Pool`,
//! `pw::manager::Manager` (and its proxies), `pw::Error` and `pw::Result` keep their names and
//! method signatures. Use it to debug a program in one process, to measure what process
//! isolation costs, or where starting processes is not allowed.
//!
//! ```
//! use procwire::dummy as pw;
//! use pw::process::Function;
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//! static SQUARE: Function<u64, u64> = Function::new("square", square);
//!
//! pw::process::init(&[&SQUARE]); // does nothing with threads; kept so code compiles both ways
//! let pool = pw::pool::Pool::new(2)?;
//! assert_eq!(pool.map(&SQUARE, 1..=4)?, [1, 4, 9, 16]);
//!
//! let q: pw::queue::Queue<u64> = pw::queue::Queue::new()?;
//! q.put(&7)?;
//! assert_eq!(q.get()?, 7);
//!
//! let manager = pw::manager::Manager::start()?;
//! let lock = manager.lock()?;
//! lock.acquire()?;
//! lock.release()?;
//! # Ok::<(), procwire::Error>(())
//! ```
//!
//! # What differs from the process versions
//!
//! Each item documents its own differences; in short:
//!
//! | | processes (`procwire`) | threads (`procwire::dummy`) |
//! | --- | --- | --- |
//! | arguments, results, items | serde values, copied as CBOR | moved (`Send + 'static`); no serde needed; `&T` methods need `T: Clone`, repeatable `get`s need `R: Clone` (manager values: serde, kept as CBOR, as with processes) |
//! | a panic in a task or process | ends that child or task only | the same: caught with `catch_unwind` (the panic hook still prints it) |
//! | `std::process::exit`, abort, a crash in a task | ends that child only (the pool replaces a worker) | ends the whole program |
//! | `Process::terminate`, `kill` | SIGTERM, SIGKILL | not possible: a typed `Unsupported` I/O error while the thread runs |
//! | `Pool::terminate` | kills the workers | fails every unfinished task at once; threads running a task finish it, their results are dropped |
//! | `Process::pid`, `Pool::pids` | the children's pids | `None`, empty: a thread has no process id |
//! | daemon flag | a daemon dies with its parent, others outlive it | recorded only: every thread ends with the process |
//! | `init`, `use_test_entry`, `set_child_args` | start children as this executable | do nothing |
//! | queues and manager objects | served over authenticated connections, reachable by address and key | in memory, shared through clones; no `connect`; queue handles do not serialize, manager proxies only within the process |
//! | limits such as `max_item_size`, prefetch | apply | accepted, no effect |
//! | custom manager types (`Registry`) | served by a manager process | served in this process: `Manager::with_registry` |
//!
//! Items that are the same either way ([`Error`], [`Result`], [`Address`], [`AuthKey`],
//! [`Connection`], [`wait()`], [`shared`] memory, [`codec`], [`auth`]) are re-exported from
//! the crate root, so `pw::Error` is `procwire::Error` in both modes.

pub mod manager;
pub mod pool;
pub mod process;
pub mod queue;

// In-process connections over the in-process transport: `pipe`, `Listener`, `Client`.
mod connection;
pub use connection::{Client, ClientBuilder, Listener, ListenerBuilder, pipe};

pub use crate::{
    Address, AuthKey, Connection, Error, Family, Incoming, Receiver, Result, Sender, Waitable, auth, codec,
    shared, wait, wait_timeout,
};
