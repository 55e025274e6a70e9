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

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::cbor;
use super::wire::OK;
use crate::Connection;
use crate::queue::QueueBuilder;
pub(crate) use crate::util::lock;

/// How long a blocking method waits before looking at its client's connection again.
pub(crate) const SLICE: Duration = Duration::from_millis(100);

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

/// A method's answer: the whole reply message, [`OK`] and the encoded result (or a fault).
pub(crate) type Outcome = Result<Vec<u8>, Fault>;

/// Decodes a method's arguments as `T`; a mismatch is a fault of kind `type`.
pub(crate) fn args<T: DeserializeOwned>(method: &str, a: &[u8]) -> Result<T, Fault> {
    super::wire::decode(a).map_err(|e| {
        // serde's message may quote the whole argument.
        let e = e.to_string();
        Fault::new(
            "type",
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
    Fault::new("type", format!("the arguments of {method} do not fit: {e}"))
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
    Fault::new("memory", "the manager cannot allocate the memory this request needs")
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
        .map_err(|e| Fault::new("encode", format!("the result does not encode: {e}")))?;
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
    fn call(&self, ctx: &mut Ctx<'_>, method: &str, args: &[u8]) -> Outcome;
    /// The session (client process) ended: give back what it held.
    fn session_ended(&self, _session: u64) {}
}

pub(crate) fn no_method(typeid: &str, method: &str) -> Fault {
    Fault::new("attribute", format!("'{typeid}' object has no exposed method '{}'", clip(method)))
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
//
// Items stay as the client encoded them, back to back in one buffer with an index of where
// each ends: a stored item costs its bytes and 4 (list) or 16 to 24 (dict) more, where a
// decoded value tree would cost 48 or more per item however small (a null is one byte).

/// The most bytes of encoded items one list, dict or namespace holds (the index is 32 bits).
const MAX_BYTES: usize = u32::MAX as usize;

fn too_large() -> Fault {
    Fault::new("memory", "a manager container holds at most 4 GiB of encoded items")
}

/// Encoded items back to back, and where each ends.
#[derive(Default)]
struct Packed {
    data: Vec<u8>,
    ends: Vec<u32>,
}

impl Packed {
    fn len(&self) -> usize {
        self.ends.len()
    }

    fn range(&self, i: usize) -> std::ops::Range<usize> {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        start..self.ends[i] as usize
    }

    fn get(&self, i: usize) -> &[u8] {
        &self.data[self.range(i)]
    }

    fn iter(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Room for `items` more items of `bytes` bytes in all.
    fn room(&mut self, items: usize, bytes: usize) -> Result<(), Fault> {
        if self.data.len().saturating_add(bytes) > MAX_BYTES {
            return Err(too_large());
        }
        room(&mut self.data, bytes)?;
        room(&mut self.ends, items)
    }

    fn push(&mut self, x: &[u8]) -> Result<(), Fault> {
        self.room(1, x.len())?;
        self.data.extend_from_slice(x);
        self.ends.push(self.data.len() as u32);
        Ok(())
    }

    /// Appends the items of the array `a` (checked well-formed): its bytes after the head are
    /// the items back to back (and a break for an indefinite length).
    fn extend(&mut self, method: &str, a: &[u8]) -> Result<(), Fault> {
        let count = cbor::Items::of(a).map_err(|e| shape(method, e))?.count();
        self.room(count, a.len())?;
        for x in cbor::Items::of(a).map_err(|e| shape(method, e))? {
            let x = x.map_err(|e| shape(method, e))?;
            self.data.extend_from_slice(x);
            self.ends.push(self.data.len() as u32);
        }
        Ok(())
    }

    fn insert(&mut self, i: usize, x: &[u8]) -> Result<(), Fault> {
        self.room(1, x.len())?;
        let at = if i == 0 { 0 } else { self.ends[i - 1] };
        self.data.splice(at as usize..at as usize, x.iter().copied());
        self.ends.insert(i, at);
        for e in &mut self.ends[i..] {
            *e += x.len() as u32;
        }
        Ok(())
    }

    fn remove(&mut self, i: usize) -> Result<Vec<u8>, Fault> {
        let r = self.range(i);
        let x = copy(&self.data[r.clone()])?;
        self.data.drain(r);
        self.ends.remove(i);
        for e in &mut self.ends[i..] {
            *e -= x.len() as u32;
        }
        Ok(x)
    }

    fn set(&mut self, i: usize, x: &[u8]) -> Result<(), Fault> {
        let r = self.range(i);
        if r.len() == x.len() {
            self.data[r].copy_from_slice(x);
            return Ok(());
        }
        self.insert(i, x)?;
        self.remove(i + 1).map(drop)
    }

    /// The items in the order of `order` (a permutation of the indices).
    fn reorder(&mut self, order: impl Iterator<Item = usize>) -> Result<(), Fault> {
        let mut next = Packed::default();
        next.room(self.len(), self.data.len())?;
        for i in order {
            next.data.extend_from_slice(self.get(i));
            next.ends.push(next.data.len() as u32);
        }
        *self = next;
        Ok(())
    }

    /// The reply of an array of every item.
    fn to_reply(&self) -> Outcome {
        let mut head = Vec::with_capacity(9);
        cbor::put_head(&mut head, 4, self.len() as u64);
        raw(&[&head, &self.data])
    }
}

/// Where a dict entry's key and value are in its data.
#[derive(Clone, Copy)]
struct Slot {
    key: (u32, u32),
    value: (u32, u32),
}

/// A removed entry's key start.
const GONE: u32 = u32::MAX;
/// A table cell that held an entry since removed (0 is empty, any other is an entry + 1).
const TOMB: u32 = u32::MAX;

/// `dict`'s state: keys and values encoded in `data`, entries in insertion order, and an
/// open-addressing table of entry numbers by the hash of the key's bytes.
#[derive(Default)]
struct DictState {
    data: Vec<u8>,
    entries: Vec<Slot>,
    table: Vec<u32>,
    live: usize,
    tombs: usize,
    /// Bytes of `data` no entry uses any more.
    dead: usize,
    hasher: std::collections::hash_map::RandomState,
}

impl DictState {
    fn bytes(&self, r: (u32, u32)) -> &[u8] {
        &self.data[r.0 as usize..r.1 as usize]
    }

    fn hash(&self, key: &[u8]) -> usize {
        use std::hash::BuildHasher;
        self.hasher.hash_one(key) as usize
    }

    /// The table cell and entry number of `key`.
    fn find(&self, key: &[u8]) -> Option<(usize, usize)> {
        if self.table.is_empty() {
            return None;
        }
        let mask = self.table.len() - 1;
        let mut i = self.hash(key) & mask;
        loop {
            match self.table[i] {
                0 => return None,
                TOMB => {}
                e => {
                    let e = e as usize - 1;
                    if self.bytes(self.entries[e].key) == key {
                        return Some((i, e));
                    }
                }
            }
            i = (i + 1) & mask;
        }
    }

    fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.find(key).map(|(_, e)| self.bytes(self.entries[e].value))
    }

    /// A table of `cells` (a power of two) for the live entries.
    fn rebuild_table(&mut self, cells: usize) -> Result<(), Fault> {
        let mut table = Vec::new();
        room(&mut table, cells)?;
        table.resize(cells, 0u32);
        let mask = cells - 1;
        for (n, s) in self.entries.iter().enumerate() {
            if s.key.0 == GONE {
                continue;
            }
            let mut i = self.hash(&self.data[s.key.0 as usize..s.key.1 as usize]) & mask;
            while table[i] != 0 {
                i = (i + 1) & mask;
            }
            table[i] = n as u32 + 1;
        }
        self.table = table;
        self.tombs = 0;
        Ok(())
    }

    /// Room in the table and the entries for `n` more entries: at most half the table in use,
    /// tombs included, so that probes end soon, and a quarter after a rebuild.
    fn reserve(&mut self, n: usize) -> Result<(), Fault> {
        let want = self.live.saturating_add(n);
        if want.saturating_add(self.tombs).saturating_mul(2) > self.table.len() {
            self.rebuild_table(want.saturating_mul(2).next_power_of_two().max(8))?;
        }
        room(&mut self.entries, n)
    }

    /// Appends `x` to the data: where it is.
    fn put(&mut self, x: &[u8]) -> Result<(u32, u32), Fault> {
        if self.data.len().saturating_add(x.len()) > MAX_BYTES {
            return Err(too_large());
        }
        room(&mut self.data, x.len())?;
        let start = self.data.len() as u32;
        self.data.extend_from_slice(x);
        Ok((start, self.data.len() as u32))
    }

    /// Sets `key` to `value`; the value it had, if any.
    fn insert(&mut self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, Fault> {
        if let Some((_, e)) = self.find(key) {
            let old = self.entries[e].value;
            let was = copy(self.bytes(old))?;
            if was.len() == value.len() {
                self.data[old.0 as usize..old.1 as usize].copy_from_slice(value);
            } else {
                self.entries[e].value = self.put(value)?;
                self.dead += was.len();
                self.compact()?;
            }
            return Ok(Some(was));
        }
        self.reserve(1)?;
        if self.entries.len() >= TOMB as usize - 1 {
            return Err(too_large());
        }
        let k = self.put(key)?;
        let v = self.put(value)?;
        self.entries.push(Slot { key: k, value: v });
        let mask = self.table.len() - 1;
        let mut i = self.hash(key) & mask;
        while self.table[i] != 0 && self.table[i] != TOMB {
            i = (i + 1) & mask;
        }
        if self.table[i] == TOMB {
            self.tombs -= 1;
        }
        self.table[i] = self.entries.len() as u32;
        self.live += 1;
        Ok(None)
    }

    fn remove(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, Fault> {
        let Some((cell, e)) = self.find(key) else { return Ok(None) };
        let s = self.entries[e];
        let was = copy(self.bytes(s.value))?;
        self.table[cell] = TOMB;
        self.tombs += 1;
        self.entries[e].key.0 = GONE;
        self.live -= 1;
        self.dead += (s.key.1 - s.key.0) as usize + was.len();
        self.compact()?;
        Ok(Some(was))
    }

    /// Drops what removed entries and replaced values left, once it is over half the data.
    fn compact(&mut self) -> Result<(), Fault> {
        if self.dead * 2 <= self.data.len() && self.entries.len() <= self.live * 2 + 8 {
            return Ok(());
        }
        let mut data = Vec::new();
        room(&mut data, self.data.len() - self.dead)?;
        let mut entries = Vec::new();
        room(&mut entries, self.live)?;
        for s in self.entries.iter().filter(|s| s.key.0 != GONE) {
            let k0 = data.len() as u32;
            data.extend_from_slice(self.bytes(s.key));
            let v0 = data.len() as u32;
            data.extend_from_slice(self.bytes(s.value));
            entries.push(Slot { key: (k0, v0), value: (v0, data.len() as u32) });
        }
        self.data = data;
        self.entries = entries;
        self.dead = 0;
        self.rebuild_table(self.live.saturating_mul(4).next_power_of_two().max(8))
    }

    fn live(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries.iter().filter(|s| s.key.0 != GONE).map(|s| (self.bytes(s.key), self.bytes(s.value)))
    }

    /// The reply of an array of `each` entry's parts.
    fn to_reply(&self, pair: bool, keys: bool, values: bool) -> Outcome {
        let mut out = Vec::new();
        room(&mut out, OK.len() + 9 + self.data.len() + self.live)?;
        out.extend_from_slice(&OK);
        cbor::put_head(&mut out, 4, self.live as u64);
        for (k, v) in self.live() {
            if pair {
                out.push(0x82);
            }
            if keys {
                out.extend_from_slice(k);
            }
            if values {
                out.extend_from_slice(v);
            }
        }
        Ok(out)
    }
}

/// `dict`: CBOR keys to CBOR values, in insertion order. Keys are the same when their
/// encodings are.
#[derive(Default)]
pub(crate) struct Dict {
    st: Mutex<DictState>,
}

impl Object for Dict {
    fn call(&self, _ctx: &mut Ctx<'_>, method: &str, a: &[u8]) -> Outcome {
        let mut st = lock(&self.st);
        match method {
            "get" => maybe(st.get(a)),
            "insert" => {
                let (k, v) = cbor::pair(a).map_err(|e| shape(method, e))?;
                let old = st.insert(k, v)?;
                maybe(old.as_deref())
            }
            "setdefault" => {
                let (k, v) = cbor::pair(a).map_err(|e| shape(method, e))?;
                if let Some(x) = st.get(k) {
                    return raw(&[x]);
                }
                st.insert(k, v)?;
                raw(&[v])
            }
            "remove" => {
                let old = st.remove(a)?;
                maybe(old.as_deref())
            }
            "contains" => reply(st.find(a).is_some()),
            "len" => reply(st.live),
            "keys" => st.to_reply(false, true, false),
            "values" => st.to_reply(false, false, true),
            "items" => st.to_reply(true, true, true),
            "update" => {
                // Room for all of it at once: the entries' bytes are within the request's.
                room(&mut st.data, a.len())?;
                let n = cbor::Items::of(a).map_err(|e| shape(method, e))?.count();
                st.reserve(n)?;
                for item in cbor::Items::of(a).map_err(|e| shape(method, e))? {
                    let (k, v) = item.and_then(cbor::pair).map_err(|e| shape(method, e))?;
                    st.insert(k, v)?;
                }
                reply(())
            }
            "clear" => {
                *st = DictState::default();
                reply(())
            }
            _ => Err(no_method("dict", method)),
        }
    }
}

/// `list`: a sequence of CBOR values. Indices may be negative, counting from the end.
pub(crate) struct List {
    v: Mutex<Packed>,
}

impl List {
    /// A list of the items of the array `a`.
    pub(crate) fn new(a: &[u8]) -> Result<List, Fault> {
        let mut v = Packed::default();
        v.extend("list", a)?;
        Ok(List { v: Mutex::new(v) })
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
    fn call(&self, _ctx: &mut Ctx<'_>, method: &str, a: &[u8]) -> Outcome {
        let mut v = lock(&self.v);
        match method {
            "len" => reply(v.len()),
            "get" => {
                let i = index(args(method, a)?, v.len())?;
                raw(&[v.get(i)])
            }
            "set" => {
                let (i, x) = cbor::pair(a).map_err(|e| shape(method, e))?;
                let i = index(args(method, i)?, v.len())?;
                v.set(i, x)?;
                reply(())
            }
            "append" => {
                v.push(a)?;
                reply(())
            }
            "extend" => {
                v.extend(method, a)?;
                reply(())
            }
            "insert" => {
                // As Python's list.insert: an index out of range clamps to the ends.
                let (i, x) = cbor::pair(a).map_err(|e| shape(method, e))?;
                let i: i64 = args(method, i)?;
                let len = v.len() as i64;
                let j = if i < 0 { (i + len).max(0) } else { i.min(len) };
                v.insert(j as usize, x)?;
                reply(())
            }
            "pop" => {
                let i: Option<i64> = args(method, a)?;
                if v.len() == 0 {
                    return Err(Fault::new("index", "pop from empty list"));
                }
                let i = index(i.unwrap_or(-1), v.len())?;
                let x = v.remove(i)?;
                raw(&[&x])
            }
            "remove" => {
                let found = v.iter().position(|x| cbor::equal(x, a));
                match found {
                    Some(i) => {
                        v.remove(i)?;
                        reply(())
                    }
                    None => Err(Fault::new("value", "list.remove(x): x not in list")),
                }
            }
            "index" => match v.iter().position(|x| cbor::equal(x, a)) {
                Some(i) => reply(i),
                None => Err(Fault::new("value", "list.index(x): x not in list")),
            },
            "count" => reply(v.iter().filter(|x| cbor::equal(x, a)).count()),
            "contains" => reply(v.iter().any(|x| cbor::equal(x, a))),
            "reverse" => {
                let n = v.len();
                v.reorder((0..n).rev())?;
                reply(())
            }
            "sort" => {
                let mut order: Vec<u32> = Vec::new();
                room(&mut order, v.len())?;
                order.extend(0..v.len() as u32);
                order.sort_by(|x, y| {
                    cbor::compare(v.get(*x as usize), v.get(*y as usize)).unwrap_or(std::cmp::Ordering::Equal)
                });
                v.reorder(order.into_iter().map(|i| i as usize))?;
                reply(())
            }
            "to_vec" => v.to_reply(),
            "clear" => {
                *v = Packed::default();
                reply(())
            }
            _ => Err(no_method("list", method)),
        }
    }
}

/// `value`: one CBOR value.
pub(crate) struct Cell {
    v: Mutex<Vec<u8>>,
}

impl Cell {
    pub(crate) fn new(a: &[u8]) -> Result<Cell, Fault> {
        Ok(Cell { v: Mutex::new(copy(a)?) })
    }
}

impl Object for Cell {
    fn call(&self, _ctx: &mut Ctx<'_>, method: &str, a: &[u8]) -> Outcome {
        let mut v = lock(&self.v);
        match method {
            "get" => raw(&[&v]),
            "set" => {
                *v = copy(a)?;
                reply(())
            }
            "swap" => {
                let old = std::mem::replace(&mut *v, copy(a)?);
                raw(&[&old])
            }
            _ => Err(no_method("value", method)),
        }
    }
}

/// `namespace`: named attributes holding CBOR values.
#[derive(Default)]
pub(crate) struct Namespace {
    attrs: Mutex<std::collections::BTreeMap<String, Vec<u8>>>,
}

impl Object for Namespace {
    fn call(&self, _ctx: &mut Ctx<'_>, method: &str, a: &[u8]) -> Outcome {
        let mut m = lock(&self.attrs);
        let missing =
            |name: &str| Fault::new("attribute", format!("'Namespace' object has no attribute '{name}'"));
        match method {
            "get" => {
                let name: String = args(method, a)?;
                m.get(&name).map_or_else(|| Err(missing(&name)), |v| raw(&[v]))
            }
            "set" => {
                let (name, v) = cbor::pair(a).map_err(|e| shape(method, e))?;
                let name: String = args(method, name)?;
                m.insert(name, copy(v)?);
                reply(())
            }
            "del" => {
                let name: String = args(method, a)?;
                m.remove(&name).map_or_else(|| Err(missing(&name)), |_| reply(()))
            }
            "contains" => reply(m.contains_key(&args::<String>(method, a)?)),
            "items" => {
                let mut out = Vec::new();
                let size = m.iter().map(|(k, v)| k.len() + v.len() + 18).sum::<usize>();
                room(&mut out, OK.len() + 9 + size)?;
                out.extend_from_slice(&OK);
                cbor::put_head(&mut out, 5, m.len() as u64);
                for (k, v) in m.iter() {
                    cbor::put_head(&mut out, 3, k.len() as u64);
                    out.extend_from_slice(k.as_bytes());
                    out.extend_from_slice(v);
                }
                Ok(out)
            }
            _ => Err(no_method("namespace", method)),
        }
    }
}

/// `queue`: a [`Queue`](crate::queue::Queue) served by the manager's process; callers get its
/// handle and use it directly.
pub(crate) struct SharedQueue {
    /// The reply to `handle`.
    handle: Vec<u8>,
    _queue: crate::queue::Queue<ciborium::Value>,
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
        let q = b
            .build::<ciborium::Value>()
            .map_err(|e| Fault::new("create", format!("cannot create the queue: {e}")))?;
        Ok(SharedQueue { handle: reply(&q)?, _queue: q })
    }
}

impl Object for SharedQueue {
    fn call(&self, _ctx: &mut Ctx<'_>, method: &str, _a: &[u8]) -> Outcome {
        match method {
            "handle" => copy(&self.handle),
            _ => Err(no_method("queue", method)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Synchronization primitives

/// Who holds a lock, how many times, and until when its lease runs.
#[derive(Clone, Copy)]
struct Held {
    owner: Owner,
    count: u64,
    until: Option<Instant>,
}

#[derive(Default)]
struct LockState {
    held: Option<Held>,
    /// Recent holders whose lease ran out, most recent last: their `release` is an error of
    /// kind [`LEASE_EXPIRED`](super::LEASE_EXPIRED).
    expired: VecDeque<Owner>,
}

/// How many holders whose lease ran out a lock remembers.
const EXPIRED_KEPT: usize = 64;

impl LockState {
    /// Takes the lock back from a holder whose lease has run out.
    fn expire(&mut self, now: Instant) -> bool {
        match self.held {
            Some(h) if h.until.is_some_and(|u| now >= u) => {
                self.held = None;
                self.expired.retain(|o| *o != h.owner);
                if self.expired.len() == EXPIRED_KEPT {
                    self.expired.pop_front();
                }
                self.expired.push_back(h.owner);
                true
            }
            _ => false,
        }
    }
}

/// `lock` (reentrant: `rlock`): held by one thread of one client at a time, and with a lease
/// for at most that long after each acquire.
pub(crate) struct Lock {
    reentrant: bool,
    lease: Option<Duration>,
    st: Mutex<LockState>,
    cv: Condvar,
}

impl Lock {
    /// A lock; `lease` in seconds (`None`: held until released).
    pub(crate) fn new(reentrant: bool, lease: Option<f64>) -> Result<Lock, Fault> {
        let lease = match lease {
            None => None,
            Some(s) => match Duration::try_from_secs_f64(s) {
                Ok(d) if !d.is_zero() => Some(d),
                _ => return Err(Fault::new("value", "a lease is a positive number of seconds")),
            },
        };
        Ok(Lock { reentrant, lease, st: Mutex::new(LockState::default()), cv: Condvar::new() })
    }
}

impl Object for Lock {
    fn call(&self, ctx: &mut Ctx<'_>, method: &str, a: &[u8]) -> Outcome {
        let name = if self.reentrant { "rlock" } else { "lock" };
        match method {
            "acquire" => {
                let (thread, blocking, timeout): (u64, bool, Option<f64>) = args(method, a)?;
                let me = ctx.owner(thread);
                let deadline = deadline(blocking, timeout)?;
                let mut st = lock(&self.st);
                loop {
                    let now = Instant::now();
                    if st.expire(now) {
                        self.cv.notify_all();
                    }
                    let until = self.lease.and_then(|l| now.checked_add(l));
                    match &mut st.held {
                        None => {
                            st.held = Some(Held { owner: me, count: 1, until });
                            st.expired.retain(|o| *o != me);
                            return reply(true);
                        }
                        Some(h) if self.reentrant && h.owner == me => {
                            h.count += 1;
                            h.until = until;
                            return reply(true);
                        }
                        Some(_) => {}
                    }
                    if deadline.is_some_and(|d| now >= d) {
                        return reply(false);
                    }
                    // Wake up when the holder's lease runs out, if that comes first.
                    let until = st.held.and_then(|h| h.until);
                    let wake = match (deadline, until) {
                        (Some(d), Some(u)) => Some(d.min(u)),
                        (d, u) => d.or(u),
                    };
                    let (g, woke) = block(&self.cv, st, wake, ctx);
                    st = g;
                    if let Woke::Gone = woke {
                        return Err(gone_fault());
                    }
                }
            }
            "release" => {
                let thread: u64 = args(method, a)?;
                let me = ctx.owner(thread);
                let mut st = lock(&self.st);
                st.expire(Instant::now());
                let mine = st.held.is_some_and(|h| h.owner == me);
                if !mine && st.expired.contains(&me) {
                    st.expired.retain(|o| *o != me);
                    return Err(Fault::new(
                        super::LEASE_EXPIRED,
                        format!("the lease on this {name} ran out and the manager took it back"),
                    ));
                }
                match &mut st.held {
                    None if self.reentrant => Err(Fault::new("runtime", "cannot release un-acquired lock")),
                    None => Err(Fault::new("runtime", "release unlocked lock")),
                    Some(h) if self.reentrant && h.owner != me => {
                        Err(Fault::new("runtime", "cannot release un-acquired lock"))
                    }
                    Some(h) => {
                        // As threading.Lock, a plain lock may be released by any thread.
                        h.count -= 1;
                        if h.count == 0 || !self.reentrant {
                            st.held = None;
                            self.cv.notify_all();
                        }
                        reply(())
                    }
                }
            }
            "locked" => {
                let mut st = lock(&self.st);
                st.expire(Instant::now());
                reply(st.held.is_some())
            }
            _ => Err(no_method(name, method)),
        }
    }

    fn session_ended(&self, session: u64) {
        let mut st = lock(&self.st);
        st.expired.retain(|o| o.session != session);
        if st.held.is_some_and(|h| h.owner.session == session) {
            st.held = None;
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
    fn call(&self, ctx: &mut Ctx<'_>, method: &str, a: &[u8]) -> Outcome {
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
    fn call(&self, ctx: &mut Ctx<'_>, method: &str, a: &[u8]) -> Outcome {
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
    fn call(&self, ctx: &mut Ctx<'_>, method: &str, a: &[u8]) -> Outcome {
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
    fn call(&self, ctx: &mut Ctx<'_>, method: &str, a: &[u8]) -> Outcome {
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
