//! The [`Processes`] backend of [`Process`]: the parent's side of a child that runs one
//! [`Function`] and sends back what it returned.

use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::bootstrap::{SpawnOptions, encode_args, spawn};
use super::child::{ChildState, join_child};
use super::generic::sealed::{self, Settings};
use super::generic::{Got, not_running};
use super::generic::{Process, Processes};
use super::pprocess::Peer;
use super::registry::{Function, Outcome};
use crate::sentinel::Sentinel;
use crate::wait::{Waitable, wait_timeout};
use crate::{Connection, Error, Result};

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
        match self.conn.poll_timeout(Duration::ZERO) {
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

/// A child process as its [`Process`] holds it: what it will run, then the running child.
pub struct State<R> {
    function: &'static str,
    args: std::result::Result<Vec<u8>, String>,
    sentinel: Sentinel,
    running: Option<Running<R>>,
}

impl<R> fmt::Debug for State<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Child")
            .field("function", &self.function)
            .field("pid", &self.running.as_ref().map(|r| r.child.pid))
            .field("sentinel", &self.sentinel)
            .finish()
    }
}

impl<R> Process<R, Processes> {
    /// What [`wait`](crate::wait()) watches for this child's exit (also `Waitable::from(&p)`).
    pub fn sentinel(&self) -> &Sentinel {
        &self.state.sentinel
    }
}

impl<'a, R> From<&'a Process<R, Processes>> for Waitable<'a> {
    fn from(p: &'a Process<R, Processes>) -> Self {
        Waitable::Process(p.sentinel())
    }
}

impl sealed::Backend for Processes {
    type State<R> = State<R>;
    type Peer = Peer;

    fn pid<R>(st: &State<R>) -> Option<u32> {
        st.running.as_ref().map(|r| r.child.pid)
    }

    fn signal<R>(st: &mut State<R>, _: &str, kill: bool) -> Result<()> {
        st.running.as_mut().ok_or_else(not_running)?.child.signal(kill)
    }

    fn peer_pid(p: &Peer) -> u32 {
        p.pid
    }

    fn peer_alive(p: &Peer) -> bool {
        p.exitcode().is_none()
    }

    fn peer_exitcode(p: &Peer) -> Option<i32> {
        p.exitcode()
    }

    fn peer_join(p: &Peer, deadline: Option<Instant>) -> Result<Option<i32>> {
        p.join(deadline)
    }

    fn peer_signal(p: &Peer, kill: bool) -> Result<()> {
        p.signal(kill)
    }
}

impl<A: Serialize, R: DeserializeOwned> sealed::Runs<A, R> for Processes {
    fn prepare(f: &Function<A, R>, args: A) -> State<R> {
        State {
            function: f.parts().0,
            args: encode_args(&args),
            sentinel: Sentinel::default(),
            running: None,
        }
    }
}

impl<R: DeserializeOwned> sealed::Returns<R> for Processes {
    fn start(st: &mut State<R>, settings: Settings<'_>) -> Result<()> {
        let args = st.args.as_ref().map_err(|e| Error::Encode(e.clone()))?;
        let s = spawn(&SpawnOptions {
            function: st.function,
            channel: false,
            args,
            name: settings.name,
            daemon: settings.daemon,
            executable: settings.executable,
            start_timeout: settings.start_timeout,
            pipe: crate::PipeKind::Socket,
        })?;
        st.sentinel = Sentinel::new(s.sentinel);
        st.running =
            Some(Running { conn: s.conn, child: ChildState { pid: s.pid, status: None }, got: Got::Pending });
        Ok(())
    }

    fn exitcode(st: &mut State<R>) -> Option<i32> {
        let run = st.running.as_mut()?;
        run.collect(Some(Instant::now()));
        run.child.try_reap().ok().flatten()
    }

    fn join(st: &mut State<R>, deadline: Option<Instant>) -> Result<Option<i32>> {
        let run = st.running.as_mut().ok_or_else(not_running)?;
        let Some(sentinel) = st.sentinel.raw() else {
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
                wait_timeout(
                    &[Waitable::Connection(&run.conn), Waitable::Process(&st.sentinel)],
                    until.saturating_duration_since(now),
                )?;
            } else if join_child(|| run.child.try_reap(), sentinel, Some(until))?.is_some() {
                continue;
            }
        }
    }

    fn take(st: &mut State<R>, ended: &dyn Fn() -> String) -> Result<R> {
        st.running.as_mut().ok_or_else(not_running)?.got.take(ended)
    }
}
