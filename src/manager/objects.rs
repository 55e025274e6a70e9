//! The objects a manager serves: the call interface, and the built-in types (dict, list, value,
//! namespace, queue, and the synchronization primitives of `threading`).
//!
//! Every object has its own lock, so calls on different objects run side by side. Blocking
//! methods wait in slices of [`SLICE`] and look at the caller's connection between slices: a
//! client that went away stops waiting (its connection thread ends), so it never pins a thread.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ciborium::Value;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Connection;
use crate::queue::QueueBuilder;

/// How long a blocking method waits before looking at its client's connection again.
pub(crate) const SLICE: Duration = Duration::from_millis(100);

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An error a method raises: it travels to the caller as `Error::Remote { kind, message }`.
#[derive(Debug)]
pub(crate) struct Fault {
    pub(crate) kind: String,
    pub(crate) message: String,
}

impl Fault {
    pub(crate) fn new(kind: &str, message: impl Into<String>) -> Fault {
        Fault { kind: kind.to_string(), message: message.into() }
    }
}

pub(crate) type Outcome = Result<Value, Fault>;

/// Decodes a method's arguments as `T`; a mismatch is a fault of kind `type`.
pub(crate) fn args<T: DeserializeOwned>(method: &str, v: &Value) -> Result<T, Fault> {
    v.deserialized().map_err(|e| {
        Fault::new(
            "type",
            format!("the arguments of {method} do not decode as {}: {e}", std::any::type_name::<T>()),
        )
    })
}

/// Encodes a method's result.
pub(crate) fn reply<T: Serialize>(v: T) -> Outcome {
    Value::serialized(&v).map_err(|e| Fault::new("encode", format!("the result does not encode: {e}")))
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
    pub(crate) conn: &'a mut Connection,
    pub(crate) stop: &'a AtomicBool,
}

impl Ctx<'_> {
    /// Whether the caller is gone (its connection reached end of file, or says something while
    /// it should be waiting for the answer) or the manager is shutting down.
    pub(crate) fn gone(&mut self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.conn.poll(Some(Duration::ZERO)).unwrap_or(true)
    }

    fn owner(&self, thread: u64) -> Owner {
        Owner { session: self.session, thread }
    }
}

fn gone_fault() -> Fault {
    Fault::new("gone", "the caller went away or the manager is shutting down")
}

/// A served object.
pub(crate) trait Object: Send + Sync {
    /// Runs `method` with `args`.
    fn call(&self, ctx: &mut Ctx<'_>, method: &str, args: &Value) -> Outcome;
    /// The session (client process) ended: give back what it held.
    fn session_ended(&self, _session: u64) {}
}

pub(crate) fn no_method(typeid: &str, method: &str) -> Fault {
    Fault::new("attribute", format!("'{typeid}' object has no exposed method '{method}'"))
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
            Err(Fault::new("value", "timeout value must be a non-negative number"))
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

// ---------------------------------------------------------------------------------------------
// Containers

/// The encoding of a key, its identity in a dict (equal values encode equally).
fn key_bytes(v: &Value) -> Result<Vec<u8>, Fault> {
    let mut b = Vec::new();
    ciborium::into_writer(v, &mut b).map_err(|e| Fault::new("encode", e.to_string()))?;
    Ok(b)
}

#[derive(Default)]
struct DictState {
    /// Key encoding -> (insertion number, key, value).
    map: HashMap<Vec<u8>, (u64, Value, Value)>,
    next: u64,
}

impl DictState {
    fn insert(&mut self, k: Value, v: Value) -> Result<Option<Value>, Fault> {
        let kb = key_bytes(&k)?;
        if let Some(e) = self.map.get_mut(&kb) {
            return Ok(Some(std::mem::replace(&mut e.2, v)));
        }
        self.next += 1;
        self.map.insert(kb, (self.next, k, v));
        Ok(None)
    }

    fn ordered(&self) -> Vec<&(u64, Value, Value)> {
        let mut v: Vec<_> = self.map.values().collect();
        v.sort_unstable_by_key(|e| e.0);
        v
    }
}

/// `dict`: CBOR keys to CBOR values, in insertion order.
#[derive(Default)]
pub(crate) struct Dict {
    st: Mutex<DictState>,
}

impl Object for Dict {
    fn call(&self, _ctx: &mut Ctx<'_>, method: &str, a: &Value) -> Outcome {
        let mut st = lock(&self.st);
        match method {
            "get" => {
                let got = st.map.get(&key_bytes(a)?).map(|e| e.2.clone());
                reply(got.into_iter().collect::<Vec<_>>())
            }
            "insert" => {
                let (k, v): (Value, Value) = args(method, a)?;
                reply(st.insert(k, v)?.into_iter().collect::<Vec<_>>())
            }
            "setdefault" => {
                let (k, v): (Value, Value) = args(method, a)?;
                let kb = key_bytes(&k)?;
                if let Some(e) = st.map.get(&kb) {
                    return reply(&e.2);
                }
                st.insert(k, v.clone())?;
                reply(v)
            }
            "remove" => reply(st.map.remove(&key_bytes(a)?).map(|e| e.2).into_iter().collect::<Vec<_>>()),
            "contains" => reply(st.map.contains_key(&key_bytes(a)?)),
            "len" => reply(st.map.len()),
            "keys" => reply(st.ordered().into_iter().map(|e| &e.1).collect::<Vec<_>>()),
            "values" => reply(st.ordered().into_iter().map(|e| &e.2).collect::<Vec<_>>()),
            "items" => reply(st.ordered().into_iter().map(|e| (&e.1, &e.2)).collect::<Vec<_>>()),
            "update" => {
                let items: Vec<(Value, Value)> = args(method, a)?;
                for (k, v) in items {
                    st.insert(k, v)?;
                }
                reply(())
            }
            "clear" => {
                st.map.clear();
                reply(())
            }
            _ => Err(no_method("dict", method)),
        }
    }
}

/// `list`: a sequence of CBOR values. Indices may be negative, counting from the end.
pub(crate) struct List {
    v: Mutex<Vec<Value>>,
}

impl List {
    pub(crate) fn new(items: Vec<Value>) -> List {
        List { v: Mutex::new(items) }
    }
}

fn index(i: i64, len: usize) -> Result<usize, Fault> {
    let j = if i < 0 { i + len as i64 } else { i };
    if j < 0 || j >= len as i64 {
        return Err(Fault::new("index", format!("list index {i} out of range (length {len})")));
    }
    Ok(j as usize)
}

impl Object for List {
    fn call(&self, _ctx: &mut Ctx<'_>, method: &str, a: &Value) -> Outcome {
        let mut v = lock(&self.v);
        match method {
            "len" => reply(v.len()),
            "get" => {
                let i = index(args(method, a)?, v.len())?;
                reply(&v[i])
            }
            "set" => {
                let (i, x): (i64, Value) = args(method, a)?;
                let i = index(i, v.len())?;
                v[i] = x;
                reply(())
            }
            "append" => {
                v.push(a.clone());
                reply(())
            }
            "extend" => {
                let items: Vec<Value> = args(method, a)?;
                v.extend(items);
                reply(())
            }
            "insert" => {
                // As Python's list.insert: an index out of range clamps to the ends.
                let (i, x): (i64, Value) = args(method, a)?;
                let len = v.len() as i64;
                let j = if i < 0 { (i + len).max(0) } else { i.min(len) };
                v.insert(j as usize, x);
                reply(())
            }
            "pop" => {
                let i: Option<i64> = args(method, a)?;
                if v.is_empty() {
                    return Err(Fault::new("index", "pop from empty list"));
                }
                let i = index(i.unwrap_or(-1), v.len())?;
                reply(v.remove(i))
            }
            "remove" => match v.iter().position(|x| x == a) {
                Some(i) => {
                    v.remove(i);
                    reply(())
                }
                None => Err(Fault::new("value", "list.remove(x): x not in list")),
            },
            "index" => match v.iter().position(|x| x == a) {
                Some(i) => reply(i),
                None => Err(Fault::new("value", "list.index(x): x not in list")),
            },
            "count" => reply(v.iter().filter(|x| *x == a).count()),
            "contains" => reply(v.contains(a)),
            "reverse" => {
                v.reverse();
                reply(())
            }
            "sort" => {
                v.sort_by(|x, y| x.partial_cmp(y).unwrap_or(std::cmp::Ordering::Equal));
                reply(())
            }
            "to_vec" => reply(&*v),
            "clear" => {
                v.clear();
                reply(())
            }
            _ => Err(no_method("list", method)),
        }
    }
}

/// `value`: one CBOR value.
pub(crate) struct Cell {
    v: Mutex<Value>,
}

impl Cell {
    pub(crate) fn new(v: Value) -> Cell {
        Cell { v: Mutex::new(v) }
    }
}

impl Object for Cell {
    fn call(&self, _ctx: &mut Ctx<'_>, method: &str, a: &Value) -> Outcome {
        let mut v = lock(&self.v);
        match method {
            "get" => reply(&*v),
            "set" => {
                *v = a.clone();
                reply(())
            }
            "swap" => reply(std::mem::replace(&mut *v, a.clone())),
            _ => Err(no_method("value", method)),
        }
    }
}

/// `namespace`: named attributes holding CBOR values.
#[derive(Default)]
pub(crate) struct Namespace {
    attrs: Mutex<std::collections::BTreeMap<String, Value>>,
}

impl Object for Namespace {
    fn call(&self, _ctx: &mut Ctx<'_>, method: &str, a: &Value) -> Outcome {
        let mut m = lock(&self.attrs);
        let missing =
            |name: &str| Fault::new("attribute", format!("'Namespace' object has no attribute '{name}'"));
        match method {
            "get" => {
                let name: String = args(method, a)?;
                m.get(&name).map_or_else(|| Err(missing(&name)), reply)
            }
            "set" => {
                let (name, v): (String, Value) = args(method, a)?;
                m.insert(name, v);
                reply(())
            }
            "del" => {
                let name: String = args(method, a)?;
                m.remove(&name).map_or_else(|| Err(missing(&name)), |_| reply(()))
            }
            "contains" => reply(m.contains_key(&args::<String>(method, a)?)),
            "items" => reply(&*m),
            _ => Err(no_method("namespace", method)),
        }
    }
}

/// `queue`: a [`Queue`](crate::queue::Queue) served by the manager's process; callers get its
/// handle and use it directly.
pub(crate) struct SharedQueue {
    handle: Value,
    _queue: crate::queue::Queue<Value>,
}

impl SharedQueue {
    pub(crate) fn new(maxsize: Option<u64>, near: &crate::Address) -> Result<SharedQueue, Fault> {
        let mut b = QueueBuilder::new();
        if let Some(m) = maxsize {
            b = b.maxsize(usize::try_from(m).unwrap_or(usize::MAX));
        }
        // Reachable wherever the manager is: a TCP manager's queue listens on the same host.
        if let crate::Address::Tcp { host, .. } = near {
            b = b.address(crate::Address::Tcp { host: host.clone(), port: 0 });
        }
        let q =
            b.build::<Value>().map_err(|e| Fault::new("create", format!("cannot create the queue: {e}")))?;
        Ok(SharedQueue {
            handle: Value::serialized(&q).map_err(|e| Fault::new("encode", e.to_string()))?,
            _queue: q,
        })
    }
}

impl Object for SharedQueue {
    fn call(&self, _ctx: &mut Ctx<'_>, method: &str, _a: &Value) -> Outcome {
        match method {
            "handle" => Ok(self.handle.clone()),
            _ => Err(no_method("queue", method)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Synchronization primitives

/// `lock` (reentrant: `rlock`): held by one thread of one client at a time.
pub(crate) struct Lock {
    reentrant: bool,
    st: Mutex<Option<(Owner, u64)>>,
    cv: Condvar,
}

impl Lock {
    pub(crate) fn new(reentrant: bool) -> Lock {
        Lock { reentrant, st: Mutex::new(None), cv: Condvar::new() }
    }
}

impl Object for Lock {
    fn call(&self, ctx: &mut Ctx<'_>, method: &str, a: &Value) -> Outcome {
        let name = if self.reentrant { "rlock" } else { "lock" };
        match method {
            "acquire" => {
                let (thread, blocking, timeout): (u64, bool, Option<f64>) = args(method, a)?;
                let me = ctx.owner(thread);
                let deadline = deadline(blocking, timeout)?;
                let mut st = lock(&self.st);
                loop {
                    match &mut *st {
                        None => {
                            *st = Some((me, 1));
                            return reply(true);
                        }
                        Some((o, n)) if self.reentrant && *o == me => {
                            *n += 1;
                            return reply(true);
                        }
                        Some(_) => {}
                    }
                    let (g, woke) = block(&self.cv, st, deadline, ctx);
                    st = g;
                    match woke {
                        Woke::Maybe => {}
                        Woke::TimedOut => return reply(false),
                        Woke::Gone => return Err(gone_fault()),
                    }
                }
            }
            "release" => {
                let thread: u64 = args(method, a)?;
                let me = ctx.owner(thread);
                let mut st = lock(&self.st);
                match &mut *st {
                    None if self.reentrant => Err(Fault::new("runtime", "cannot release un-acquired lock")),
                    None => Err(Fault::new("runtime", "release unlocked lock")),
                    Some((o, _)) if self.reentrant && *o != me => {
                        Err(Fault::new("runtime", "cannot release un-acquired lock"))
                    }
                    Some((_, n)) => {
                        // As threading.Lock, a plain lock may be released by any thread.
                        *n -= 1;
                        if *n == 0 || !self.reentrant {
                            *st = None;
                            self.cv.notify_all();
                        }
                        reply(())
                    }
                }
            }
            "locked" => reply(lock(&self.st).is_some()),
            _ => Err(no_method(name, method)),
        }
    }

    fn session_ended(&self, session: u64) {
        let mut st = lock(&self.st);
        if st.is_some_and(|(o, _)| o.session == session) {
            *st = None;
            self.cv.notify_all();
        }
    }
}

struct SemState {
    value: u64,
    /// Permits each session took and nobody gave back; their sum never exceeds the permits
    /// missing below the initial value.
    held: HashMap<u64, u64>,
}

impl SemState {
    /// Trims holdings to the permits actually missing, `prefer`'s own first.
    fn trim(&mut self, initial: u64, prefer: u64) {
        let missing = initial.saturating_sub(self.value);
        let mut sum: u64 = self.held.values().sum();
        while sum > missing {
            let s = if self.held.get(&prefer).is_some_and(|n| *n > 0) {
                prefer
            } else {
                match self.held.iter().find(|(_, n)| **n > 0) {
                    Some((s, _)) => *s,
                    None => break,
                }
            };
            if let Some(n) = self.held.get_mut(&s) {
                *n -= 1;
                if *n == 0 {
                    self.held.remove(&s);
                }
            }
            sum -= 1;
        }
    }
}

/// `semaphore` and `bounded_semaphore`.
pub(crate) struct Semaphore {
    initial: u64,
    bounded: bool,
    st: Mutex<SemState>,
    cv: Condvar,
}

impl Semaphore {
    pub(crate) fn new(value: u64, bounded: bool) -> Semaphore {
        Semaphore {
            initial: value,
            bounded,
            st: Mutex::new(SemState { value, held: HashMap::new() }),
            cv: Condvar::new(),
        }
    }
}

impl Object for Semaphore {
    fn call(&self, ctx: &mut Ctx<'_>, method: &str, a: &Value) -> Outcome {
        match method {
            "acquire" => {
                let (blocking, timeout): (bool, Option<f64>) = args(method, a)?;
                let deadline = deadline(blocking, timeout)?;
                let mut st = lock(&self.st);
                loop {
                    if st.value > 0 {
                        st.value -= 1;
                        *st.held.entry(ctx.session).or_default() += 1;
                        st.trim(self.initial, ctx.session);
                        return reply(true);
                    }
                    let (g, woke) = block(&self.cv, st, deadline, ctx);
                    st = g;
                    match woke {
                        Woke::Maybe => {}
                        Woke::TimedOut => return reply(false),
                        Woke::Gone => return Err(gone_fault()),
                    }
                }
            }
            "release" => {
                let n: u64 = args(method, a)?;
                if n == 0 {
                    return Err(Fault::new("value", "n must be one or more"));
                }
                let mut st = lock(&self.st);
                let value = st.value.saturating_add(n);
                if self.bounded && value > self.initial {
                    return Err(Fault::new("value", "Semaphore released too many times"));
                }
                st.value = value;
                st.trim(self.initial, ctx.session);
                self.cv.notify_all();
                reply(())
            }
            "value" => reply(lock(&self.st).value),
            _ => Err(no_method(if self.bounded { "bounded_semaphore" } else { "semaphore" }, method)),
        }
    }

    fn session_ended(&self, session: u64) {
        let mut st = lock(&self.st);
        if let Some(n) = st.held.remove(&session) {
            st.value = st.value.saturating_add(n);
            self.cv.notify_all();
        }
    }
}

#[derive(Default)]
struct CondState {
    /// The condition's lock: reentrant, as threading.Condition's default RLock.
    owner: Option<(Owner, u64)>,
    waiting: VecDeque<u64>,
    notified: HashSet<u64>,
    next: u64,
}

/// `condition`: a reentrant lock with wait and notify.
#[derive(Default)]
pub(crate) struct Condition {
    st: Mutex<CondState>,
    cv: Condvar,
}

impl Condition {
    fn take_lock<'a>(
        &'a self,
        mut st: MutexGuard<'a, CondState>,
        me: Owner,
        count: u64,
        deadline: Option<Instant>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(MutexGuard<'a, CondState>, bool), Fault> {
        loop {
            match &mut st.owner {
                None => {
                    st.owner = Some((me, count));
                    return Ok((st, true));
                }
                Some((o, n)) if *o == me => {
                    *n += count;
                    return Ok((st, true));
                }
                Some(_) => {}
            }
            let (g, woke) = block(&self.cv, st, deadline, ctx);
            st = g;
            match woke {
                Woke::Maybe => {}
                Woke::TimedOut => return Ok((st, false)),
                Woke::Gone => return Err(gone_fault()),
            }
        }
    }
}

fn owns(st: &CondState, me: Owner) -> bool {
    st.owner.is_some_and(|(o, _)| o == me)
}

impl Object for Condition {
    fn call(&self, ctx: &mut Ctx<'_>, method: &str, a: &Value) -> Outcome {
        match method {
            "acquire" => {
                let (thread, blocking, timeout): (u64, bool, Option<f64>) = args(method, a)?;
                let deadline = deadline(blocking, timeout)?;
                let st = lock(&self.st);
                let (_st, got) = self.take_lock(st, ctx.owner(thread), 1, deadline, ctx)?;
                reply(got)
            }
            "release" => {
                let thread: u64 = args(method, a)?;
                let mut st = lock(&self.st);
                if !owns(&st, ctx.owner(thread)) {
                    return Err(Fault::new("runtime", "cannot release un-acquired lock"));
                }
                if let Some((_, n)) = &mut st.owner {
                    *n -= 1;
                    if *n == 0 {
                        st.owner = None;
                        self.cv.notify_all();
                    }
                }
                reply(())
            }
            "wait" => {
                let (thread, timeout): (u64, Option<f64>) = args(method, a)?;
                let me = ctx.owner(thread);
                let deadline = deadline(true, timeout)?;
                let mut st = lock(&self.st);
                let Some((_, count)) = st.owner.filter(|(o, _)| *o == me) else {
                    return Err(Fault::new("runtime", "cannot wait on un-acquired lock"));
                };
                st.owner = None;
                st.next += 1;
                let ticket = st.next;
                st.waiting.push_back(ticket);
                self.cv.notify_all();
                let notified = loop {
                    if st.notified.remove(&ticket) {
                        break true;
                    }
                    let (g, woke) = block(&self.cv, st, deadline, ctx);
                    st = g;
                    match woke {
                        Woke::Maybe => {}
                        Woke::TimedOut => {
                            st.waiting.retain(|t| *t != ticket);
                            break st.notified.remove(&ticket);
                        }
                        Woke::Gone => {
                            st.waiting.retain(|t| *t != ticket);
                            st.notified.remove(&ticket);
                            return Err(gone_fault());
                        }
                    }
                };
                let _ = self.take_lock(st, me, count, None, ctx)?;
                reply(notified)
            }
            "notify" | "notify_all" => {
                let (thread, n): (u64, Option<u64>) = args(method, a)?;
                let mut st = lock(&self.st);
                if !owns(&st, ctx.owner(thread)) {
                    return Err(Fault::new("runtime", "cannot notify on un-acquired lock"));
                }
                let n = if method == "notify_all" { u64::MAX } else { n.unwrap_or(1) };
                for _ in 0..n {
                    let Some(t) = st.waiting.pop_front() else { break };
                    st.notified.insert(t);
                }
                self.cv.notify_all();
                reply(())
            }
            _ => Err(no_method("condition", method)),
        }
    }

    fn session_ended(&self, session: u64) {
        let mut st = lock(&self.st);
        if st.owner.is_some_and(|(o, _)| o.session == session) {
            st.owner = None;
            self.cv.notify_all();
        }
    }
}

/// `event`: a flag that can be waited for.
#[derive(Default)]
pub(crate) struct Event {
    st: Mutex<bool>,
    cv: Condvar,
}

impl Object for Event {
    fn call(&self, ctx: &mut Ctx<'_>, method: &str, a: &Value) -> Outcome {
        match method {
            "set" => {
                *lock(&self.st) = true;
                self.cv.notify_all();
                reply(())
            }
            "clear" => {
                *lock(&self.st) = false;
                reply(())
            }
            "is_set" => reply(*lock(&self.st)),
            "wait" => {
                let timeout: Option<f64> = args(method, a)?;
                let deadline = deadline(true, timeout)?;
                let mut st = lock(&self.st);
                loop {
                    if *st {
                        return reply(true);
                    }
                    let (g, woke) = block(&self.cv, st, deadline, ctx);
                    st = g;
                    match woke {
                        Woke::Maybe => {}
                        Woke::TimedOut => return reply(*st),
                        Woke::Gone => return Err(gone_fault()),
                    }
                }
            }
            _ => Err(no_method("event", method)),
        }
    }
}

struct BarrierState {
    count: u64,
    generation: u64,
    broken: bool,
    /// A generation that `reset` ended while threads waited in it: they fail.
    reset_generation: Option<u64>,
}

/// `barrier`: `parties` callers wait for each other.
pub(crate) struct Barrier {
    parties: u64,
    st: Mutex<BarrierState>,
    cv: Condvar,
}

impl Barrier {
    pub(crate) fn new(parties: u64) -> Barrier {
        Barrier {
            parties,
            st: Mutex::new(BarrierState { count: 0, generation: 0, broken: false, reset_generation: None }),
            cv: Condvar::new(),
        }
    }
}

fn broken() -> Fault {
    Fault::new("broken_barrier", "the barrier is broken")
}

impl Object for Barrier {
    fn call(&self, ctx: &mut Ctx<'_>, method: &str, a: &Value) -> Outcome {
        match method {
            "wait" => {
                let timeout: Option<f64> = args(method, a)?;
                let deadline = deadline(true, timeout)?;
                let mut st = lock(&self.st);
                if st.broken {
                    return Err(broken());
                }
                // As threading.Barrier: the last to arrive gets 0, the first parties - 1.
                let index = self.parties - 1 - st.count;
                st.count += 1;
                if st.count == self.parties {
                    st.count = 0;
                    st.generation += 1;
                    self.cv.notify_all();
                    return reply(index);
                }
                let generation = st.generation;
                loop {
                    if st.generation != generation {
                        return if st.reset_generation == Some(generation) {
                            Err(broken())
                        } else {
                            reply(index)
                        };
                    }
                    if st.broken {
                        return Err(broken());
                    }
                    let (g, woke) = block(&self.cv, st, deadline, ctx);
                    st = g;
                    match woke {
                        Woke::Maybe => {}
                        // As threading: a wait that times out (or a waiter that goes away)
                        // breaks the barrier for everyone.
                        Woke::TimedOut | Woke::Gone => {
                            if st.generation != generation {
                                continue;
                            }
                            st.broken = true;
                            self.cv.notify_all();
                            return Err(broken());
                        }
                    }
                }
            }
            "reset" => {
                let mut st = lock(&self.st);
                if st.count > 0 {
                    st.reset_generation = Some(st.generation);
                }
                st.generation += 1;
                st.count = 0;
                st.broken = false;
                self.cv.notify_all();
                reply(())
            }
            "abort" => {
                lock(&self.st).broken = true;
                self.cv.notify_all();
                reply(())
            }
            "parties" => reply(self.parties),
            "n_waiting" => {
                let st = lock(&self.st);
                reply(if st.broken { 0 } else { st.count })
            }
            "broken" => reply(lock(&self.st).broken),
            _ => Err(no_method("barrier", method)),
        }
    }
}
