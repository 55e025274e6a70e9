//! `dict`: encoded keys and values in insertion order, found through an open-addressing
//! table of their bytes' hashes.
//!
//! Items stay as the client encoded them, back to back in one buffer with an index of where
//! each ends: a stored item costs its bytes and 4 (list) or 16 to 24 (dict) more, where a
//! decoded value tree would cost 48 or more per item however small (a null is one byte).

use std::sync::Mutex;

use super::{
    Ctx, Fault, MAX_BYTES, Object, Outcome, cbor, copy, lock, maybe, no_method, raw, reply, room, shape,
    too_large,
};
use crate::manager::wire::OK;

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
