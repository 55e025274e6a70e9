//! [`wait`]: readiness over many connections and listeners at once, like CPython's
//! `multiprocessing.connection.wait`.

use std::time::{Duration, Instant};

use crate::connection::deadline_of;
use crate::transport::{Pollable, wait_ready};
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
        }
    }

    fn pollable(&self) -> Pollable<'_> {
        match self {
            Waitable::Connection(c) => Pollable::Stream(c.stream()),
            Waitable::Receiver(r) => Pollable::Stream(r.stream()),
            Waitable::Listener(l) => Pollable::Listener(l.raw()),
        }
    }
}

/// Waits until at least one of `objects` is ready, or `timeout` passes (`None`: forever), and
/// returns the indices of the ready ones, in order (empty after a timeout). Objects that
/// already hold buffered data count as ready without waiting; the others are then only checked,
/// not waited for. Any number of objects works (one `poll(2)` over all of them on Unix).
///
/// ```
/// use std::time::Duration;
/// use procwire::wait::wait;
/// let (mut a1, b1) = procwire::pipe(true)?;
/// let (_a2, b2) = procwire::pipe(true)?;
/// a1.send_bytes(b"hi")?;
/// let ready = wait(&[(&b1).into(), (&b2).into()], Some(Duration::from_secs(5)))?;
/// assert_eq!(ready, [0]);
/// assert!(wait(&[(&b2).into()], Some(Duration::ZERO))?.is_empty());
/// # Ok::<(), procwire::Error>(())
/// ```
pub fn wait(objects: &[Waitable<'_>], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let buffered: Vec<usize> = (0..objects.len()).filter(|&i| objects[i].ready_now()).collect();
    let deadline = if buffered.is_empty() { deadline_of(timeout) } else { Some(Instant::now()) };
    let pollables: Vec<Pollable<'_>> = objects.iter().map(|o| o.pollable()).collect();
    let mut ready = wait_ready(&pollables, deadline)?;
    ready.extend(buffered);
    ready.sort_unstable();
    ready.dedup();
    Ok(ready)
}
