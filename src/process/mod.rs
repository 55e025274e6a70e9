//! Child processes that run a Rust function: [`Process`] (shaped like CPython's
//! `multiprocessing.Process`, with a typed result), pprocess's [`start`], [`create`] and
//! [`waitall`], and [`Exchange`] for collecting from many children at once.
//!
//! # The start method: the current executable, started again
//!
//! A child is this program run again (CPython's *spawn* start method). It finds the function
//! to run by name, among the functions of the program that [`init`] knows, and `main` calls
//! [`init`] first. Make a function runnable in a child with `#[procwire::function]` (the
//! default `macros` feature):
//!
//! ```no_run
//! use procwire::process::Process;
//!
//! /// Stays a plain function; the attribute adds `static SQUARE: Function<u64, u64>`.
//! #[procwire::function]
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! #[procwire::main] // calls procwire::process::init(&[]) first
//! fn main() -> procwire::Result<()> {
//!     let mut p = Process::new(&SQUARE, 12);
//!     p.start()?;
//!     assert_eq!(p.result()?, 144);
//!     Ok(())
//! }
//! ```
//!
//! What `#[procwire::function]` makes of `fn NAME(...)`:
//! - a `static` named like the function in upper case (`square` gives `SQUARE`), with the
//!   function's visibility: a [`Function`] for [`Process`] and the pools, or a
//!   [`ChannelFunction`] for [`start`] when the first parameter is a `Connection` (the
//!   channel; it returns nothing);
//! - its name for children, `module_path!()::NAME` (here `my_crate::square`), unique in the
//!   program unless two functions are given one name with
//!   `#[procwire::function(name = "...")]`, which keeps a name stable when code moves;
//! - one argument for several parameters: `fn add(a: u64, b: u64) -> u64` becomes a
//!   `Function<(u64, u64), u64>`, started as `Process::new(&ADD, (2, 3))`; a function
//!   without parameters takes `()`, and `fn work(ch: Connection, a: u64, b: String)` is a
//!   `ChannelFunction<(u64, String)>`;
//! - a registration, gathered from every crate of the program by `inventory` (each one links
//!   itself into a list before `main`, without allocating), so [`init`] finds it with an
//!   empty list. The function cannot be generic or `async`.
//!
//! Without the attribute, a function is named by hand and listed in [`init`]; both ways
//! combine, and the list may name registered functions too:
//!
//! ```no_run
//! use procwire::process::{Function, Process};
//!
//! fn cube(x: u64) -> u64 {
//!     x * x * x
//! }
//! static CUBE: Function<u64, u64> = Function::new("cube", cube);
//!
//! fn main() -> procwire::Result<()> {
//!     // In a child this runs the requested function and exits; in the parent it returns.
//!     procwire::process::init(&[&CUBE]);
//!
//!     let mut p = Process::new(&CUBE, 3);
//!     p.start()?;
//!     assert_eq!(p.result()?, 27);
//!     Ok(())
//! }
//! ```
//!
//! Rules:
//! - Call [`init`] before anything else in `main` (before starting threads, reading stdin, or
//!   any work that a child must not repeat), or put `#[procwire::main]` on `main`. A process
//!   whose `init` did not run on its main thread cannot start children that run its `main`:
//!   [`Process::start`] (and a pool) fails at once, saying so, instead of starting children
//!   that would run the parent's `main` again and multiply. A child that did not call `init`
//!   refuses to start children of its own likewise.
//! - Names are unique in the program: two different functions with one name (registered or
//!   listed) make [`Process::start`] fail in the parent, before any child runs, with an error
//!   that names both (with the file and line of each registered one). The same function
//!   registered and listed is one function.
//! - Functions are plain `fn` items (or, listed by hand, closures that capture nothing).
//!   Arguments and results travel as CBOR (serde), so they are owned values. A name the child
//!   does not know, or arguments that do not decode there as the function's argument type,
//!   make [`Process::start`] fail with [`Error::Remote`](crate::Error::Remote) of kind
//!   `"start"`. A child started with [`Process::set_executable`] is another program, whose own
//!   functions count.
//! - The child inherits stdin, stdout, stderr, the environment and the working directory.
//!
//! # In `cargo test` binaries
//!
//! A test binary has no `main` of its own (its `main` is the test harness, which would run
//! every test), so the child is started as the test binary running one test that calls
//! [`init`]: name that test with [`use_test_entry`] before starting children (it sets
//! [`set_child_args`] to `--exact NAME --include-ignored --nocapture --test-threads=1 -q`).
//! Mark the test `#[ignore]` so that a normal run skips it:
//!
//! ```no_run
//! #[procwire::function]
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! #[test]
//! #[ignore = "the entry point of child processes"]
//! fn procwire_child() {
//!     procwire::process::init(&[]);
//! }
//!
//! #[test]
//! fn squares() {
//!     procwire::process::use_test_entry("procwire_child");
//!     let mut p = procwire::process::Process::new(&SQUARE, 3);
//!     p.start().unwrap();
//!     assert_eq!(p.result().unwrap(), 9);
//! }
//! ```
//!
//! Without [`use_test_entry`] (or [`set_child_args`]), starting a child from a test fails at
//! once with an error that says to call it, whether or not the test called [`init`]: the
//! harness runs tests on threads named after them, never on the main thread, and a child
//! would run the whole test binary. libtest prints a `running 1 test` line in each child.
//!
//! # Daemons
//!
//! A daemon child ([`Process::set_daemon`]) dies when its parent process ends, however it
//! ends (SIGKILL included). On Linux the child gets `PR_SET_PDEATHSIG` = SIGKILL before it
//! runs (and checks that its parent is still the process that spawned it); daemons are forked
//! from one long-lived thread, because that signal follows the thread that forked. On other
//! Unix systems a watchdog thread in the child waits for the end of a pipe only the parent
//! holds. On Windows the parent puts each daemon in a job object with
//! `JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE`, whose only handle the parent holds for its whole life:
//! when the parent ends, however it ends, the system closes that handle and ends the job's
//! members. Children that are not daemons outlive their parent.
//!
//! # Platforms
//!
//! Unix and Windows. On Windows the child is started the same way (the current executable
//! again, with `CreateProcess` through `std::process::Command`) and inherits no handle: its end
//! of the connection is a named pipe end that the child takes from its parent with
//! `DuplicateHandle(DUPLICATE_CLOSE_SOURCE)`, named in its environment (as CPython's spawn start
//! method does). The sentinel that [`wait`](crate::wait()) watches is the child's process
//! handle; `terminate` and `kill` are `TerminateProcess`, which ends the child at once (there is
//! no signal it could catch) and reports the exit code as minus SIGTERM or minus SIGKILL, as on
//! Unix; an abort (`__fastfail`) reports as minus SIGABRT and an access violation as minus
//! SIGSEGV. [`create`] (fork) exists on Unix only.
//!
//! The messages between parent and child are specified in spec/process.md.

// Links to the fork-style `create` (Unix only) resolve where it exists; elsewhere they are text.
#![cfg_attr(not(unix), allow(rustdoc::broken_intra_doc_links))]

mod bootstrap;
mod child;
mod exchange;
pub mod generic;
mod handle;
mod pprocess;
pub(crate) mod registered;
mod registry;
pub(crate) mod threads;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use crate::sentinel::Sentinel;
pub(crate) use bootstrap::receive_args;
pub use bootstrap::{current_name, init, set_child_args, use_test_entry};
pub(crate) use child::{Child, spawn_child};
pub use exchange::Exchange;
pub use pprocess::{Channel, start, waitall, waitall_timeout};
#[cfg(unix)]
pub use pprocess::{Forked, create};
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
