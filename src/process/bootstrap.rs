//! The bootstrap of a child (SPEC.md section 12.3), both ends: [`spawn`] starts this program
//! again with a connection and a sentinel and sends it what to run; [`init`], first in the
//! child's `main`, finds that function in the registry and runs it. Also the settings every
//! child gets from its parent: its arguments ([`set_child_args`]) and its name
//! ([`current_name`]).

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::child::{ChildState, join_child};
use super::registry::{Entry, Registry};
use super::{DEFAULT_START_TIMEOUT, EXIT_START_FAILED};
use crate::RemoteKind;
use crate::error::io_context;
use crate::sys;
use crate::util::{deadline_of, lock};
use crate::wait::{Waitable, wait_timeout};
use crate::{Connection, Error, PipeKind, Result};

/// Set in a child to `VERSION:PARENT_PID`: "you are a procwire child of this parent".
const ENV_PROCESS: &str = "PROCWIRE_PROCESS";
/// The child's end of the bootstrap connection (SPEC.md §9 value format).
const ENV_CONN: &str = "PROCWIRE_PROCESS_CONN";
/// The write end of the exit sentinel pipe.
const ENV_SENTINEL: &str = "PROCWIRE_PROCESS_SENTINEL";
/// The bootstrap protocol version (spec/process.md).
const VERSION: u32 = 1;

static INIT_CALLED: AtomicBool = AtomicBool::new(false);
/// Whether [`init`] was called on the main thread, where a child that runs `main` calls it too.
static INIT_ON_MAIN: AtomicBool = AtomicBool::new(false);
/// Why the functions given to [`init`] and the registered ones cannot all be found by name.
static DUPLICATE: Mutex<Option<String>> = Mutex::new(None);
static CHILD_ARGS: Mutex<Vec<OsString>> = Mutex::new(Vec::new());
static NAME: OnceLock<String> = OnceLock::new();

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
/// function, one of `functions` or of those `#[procwire::function]` registered (so `&[]` will
/// do for those), and exits (never returning); anywhere else it returns at once.
///
/// A child that cannot run its function (not known, arguments that do not decode) tells its
/// parent why and exits with [`EXIT_START_FAILED`]. In the parent it notes, for
/// [`Process::start`](super::Process::start), whether it ran on the main thread (where a child
/// that runs `main` calls it too) and whether two functions share a name. See the [module
/// documentation](super) for the rules.
pub fn init(functions: &[&dyn Entry]) {
    INIT_CALLED.store(true, Ordering::SeqCst);
    if std::thread::current().name() == Some("main") {
        INIT_ON_MAIN.store(true, Ordering::SeqCst);
    }
    let parent = || *lock(&DUPLICATE) = Registry::new(functions).duplicates();
    let Ok(value) = std::env::var(ENV_PROCESS) else { return parent() };
    let Some((version, ppid)) = value.split_once(':') else { return parent() };
    // Inherited by a process that some child started on its own: not a procwire child.
    if ppid.parse::<u32>().ok() != Some(sys::parent_id()) {
        return parent();
    }
    sys::keep_sentinel(ENV_SENTINEL);
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
        sys::watch_parent();
    }
    let _ = NAME.set(start.name.clone());
    let registry = Registry::new(functions);
    // The crate's own entries (the pool's worker) come first, as if listed by the program.
    if start.version == VERSION
        && let Some(f) = crate::BUILTIN_ENTRIES
            .iter()
            .find(|f| f.name() == start.function && f.takes_channel() == start.channel)
    {
        return f.run_child(conn, registry);
    }
    let refusal = if version != VERSION.to_string() || start.version != VERSION {
        Err(format!("bootstrap version {version}/{} is not {VERSION}", start.version))
    } else {
        registry.find(&start.function).and_then(|f| {
            if f.takes_channel() == start.channel {
                return Ok(f);
            }
            Err(format!(
                "function {:?} {} a channel, but was started with {}",
                start.function,
                if f.takes_channel() { "takes" } else { "does not take" },
                if start.channel { "procwire::process::start" } else { "Process" },
            ))
        })
    };
    match refusal {
        Ok(f) => f.run_child(conn, registry),
        Err(reason) => {
            let _ = conn.send(&Reply::Refused { reason });
            EXIT_START_FAILED
        }
    }
}

/// The name of this process, as the parent gave it ([`Process::set_name`](super::Process::set_name)); `None` outside a
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

/// What [`spawn`] needs to know.
pub(super) struct SpawnOptions<'a> {
    pub(super) function: &'static str,
    pub(super) channel: bool,
    pub(super) args: &'a [u8],
    pub(super) name: &'a str,
    pub(super) daemon: bool,
    pub(super) executable: Option<&'a Path>,
    pub(super) start_timeout: Duration,
    /// The kind of the child's channel (a pool worker's is shared memory where it works).
    pub(super) pipe: PipeKind,
}

/// A child that reported `Started`.
pub(super) struct Spawned {
    pub(super) conn: Connection,
    pub(super) sentinel: sys::Sentinel,
    pub(super) pid: u32,
}

pub(super) fn spawn(o: &SpawnOptions<'_>) -> Result<Spawned> {
    if let Some(why) = cannot_spawn(o.executable.is_none()) {
        return Err(Error::InvalidInput(why));
    }
    let exe = match o.executable {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()?,
    };
    let (mut conn, theirs) = crate::pipe_with(o.pipe)?;
    let mut cmd = Command::new(&exe);
    cmd.args(lock(&CHILD_ARGS).iter());
    cmd.env(ENV_PROCESS, format!("{VERSION}:{}", std::process::id()));
    theirs.pass_to_child(&mut cmd, ENV_CONN)?;
    let prepared = sys::prepare_child(&mut cmd, ENV_SENTINEL, o.daemon)?;
    let (pid, sentinel) = sys::spawn(cmd, prepared)
        .map_err(|e| Error::Io(io_context(e, format_args!("cannot start {}", exe.display()))))?;
    drop(theirs);
    conn.stream().handed_to(pid);
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
    // The child's exit counts too: a child that never took its end (another program) leaves
    // this end open (on Windows the parent's copy is closed only by the child taking it).
    let sentinel = crate::sentinel::Sentinel::new(sentinel);
    let reply = match wait_timeout(&[(&conn).into(), Waitable::Process(&sentinel)], o.start_timeout) {
        Ok(ready) if ready.is_empty() => {
            Err(Error::Timeout(format!("no answer within {:?}", o.start_timeout)))
        }
        // Looked at again after an exit: the answer may have come just before it.
        Ok(ready) if ready[0] == 0 || conn.poll_timeout(Duration::ZERO).unwrap_or(true) => {
            conn.set_read_timeout(Some(o.start_timeout));
            conn.recv::<Reply>()
        }
        Ok(_) => Err(Error::Closed),
        Err(e) => Err(e),
    };
    let Some(sentinel) = sentinel.into_raw() else {
        return Err(Error::Io(io::Error::other("a started process has no sentinel")));
    };
    let fail = |child: &mut ChildState, what: String| -> Error {
        // Make sure it is gone and reaped; a short grace for one that is exiting anyway.
        let code = join_child(|| child.try_reap(), &sentinel, deadline_of(Some(Duration::from_secs(2))))
            .ok()
            .flatten()
            .or_else(|| {
                let _ = child.signal(true);
                sys::reap(child.pid, true).ok().flatten()
            });
        let how = code.map_or_else(|| "could not be reaped".to_string(), |c| format!("exit code {c}"));
        Error::Remote {
            kind: RemoteKind::Start,
            message: format!("child process {pid} ({}) {what} ({how})", exe.display()),
        }
    };
    match reply {
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

/// Why this process cannot start a child yet, if it cannot: checked before each start, so that
/// a program set up wrongly fails at once in the parent instead of in children that run the
/// wrong code.
fn cannot_spawn(runs_itself: bool) -> Option<String> {
    let init_called = INIT_CALLED.load(Ordering::SeqCst);
    if std::env::var_os(ENV_PROCESS).is_some() && !init_called {
        return Some(
            "this process was started as a procwire child, but its main did not call \
             procwire::process::init() before starting children of its own"
                .into(),
        );
    }
    // A child started without arguments runs this program's `main`, which must reach `init`
    // before anything else: a call on another thread (a `#[test]`, whose binary's `main` is the
    // test harness) or none at all means the child would run something else, maybe everything.
    if runs_itself && lock(&CHILD_ARGS).is_empty() && !INIT_ON_MAIN.load(Ordering::SeqCst) {
        let place = if init_called { "on the main thread" } else { "in this process" };
        return Some(format!(
            "procwire::process::init was not called {place}, so a child of this program, which runs its main, \
             would not reach it: call init first in main (or put #[procwire::main] on main); in a test \
             binary, whose main is the test harness, name a test that calls init with \
             procwire::process::use_test_entry before starting children"
        ));
    }
    lock(&DUPLICATE).clone().or_else(|| Registry::new(&[]).duplicates())
}

pub(super) fn encode_args<A: Serialize>(args: &A) -> std::result::Result<Vec<u8>, String> {
    let mut v = Vec::new();
    ciborium::into_writer(args, &mut v).map_err(|e| crate::error::describe_encode(&e))?;
    Ok(v)
}
