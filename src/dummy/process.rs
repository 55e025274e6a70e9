//! [`Process`] as a thread, and pprocess's [`start`] and [`waitall`] over threads: the
//! [`process`](crate::process) API where a "child" is a thread of this process.
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
//! assert_eq!(p.result(None)?, 144);
//! assert_eq!(p.exitcode(), Some(0));
//! # Ok::<(), procwire::Error>(())
//! ```
//!
//! # Differences from child processes
//!
//! - Arguments and results are moved to and from the thread, not encoded: they need to be
//!   `Send + 'static`, not serde types, and a value that would not encode works here.
//! - A thread cannot be stopped from outside: [`Process::terminate`] and [`Process::kill`]
//!   return an [`Unsupported`](std::io::ErrorKind::Unsupported) I/O error while it runs.
//!   Make the function return instead (when an event is set, or a queue says so).
//! - A thread has no process id ([`Process::pid`] is `None`) and no executable
//!   ([`Process::set_executable`] makes `start` fail). A [`Channel`]'s
//!   [`pid`](Channel::pid) is a number unique in this program, not an OS process id.
//! - A panic is caught and reported as in a child (exit code [`EXIT_PANICKED`], the result
//!   an [`Error::Remote`] of kind `"panic"`), but `std::process::exit` or an abort in the
//!   function ends the whole program.
//! - The daemon flag is recorded only: threads never outlive the process, daemons or not.
//! - [`init`], [`set_child_args`] and [`use_test_entry`] do nothing; they exist so that the
//!   same `main` (or test entry point) compiles in both modes.
//! - Nothing here works with [`wait`](crate::wait()) (a thread has no sentinel), and there is
//!   no fork-style `create` nor `Exchange`: use [`Channel`]s and their connections directly.

use std::fmt;
use std::io;
use std::ops::{Deref, DerefMut};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

pub use crate::process::{
    ChannelFunction, DEFAULT_START_TIMEOUT, EXIT_PANICKED, EXIT_START_FAILED, Function,
};

use crate::process::threads::spawn_named;
use crate::process::{Got, Outcome};
use crate::util::deadline_of;
use crate::util::panic_message;
use crate::util::{lock, wait_until};
use crate::{Connection, Error, Result};

static COUNTER: AtomicU64 = AtomicU64::new(1);
static NEXT_ID: AtomicU32 = AtomicU32::new(1);

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

fn unsupported(what: &str) -> Error {
    Error::Io(io::Error::new(io::ErrorKind::Unsupported, what.to_string()))
}

fn cannot_stop(name: &str) -> Error {
    unsupported(&format!(
        "{name} is a thread (procwire::dummy), and a thread cannot be terminated or killed: \
         make its function return instead"
    ))
}

/// The exit code of a thread, once it ended: 0 after the function returned,
/// [`EXIT_PANICKED`] after a panic.
struct Exit {
    id: u32,
    code: Mutex<Option<i32>>,
    cv: Condvar,
    /// Its code was handed out through its channel: [`waitall`] does not report it.
    reaped: AtomicBool,
}

impl Exit {
    fn new() -> Arc<Exit> {
        Arc::new(Exit {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            code: Mutex::new(None),
            cv: Condvar::new(),
            reaped: AtomicBool::new(false),
        })
    }

    fn set(&self, code: i32) {
        *lock(&self.code) = Some(code);
        self.cv.notify_all();
        // Taken after the code is set, so that a waitall holding the list sees it or waits.
        let _started = lock(&STARTED);
        STARTED_CHANGED.notify_all();
    }

    fn code(&self) -> Option<i32> {
        *lock(&self.code)
    }

    fn wait(&self, timeout: Option<Duration>) -> Option<i32> {
        let deadline = deadline_of(timeout);
        let mut code = lock(&self.code);
        while code.is_none() {
            code = wait_until(&self.cv, code, deadline)?;
        }
        *code
    }
}

struct Running<R> {
    exit: Arc<Exit>,
    got: Arc<Mutex<Got<R>>>,
}

/// A function running on a thread, shaped like [`process::Process`](crate::process::Process)
/// (and CPython's `threading.Thread` with a result): create it with
/// [`new`](Process::new), [`start`](Process::start) it, then [`join`](Process::join) it or
/// take its [`result`](Process::result).
///
/// Dropping a `Process` neither waits for nor stops the thread. See the [module
/// documentation](self) for what a thread cannot do.
pub struct Process<R> {
    task: Option<Box<dyn FnOnce() -> R + Send>>,
    name: String,
    daemon: bool,
    executable: Option<PathBuf>,
    start_timeout: Duration,
    running: Option<Running<R>>,
}

impl<R> fmt::Debug for Process<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.name)
            .field("daemon", &self.daemon)
            .field("started", &self.running.is_some())
            .field("exitcode", &self.running.as_ref().and_then(|r| r.exit.code()))
            .finish()
    }
}

impl<R> Process<R> {
    /// The name; the thread has it as its OS thread name and sees it as [`current_name`].
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

    /// Marks it a daemon. Recorded only: every thread ends with the process, daemon or not
    /// (a daemon child process also dies with its parent; one that is not outlives it).
    pub fn set_daemon(&mut self, daemon: bool) {
        self.daemon = daemon;
    }

    /// A thread runs in this executable: with another one set, [`start`](Process::start)
    /// fails with an [`Unsupported`](io::ErrorKind::Unsupported) I/O error.
    pub fn set_executable(&mut self, path: impl Into<PathBuf>) {
        self.executable = Some(path.into());
    }

    /// Kept for the process version's signature: a thread starts at once, so there is nothing
    /// to time out.
    pub fn set_start_timeout(&mut self, timeout: Duration) {
        self.start_timeout = timeout;
    }

    /// Always `None`: a thread has no process id of its own (the process version gives the
    /// child's).
    pub fn pid(&self) -> Option<u32> {
        None
    }

    /// A thread cannot be terminated: an [`Unsupported`](io::ErrorKind::Unsupported) I/O error
    /// while it runs; `Ok` once it has ended (as the process version leaves an exited child
    /// alone), an error before it started.
    pub fn terminate(&mut self) -> Result<()> {
        self.stop()
    }

    /// As [`terminate`](Process::terminate): a thread cannot be killed either.
    pub fn kill(&mut self) -> Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> Result<()> {
        match &self.running {
            None => Err(Error::InvalidInput(format!("{} was not started", self.name))),
            Some(run) if run.exit.code().is_some() => Ok(()),
            Some(_) => Err(cannot_stop(&self.name)),
        }
    }

    /// Whether the thread was started and has not ended.
    pub fn is_alive(&mut self) -> bool {
        self.running.as_ref().is_some_and(|r| r.exit.code().is_none())
    }

    /// The exit code once the thread has ended: 0 after the function returned,
    /// [`EXIT_PANICKED`] after a panic. `None` while it runs or before it started.
    pub fn exitcode(&mut self) -> Option<i32> {
        self.running.as_ref().and_then(|r| r.exit.code())
    }

    /// Waits for the thread to end, at most `timeout` (`None`: as long as it takes). Returns
    /// the exit code, or `None` if it still runs.
    pub fn join(&mut self, timeout: Option<Duration>) -> Result<Option<i32>> {
        match &self.running {
            None => Err(Error::InvalidInput(format!("{} was not started", self.name))),
            Some(run) => Ok(run.exit.wait(timeout)),
        }
    }

    /// Joins the thread (at most `timeout`) and returns what the function returned. Errors:
    /// [`Error::Remote`] of kind `"panic"` with the panic message; [`Error::Timeout`] if it
    /// still runs. The result can be taken once.
    pub fn result(&mut self, timeout: Option<Duration>) -> Result<R> {
        let Some(code) = self.join(timeout)? else {
            return Err(Error::Timeout(format!("waiting for {} to finish", self.name)));
        };
        let Some(run) = self.running.as_ref() else {
            return Err(Error::InvalidInput("a joined process is not running".into()));
        };
        lock(&run.got).take(|| format!("{} exited with code {code}", self.name))
    }
}

impl<R: Send + 'static> Process<R> {
    /// A thread that will run `f(args)`; named `Process-N` until
    /// [`set_name`](Process::set_name). `args` is moved to the thread as it is.
    pub fn new<A: Send + 'static>(f: &Function<A, R>, args: A) -> Process<R> {
        let (_, f) = f.parts();
        Process {
            task: Some(Box::new(move || f(args))),
            name: format!("Process-{}", COUNTER.fetch_add(1, Ordering::Relaxed)),
            daemon: false,
            executable: None,
            start_timeout: DEFAULT_START_TIMEOUT,
            running: None,
        }
    }

    /// Starts the thread. Errors: started already, an executable was set, or the OS refused
    /// a thread.
    pub fn start(&mut self) -> Result<()> {
        if self.running.is_some() || self.task.is_none() {
            return Err(Error::InvalidInput(format!("{} was started already", self.name)));
        }
        if let Some(exe) = &self.executable {
            return Err(unsupported(&format!(
                "{} is a thread (procwire::dummy): it cannot run another executable ({})",
                self.name,
                exe.display()
            )));
        }
        let Some(task) = self.task.take() else {
            return Err(Error::InvalidInput(format!("{} was started already", self.name)));
        };
        let exit = Exit::new();
        let got = Arc::new(Mutex::new(Got::Pending));
        let (e, g) = (exit.clone(), got.clone());
        spawn_named(&self.name, move || {
            let (outcome, code) = match catch_unwind(AssertUnwindSafe(task)) {
                Ok(r) => (Got::Value(Outcome::Returned(r)), 0),
                Err(p) => (Got::Value(Outcome::Panicked(panic_message(&*p))), EXIT_PANICKED),
            };
            *lock(&g) = outcome;
            e.set(code);
        })?;
        self.running = Some(Running { exit, got });
        Ok(())
    }
}

/// Threads started by [`start`], for [`waitall`].
static STARTED: Mutex<Vec<Arc<Exit>>> = Mutex::new(Vec::new());
static STARTED_CHANGED: Condvar = Condvar::new();

/// pprocess's channel over a thread: this side's connection to a thread from [`start`].
/// Dereferences to the [`Connection`].
pub struct Channel {
    conn: Connection,
    exit: Arc<Exit>,
    name: String,
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("name", &self.name)
            .field("pid", &self.exit.id)
            .field("exitcode", &self.exit.code())
            .finish()
    }
}

impl Channel {
    /// A number for the thread, unique in this program (threads have no process id): what
    /// [`waitall`] reports it by.
    pub fn pid(&self) -> u32 {
        self.exit.id
    }

    /// Waits at most `timeout` (`None`: as long as it takes) for the thread to end; its exit
    /// code, or `None` if it still runs.
    pub fn join(&self, timeout: Option<Duration>) -> Result<Option<i32>> {
        let code = self.exit.wait(timeout);
        if code.is_some() {
            self.exit.reaped.store(true, Ordering::SeqCst);
        }
        Ok(code)
    }

    /// The exit code, once the thread has ended (0, or [`EXIT_PANICKED`]).
    pub fn exitcode(&self) -> Option<i32> {
        let code = self.exit.code();
        if code.is_some() {
            self.exit.reaped.store(true, Ordering::SeqCst);
        }
        code
    }

    /// Whether the thread has not ended.
    pub fn is_alive(&self) -> bool {
        self.exit.code().is_none()
    }

    /// A thread cannot be terminated: an [`Unsupported`](io::ErrorKind::Unsupported) I/O error
    /// while it runs, `Ok` once it has ended. Dropping this side's connection is how to tell a
    /// thread to stop (its receives fail with [`Error::Closed`]).
    pub fn terminate(&self) -> Result<()> {
        match self.exit.code() {
            Some(_) => Ok(()),
            None => Err(cannot_stop(&self.name)),
        }
    }

    /// As [`terminate`](Channel::terminate).
    pub fn kill(&self) -> Result<()> {
        self.terminate()
    }

    /// The connection alone ([`waitall`] still reports the thread).
    pub fn into_connection(self) -> Connection {
        self.conn
    }
}

impl Deref for Channel {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl DerefMut for Channel {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

/// pprocess's `start` over a thread: runs `f(channel, args)` on a new thread and returns this
/// side's end of the channel. [`waitall`] waits for it. A panic in `f` ends the thread with
/// [`EXIT_PANICKED`] (and drops its end of the channel: receives here get
/// [`Error::Closed`]).
///
/// ```
/// use procwire::Connection;
/// use procwire::dummy::process::{ChannelFunction, start, waitall};
///
/// fn squares(mut ch: Connection, upto: u64) {
///     for i in 0..upto {
///         if ch.send(&(i * i)).is_err() {
///             return;
///         }
///     }
/// }
/// static SQUARES: ChannelFunction<u64> = ChannelFunction::new("squares", squares);
///
/// let mut ch = start(&SQUARES, 3)?;
/// for i in 0..3u64 {
///     assert_eq!(ch.recv::<u64>()?, i * i);
/// }
/// assert!(waitall(None)?.contains(&(ch.pid(), 0)));
/// # Ok::<(), procwire::Error>(())
/// ```
pub fn start<A: Send + 'static>(f: &ChannelFunction<A>, args: A) -> Result<Channel> {
    let (_, f) = f.parts();
    let (mine, theirs) = crate::connection::pipe_in_process(true);
    let name = format!("Process-{}", COUNTER.fetch_add(1, Ordering::Relaxed));
    let exit = Exit::new();
    {
        let mut started = lock(&STARTED);
        started.retain(|e| !(e.reaped.load(Ordering::SeqCst) && e.code().is_some()));
        started.push(exit.clone());
    }
    let e = exit.clone();
    let spawned = spawn_named(&name, move || {
        let code = match catch_unwind(AssertUnwindSafe(move || f(theirs, args))) {
            Ok(()) => 0,
            Err(_) => EXIT_PANICKED,
        };
        e.set(code);
    });
    if let Err(err) = spawned {
        lock(&STARTED).retain(|e| !Arc::ptr_eq(e, &exit));
        return Err(err);
    }
    Ok(Channel { conn: mine, exit, name })
}

/// pprocess's `waitall` over threads: waits for every thread started by [`start`] (whose exit
/// code was not taken through its channel already) to end, at most `timeout` (`None`: as
/// long as it takes), and returns their [`pid`](Channel::pid)s and exit codes. After a
/// timeout ([`Error::Timeout`]) the threads still running stay for the next call.
pub fn waitall(timeout: Option<Duration>) -> Result<Vec<(u32, i32)>> {
    let deadline = deadline_of(timeout);
    let mut done = Vec::new();
    let mut started = lock(&STARTED);
    loop {
        started.retain(|e| match e.code() {
            Some(code) => {
                if !e.reaped.swap(true, Ordering::SeqCst) {
                    done.push((e.id, code));
                }
                false
            }
            None => true,
        });
        if started.is_empty() {
            return Ok(done);
        }
        let left = started.len();
        started = match wait_until(&STARTED_CHANGED, started, deadline) {
            Some(g) => g,
            None => {
                return Err(Error::Timeout(format!(
                    "waiting for threads ({} ended, {left} still running)",
                    done.len()
                )));
            }
        };
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

    fn not_serde(x: std::sync::Arc<Mutex<Vec<u8>>>) -> usize {
        lock(&x).push(1);
        lock(&x).len()
    }
    static NOT_SERDE: Function<std::sync::Arc<Mutex<Vec<u8>>>, usize> = Function::new("not_serde", not_serde);

    #[test]
    fn a_running_thread_cannot_be_terminated_and_has_no_pid() {
        let mut p = Process::new(&SLEEP_MS, 200);
        assert!(p.terminate().is_err(), "not started");
        p.start().unwrap();
        assert_eq!(p.pid(), None);
        for r in [p.terminate(), p.kill()] {
            match r {
                Err(Error::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::Unsupported),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(p.join(None).unwrap(), Some(0));
        p.terminate().unwrap();
    }

    #[test]
    fn another_executable_is_refused() {
        let mut p = Process::new(&SLEEP_MS, 0);
        p.set_executable("/bin/true");
        match p.start() {
            Err(Error::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::Unsupported),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn arguments_need_not_be_serde() {
        let shared = std::sync::Arc::new(Mutex::new(vec![0u8]));
        let mut p = Process::new(&NOT_SERDE, shared.clone());
        p.start().unwrap();
        assert_eq!(p.result(None).unwrap(), 2);
        assert_eq!(*lock(&shared), [0, 1]);
    }

    #[test]
    fn a_name_with_a_nul_byte_still_starts() {
        let mut p = Process::new(&SLEEP_MS, 1);
        p.set_name("odd\0name");
        p.start().unwrap();
        assert_eq!(p.result(None).unwrap(), 1);
    }

    fn wait_for_close(mut ch: Connection, _: ()) {
        let _ = ch.recv::<u8>();
    }
    static WAIT_FOR_CLOSE: ChannelFunction<()> = ChannelFunction::new("wait_for_close", wait_for_close);

    #[test]
    fn waitall_reports_each_thread_once_and_times_out() {
        let ch = start(&WAIT_FOR_CLOSE, ()).unwrap();
        let pid = ch.pid();
        assert!(ch.terminate().is_err());
        assert!(matches!(waitall(Some(Duration::from_millis(20))), Err(Error::Timeout(_))));
        drop(ch.into_connection());
        let mut seen = Vec::new();
        while !seen.iter().any(|(p, _)| *p == pid) {
            seen.extend(waitall(Some(Duration::from_secs(60))).unwrap());
        }
        assert!(seen.contains(&(pid, 0)));
        assert!(!waitall(Some(Duration::from_secs(60))).unwrap().iter().any(|(p, _)| *p == pid));
    }
}
