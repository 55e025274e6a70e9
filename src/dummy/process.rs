//! [`Process`] as a thread, and pprocess's [`start`] and [`waitall`] over threads: the
//! [`process`](crate::process) API where a "child" is a thread of this process. `Process` and
//! [`Channel`] are the process version's, written once in [`generic`], over the
//! [`Threads`](generic::Threads) backend.
//!
//! The same registered [`Function`]s and [`ChannelFunction`]s serve both modes, so a program
//! that writes `pw::process::Process::new(&SQUARE, 12)` compiles with `use procwire as pw` and
//! with `use procwire::dummy as pw`:
//!
//! ```
//! use procwire::dummy::process::{Function, Process};
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//! static SQUARE: Function<u64, u64> = Function::new("square", square);
//!
//! procwire::dummy::process::init(&[&SQUARE]); // nothing to do for threads
//! let mut p = Process::new(&SQUARE, 12);
//! p.start()?;
//! assert_eq!(p.result()?, 144);
//! assert_eq!(p.exitcode(), Some(0));
//! # Ok::<(), procwire::Error>(())
//! ```
//!
//! # Differences from child processes
//!
//! - Arguments and results are moved to and from the thread, not encoded: they need to be
//!   `Send + 'static`, not serde types, and a value that would not encode works here.
//! - A thread cannot be stopped from outside: [`terminate`](generic::Process::terminate) and
//!   [`kill`](generic::Process::kill) return an
//!   [`Unsupported`](std::io::ErrorKind::Unsupported) I/O error while it runs. Make the
//!   function return instead (when an event is set, or a queue says so).
//! - A thread has no process id ([`pid`](generic::Process::pid) is `None`) and no executable
//!   ([`set_executable`](generic::Process::set_executable) makes `start` fail). A
//!   [`Channel`]'s [`pid`](generic::Channel::pid) is a number unique in this program, not an
//!   OS process id.
//! - A panic is caught and reported as in a child (exit code [`EXIT_PANICKED`], the result
//!   an [`Error::Remote`](crate::Error::Remote) of kind `"panic"`), but
//!   `std::process::exit` or an abort in the function ends the whole program.
//! - The daemon flag is recorded only: threads never outlive the process, daemons or not.
//! - [`init`], [`set_child_args`] and [`use_test_entry`] do nothing; they exist so that the
//!   same `main` (or test entry point) compiles in both modes.
//! - Nothing here works with [`wait`](crate::wait()) (a thread has no sentinel), and there is
//!   no fork-style `create` nor `Exchange`: use [`Channel`]s and their connections directly.

pub use crate::process::generic;
pub use crate::process::threads::{Channel, start, waitall, waitall_timeout};
pub use crate::process::{
    ChannelFunction, DEFAULT_START_TIMEOUT, EXIT_PANICKED, EXIT_START_FAILED, Function,
};

/// A function running on a thread, shaped like [`process::Process`](crate::process::Process)
/// (and CPython's `threading.Thread` with a result); see the [module documentation](self) for
/// what a thread cannot do, and [`generic::Process`], which has its methods.
pub type Process<R> = generic::Process<R, generic::Threads>;

/// A function [`init`] accepts: every [`Function`] and [`ChannelFunction`], whatever its
/// argument and result types (threads need no serde).
pub trait Entry: Sync {
    /// The function's registered name.
    fn name(&self) -> &'static str;
    /// Whether the function takes a channel ([`start`]) rather than returning a value.
    fn takes_channel(&self) -> bool;
}

impl<A, R> Entry for Function<A, R> {
    fn name(&self) -> &'static str {
        self.parts().0
    }
    fn takes_channel(&self) -> bool {
        false
    }
}

impl<A> Entry for ChannelFunction<A> {
    fn name(&self) -> &'static str {
        self.parts().0
    }
    fn takes_channel(&self) -> bool {
        true
    }
}

/// Does nothing: threads call their functions directly. It exists so that `main` can call
/// `pw::process::init(&[...])` first in both modes (see [`process::init`](crate::process::init)).
pub fn init(functions: &[&dyn Entry]) {
    let _ = functions;
}

/// Does nothing (threads are not started as a program); see
/// [`process::set_child_args`](crate::process::set_child_args).
pub fn set_child_args<I, S>(args: I)
where
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString>,
{
    let _ = args;
}

/// Does nothing (threads need no entry point); see
/// [`process::use_test_entry`](crate::process::use_test_entry).
pub fn use_test_entry(test_name: &str) {
    let _ = test_name;
}

/// The name of the [`Process`], [`start`]ed thread or pool worker this runs on (as the
/// process version's child sees its name); `None` on other threads.
///
/// Names are kept for the life of the program (each distinct name once, a few bytes), so
/// that they can be `&'static str` as in the process version.
pub fn current_name() -> Option<&'static str> {
    crate::process::threads::current_name()
}
