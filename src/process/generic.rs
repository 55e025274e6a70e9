//! [`Process`] and pprocess's [`Channel`] written once over a [`Backend`]:
//! [`process::Process`](crate::process::Process) is `Process<R, Processes>` and
//! [`dummy::process::Process`](crate::dummy::process::Process) is `Process<R, Threads>`. The
//! settings, the lifecycle checks and the result state machine are here; a backend starts,
//! watches and stops what runs. [`Processes`] and [`Threads`] are also the backends of the
//! [pool](crate::pool::generic) and the [queue](crate::queue::generic).
//!
//! The items here say where the two behave differently; the
//! [`dummy::process`](crate::dummy::process) module lists it all.

use std::fmt;
use std::io;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::registry::Outcome;
use super::{DEFAULT_START_TIMEOUT, Function, next_name};
use crate::util::deadline_of;
use crate::{Connection, Error, RemoteKind, Result};

/// Other processes: a [`Process`] or [`Channel`] is a child running this program (see
/// [`process`](crate::process)), a queue is served over authenticated connections, a pool's
/// workers are children. What crosses between them (arguments, results, items) are serde
/// values, sent as CBOR.
#[derive(Debug)]
pub enum Processes {}

/// Threads of this process ([`procwire::dummy`](crate::dummy)): arguments, results and items
/// are moved (or cloned), not encoded.
#[derive(Debug)]
pub enum Threads {}

/// What runs a [`Process`] or the other side of a [`Channel`]: [`Processes`] or [`Threads`].
pub trait Backend: sealed::Backend {}
impl<B: sealed::Backend> Backend for B {}

/// A backend that runs `fn(A) -> R` in a [`Process`] and hands back its result: with
/// [`Processes`], `A: Serialize` and `R: DeserializeOwned`; with [`Threads`], both
/// `Send + 'static`.
pub trait Runs<A, R>: Backend + sealed::Runs<A, R> {}
impl<A, R, B: Backend + sealed::Runs<A, R>> Runs<A, R> for B {}

/// A backend whose [`Process`] returns an `R`: with [`Processes`], `R: DeserializeOwned`;
/// with [`Threads`], `R: Send + 'static`.
pub trait Returns<R>: Backend + sealed::Returns<R> {}
impl<R, B: Backend + sealed::Returns<R>> Returns<R> for B {}

pub(crate) mod sealed {
    use super::*;

    /// A process's settings, as [`start`](super::Process::start) hands them over.
    pub struct Settings<'a> {
        pub name: &'a str,
        pub daemon: bool,
        pub executable: Option<&'a Path>,
        pub start_timeout: Duration,
    }

    pub trait Backend: Sized + 'static {
        /// A process's own state: what it will run, then what runs.
        type State<R>: fmt::Debug;
        /// What a [`Channel`] watches on the other side.
        type Peer: fmt::Debug;

        fn pid<R>(st: &Self::State<R>) -> Option<u32>;
        /// Stops a started one (`kill`: at once); `Ok` if it has ended.
        fn signal<R>(st: &mut Self::State<R>, name: &str, kill: bool) -> Result<()>;

        fn peer_pid(p: &Self::Peer) -> u32;
        fn peer_alive(p: &Self::Peer) -> bool;
        fn peer_exitcode(p: &Self::Peer) -> Option<i32>;
        fn peer_join(p: &Self::Peer, deadline: Option<Instant>) -> Result<Option<i32>>;
        fn peer_signal(p: &Self::Peer, kill: bool) -> Result<()>;
    }

    pub trait Runs<A, R>: Backend {
        fn prepare(f: &Function<A, R>, args: A) -> Self::State<R>;
    }

    pub trait Returns<R>: Backend {
        /// Starts a process that was not started.
        fn start(st: &mut Self::State<R>, settings: Settings<'_>) -> Result<()>;
        /// The exit code of a started one once it has ended.
        fn exitcode(st: &mut Self::State<R>) -> Option<i32>;
        /// Waits for a started one to end, at most until `deadline`.
        fn join(st: &mut Self::State<R>, deadline: Option<Instant>) -> Result<Option<i32>>;
        /// The result of one that has ended (once); `ended` says how, for the error of one
        /// that ended without a result.
        fn take(st: &mut Self::State<R>, ended: &dyn Fn() -> String) -> Result<R>;
    }
}

/// What became of a process's result: the state machine behind [`Process::result`], which
/// both backends keep, so that they report alike.
#[derive(Debug)]
pub(super) enum Got<R> {
    Pending,
    Value(Outcome<R>),
    Failed(Error),
    /// The connection ended without a result (the child was killed or exited early).
    Nothing,
    Taken,
}

impl<R> Got<R> {
    /// Takes the result of a child that has ended (once); `ended` says how, for the error of
    /// one that ended without a result.
    pub(super) fn take(&mut self, ended: impl FnOnce() -> String) -> Result<R> {
        let remote = |kind, message| Error::Remote { kind, message };
        match std::mem::replace(self, Got::Taken) {
            Got::Value(Outcome::Returned(r)) => Ok(r),
            Got::Value(Outcome::Panicked(m)) => Err(remote(RemoteKind::Panic, m)),
            Got::Value(Outcome::Unsendable(m)) => Err(remote(RemoteKind::Encode, m)),
            Got::Failed(e) => Err(e),
            Got::Pending | Got::Nothing => {
                Err(remote(RemoteKind::Exit, format!("{} without a result", ended())))
            }
            Got::Taken => Err(Error::InvalidInput("the result was taken already".into())),
        }
    }
}

/// A backend's state had nothing running where the front saw a start (a bug, not a use).
pub(super) fn not_running() -> Error {
    Error::Io(io::Error::other("a started process is not running"))
}

fn not_started(name: &str) -> Error {
    Error::InvalidInput(format!("{name} was not started"))
}

/// A wait without a deadline that came back without an exit code: a backend's broken promise,
/// reported rather than trusted.
fn still_running(name: &str) -> Error {
    Error::Io(io::Error::other(format!("{name} still runs after an unbounded join")))
}

/// A function running in a child process (or, with [`Threads`], on a thread), shaped like
/// CPython's `multiprocessing.Process` with a typed result: create it with
/// [`new`](Process::new), [`start`](Process::start) it, then [`join`](Process::join) it or
/// take its [`result`](Process::result).
///
/// Dropping a `Process` neither waits for nor stops what runs (as `std::process::Child`).
///
/// ```
/// # use procwire::dummy as pw; // the same with `use procwire as pw`, once `main` called init
/// use pw::process::{Function, Process};
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
/// static SQUARE: Function<u64, u64> = Function::new("square", square);
///
/// let mut p = Process::new(&SQUARE, 12);
/// p.start()?;
/// assert_eq!(p.result()?, 144);
/// assert_eq!(p.exitcode(), Some(0));
/// # Ok::<(), procwire::Error>(())
/// ```
pub struct Process<R, B: Backend> {
    name: String,
    daemon: bool,
    executable: Option<PathBuf>,
    start_timeout: Duration,
    started: bool,
    pub(super) state: B::State<R>,
}

impl<R, B: Backend> fmt::Debug for Process<R, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.name)
            .field("daemon", &self.daemon)
            .field("started", &self.started)
            .field("state", &self.state)
            .finish()
    }
}

impl<R, B: Backend> Process<R, B> {
    /// A process that will run `f(args)`; named `Process-N` until
    /// [`set_name`](Process::set_name). With [`Processes`], `args` is encoded now (a failure
    /// is returned by [`start`](Process::start)); with [`Threads`], it is moved to the thread
    /// as it is.
    pub fn new<A>(f: &Function<A, R>, args: A) -> Process<R, B>
    where
        B: Runs<A, R>,
    {
        Process {
            name: next_name(),
            daemon: false,
            executable: None,
            start_timeout: DEFAULT_START_TIMEOUT,
            started: false,
            state: B::prepare(f, args),
        }
    }

    /// The name: the child sees it as [`current_name`](super::current_name) (a thread has it
    /// as its OS thread name too).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets the name; before [`start`](Process::start).
    pub fn set_name(&mut self, name: impl Into<String>) {
        self.name = name.into();
    }

    /// Whether it was marked a daemon.
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }

    /// Makes the child die when this process ends, even by SIGKILL (see the [module
    /// documentation](super#daemons)); before [`start`](Process::start). With [`Threads`],
    /// recorded only: every thread ends with the process, daemon or not.
    pub fn set_daemon(&mut self, daemon: bool) {
        self.daemon = daemon;
    }

    /// Runs another executable instead of this one (it must call [`init`](super::init) with
    /// this function in its list); before [`start`](Process::start). A thread runs in this
    /// executable: with [`Threads`], `start` then fails with an
    /// [`Unsupported`](io::ErrorKind::Unsupported) I/O error.
    pub fn set_executable(&mut self, path: impl Into<PathBuf>) {
        self.executable = Some(path.into());
    }

    /// How long [`start`](Process::start) waits for the child to report that it runs
    /// ([`DEFAULT_START_TIMEOUT`] by default). No effect with [`Threads`]: a thread starts at
    /// once.
    pub fn set_start_timeout(&mut self, timeout: Duration) {
        self.start_timeout = timeout;
    }

    /// The child's process id, once started; always `None` with [`Threads`] (a thread has no
    /// process id of its own).
    pub fn pid(&self) -> Option<u32> {
        B::pid(&self.state)
    }

    /// Asks the child to stop (SIGTERM); a child that has exited is left alone. A thread
    /// cannot be stopped from outside: with [`Threads`], an
    /// [`Unsupported`](io::ErrorKind::Unsupported) I/O error while it runs (make its function
    /// return instead), `Ok` once it has ended. An error before [`start`](Process::start).
    pub fn terminate(&mut self) -> Result<()> {
        self.signal(false)
    }

    /// Kills the child (SIGKILL); a child that has exited is left alone. With [`Threads`], as
    /// [`terminate`](Process::terminate): a thread cannot be killed either.
    pub fn kill(&mut self) -> Result<()> {
        self.signal(true)
    }

    fn signal(&mut self, kill: bool) -> Result<()> {
        if !self.started {
            return Err(not_started(&self.name));
        }
        B::signal(&mut self.state, &self.name, kill)
    }
}

impl<R, B: Returns<R>> Process<R, B> {
    /// Starts the child and waits until it runs the function. A child that cannot (the
    /// executable does not start, it does not call [`init`](super::init), the function is not
    /// in its list, the arguments do not decode) is an error here, and is reaped. With
    /// [`Threads`], errors are: an executable was set, or the OS refused a thread.
    pub fn start(&mut self) -> Result<()> {
        if self.started {
            return Err(Error::InvalidInput(format!("{} was started already", self.name)));
        }
        let settings = sealed::Settings {
            name: &self.name,
            daemon: self.daemon,
            executable: self.executable.as_deref(),
            start_timeout: self.start_timeout,
        };
        B::start(&mut self.state, settings)?;
        self.started = true;
        Ok(())
    }

    /// Whether it was started and has not exited.
    pub fn is_alive(&mut self) -> bool {
        self.started && self.exitcode().is_none()
    }

    /// The exit code once it has exited: 0 after the function returned,
    /// [`EXIT_PANICKED`](super::EXIT_PANICKED) after a panic, minus the signal number if a
    /// signal ended a child (as CPython's). `None` while it runs or before it started.
    pub fn exitcode(&mut self) -> Option<i32> {
        if !self.started {
            return None;
        }
        B::exitcode(&mut self.state)
    }

    /// Waits for it to exit, receiving a child's result meanwhile (so a large result cannot
    /// block it), and returns the exit code.
    pub fn join(&mut self) -> Result<i32> {
        let code = self.join_until(None)?;
        code.ok_or_else(|| still_running(&self.name))
    }

    /// As [`join`](Process::join), waiting at most `timeout`: `None` if it still runs then.
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<Option<i32>> {
        self.join_until(deadline_of(Some(timeout)))
    }

    fn join_until(&mut self, deadline: Option<Instant>) -> Result<Option<i32>> {
        if !self.started {
            return Err(not_started(&self.name));
        }
        B::join(&mut self.state, deadline)
    }

    /// Joins it and returns what the function returned. Errors: [`Error::Remote`] of kind
    /// [`Panic`](crate::RemoteKind::Panic) with the panic message,
    /// [`Exit`](crate::RemoteKind::Exit) when a child ended without a result (killed, for
    /// instance), [`Encode`](crate::RemoteKind::Encode) when its result could not be encoded;
    /// [`Error::Decode`] for a result that is not an `R`. The result can be taken once.
    pub fn result(&mut self) -> Result<R> {
        let code = self.join()?;
        self.take_result(code)
    }

    /// As [`result`](Process::result), waiting at most `timeout`: `None` if it still runs
    /// then (ask again later).
    pub fn result_timeout(&mut self, timeout: Duration) -> Result<Option<R>> {
        match self.join_timeout(timeout)? {
            Some(code) => self.take_result(code).map(Some),
            None => Ok(None),
        }
    }

    fn take_result(&mut self, code: i32) -> Result<R> {
        let (name, pid) = (&self.name, B::pid(&self.state));
        let ended = || match pid {
            Some(pid) => format!("{name} (pid {pid}) exited with code {code}"),
            None => format!("{name} exited with code {code}"),
        };
        B::take(&mut self.state, &ended)
    }
}

/// pprocess's channel: this side's connection to a child from [`start`](super::start) (or,
/// with [`Threads`], to a thread from [`dummy::process::start`](crate::dummy::process::start)),
/// with its pid. Dereferences to the [`Connection`].
pub struct Channel<B: Backend> {
    pub(super) conn: Connection,
    pub(super) peer: B::Peer,
}

impl<B: Backend> fmt::Debug for Channel<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel").field("conn", &self.conn).field("peer", &self.peer).finish()
    }
}

impl<B: Backend> Channel<B> {
    /// The child's process id. With [`Threads`], a number unique in this program (threads
    /// have no process id): what `waitall` reports it by.
    pub fn pid(&self) -> u32 {
        B::peer_pid(&self.peer)
    }

    /// Waits for the other side to end and returns its exit code.
    pub fn join(&self) -> Result<i32> {
        let code = B::peer_join(&self.peer, None)?;
        code.ok_or_else(|| still_running(&format!("pid {}", self.pid())))
    }

    /// As [`join`](Channel::join), waiting at most `timeout`: `None` if the other side still
    /// runs then.
    pub fn join_timeout(&self, timeout: Duration) -> Result<Option<i32>> {
        B::peer_join(&self.peer, deadline_of(Some(timeout)))
    }

    /// The exit code, once the other side has ended (see [`Process::exitcode`]).
    pub fn exitcode(&self) -> Option<i32> {
        B::peer_exitcode(&self.peer)
    }

    /// Whether the other side has not ended.
    pub fn is_alive(&self) -> bool {
        B::peer_alive(&self.peer)
    }

    /// Asks the child to stop (SIGTERM). With [`Threads`], an
    /// [`Unsupported`](io::ErrorKind::Unsupported) I/O error while the thread runs, `Ok` once
    /// it has ended: dropping this side's connection is how to tell a thread to stop (its
    /// receives fail with [`Error::Closed`]).
    pub fn terminate(&self) -> Result<()> {
        B::peer_signal(&self.peer, false)
    }

    /// Kills the child (SIGKILL). With [`Threads`], as [`terminate`](Channel::terminate).
    pub fn kill(&self) -> Result<()> {
        B::peer_signal(&self.peer, true)
    }

    /// The connection alone (`waitall` still reports the other side).
    pub fn into_connection(self) -> Connection {
        self.conn
    }
}

impl<B: Backend> Deref for Channel<B> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl<B: Backend> DerefMut for Channel<B> {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}
