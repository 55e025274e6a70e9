//! [`Process`]: the parent's handle on a child that runs one [`Function`] and sends back what
//! it returned, shaped like CPython's `multiprocessing.Process`.

use std::io;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::bootstrap::{SpawnOptions, encode_args, spawn};
use super::child::{ChildState, join_child};
use super::registry::{Function, Outcome};
use super::{DEFAULT_START_TIMEOUT, next_name};
use crate::RemoteKind;
use crate::sentinel::Sentinel;
use crate::util::deadline_of;
use crate::wait::{Waitable, wait};
use crate::{Connection, Error, Result};

/// What became of a child's result: the state machine behind `result()`, shared with the
/// thread-backed `Process` of [`dummy`](crate::dummy), so that both report alike.
#[derive(Debug)]
pub(crate) enum Got<R> {
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
    pub(crate) fn take(&mut self, ended: impl FnOnce() -> String) -> Result<R> {
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
    /// The name (the child sees it as [`current_name`](super::current_name)).
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
    /// documentation](super#daemons)); before [`start`](Process::start).
    pub fn set_daemon(&mut self, daemon: bool) {
        self.daemon = daemon;
    }

    /// Runs another executable instead of this one (it must call [`init`](super::init) with this function
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
            None => Err(Error::InvalidInput(format!("{} was not started", self.name))),
        }
    }
}

impl<R: DeserializeOwned> Process<R> {
    /// A process that will run `f(args)`; named `Process-N` until [`set_name`](Process::set_name).
    pub fn new<A: Serialize>(f: &Function<A, R>, args: A) -> Process<R> {
        Process {
            function: f.parts().0,
            args: encode_args(&args),
            name: next_name(),
            daemon: false,
            executable: None,
            start_timeout: DEFAULT_START_TIMEOUT,
            sentinel: Sentinel::default(),
            running: None,
            _result: PhantomData,
        }
    }

    /// Starts the child and waits until it runs the function. A child that cannot (the
    /// executable does not start, it does not call [`init`](super::init), the function is not in its list,
    /// the arguments do not decode) is an error here, and is reaped.
    pub fn start(&mut self) -> Result<()> {
        if self.running.is_some() {
            return Err(Error::InvalidInput(format!("{} was started already", self.name)));
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
        self.sentinel = Sentinel::new(s.sentinel);
        self.running =
            Some(Running { conn: s.conn, child: ChildState { pid: s.pid, status: None }, got: Got::Pending });
        Ok(())
    }

    /// Whether the child was started and has not exited.
    pub fn is_alive(&mut self) -> bool {
        self.exitcode().is_none() && self.running.is_some()
    }

    /// The exit code once the child has exited: 0 after the function returned,
    /// [`EXIT_PANICKED`](super::EXIT_PANICKED) after a panic, minus the signal number if a signal ended it (as
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
            return Err(Error::InvalidInput(format!("{} was not started", self.name)));
        };
        let Some(sentinel) = self.sentinel.raw() else {
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
            return Err(Error::InvalidInput("a joined process is not running".into()));
        };
        run.got.take(|| format!("{} (pid {}) exited with code {code}", self.name, run.child.pid))
    }
}

impl<'a, R> From<&'a Process<R>> for Waitable<'a> {
    fn from(p: &'a Process<R>) -> Self {
        Waitable::Process(p.sentinel())
    }
}
