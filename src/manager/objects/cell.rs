//! `value` and `namespace`: one encoded value, and encoded values by name.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{Ctx, Fault, Object, Outcome, args, cbor, copy, lock, no_method, raw, reply, room, shape};
use crate::RemoteKind;
use crate::manager::wire::OK;

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
    attrs: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl Object for Namespace {
    fn call(&self, _ctx: &mut Ctx<'_>, method: &str, a: &[u8]) -> Outcome {
        let mut m = lock(&self.attrs);
        let missing = |name: &str| {
            Fault::new(RemoteKind::Attribute, format!("'Namespace' object has no attribute '{name}'"))
        };
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
