//! `list`: encoded items packed back to back, and the list object over them.
//!
//! Items stay as the client encoded them, back to back in one buffer with an index of where
//! each ends: a stored item costs its bytes and 4 (list) or 16 to 24 (dict) more, where a
//! decoded value tree would cost 48 or more per item however small (a null is one byte).

use std::sync::Mutex;

use super::{
    Ctx, Fault, MAX_BYTES, Object, Outcome, args, cbor, copy, lock, no_method, raw, reply, room, shape,
    too_large,
};
use crate::RemoteKind;

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
        return Err(Fault::new(RemoteKind::Index, format!("list index {i} out of range (length {len})")));
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
                    return Err(Fault::new(RemoteKind::Index, "pop from empty list"));
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
                    None => Err(Fault::new(RemoteKind::Value, "list.remove(x): x not in list")),
                }
            }
            "index" => match v.iter().position(|x| cbor::equal(x, a)) {
                Some(i) => reply(i),
                None => Err(Fault::new(RemoteKind::Value, "list.index(x): x not in list")),
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
