//! pprocess's API over child processes: [`start`] a [`ChannelFunction`] in a child and talk
//! over the [`Channel`], fork-style [`create`], and [`waitall`], which reaps every child these
//! started.

// Links to the fork-style `create` (Unix only) resolve where it exists; elsewhere they are text.
#![cfg_attr(not(unix), allow(rustdoc::broken_intra_doc_links))]

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::bootstrap::{SpawnOptions, encode_args, spawn};
use super::child::{ChildState, join_child};
use super::generic::{self, Processes};
use super::registry::ChannelFunction;
use super::{DEFAULT_START_TIMEOUT, next_name};
use crate::sentinel::Sentinel;
use crate::sys;
use crate::util::{deadline_of, lock};
use crate::{Connection, Error, Result};

/// Children started by [`start`] and [`create`], for [`waitall`].
static STARTED: Mutex<Vec<Arc<Mutex<ChildState>>>> = Mutex::new(Vec::new());

fn register(child: &Arc<Mutex<ChildState>>) {
    let mut started = lock(&STARTED);
    started.retain(|c| lock(c).status.is_none());
    started.push(child.clone());
}

/// pprocess's channel: the parent's connection to a child from [`start`] or [`create`], with
/// the child's pid; see [`generic::Channel`](super::generic::Channel), which has its methods.
/// Dereferences to the [`Connection`].
pub type Channel = generic::Channel<Processes>;

/// The child on the other side of a [`Channel`].
#[derive(Debug)]
pub struct Peer {
    sentinel: Sentinel,
    child: Arc<Mutex<ChildState>>,
    pub(super) pid: u32,
}

impl Peer {
    fn channel(conn: Connection, sentinel: sys::Sentinel, pid: u32) -> Channel {
        let child = Arc::new(Mutex::new(ChildState { pid, status: None }));
        register(&child);
        Channel { conn, peer: Peer { sentinel: Sentinel::new(sentinel), child, pid } }
    }

    pub(super) fn join(&self, deadline: Option<Instant>) -> Result<Option<i32>> {
        let Some(sentinel) = self.sentinel.raw() else {
            return Err(Error::Io(io::Error::other("a started process has no sentinel")));
        };
        join_child(|| lock(&self.child).try_reap(), sentinel, deadline)
    }

    pub(super) fn exitcode(&self) -> Option<i32> {
        lock(&self.child).try_reap().ok().flatten()
    }

    pub(super) fn signal(&self, kill: bool) -> Result<()> {
        lock(&self.child).signal(kill)
    }
}

impl Channel {
    /// What [`wait`](crate::wait()) watches for the child's exit.
    pub fn sentinel(&self) -> &Sentinel {
        &self.peer.sentinel
    }
}

/// pprocess's `start`: runs `f(channel, args)` in a new child process (started as
/// [`Process`](super::Process) children are, see the [module documentation](super)) and returns the parent's
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
///     procwire::process::waitall()?;
///     Ok(())
/// }
/// ```
pub fn start<A: Serialize>(f: &ChannelFunction<A>, args: A) -> Result<Channel> {
    let args = encode_args(&args).map_err(Error::Encode)?;
    let name = next_name();
    let s = spawn(&SpawnOptions {
        function: f.parts().0,
        channel: true,
        args: &args,
        name: &name,
        daemon: false,
        executable: None,
        start_timeout: DEFAULT_START_TIMEOUT,
        pipe: crate::PipeKind::Socket,
    })?;
    Ok(Peer::channel(s.conn, s.sentinel, s.pid))
}

/// pprocess's `waitall`: waits for every child started by [`start`] and [`create`] (that was
/// not reaped through its channel already) to exit, and returns their pids and exit codes.
pub fn waitall() -> Result<Vec<(u32, i32)>> {
    waitall_until(None)
}

/// As [`waitall`], waiting at most `timeout`: returns the children that exited by then (each
/// reported once); the ones still running stay for the next call.
pub fn waitall_timeout(timeout: Duration) -> Result<Vec<(u32, i32)>> {
    waitall_until(deadline_of(Some(timeout)))
}

fn waitall_until(deadline: Option<Instant>) -> Result<Vec<(u32, i32)>> {
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
            return Ok(done);
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(20));
    }
}

/// The two sides of [`create`] (Unix only).
#[cfg(unix)]
#[derive(Debug)]
pub enum Forked {
    /// In the parent: the channel to the child.
    Parent(Channel),
    /// In the child: the connection to the parent.
    Child(Connection),
}

/// pprocess's fork-style `create`: fork(2) this process, with a channel between the two
/// sides. Unix only: Windows has no fork, and this function does not exist there (start a
/// child with [`start`] instead).
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
///         ch.join()?;
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
///   a second time, removing its socket files for instance). This matters most for
///   encrypted connections: the child holds copies of their keys and message counters, and
///   sealing anything with them, even the end message their drop sends, reuses nonces the
///   parent will use too, which breaks AES-GCM's secrecy and integrity for that connection.
/// - Stdout is flushed before the fork, so that buffered output is not written twice.
#[cfg(unix)]
pub unsafe fn create() -> Result<Forked> {
    let (mine, theirs) = crate::pipe(true)?;
    let _ = io::Write::flush(&mut io::stdout());
    // SAFETY: the caller upholds the rules above.
    match unsafe { sys::fork() }? {
        Some((pid, sentinel)) => {
            drop(theirs);
            Ok(Forked::Parent(Peer::channel(mine, sentinel, pid)))
        }
        None => {
            drop(mine);
            // The parent's children are not ours.
            lock(&STARTED).clear();
            Ok(Forked::Child(theirs))
        }
    }
}
