//! Child processes that run a Rust function: [`Process`] (shaped like CPython's
//! `multiprocessing.Process`, with a typed result), pprocess's [`start`], [`create`] and
//! [`waitall`], and [`Exchange`] for collecting from many children at once.
//!
//! # The start method: the current executable, started again
//!
//! A child is this program run again (CPython's *spawn* start method). It finds the function
//! to run by name, in a list the program hands to [`init`], which `main` calls first:
//!
//! ```no_run
//! use procwire::process::{Function, Process};
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//! static SQUARE: Function<u64, u64> = Function::new("square", square);
//!
//! fn main() -> procwire::Result<()> {
//!     // In a child this runs the requested function and exits; in the parent it returns.
//!     procwire::process::init(&[&SQUARE]);
//!
//!     let mut p = Process::new(&SQUARE, 12);
//!     p.start()?;
//!     assert_eq!(p.result(None)?, 144);
//!     Ok(())
//! }
//! ```
//!
//! Rules:
//! - Call [`init`] before anything else in `main` (before starting threads, reading stdin, or
//!   any work that a child must not repeat). Until it has been called, a process started as a
//!   child refuses to start children of its own, so a forgotten `init` is an error, never a
//!   process that runs the parent's `main` and multiplies.
//! - Functions are plain `fn` items (or closures that capture nothing), named by a string that
//!   is unique in the program. Arguments and results travel as CBOR (serde), so they are owned
//!   values. A name that the child's `init` does not list, or arguments that do not decode
//!   there as the function's argument type, make [`Process::start`] fail with
//!   [`Error::Remote`](crate::Error::Remote) of kind `"start"`.
//! - The child inherits stdin, stdout, stderr, the environment and the working directory.
//!
//! # In `cargo test` binaries
//!
//! A test binary has no `main` of its own, so the child is started as the test binary running
//! one test that calls [`init`]: name that test with [`use_test_entry`] before starting
//! children (it sets [`set_child_args`] to `--exact NAME --include-ignored --nocapture
//! --test-threads=1 -q`). Mark the test `#[ignore]` so that a normal run skips it:
//!
//! ```no_run
//! # use procwire::process::Function;
//! # static SQUARE: Function<u64, u64> = Function::new("square", |x| x * x);
//! #[test]
//! #[ignore = "the entry point of child processes"]
//! fn procwire_child() {
//!     procwire::process::init(&[&SQUARE]);
//! }
//!
//! #[test]
//! fn squares() {
//!     procwire::process::use_test_entry("procwire_child");
//!     let mut p = procwire::process::Process::new(&SQUARE, 3);
//!     p.start().unwrap();
//!     assert_eq!(p.result(Some(std::time::Duration::from_secs(30))).unwrap(), 9);
//! }
//! ```
//!
//! libtest prints a `running 1 test` line in each such child.
//!
//! # Daemons
//!
//! A daemon child ([`Process::set_daemon`]) dies when its parent process ends, however it
//! ends (SIGKILL included). On Linux the child gets `PR_SET_PDEATHSIG` = SIGKILL before it
//! runs (and checks that its parent is still the process that spawned it); daemons are forked
//! from one long-lived thread, because that signal follows the thread that forked. On other
//! Unix systems a watchdog thread in the child waits for the end of a pipe only the parent
//! holds. Children that are not daemons outlive their parent.
//!
//! # Platforms
//!
//! Unix only for now: on Windows, starting a child fails with an `Unsupported` I/O error
//! (connections cannot be handed to a child there yet), and [`create`] is Unix-only by nature.
//!
//! The messages between parent and child are specified in spec/process.md.

mod bootstrap;
mod child;
mod exchange;
pub mod generic;
mod handle;
mod pprocess;
mod registry;
pub(crate) mod threads;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use crate::sentinel::Sentinel;
pub(crate) use bootstrap::receive_args;
pub use bootstrap::{current_name, init, set_child_args, use_test_entry};
pub(crate) use child::{Child, spawn_child};
pub use exchange::Exchange;
pub use pprocess::{Channel, Forked, create, start, waitall};
pub(crate) use registry::{Call, Called, Registry, sealed::Sealed};
pub use registry::{ChannelFunction, Entry, Function};

/// A function running in a child process, shaped like CPython's `multiprocessing.Process`;
/// see [`generic::Process`], which has its methods.
pub type Process<R> = generic::Process<R, generic::Processes>;

/// The exit code of a child that could not run its function.
pub const EXIT_START_FAILED: i32 = 2;
/// The exit code of a child whose function panicked (as CPython's 1 for an exception).
pub const EXIT_PANICKED: i32 = 1;
/// How long [`Process::start`] waits by default for the child to report that it runs.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(60);

/// The default name of the next child: `Process-N`, as CPython numbers them.
fn next_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    format!("Process-{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}
