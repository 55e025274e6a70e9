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
//!   [`Error::Remote`] of kind `"start"`.
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
//! The messages between parent and child are specified in SPEC.md, section 12.3.

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Write};
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::transport;
use crate::util::{deadline_of, lock, panic_message};
use crate::wait::{Waitable, wait};
use crate::{Connection, Error, Result};

/// Set in a child to `VERSION:PARENT_PID`: "you are a procwire child of this parent".
const ENV_PROCESS: &str = "PROCWIRE_PROCESS";
/// The child's end of the bootstrap connection (SPEC.md §9 value format).
const ENV_CONN: &str = "PROCWIRE_PROCESS_CONN";
/// The write end of the exit sentinel pipe.
const ENV_SENTINEL: &str = "PROCWIRE_PROCESS_SENTINEL";
/// The bootstrap protocol version (SPEC.md §12.3).
const VERSION: u32 = 1;
/// The exit code of a child that could not run its function.
pub const EXIT_START_FAILED: i32 = 2;
/// The exit code of a child whose function panicked (as CPython's 1 for an exception).
pub const EXIT_PANICKED: i32 = 1;
/// How long [`Process::start`] waits by default for the child to report that it runs.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(60);

static INIT_CALLED: AtomicBool = AtomicBool::new(false);
static CHILD_ARGS: Mutex<Vec<OsString>> = Mutex::new(Vec::new());
static NAME: OnceLock<String> = OnceLock::new();
static COUNTER: AtomicU64 = AtomicU64::new(1);

/// The first message: parent to child, CBOR.
#[derive(Debug, Serialize, Deserialize)]
struct Start {
    version: u32,
    function: String,
    name: String,
    channel: bool,
    daemon: bool,
}

/// The child's answer to [`Start`] and the arguments.
#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    Started { pid: u32 },
    Refused { reason: String },
}

/// The last message of a child running a [`Function`].
#[derive(Debug, Serialize, Deserialize)]
enum Outcome<R> {
    Returned(R),
    Panicked(String),
    Unsendable(String),
}

mod sealed {
    /// The child side of an [`Entry`](super::Entry): reads the arguments, runs, reports.
    pub trait Sealed {
        /// Runs the function over the bootstrap connection; returns the exit code.
        fn run_child(&self, conn: crate::Connection) -> i32;

        /// In a pool worker: runs the function over `n` CBOR arguments that follow each other
        /// in `args`, appending each task's outcome to `out` (SPEC.md §12.4). Only a
        /// [`Function`](super::Function) can; other entries report every task as not runnable.
        fn run_tasks(&self, args: &[u8], n: u64, out: &mut Vec<u8>) -> crate::pool::Ran {
            crate::pool::not_runnable(args, n, out)
        }
    }
}

/// A function a child process can run: a [`Function`] or a [`ChannelFunction`]. Lists of
/// these (`&[&dyn Entry]`) go to [`init`].
pub trait Entry: sealed::Sealed + Sync {
    /// The name the parent asks for.
    fn name(&self) -> &'static str;
    /// Whether the function takes a channel ([`start`]) rather than returning a value.
    fn takes_channel(&self) -> bool;
}

/// A function `fn(A) -> R` that a [`Process`] runs in a child; its return value (or its panic
/// message) comes back to the parent.
pub struct Function<A, R> {
    name: &'static str,
    f: fn(A) -> R,
}

impl<A, R> Function<A, R> {
    /// Names `f` for child processes; `name` must be unique among the functions given to
    /// [`init`].
    pub const fn new(name: &'static str, f: fn(A) -> R) -> Self {
        Function { name, f }
    }

    /// The name and the function, for [`dummy`](crate::dummy), which calls it on a thread.
    pub(crate) fn parts(&self) -> (&'static str, fn(A) -> R) {
        (self.name, self.f)
    }
}

impl<A, R> fmt::Debug for Function<A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Function").field("name", &self.name).finish()
    }
}

impl<A: DeserializeOwned, R: Serialize> sealed::Sealed for Function<A, R> {
    fn run_child(&self, mut conn: Connection) -> i32 {
        let Some(args) = receive_args::<A>(&mut conn, self.name) else { return EXIT_START_FAILED };
        let f = self.f;
        let code = match catch_unwind(AssertUnwindSafe(move || f(args))) {
            Ok(r) => match conn.send(&Outcome::Returned(&r)) {
                Ok(()) => 0,
                Err(Error::Encode(e)) => {
                    let _ = conn.send(&Outcome::<()>::Unsendable(e));
                    EXIT_PANICKED
                }
                // The parent is gone: nobody to tell.
                Err(_) => EXIT_PANICKED,
            },
            Err(p) => {
                let _ = conn.send(&Outcome::<()>::Panicked(panic_message(&*p)));
                EXIT_PANICKED
            }
        };
        let _ = conn.close();
        code
    }

    fn run_tasks(&self, args: &[u8], n: u64, out: &mut Vec<u8>) -> crate::pool::Ran {
        crate::pool::run_tasks(self.f, args, n, out)
    }
}

impl<A: DeserializeOwned, R: Serialize> Entry for Function<A, R> {
    fn name(&self) -> &'static str {
        self.name
    }
    fn takes_channel(&self) -> bool {
        false
    }
}

/// A function `fn(Connection, A)` that [`start`] runs in a child: it gets its end of the
/// channel first, as in pprocess. Its return is the end of the child (exit code 0; 1 after a
/// panic, whose message goes to the child's stderr).
pub struct ChannelFunction<A> {
    name: &'static str,
    f: fn(Connection, A),
}

impl<A> ChannelFunction<A> {
    /// Names `f` for child processes; `name` must be unique among the functions given to
    /// [`init`].
    pub const fn new(name: &'static str, f: fn(Connection, A)) -> Self {
        ChannelFunction { name, f }
    }

    /// The name and the function, for [`dummy`](crate::dummy), which calls it on a thread.
    pub(crate) fn parts(&self) -> (&'static str, fn(Connection, A)) {
        (self.name, self.f)
    }
}

impl<A> fmt::Debug for ChannelFunction<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelFunction").field("name", &self.name).finish()
    }
}

impl<A: DeserializeOwned> sealed::Sealed for ChannelFunction<A> {
    fn run_child(&self, mut conn: Connection) -> i32 {
        let Some(args) = receive_args::<A>(&mut conn, self.name) else { return EXIT_START_FAILED };
        let f = self.f;
        match catch_unwind(AssertUnwindSafe(move || f(conn, args))) {
            Ok(()) => 0,
            Err(_) => EXIT_PANICKED,
        }
    }
}

impl<A: DeserializeOwned> Entry for ChannelFunction<A> {
    fn name(&self) -> &'static str {
        self.name
    }
    fn takes_channel(&self) -> bool {
        true
    }
}

/// In the child: decodes the arguments and says `Started`, or says `Refused`.
pub(crate) fn receive_args<A: DeserializeOwned>(conn: &mut Connection, name: &str) -> Option<A> {
    match conn.recv::<A>() {
        Ok(a) => {
            conn.set_read_timeout(None);
            conn.send(&Reply::Started { pid: std::process::id() }).ok()?;
            Some(a)
        }
        Err(e) => {
            let reason =
                format!("the arguments for {name:?} do not decode as {}: {e}", std::any::type_name::<A>());
            let _ = conn.send(&Reply::Refused { reason });
            None
        }
    }
}

/// The hook at the top of `main`: in a process started as a child it runs the requested
/// function from `functions` and exits (never returning); anywhere else it returns at once.
///
/// A child that cannot run its function (not in `functions`, arguments that do not decode)
/// tells its parent why and exits with [`EXIT_START_FAILED`]. See the [module
/// documentation](self) for the rules.
pub fn init(functions: &[&dyn Entry]) {
    INIT_CALLED.store(true, Ordering::SeqCst);
    let Ok(value) = std::env::var(ENV_PROCESS) else { return };
    let Some((version, ppid)) = value.split_once(':') else { return };
    // Inherited by a process that some child started on its own: not a procwire child.
    if ppid.parse::<u32>().ok() != Some(transport::parent_id()) {
        return;
    }
    transport::keep_sentinel(ENV_SENTINEL);
    // Grandchildren are started the way this child was (in a test binary: the same test).
    set_child_args(std::env::args_os().skip(1));
    let code = run_child(functions, version);
    let _ = io::stdout().flush();
    std::process::exit(code);
}

fn run_child(functions: &[&dyn Entry], version: &str) -> i32 {
    let mut conn = match Connection::from_env(ENV_CONN) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("procwire child: cannot take the connection from the parent: {e}");
            return EXIT_START_FAILED;
        }
    };
    conn.set_read_timeout(Some(DEFAULT_START_TIMEOUT));
    let start: Start = match conn.recv() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("procwire child: no start message from the parent: {e}");
            return EXIT_START_FAILED;
        }
    };
    if start.daemon {
        transport::watch_parent();
    }
    let _ = NAME.set(start.name.clone());
    // The pool's worker is built in: it runs the tasks of any function in the list.
    if start.function == crate::pool::WORKER_ENTRY && start.channel && start.version == VERSION {
        return crate::pool::run_worker(conn, functions);
    }
    let exe = std::env::current_exe().map_or_else(|_| "this program".into(), |p| p.display().to_string());
    let mut found = functions.iter().filter(|f| f.name() == start.function);
    let refusal = match (found.next(), found.next()) {
        _ if version != VERSION.to_string() || start.version != VERSION => {
            Err(format!("bootstrap version {version}/{} is not {VERSION}", start.version))
        }
        (None, _) => Err(format!(
            "function {:?} is not registered: it is not in the list given to procwire::process::init \
             in {exe}",
            start.function
        )),
        (Some(_), Some(_)) => Err(format!("function name {:?} is registered twice in {exe}", start.function)),
        (Some(f), None) if f.takes_channel() != start.channel => Err(format!(
            "function {:?} {} a channel, but was started with {}",
            start.function,
            if f.takes_channel() { "takes" } else { "does not take" },
            if start.channel { "procwire::process::start" } else { "Process" },
        )),
        (Some(f), None) => Ok(*f),
    };
    match refusal {
        Ok(f) => f.run_child(conn),
        Err(reason) => {
            let _ = conn.send(&Reply::Refused { reason });
            EXIT_START_FAILED
        }
    }
}

/// The name of this process, as the parent gave it ([`Process::set_name`]); `None` outside a
/// child.
pub fn current_name() -> Option<&'static str> {
    NAME.get().map(String::as_str)
}

/// Sets the command-line arguments every child gets (none by default: a program whose `main`
/// calls [`init`] needs none; in a child, the arguments it was started with). Test binaries
/// use [`use_test_entry`].
pub fn set_child_args<I, S>(args: I)
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    *lock(&CHILD_ARGS) = args.into_iter().map(Into::into).collect();
}

/// In a `cargo test` binary: starts children as this binary running only the test `test_name`
/// (its full path, as `cargo test -- --list` prints it), which must call [`init`].
pub fn use_test_entry(test_name: &str) {
    set_child_args(["--exact", test_name, "--include-ignored", "--nocapture", "--test-threads=1", "-q"]);
}

/// What [`wait`](crate::wait()) watches for a child's exit: from a [`Process`] (through
/// `From`) or [`Channel::sentinel`]. A process that was not started yet counts as ready.
#[derive(Debug, Default)]
pub struct Sentinel {
    raw: Option<transport::Sentinel>,
}

impl Sentinel {
    pub(crate) fn raw(&self) -> Option<&transport::Sentinel> {
        self.raw.as_ref()
    }
}

/// A child's pid and, once reaped, its exit code.
#[derive(Debug)]
struct ChildState {
    pid: u32,
    status: Option<i32>,
}

impl ChildState {
    fn try_reap(&mut self) -> Result<Option<i32>> {
        if self.status.is_none() {
            self.status = transport::reap(self.pid, false)?;
        }
        Ok(self.status)
    }

    /// SIGTERM or SIGKILL, unless it has exited already (never to a reaped pid).
    fn signal(&mut self, kill: bool) -> Result<()> {
        if self.try_reap()?.is_none() {
            transport::signal(self.pid, kill)?;
        }
        Ok(())
    }
}

/// Waits until `try_reap` says the child is gone or `deadline` passes (`Ok(None)`).
fn join_child(
    mut try_reap: impl FnMut() -> Result<Option<i32>>,
    sentinel: &transport::Sentinel,
    deadline: Option<Instant>,
) -> Result<Option<i32>> {
    loop {
        if let Some(code) = try_reap()? {
            return Ok(Some(code));
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Ok(None);
        }
        // Rechecked by pid every 50 ms: a grandchild could hold the sentinel open.
        let slice = now + Duration::from_millis(50);
        if sentinel.wait(Some(deadline.map_or(slice, |d| d.min(slice))))? {
            // Exiting: the kernel closes descriptors a moment before the pid can be reaped.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// A child started for a crate-internal consumer (the pool's workers): as a [`Channel`]'s,
/// but not registered for [`waitall`], which must not wait for children it did not start.
#[derive(Debug)]
pub(crate) struct Child {
    state: Mutex<ChildState>,
    sentinel: transport::Sentinel,
    pid: u32,
}

impl Child {
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// The exit code, once the child has exited (reaping it).
    pub(crate) fn exitcode(&self) -> Result<Option<i32>> {
        lock(&self.state).try_reap()
    }

    /// SIGTERM or SIGKILL, unless it has exited already.
    pub(crate) fn signal(&self, kill: bool) -> Result<()> {
        lock(&self.state).signal(kill)
    }

    /// Waits at most `timeout` for the child to exit; its exit code, or `None`.
    pub(crate) fn join(&self, timeout: Option<Duration>) -> Result<Option<i32>> {
        join_child(|| lock(&self.state).try_reap(), &self.sentinel, deadline_of(timeout))
    }
}

/// Starts `function` (a name the child's `init` handles, with a channel) in a child, as
/// [`start`] does, without registering it for [`waitall`].
pub(crate) fn spawn_child(
    function: &'static str,
    args: &[u8],
    name: &str,
    daemon: bool,
) -> Result<(Connection, Child)> {
    let s = spawn(&SpawnOptions {
        function,
        channel: true,
        args,
        name,
        daemon,
        executable: None,
        start_timeout: DEFAULT_START_TIMEOUT,
    })?;
    let child = Child {
        state: Mutex::new(ChildState { pid: s.pid, status: None }),
        sentinel: s.sentinel,
        pid: s.pid,
    };
    Ok((s.conn, child))
}

/// What [`spawn`] needs to know.
struct SpawnOptions<'a> {
    function: &'static str,
    channel: bool,
    args: &'a [u8],
    name: &'a str,
    daemon: bool,
    executable: Option<&'a Path>,
    start_timeout: Duration,
}

/// A child that reported `Started`.
struct Spawned {
    conn: Connection,
    sentinel: transport::Sentinel,
    pid: u32,
}

fn spawn(o: &SpawnOptions<'_>) -> Result<Spawned> {
    if std::env::var_os(ENV_PROCESS).is_some() && !INIT_CALLED.load(Ordering::SeqCst) {
        return Err(Error::Io(io::Error::other(
            "this process was started as a procwire child, but its main did not call \
             procwire::process::init() before starting children of its own",
        )));
    }
    let exe = match o.executable {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()?,
    };
    let (mut conn, theirs) = crate::pipe(true)?;
    let mut cmd = Command::new(&exe);
    cmd.args(lock(&CHILD_ARGS).iter());
    cmd.env(ENV_PROCESS, format!("{VERSION}:{}", std::process::id()));
    theirs.pass_to_child(&mut cmd, ENV_CONN)?;
    let sentinel = transport::prepare_child(&mut cmd, ENV_SENTINEL, o.daemon)?;
    let pid = transport::spawn(cmd, o.daemon)
        .map_err(|e| Error::Io(io::Error::new(e.kind(), format!("cannot start {}: {e}", exe.display()))))?;
    drop(theirs);
    let mut child = ChildState { pid, status: None };
    let start = Start {
        version: VERSION,
        function: o.function.to_string(),
        name: o.name.to_string(),
        channel: o.channel,
        daemon: o.daemon,
    };
    // A child that died at once makes these fail; the receive below says how it ended.
    let _ = conn.send(&start).and_then(|()| conn.send_bytes(o.args));
    conn.set_read_timeout(Some(o.start_timeout));
    let fail = |child: &mut ChildState, what: String| -> Error {
        // Make sure it is gone and reaped; a short grace for one that is exiting anyway.
        let code = join_child(|| child.try_reap(), &sentinel, deadline_of(Some(Duration::from_secs(2))))
            .ok()
            .flatten()
            .or_else(|| {
                let _ = child.signal(true);
                transport::reap(child.pid, true).ok().flatten()
            });
        let how = code.map_or_else(|| "could not be reaped".to_string(), |c| format!("exit code {c}"));
        Error::Remote {
            kind: "start".into(),
            message: format!("child process {pid} ({}) {what} ({how})", exe.display()),
        }
    };
    match conn.recv::<Reply>() {
        Ok(Reply::Started { .. }) => {
            conn.set_read_timeout(None);
            Ok(Spawned { conn, sentinel, pid })
        }
        Ok(Reply::Refused { reason }) => Err(fail(&mut child, format!("did not start: {reason}"))),
        Err(e @ Error::Timeout(_)) => {
            Err(fail(&mut child, format!("did not report within {:?} ({e}); killed it", o.start_timeout)))
        }
        Err(e) => Err(fail(
            &mut child,
            format!(
                "ended before it ran {:?} ({e}): does its main call procwire::process::init first \
                 (in a test binary: is procwire::process::use_test_entry naming a test that calls it)?",
                o.function
            ),
        )),
    }
}

fn encode_args<A: Serialize>(args: &A) -> std::result::Result<Vec<u8>, String> {
    let mut v = Vec::new();
    ciborium::into_writer(args, &mut v).map_err(|e| e.to_string())?;
    Ok(v)
}

/// What became of a child's result.
#[derive(Debug)]
enum Got<R> {
    Pending,
    Value(Outcome<R>),
    Failed(Error),
    /// The connection ended without a result (the child was killed or exited early).
    Nothing,
    Taken,
}

#[derive(Debug)]
struct Running<R> {
    conn: Connection,
    child: ChildState,
    got: Got<R>,
}

impl<R: DeserializeOwned> Running<R> {
    /// Receives the result if it is (being) sent, waiting at most until `deadline` for the rest
    /// of it.
    fn collect(&mut self, deadline: Option<Instant>) {
        if !matches!(self.got, Got::Pending) {
            return;
        }
        match self.conn.poll(Some(Duration::ZERO)) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                self.got = Got::Failed(e);
                return;
            }
        }
        self.conn.set_read_timeout(deadline.map(|d| d.saturating_duration_since(Instant::now())));
        self.got = match self.conn.recv::<Outcome<R>>() {
            Ok(o) => Got::Value(o),
            Err(Error::Closed | Error::Truncated { .. }) => Got::Nothing,
            Err(Error::Timeout(_)) => Got::Pending,
            Err(e) => Got::Failed(e),
        };
    }
}

/// A function running in a child process, shaped like CPython's `multiprocessing.Process`:
/// create it with [`new`](Process::new), [`start`](Process::start) it, then
/// [`join`](Process::join) it or take its [`result`](Process::result).
///
/// Dropping a `Process` neither waits for nor kills the child (as `std::process::Child`).
#[derive(Debug)]
pub struct Process<R> {
    function: &'static str,
    args: std::result::Result<Vec<u8>, String>,
    name: String,
    daemon: bool,
    executable: Option<PathBuf>,
    start_timeout: Duration,
    sentinel: Sentinel,
    running: Option<Running<R>>,
    _result: PhantomData<fn() -> R>,
}

impl<R> Process<R> {
    /// The name (the child sees it as [`current_name`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets the name; before [`start`](Process::start).
    pub fn set_name(&mut self, name: impl Into<String>) {
        self.name = name.into();
    }

    /// Whether the child dies with this process.
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }

    /// Makes the child die when this process ends, even by SIGKILL (see the [module
    /// documentation](self#daemons)); before [`start`](Process::start).
    pub fn set_daemon(&mut self, daemon: bool) {
        self.daemon = daemon;
    }

    /// Runs another executable instead of this one (it must call [`init`] with this function
    /// in its list); before [`start`](Process::start).
    pub fn set_executable(&mut self, path: impl Into<PathBuf>) {
        self.executable = Some(path.into());
    }

    /// How long [`start`](Process::start) waits for the child to report that it runs
    /// ([`DEFAULT_START_TIMEOUT`] by default).
    pub fn set_start_timeout(&mut self, timeout: Duration) {
        self.start_timeout = timeout;
    }

    /// The child's process id, once started.
    pub fn pid(&self) -> Option<u32> {
        self.running.as_ref().map(|r| r.child.pid)
    }

    /// What [`wait`](crate::wait()) watches for this child's exit (also `Waitable::from(&p)`).
    pub fn sentinel(&self) -> &Sentinel {
        &self.sentinel
    }

    /// Asks the child to stop (SIGTERM); a child that has exited is left alone.
    pub fn terminate(&mut self) -> Result<()> {
        self.signal(false)
    }

    /// Kills the child (SIGKILL); a child that has exited is left alone.
    pub fn kill(&mut self) -> Result<()> {
        self.signal(true)
    }

    fn signal(&mut self, kill: bool) -> Result<()> {
        match self.running.as_mut() {
            Some(run) => run.child.signal(kill),
            None => Err(Error::Io(io::Error::other(format!("{} was not started", self.name)))),
        }
    }
}

impl<R: DeserializeOwned> Process<R> {
    /// A process that will run `f(args)`; named `Process-N` until [`set_name`](Process::set_name).
    pub fn new<A: Serialize>(f: &Function<A, R>, args: A) -> Process<R> {
        Process {
            function: f.name,
            args: encode_args(&args),
            name: format!("Process-{}", COUNTER.fetch_add(1, Ordering::Relaxed)),
            daemon: false,
            executable: None,
            start_timeout: DEFAULT_START_TIMEOUT,
            sentinel: Sentinel::default(),
            running: None,
            _result: PhantomData,
        }
    }

    /// Starts the child and waits until it runs the function. A child that cannot (the
    /// executable does not start, it does not call [`init`], the function is not in its list,
    /// the arguments do not decode) is an error here, and is reaped.
    pub fn start(&mut self) -> Result<()> {
        if self.running.is_some() {
            return Err(Error::Io(io::Error::other(format!("{} was started already", self.name))));
        }
        let args = self.args.as_ref().map_err(|e| Error::Encode(e.clone()))?;
        let s = spawn(&SpawnOptions {
            function: self.function,
            channel: false,
            args,
            name: &self.name,
            daemon: self.daemon,
            executable: self.executable.as_deref(),
            start_timeout: self.start_timeout,
        })?;
        self.sentinel = Sentinel { raw: Some(s.sentinel) };
        self.running =
            Some(Running { conn: s.conn, child: ChildState { pid: s.pid, status: None }, got: Got::Pending });
        Ok(())
    }

    /// Whether the child was started and has not exited.
    pub fn is_alive(&mut self) -> bool {
        self.exitcode().is_none() && self.running.is_some()
    }

    /// The exit code once the child has exited: 0 after the function returned,
    /// [`EXIT_PANICKED`] after a panic, minus the signal number if a signal ended it (as
    /// CPython's). `None` while it runs or before it started.
    pub fn exitcode(&mut self) -> Option<i32> {
        let run = self.running.as_mut()?;
        run.collect(Some(Instant::now()));
        run.child.try_reap().ok().flatten()
    }

    /// Waits for the child to exit, at most `timeout` (`None`: as long as it takes), receiving
    /// its result meanwhile (so a large result cannot block it). Returns the exit code, or
    /// `None` if it still runs.
    pub fn join(&mut self, timeout: Option<Duration>) -> Result<Option<i32>> {
        let deadline = deadline_of(timeout);
        let Some(run) = self.running.as_mut() else {
            return Err(Error::Io(io::Error::other(format!("{} was not started", self.name))));
        };
        let Some(sentinel) = self.sentinel.raw.as_ref() else {
            return Err(Error::Io(io::Error::other("a started process has no sentinel")));
        };
        loop {
            run.collect(deadline);
            if let Some(code) = run.child.try_reap()? {
                // The result may have arrived just before the exit.
                run.collect(Some(Instant::now() + Duration::from_secs(1)));
                return Ok(Some(code));
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Ok(None);
            }
            let slice = now + Duration::from_millis(50);
            let until = deadline.map_or(slice, |d| d.min(slice));
            if matches!(run.got, Got::Pending) {
                wait(
                    &[Waitable::Connection(&run.conn), Waitable::Process(&self.sentinel)],
                    Some(until.saturating_duration_since(now)),
                )?;
            } else if join_child(|| run.child.try_reap(), sentinel, Some(until))?.is_some() {
                continue;
            }
        }
    }

    /// Joins the child (at most `timeout`) and returns what the function returned. Errors:
    /// [`Error::Remote`] of kind `"panic"` with the panic message, `"exit"` when the child
    /// ended without a result (killed, for instance), `"encode"` when the result could not be
    /// encoded; [`Error::Timeout`] if it still runs; [`Error::Decode`] for a result that is
    /// not an `R`. The result can be taken once.
    pub fn result(&mut self, timeout: Option<Duration>) -> Result<R> {
        let Some(code) = self.join(timeout)? else {
            return Err(Error::Timeout(format!("waiting for {} to finish", self.name)));
        };
        let Some(run) = self.running.as_mut() else {
            return Err(Error::Io(io::Error::other("a joined process is not running")));
        };
        let remote = |kind: &str, message: String| Error::Remote { kind: kind.into(), message };
        match std::mem::replace(&mut run.got, Got::Taken) {
            Got::Value(Outcome::Returned(r)) => Ok(r),
            Got::Value(Outcome::Panicked(m)) => Err(remote("panic", m)),
            Got::Value(Outcome::Unsendable(m)) => Err(remote("encode", m)),
            Got::Failed(e) => Err(e),
            Got::Pending | Got::Nothing => Err(remote(
                "exit",
                format!("{} (pid {}) exited with code {code} without a result", self.name, run.child.pid),
            )),
            Got::Taken => Err(Error::Io(io::Error::other("the result was taken already"))),
        }
    }
}

/// Children started by [`start`] and [`create`], for [`waitall`].
static STARTED: Mutex<Vec<Arc<Mutex<ChildState>>>> = Mutex::new(Vec::new());

fn register(child: &Arc<Mutex<ChildState>>) {
    let mut started = lock(&STARTED);
    started.retain(|c| lock(c).status.is_none());
    started.push(child.clone());
}

/// pprocess's channel: the parent's connection to a child from [`start`] or [`create`], with
/// the child's pid. Dereferences to the [`Connection`].
#[derive(Debug)]
pub struct Channel {
    conn: Connection,
    sentinel: Sentinel,
    child: Arc<Mutex<ChildState>>,
    pid: u32,
}

impl Channel {
    fn new(conn: Connection, sentinel: transport::Sentinel, pid: u32) -> Channel {
        let child = Arc::new(Mutex::new(ChildState { pid, status: None }));
        register(&child);
        Channel { conn, sentinel: Sentinel { raw: Some(sentinel) }, child, pid }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// What [`wait`](crate::wait()) watches for the child's exit.
    pub fn sentinel(&self) -> &Sentinel {
        &self.sentinel
    }

    /// Waits at most `timeout` (`None`: as long as it takes) for the child to exit; its exit
    /// code, or `None` if it still runs.
    pub fn join(&self, timeout: Option<Duration>) -> Result<Option<i32>> {
        let Some(sentinel) = self.sentinel.raw.as_ref() else {
            return Err(Error::Io(io::Error::other("a started process has no sentinel")));
        };
        join_child(|| lock(&self.child).try_reap(), sentinel, deadline_of(timeout))
    }

    /// The exit code, once the child has exited (see [`Process::exitcode`]).
    pub fn exitcode(&self) -> Option<i32> {
        lock(&self.child).try_reap().ok().flatten()
    }

    /// Whether the child has not exited.
    pub fn is_alive(&self) -> bool {
        self.exitcode().is_none()
    }

    /// Asks the child to stop (SIGTERM).
    pub fn terminate(&self) -> Result<()> {
        lock(&self.child).signal(false)
    }

    /// Kills the child (SIGKILL).
    pub fn kill(&self) -> Result<()> {
        lock(&self.child).signal(true)
    }

    /// The connection alone ([`waitall`] still reaps the child).
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

/// pprocess's `start`: runs `f(channel, args)` in a new child process (started as
/// [`Process`] children are, see the [module documentation](self)) and returns the parent's
/// end of the channel once the child runs. [`waitall`] reaps it.
///
/// ```no_run
/// use procwire::Connection;
/// use procwire::process::ChannelFunction;
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
/// fn main() -> procwire::Result<()> {
///     procwire::process::init(&[&SQUARES]);
///     let mut ch = procwire::process::start(&SQUARES, 3)?;
///     for i in 0..3u64 {
///         assert_eq!(ch.recv::<u64>()?, i * i);
///     }
///     procwire::process::waitall(None)?;
///     Ok(())
/// }
/// ```
pub fn start<A: Serialize>(f: &ChannelFunction<A>, args: A) -> Result<Channel> {
    let args = encode_args(&args).map_err(Error::Encode)?;
    let name = format!("Process-{}", COUNTER.fetch_add(1, Ordering::Relaxed));
    let s = spawn(&SpawnOptions {
        function: f.name,
        channel: true,
        args: &args,
        name: &name,
        daemon: false,
        executable: None,
        start_timeout: DEFAULT_START_TIMEOUT,
    })?;
    Ok(Channel::new(s.conn, s.sentinel, s.pid))
}

/// pprocess's `waitall`: waits for every child started by [`start`] and [`create`] (that was
/// not reaped through its channel already) to exit, at most `timeout` (`None`: as long as it
/// takes), and returns their pids and exit codes. After a timeout ([`Error::Timeout`]) the
/// children still running stay for the next call.
pub fn waitall(timeout: Option<Duration>) -> Result<Vec<(u32, i32)>> {
    let deadline = deadline_of(timeout);
    let mut done = Vec::new();
    let mut nap = Duration::from_millis(1);
    loop {
        let mut started = lock(&STARTED);
        let mut failed = None;
        started.retain(|c| {
            let mut c = lock(c);
            let was_reaped = c.status.is_some();
            match c.try_reap() {
                Ok(Some(code)) => {
                    if !was_reaped {
                        done.push((c.pid, code));
                    }
                    false
                }
                Ok(None) => true,
                Err(e) => {
                    failed.get_or_insert(e);
                    false
                }
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        if started.is_empty() {
            return Ok(done);
        }
        drop(started);
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Error::Timeout(format!("waiting for child processes ({} reaped)", done.len())));
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(20));
    }
}

/// The two sides of [`create`].
#[derive(Debug)]
pub enum Forked {
    /// In the parent: the channel to the child.
    Parent(Channel),
    /// In the child: the connection to the parent.
    Child(Connection),
}

/// pprocess's fork-style `create`: fork(2) this process, with a channel between the two
/// sides. Unix only (an `Unsupported` error elsewhere).
///
/// ```no_run
/// use procwire::process::{Forked, create};
/// // SAFETY: called before any thread is started; the child ends with process::exit.
/// match unsafe { create() }? {
///     Forked::Child(mut conn) => {
///         let n: u64 = conn.recv()?;
///         conn.send(&(n * n))?;
///         std::process::exit(0);
///     }
///     Forked::Parent(mut ch) => {
///         ch.send(&7u64)?;
///         assert_eq!(ch.recv::<u64>()?, 49);
///         ch.join(None)?;
///     }
/// }
/// # Ok::<(), procwire::Error>(())
/// ```
///
/// # Safety
///
/// - The calling process must be single-threaded: the child starts with only the calling
///   thread, and any lock another thread held (the allocator's, stdout's, a `Mutex`) stays
///   locked forever there. (Test binaries run tests on threads: do not call this in one.)
/// - The child is a copy of the parent, with copies of its open descriptors, connections and
///   listeners: it must use only its [`Forked::Child`] connection to talk to the parent, not
///   the parent's other connections, and should end with [`std::process::exit`] instead of
///   returning into code meant for the parent (returning would run the parent's destructors
///   a second time, removing its socket files for instance).
/// - Stdout is flushed before the fork, so that buffered output is not written twice.
pub unsafe fn create() -> Result<Forked> {
    let (mine, theirs) = crate::pipe(true)?;
    let _ = io::stdout().flush();
    // SAFETY: the caller upholds the rules above.
    match unsafe { transport::fork() }? {
        Some((pid, sentinel)) => {
            drop(theirs);
            Ok(Forked::Parent(Channel::new(mine, sentinel, pid)))
        }
        None => {
            drop(mine);
            // The parent's children are not ours.
            lock(&STARTED).clear();
            Ok(Forked::Child(theirs))
        }
    }
}

/// The handler of an [`Exchange`]: called with each channel that has a message.
type Handler<'h> = Box<dyn FnMut(&mut Channel) -> Result<()> + Send + 'h>;

/// pprocess's `Exchange`: watches many [`Channel`]s and hands over those with a message.
///
/// With a handler ([`on_ready`](Exchange::on_ready), pprocess's `store_data`) and a limit,
/// it runs a bounded number of children at a time:
///
/// ```no_run
/// use procwire::Connection;
/// use procwire::process::{ChannelFunction, Exchange, start};
///
/// fn cube(mut ch: Connection, n: u64) {
///     let _ = ch.send(&(n * n * n));
/// }
/// static CUBE: ChannelFunction<u64> = ChannelFunction::new("cube", cube);
///
/// fn main() -> procwire::Result<()> {
///     procwire::process::init(&[&CUBE]);
///     let mut total = 0;
///     let mut ex = Exchange::with_limit(4).on_ready(|ch| {
///         total += ch.recv::<u64>()?;
///         Ok(())
///     });
///     for n in 1..=10 {
///         ex.add_wait(start(&CUBE, n)?)?;
///     }
///     ex.finish()?;
///     drop(ex);
///     assert_eq!(total, 3025);
///     Ok(())
/// }
/// ```
///
/// A channel whose child hung up (end of stream, nothing left to read) leaves the exchange
/// during [`ready`](Exchange::ready), and its child is reaped then or, at the latest, by
/// [`finish`](Exchange::finish).
pub struct Exchange<'h> {
    channels: Vec<Channel>,
    limit: Option<usize>,
    handler: Option<Handler<'h>>,
    departed: Vec<Channel>,
}

impl fmt::Debug for Exchange<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exchange")
            .field("channels", &self.channels)
            .field("limit", &self.limit)
            .field("handler", &self.handler.is_some())
            .finish()
    }
}

impl Default for Exchange<'_> {
    fn default() -> Self {
        Exchange::new()
    }
}

impl<'h> Exchange<'h> {
    /// An empty exchange without a limit.
    pub fn new() -> Self {
        Exchange { channels: Vec::new(), limit: None, handler: None, departed: Vec::new() }
    }

    /// An empty exchange that [`add_wait`](Exchange::add_wait) keeps to at most `limit`
    /// channels (at least 1).
    pub fn with_limit(limit: usize) -> Self {
        Exchange { limit: Some(limit.max(1)), ..Exchange::new() }
    }

    /// Sets the handler that [`store`](Exchange::store), [`wait`](Exchange::wait),
    /// [`add_wait`](Exchange::add_wait) and [`finish`](Exchange::finish) call for each channel
    /// with a message (pprocess's `store_data`). A handler that returns [`Error::Closed`] or
    /// [`Error::Truncated`] (from a receive) removes the channel; another error removes it and
    /// is returned.
    pub fn on_ready(mut self, handler: impl FnMut(&mut Channel) -> Result<()> + Send + 'h) -> Self {
        self.handler = Some(Box::new(handler));
        self
    }

    /// Adds a channel to watch.
    pub fn add(&mut self, channel: Channel) {
        self.channels.push(channel);
    }

    /// Adds a channel after [`wait`](Exchange::wait)ing for room under the limit.
    pub fn add_wait(&mut self, channel: Channel) -> Result<()> {
        self.wait()?;
        self.add(channel);
        Ok(())
    }

    /// Handles ready channels until fewer than the limit remain (no-op without a limit).
    pub fn wait(&mut self) -> Result<()> {
        while let Some(limit) = self.limit
            && self.channels.len() >= limit
        {
            self.store(None)?;
        }
        Ok(())
    }

    /// The channels being watched.
    pub fn active(&self) -> &[Channel] {
        &self.channels
    }

    /// Whether no channel is watched.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// Waits at most `timeout` (`None`: as long as it takes; zero: just look) until some
    /// channels have a message, and returns them; channels whose child hung up leave the
    /// exchange meanwhile. Empty after a timeout, or when the last channels just hung up.
    pub fn ready(&mut self, timeout: Option<Duration>) -> Result<Vec<&mut Channel>> {
        self.sweep();
        if self.channels.is_empty() {
            return Ok(Vec::new());
        }
        let ready = {
            let objects: Vec<Waitable<'_>> =
                self.channels.iter().map(|c| Waitable::Connection(&c.conn)).collect();
            wait(&objects, timeout)?
        };
        let mut hung_up = Vec::new();
        let mut pids = Vec::new();
        for i in ready {
            let c = &mut self.channels[i];
            if c.conn.has_buffered() {
                pids.push(c.pid);
                continue;
            }
            match c.conn.fill_ready() {
                Ok(true) => pids.push(c.pid),
                Ok(false) => hung_up.push(i),
                Err(Error::Io(e))
                    if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => {}
                Err(_) => hung_up.push(i),
            }
        }
        for &i in hung_up.iter().rev() {
            let c = self.channels.remove(i);
            self.departed.push(c);
        }
        self.sweep();
        Ok(self.channels.iter_mut().filter(|c| pids.contains(&c.pid)).collect())
    }

    /// Stops watching the channel to child `pid` and returns it.
    pub fn remove(&mut self, pid: u32) -> Option<Channel> {
        let i = self.channels.iter().position(|c| c.pid == pid)?;
        Some(self.channels.remove(i))
    }

    /// Calls the handler for each channel that has a message, waiting at most `timeout` for
    /// one; returns how many were handled.
    pub fn store(&mut self, timeout: Option<Duration>) -> Result<usize> {
        let Some(mut handler) = self.handler.take() else {
            return Err(Error::Io(io::Error::other("this exchange has no handler (Exchange::on_ready)")));
        };
        let r = self.store_with(&mut handler, timeout);
        self.handler = Some(handler);
        r
    }

    fn store_with(&mut self, handler: &mut Handler<'h>, timeout: Option<Duration>) -> Result<usize> {
        let pids: Vec<u32> = self.ready(timeout)?.iter().map(|c| c.pid).collect();
        let mut n = 0;
        for pid in pids {
            let Some(i) = self.channels.iter().position(|c| c.pid == pid) else { continue };
            match handler(&mut self.channels[i]) {
                Ok(()) => n += 1,
                Err(e) => {
                    let c = self.channels.remove(i);
                    self.departed.push(c);
                    if !matches!(e, Error::Closed | Error::Truncated { .. }) {
                        return Err(e);
                    }
                }
            }
        }
        Ok(n)
    }

    /// Handles messages until every channel has hung up, then reaps their children.
    pub fn finish(&mut self) -> Result<()> {
        while !self.channels.is_empty() {
            self.store(None)?;
        }
        for c in self.departed.drain(..) {
            c.join(None)?;
        }
        Ok(())
    }

    /// Reaps the children of departed channels that have exited.
    fn sweep(&mut self) {
        self.departed.retain(|c| c.is_alive());
    }
}
