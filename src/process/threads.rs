//! The [`Threads`] backend of [`Process`] and [`Channel`], pprocess's [`start`] and
//! [`waitall`] over threads, and named threads for it and the thread pool: a thread started
//! for a `Process`, a `start`ed function or a pool worker knows its name, as a child process
//! knows its own.

use std::collections::BTreeSet;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::generic::sealed::{self, Settings};
use super::generic::{self, Threads};
use super::generic::{Got, not_running};
use super::registry::{ChannelFunction, Function, Outcome};
use super::{EXIT_PANICKED, next_name};
use crate::error::io_context;
use crate::util::{deadline_of, lock, panic_message, wait_until};
use crate::{Error, Result};

thread_local! {
    static CURRENT: std::cell::Cell<Option<&'static str>> = const { std::cell::Cell::new(None) };
}

/// Names the calling thread for [`current_name`].
fn set_current_name(name: &str) {
    static NAMES: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let mut names = lock(&NAMES);
    let interned = match names.get(name) {
        Some(n) => *n,
        None => {
            let n: &'static str = Box::leak(name.to_string().into_boxed_str());
            names.insert(n);
            n
        }
    };
    CURRENT.with(|c| c.set(Some(interned)));
}

/// Spawns a named thread (a name with a NUL byte, which the OS cannot take, is shortened).
pub(crate) fn spawn_named(name: &str, f: impl FnOnce() + Send + 'static) -> Result<()> {
    let thread_name: String = name.chars().filter(|c| *c != '\0').collect();
    let name = name.to_string();
    std::thread::Builder::new()
        .name(thread_name)
        .spawn(move || {
            set_current_name(&name);
            f();
        })
        .map(drop)
        .map_err(|e| Error::Io(io_context(e, "cannot start a thread")))
}

/// The name the calling thread was started with by [`spawn_named`]; `None` on other threads.
pub(crate) fn current_name() -> Option<&'static str> {
    CURRENT.with(|c| c.get())
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
#[derive(Debug)]
struct Exit {
    /// What stands for a pid: unique in this program.
    id: u32,
    code: Mutex<Option<i32>>,
    cv: Condvar,
    /// Its code was handed out through its channel: [`waitall`] does not report it.
    reaped: AtomicBool,
}

impl Exit {
    fn new() -> Arc<Exit> {
        static NEXT_ID: AtomicU32 = AtomicU32::new(1);
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

    fn wait(&self, deadline: Option<Instant>) -> Option<i32> {
        let mut code = lock(&self.code);
        while code.is_none() {
            code = wait_until(&self.cv, code, deadline)?;
        }
        *code
    }

    /// The code, marked as handed out once there is one.
    fn reap(&self, code: Option<i32>) -> Option<i32> {
        if code.is_some() {
            self.reaped.store(true, Ordering::SeqCst);
        }
        code
    }
}

/// A thread as its [`Process`](generic::Process) holds it: what it will run, then its exit
/// code and result.
pub struct State<R> {
    task: Option<Box<dyn FnOnce() -> R + Send>>,
    running: Option<Running<R>>,
}

/// A started thread: its exit code, and its result once it has one.
struct Running<R> {
    exit: Arc<Exit>,
    got: Arc<Mutex<Got<R>>>,
}

impl<R> std::fmt::Debug for State<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Thread")
            .field("exitcode", &self.running.as_ref().and_then(|r| r.exit.code()))
            .finish()
    }
}

/// The thread on the other side of a [`Channel`].
#[derive(Debug)]
pub struct Peer {
    exit: Arc<Exit>,
    name: String,
}

impl sealed::Backend for Threads {
    type State<R> = State<R>;
    type Peer = Peer;

    fn pid<R>(_: &State<R>) -> Option<u32> {
        None
    }

    fn signal<R>(st: &mut State<R>, name: &str, _: bool) -> Result<()> {
        match &st.running {
            Some(run) if run.exit.code().is_some() => Ok(()),
            _ => Err(cannot_stop(name)),
        }
    }

    fn peer_pid(p: &Peer) -> u32 {
        p.exit.id
    }

    fn peer_alive(p: &Peer) -> bool {
        p.exit.code().is_none()
    }

    fn peer_exitcode(p: &Peer) -> Option<i32> {
        p.exit.reap(p.exit.code())
    }

    fn peer_join(p: &Peer, deadline: Option<Instant>) -> Result<Option<i32>> {
        Ok(p.exit.reap(p.exit.wait(deadline)))
    }

    fn peer_signal(p: &Peer, _: bool) -> Result<()> {
        match p.exit.code() {
            Some(_) => Ok(()),
            None => Err(cannot_stop(&p.name)),
        }
    }
}

impl<A: Send + 'static, R: Send + 'static> sealed::Runs<A, R> for Threads {
    fn prepare(f: &Function<A, R>, args: A) -> State<R> {
        let (_, f) = f.parts();
        State { task: Some(Box::new(move || f(args))), running: None }
    }
}

impl<R: Send + 'static> sealed::Returns<R> for Threads {
    fn start(st: &mut State<R>, settings: Settings<'_>) -> Result<()> {
        if let Some(exe) = settings.executable {
            return Err(unsupported(&format!(
                "{} is a thread (procwire::dummy): it cannot run another executable ({})",
                settings.name,
                exe.display()
            )));
        }
        let Some(task) = st.task.take() else {
            return Err(Error::InvalidInput(format!("{} was started already", settings.name)));
        };
        let exit = Exit::new();
        let got = Arc::new(Mutex::new(Got::Pending));
        let (e, g) = (exit.clone(), got.clone());
        spawn_named(settings.name, move || {
            let (outcome, code) = match catch_unwind(AssertUnwindSafe(task)) {
                Ok(r) => (Got::Value(Outcome::Returned(r)), 0),
                Err(p) => (Got::Value(Outcome::Panicked(panic_message(&*p))), EXIT_PANICKED),
            };
            *lock(&g) = outcome;
            e.set(code);
        })?;
        st.running = Some(Running { exit, got });
        Ok(())
    }

    fn exitcode(st: &mut State<R>) -> Option<i32> {
        st.running.as_ref().and_then(|r| r.exit.code())
    }

    fn join(st: &mut State<R>, deadline: Option<Instant>) -> Result<Option<i32>> {
        Ok(st.running.as_ref().ok_or_else(not_running)?.exit.wait(deadline))
    }

    fn take(st: &mut State<R>, ended: &dyn Fn() -> String) -> Result<R> {
        lock(&st.running.as_ref().ok_or_else(not_running)?.got).take(ended)
    }
}

/// pprocess's channel over a thread: this side's connection to a thread from [`start`]; see
/// [`generic::Channel`], which has its methods. Dereferences to the
/// [`Connection`](crate::Connection).
pub type Channel = generic::Channel<Threads>;

/// Threads started by [`start`], for [`waitall`].
static STARTED: Mutex<Vec<Arc<Exit>>> = Mutex::new(Vec::new());
static STARTED_CHANGED: Condvar = Condvar::new();

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
/// assert!(waitall()?.contains(&(ch.pid(), 0)));
/// # Ok::<(), procwire::Error>(())
/// ```
pub fn start<A: Send + 'static>(f: &ChannelFunction<A>, args: A) -> Result<Channel> {
    let (_, f) = f.parts();
    let (mine, theirs) = crate::connection::pipe_in_process(true);
    let name = next_name();
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
    Ok(Channel { conn: mine, peer: Peer { exit, name } })
}

/// pprocess's `waitall` over threads: waits for every thread started by [`start`] (whose exit
/// code was not taken through its channel already) to end, and returns their
/// [`pid`](generic::Channel::pid)s and exit codes.
pub fn waitall() -> Result<Vec<(u32, i32)>> {
    waitall_until(None)
}

/// As [`waitall`], waiting at most `timeout`: returns the threads that ended by then (each
/// reported once); the ones still running stay for the next call.
pub fn waitall_timeout(timeout: Duration) -> Result<Vec<(u32, i32)>> {
    waitall_until(deadline_of(Some(timeout)))
}

fn waitall_until(deadline: Option<Instant>) -> Result<Vec<(u32, i32)>> {
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
        started = match wait_until(&STARTED_CHANGED, started, deadline) {
            Some(g) => g,
            None => return Ok(done),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Connection;

    type Process<R> = generic::Process<R, Threads>;

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
        assert_eq!(p.join().unwrap(), 0);
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
        assert_eq!(p.result().unwrap(), 2);
        assert_eq!(*lock(&shared), [0, 1]);
    }

    #[test]
    fn a_name_with_a_nul_byte_still_starts() {
        let mut p = Process::new(&SLEEP_MS, 1);
        p.set_name("odd\0name");
        p.start().unwrap();
        assert_eq!(p.result().unwrap(), 1);
    }

    fn wait_for_close(mut ch: Connection, _: ()) {
        let _ = ch.recv::<u8>();
    }
    static WAIT_FOR_CLOSE: ChannelFunction<()> = ChannelFunction::new("wait_for_close", wait_for_close);

    #[test]
    fn waitall_reports_each_thread_once_and_keeps_the_running_for_later() {
        let ch = start(&WAIT_FOR_CLOSE, ()).unwrap();
        let pid = ch.pid();
        assert!(ch.terminate().is_err());
        assert!(!waitall_timeout(Duration::from_millis(20)).unwrap().iter().any(|(p, _)| *p == pid));
        drop(ch.into_connection());
        let mut seen = Vec::new();
        while !seen.iter().any(|(p, _)| *p == pid) {
            seen.extend(waitall_timeout(Duration::from_secs(60)).unwrap());
        }
        assert!(seen.contains(&(pid, 0)));
        assert!(!waitall_timeout(Duration::from_secs(60)).unwrap().iter().any(|(p, _)| *p == pid));
    }
}
