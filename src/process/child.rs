//! A started child as its parent sees it: its pid, its reaping (once, never signalling a
//! reaped pid) and the wait for its exit; and [`Child`], the handle for crate-internal
//! consumers (the pool's workers) that start children of their own.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::DEFAULT_START_TIMEOUT;
use super::bootstrap::{SpawnOptions, spawn};
use crate::sys;
use crate::util::{deadline_of, lock};
use crate::{Connection, Result};

/// A child's pid and, once reaped, its exit code.
#[derive(Debug)]
pub(super) struct ChildState {
    pub(super) pid: u32,
    pub(super) status: Option<i32>,
}

impl ChildState {
    pub(super) fn try_reap(&mut self) -> Result<Option<i32>> {
        if self.status.is_none() {
            self.status = sys::reap(self.pid, false)?;
        }
        Ok(self.status)
    }

    /// SIGTERM or SIGKILL, unless it has exited already (never to a reaped pid).
    pub(super) fn signal(&mut self, kill: bool) -> Result<()> {
        if self.try_reap()?.is_none() {
            sys::signal(self.pid, kill)?;
        }
        Ok(())
    }
}

/// Waits until `try_reap` says the child is gone or `deadline` passes (`Ok(None)`).
pub(super) fn join_child(
    mut try_reap: impl FnMut() -> Result<Option<i32>>,
    sentinel: &sys::Sentinel,
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

/// A child started for a crate-internal consumer (the pool's workers): as a [`Channel`](super::Channel)'s,
/// but not registered for [`waitall`](super::waitall), which must not wait for children it did not start.
#[derive(Debug)]
pub(crate) struct Child {
    state: Mutex<ChildState>,
    sentinel: sys::Sentinel,
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
/// [`start`](super::start) does, without registering it for [`waitall`](super::waitall); its
/// channel is a pipe of kind `pipe`.
pub(crate) fn spawn_child(
    function: &'static str,
    args: &[u8],
    name: &str,
    daemon: bool,
    pipe: crate::PipeKind,
) -> Result<(Connection, Child)> {
    let s = spawn(&SpawnOptions {
        function,
        channel: true,
        args,
        name,
        daemon,
        executable: None,
        start_timeout: DEFAULT_START_TIMEOUT,
        pipe,
    })?;
    let child = Child {
        state: Mutex::new(ChildState { pid: s.pid, status: None }),
        sentinel: s.sentinel,
        pid: s.pid,
    };
    Ok((s.conn, child))
}
