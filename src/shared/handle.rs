//! Handles: a value or array serializes as a reference to its memory, and deserializes by
//! opening that memory as its own kind and type.

use std::marker::PhantomData;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::segment::{HandleRef, Kind, Segment};
use super::{Array, AtomicArray, AtomicValue, HasAtomic, Pod, Value};
use crate::Result;

/// A handle serializes as its [`HandleRef`]; each kind deserializes by opening the memory as
/// itself (below).
macro_rules! handle_serialize {
    ($ty:ident, $bound:ident) => {
        impl<T: $bound> Serialize for $ty<T> {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                self.seg.handle().serialize(s)
            }
        }
    };
}
handle_serialize!(Value, Pod);
handle_serialize!(Array, Pod);
handle_serialize!(AtomicValue, HasAtomic);
handle_serialize!(AtomicArray, HasAtomic);

fn open_one<T: Pod>(r: HandleRef, kind: Kind) -> Result<Arc<Segment>, String> {
    if r.len != 1 {
        return Err("an array handle where a single value was expected".into());
    }
    Segment::open::<T>(&r, kind).map(Arc::new).map_err(|e| e.to_string())
}

fn open_many<T: Pod>(r: HandleRef, kind: Kind) -> Result<(Arc<Segment>, usize), String> {
    let len = usize::try_from(r.len).map_err(|e| e.to_string())?;
    Segment::open::<T>(&r, kind).map(|s| (Arc::new(s), len)).map_err(|e| e.to_string())
}

impl<'de, T: Pod> Deserialize<'de> for Value<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let seg =
            open_one::<T>(HandleRef::deserialize(d)?, Kind::Locked).map_err(serde::de::Error::custom)?;
        Ok(Value { seg, _t: PhantomData })
    }
}

impl<'de, T: Pod> Deserialize<'de> for Array<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (seg, len) =
            open_many::<T>(HandleRef::deserialize(d)?, Kind::Locked).map_err(serde::de::Error::custom)?;
        Ok(Array { seg, len, _t: PhantomData })
    }
}

impl<'de, T: HasAtomic> Deserialize<'de> for AtomicValue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let seg =
            open_one::<T>(HandleRef::deserialize(d)?, Kind::Atomic).map_err(serde::de::Error::custom)?;
        Ok(AtomicValue { seg, _t: PhantomData })
    }
}

impl<'de, T: HasAtomic> Deserialize<'de> for AtomicArray<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (seg, len) =
            open_many::<T>(HandleRef::deserialize(d)?, Kind::Atomic).map_err(serde::de::Error::custom)?;
        Ok(AtomicArray { seg, len, _t: PhantomData })
    }
}

/// Sends a handle through CBOR and opens it again, as another process receiving it would.
#[cfg(all(test, any(target_os = "linux", windows)))]
pub(crate) fn reopen<T: Serialize, U: serde::de::DeserializeOwned>(h: &T) -> std::result::Result<U, String> {
    let mut bytes = Vec::new();
    ciborium::into_writer(h, &mut bytes).map_err(|e| e.to_string())?;
    ciborium::from_reader(&bytes[..]).map_err(|e| e.to_string())
}

#[cfg(all(test, any(target_os = "linux", windows)))]
mod tests {
    use super::*;

    #[test]
    fn a_handle_opened_as_the_other_kind_is_refused() {
        let v = Value::new(1u64).unwrap();
        let err = reopen::<_, AtomicValue<u64>>(&v).unwrap_err();
        assert!(err.contains("made as a Value or Array"), "{err}");
        let n = AtomicArray::<u64>::new(1).unwrap();
        let err = reopen::<_, Value<u64>>(&n).unwrap_err();
        assert!(err.contains("made as an AtomicValue or AtomicArray"), "{err}");
        let err = reopen::<_, Array<u64>>(&n).unwrap_err();
        assert!(err.contains("cannot be opened as a Value or Array"), "{err}");
        // One element: a Value and an Array of one are the same memory.
        let one: Array<u64> = reopen(&v).unwrap();
        assert_eq!(one.to_vec().unwrap(), [1]);
    }
}
