//! [`wait`]: readiness over many connections, listeners and child processes at once, like
//! CPython's `multiprocessing.connection.wait`.

use std::time::{Duration, Instant};

use crate::sentinel::Sentinel;
use crate::transport::{Pollable, wait_ready, wait_ready_with};
use crate::util::deadline_of;
use crate::{Connection, Listener, Receiver, Result};

/// Something [`wait`] can watch. Build one with `From`: `(&conn).into()`.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Waitable<'a> {
    /// Ready when a message (or the end of the stream, or an error) can be received without
    /// blocking on the socket.
    Connection(&'a Connection),
    /// As [`Waitable::Connection`], for the receiving half of a split connection.
    Receiver(&'a Receiver),
    /// Ready when a client is waiting to be accepted or a finished handshake waits for
    /// `accept`. `accept` may still wait for a new client's handshake to finish.
    Listener(&'a Listener),
    /// Ready when the child process behind the sentinel has exited (whether or not it was
    /// joined yet), or was never started. Build one from a
    /// [`Process`](crate::process::Process) with `From`, or with
    /// [`Channel::sentinel`](crate::process::Channel::sentinel).
    Process(&'a Sentinel),
}

impl<'a> From<&'a Connection> for Waitable<'a> {
    fn from(c: &'a Connection) -> Self {
        Waitable::Connection(c)
    }
}

impl<'a> From<&'a Receiver> for Waitable<'a> {
    fn from(r: &'a Receiver) -> Self {
        Waitable::Receiver(r)
    }
}

impl<'a> From<&'a Listener> for Waitable<'a> {
    fn from(l: &'a Listener) -> Self {
        Waitable::Listener(l)
    }
}

impl Waitable<'_> {
    /// Ready without asking the OS: data already buffered, a queued accepted connection.
    fn ready_now(&self) -> bool {
        match self {
            Waitable::Connection(c) => c.has_buffered(),
            Waitable::Receiver(r) => r.has_buffered(),
            Waitable::Listener(l) => l.has_ready(),
            Waitable::Process(s) => s.raw().is_none(),
        }
    }

    fn pollable(&self) -> Option<Pollable<'_>> {
        match self {
            Waitable::Connection(c) => Some(Pollable::Stream(c.stream())),
            Waitable::Receiver(r) => Some(Pollable::Stream(r.stream())),
            Waitable::Listener(l) => Some(Pollable::Listener(l.raw())),
            Waitable::Process(_) => None,
        }
    }
}

/// Waits until at least one of `objects` is ready and returns the indices of the ready ones,
/// in order (CPython's `multiprocessing.connection.wait(objects)`). Objects that
/// already hold buffered data count as ready without waiting; the others are then only checked,
/// not waited for. Any number of objects works (one `poll(2)` over all of them on Unix).
///
/// A process counts as ready once it has exited; [`Process::join`](crate::process::Process::join)
/// then reaps it without waiting (or after a few microseconds, while the kernel finishes the
/// exit).
///
/// ```
/// use std::time::Duration;
/// use procwire::wait::wait;
/// let (mut a1, b1) = procwire::pipe(true)?;
/// let (_a2, b2) = procwire::pipe(true)?;
/// a1.send_bytes(b"hi")?;
/// let ready = wait(&[(&b1).into(), (&b2).into()])?;
/// assert_eq!(ready, [0]);
/// # Ok::<(), procwire::Error>(())
/// ```
pub fn wait(objects: &[Waitable<'_>]) -> Result<Vec<usize>> {
    wait_with(objects, None)
}

/// As [`wait`], waiting at most `timeout` (zero: just look): empty if nothing was ready by then
/// (`wait(objects, timeout)` in CPython).
///
/// ```
/// use std::time::Duration;
/// use procwire::wait::wait_timeout;
/// let (_a, b) = procwire::pipe(true)?;
/// assert!(wait_timeout(&[(&b).into()], Duration::ZERO)?.is_empty());
/// # Ok::<(), procwire::Error>(())
/// ```
pub fn wait_timeout(objects: &[Waitable<'_>], timeout: Duration) -> Result<Vec<usize>> {
    wait_with(objects, Some(timeout))
}

/// [`wait`] with an optional timeout (`None`: forever), for the callers that pass one on.
pub(crate) fn wait_with(objects: &[Waitable<'_>], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let buffered: Vec<usize> = (0..objects.len()).filter(|&i| objects[i].ready_now()).collect();
    let deadline = if buffered.is_empty() { deadline_of(timeout) } else { Some(Instant::now()) };
    let (mut pollables, mut at) = (Vec::new(), Vec::new());
    let (mut sentinels, mut sentinel_at) = (Vec::new(), Vec::new());
    for (i, o) in objects.iter().enumerate() {
        if let Some(p) = o.pollable() {
            pollables.push(p);
            at.push(i);
        } else if let Waitable::Process(s) = o
            && let Some(raw) = s.raw()
        {
            sentinels.push(raw);
            sentinel_at.push(i);
        }
    }
    let got = if sentinels.is_empty() {
        wait_ready(&pollables, deadline)?
    } else {
        wait_ready_with(&pollables, &sentinels, deadline)?
    };
    at.extend(sentinel_at);
    let mut ready: Vec<usize> = got.into_iter().map(|j| at[j]).collect();
    ready.extend(buffered);
    ready.sort_unstable();
    ready.dedup();
    Ok(ready)
}
