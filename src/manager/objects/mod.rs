//! The objects a manager serves: the call interface, and the built-in types (dict, list, value,
//! namespace, queue, and the synchronization primitives of `threading`).
//!
//! Every object has its own lock, so calls on different objects run side by side. Blocking
//! methods wait in slices of [`SLICE`] and look at the caller's connection between slices: a
//! client that went away stops waiting (its connection thread ends), so it never pins a thread.
//! The same objects serve a manager in this process (`procwire::dummy`'s), called on the
//! caller's own thread.

mod barrier;
mod cell;
mod condition;
mod dict;
mod event;
mod list;
mod lock;
mod queue;
mod semaphore;

pub(crate) use self::barrier::Barrier;
pub(crate) use self::cell::{Cell, Namespace};
pub(crate) use self::condition::Condition;
pub(crate) use self::dict::Dict;
pub(crate) use self::event::Event;
pub(crate) use self::list::List;
pub(crate) use self::lock::Lock;
pub(crate) use self::queue::SharedQueue;
pub(crate) use self::semaphore::Semaphore;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::cbor;
use super::wire::OK;
use crate::RemoteKind;
use crate::{Address, Connection};

/// Where and how clients reach the manager: a queue it serves listens near it, encrypts as it
/// does, and listens beside on shared memory when it does.
#[derive(Clone, Debug)]
pub(crate) struct Near {
    pub(crate) address: Address,
    pub(crate) encrypt: bool,
    pub(crate) shared_memory: bool,
    /// The manager's shared-memory listener's address, told to clients that ask in their
    /// Hello.
    pub(crate) shm: Option<Address>,
}
pub(crate) use crate::util::lock;

/// How long a blocking method waits before looking at its client's connection again.
pub(crate) const SLICE: Duration = Duration::from_millis(100);

/// An error a method raises: it travels to the caller as `Error::Remote { kind, message }`.
#[derive(Debug)]
pub(crate) struct Fault {
    pub(crate) kind: RemoteKind,
    pub(crate) message: String,
}

impl Fault {
    pub(crate) fn new(kind: RemoteKind, message: impl Into<String>) -> Fault {
        Fault { kind, message: message.into() }
    }
}

/// A method's answer: the whole reply message, [`OK`] and the encoded result (or a fault).
pub(crate) type Outcome = Result<Vec<u8>, Fault>;

/// Decodes a method's arguments as `T`; a mismatch is a fault of kind `type`.
pub(crate) fn args<T: DeserializeOwned>(method: &str, a: &[u8]) -> Result<T, Fault> {
    crate::connection::decode(a).map_err(|e| {
        // serde's message may quote the whole argument.
        let e = e.to_string();
        Fault::new(
            RemoteKind::Type,
            format!(
                "the arguments of {method} do not decode as {}: {}",
                std::any::type_name::<T>(),
                clip_to(&e, 256)
            ),
        )
    })
}

/// Arguments of the wrong shape for a built-in method.
fn shape(method: &str, e: cbor::Malformed) -> Fault {
    Fault::new(RemoteKind::Type, format!("the arguments of {method} do not fit: {e}"))
}

/// A name from a request, cut to 64 characters for a message: a reply to a bad request is no
/// larger than a constant.
pub(crate) fn clip(name: &str) -> &str {
    clip_to(name, 64)
}

fn clip_to(s: &str, n: usize) -> &str {
    s.char_indices().nth(n).map_or(s, |(i, _)| &s[..i])
}

/// The fault for memory the server could not have.
pub(crate) fn no_memory() -> Fault {
    Fault::new(RemoteKind::Memory, "the manager cannot allocate the memory this request needs")
}

/// Makes room for `n` more bytes or items, or a fault of kind `memory`: a size that comes
/// from a peer never aborts the server.
pub(crate) fn room<T>(v: &mut Vec<T>, n: usize) -> Result<(), Fault> {
    v.try_reserve(n).map_err(|_| no_memory())
}

/// Encodes a method's result.
pub(crate) fn reply<T: Serialize>(v: T) -> Outcome {
    let mut out = OK.to_vec();
    ciborium::into_writer(&v, &mut out)
        .map_err(|e| Fault::new(RemoteKind::Encode, format!("the result does not encode: {e}")))?;
    Ok(out)
}

/// A result already encoded, in pieces.
fn raw(parts: &[&[u8]]) -> Outcome {
    let mut out = Vec::new();
    room(&mut out, OK.len() + parts.iter().map(|p| p.len()).sum::<usize>())?;
    out.extend_from_slice(&OK);
    for p in parts {
        out.extend_from_slice(p);
    }
    Ok(out)
}

/// An optional encoded result, as [`Maybe`](super::wire::Maybe): an array of zero or one item.
fn maybe(x: Option<&[u8]>) -> Outcome {
    match x {
        Some(x) => raw(&[&[0x81], x]),
        None => raw(&[&[0x80]]),
    }
}

/// A copy of `x` whose allocation may fail.
fn copy(x: &[u8]) -> Result<Vec<u8>, Fault> {
    let mut v = Vec::new();
    room(&mut v, x.len())?;
    v.extend_from_slice(x);
    Ok(v)
}

/// Who calls: the session (client process) and, for owned locks, its thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Owner {
    pub(crate) session: u64,
    pub(crate) thread: u64,
}

/// What a method knows about its call.
pub(crate) struct Ctx<'a> {
    pub(crate) session: u64,
    /// The caller's connection; `None` for a caller on this thread (a manager in this
    /// process), which cannot go away while it waits.
    pub(crate) conn: Option<&'a mut Connection>,
    pub(crate) stop: &'a AtomicBool,
}

impl Ctx<'_> {
    /// Whether the caller is gone (its connection reached end of file, or says something while
    /// it should be waiting for the answer) or the manager is shutting down.
    pub(crate) fn gone(&mut self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.conn.as_mut().is_some_and(|c| c.poll().unwrap_or(true))
    }

    fn owner(&self, thread: u64) -> Owner {
        Owner { session: self.session, thread }
    }
}

fn gone_fault() -> Fault {
    Fault::new(RemoteKind::Gone, "the caller went away or the manager is shutting down")
}

/// A served object.
pub(crate) trait Object: Send + Sync {
    /// Runs `method` with `args`.
    fn call(&self, ctx: &mut Ctx<'_>, method: &str, args: &[u8]) -> Outcome;
    /// The session (client process) ended: give back what it held.
    fn session_ended(&self, _session: u64) {}
}

pub(crate) fn no_method(typeid: &str, method: &str) -> Fault {
    Fault::new(RemoteKind::Attribute, format!("'{typeid}' object has no exposed method '{}'", clip(method)))
}

/// The end of a wait: `None` for "wait forever", `Some(now)` for a non-blocking attempt.
fn deadline(blocking: bool, timeout: Option<f64>) -> Result<Option<Instant>, Fault> {
    let now = Instant::now();
    if !blocking {
        return Ok(Some(now));
    }
    match timeout {
        None => Ok(None),
        Some(t) if t.is_nan() || t < 0.0 => {
            Err(Fault::new(RemoteKind::Value, "timeout value must be a non-negative number"))
        }
        Some(t) => Ok(Duration::try_from_secs_f64(t).ok().and_then(|d| now.checked_add(d))),
    }
}

enum Woke {
    Maybe,
    TimedOut,
    Gone,
}

/// Waits on `cv` for at most one slice (or until `deadline`), then checks the caller.
fn block<'a, T>(
    cv: &Condvar,
    g: MutexGuard<'a, T>,
    deadline: Option<Instant>,
    ctx: &mut Ctx<'_>,
) -> (MutexGuard<'a, T>, Woke) {
    let now = Instant::now();
    if deadline.is_some_and(|d| now >= d) {
        return (g, Woke::TimedOut);
    }
    let slice = deadline.map_or(SLICE, |d| SLICE.min(d - now));
    let (g, r) = cv.wait_timeout(g, slice).unwrap_or_else(|p| p.into_inner());
    if r.timed_out() && ctx.gone() {
        return (g, Woke::Gone);
    }
    (g, Woke::Maybe)
}

// Items of the containers stay as the client encoded them (see list.rs and dict.rs).

/// The most bytes of encoded items one list, dict or namespace holds (the index is 32 bits).
const MAX_BYTES: usize = u32::MAX as usize;

fn too_large() -> Fault {
    Fault::new(RemoteKind::Memory, "a manager container holds at most 4 GiB of encoded items")
}
