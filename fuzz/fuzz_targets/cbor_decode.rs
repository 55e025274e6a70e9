//! CBOR decoding into message types, through `Connection::recv` over a socket pair: the
//! process protocol's messages (SPEC.md §12.3) and a spread of serde shapes. Input: a type
//! selector byte, then the message payload.
//!
//! Checked: a payload either decodes or gives `Error::Decode` (never another error, never a
//! panic), the connection stays usable after a decode error (SPEC.md §7.2), and a value that
//! decodes encodes to CBOR that decodes to the same value.

#![no_main]

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use procwire::{Connection, Error};
use procwire_fuzz::process_messages::{Outcome, Reply, Start};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Shape {
    Point,
    Circle { r: i64 },
    Poly(Vec<(i32, i32)>),
    Tagged(u8, String),
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Nested {
    name: String,
    id: u64,
    tags: BTreeMap<String, Vec<u8>>,
    shapes: Vec<Shape>,
    parent: Option<Box<Nested>>,
    #[serde(with = "serde_bytes")]
    blob: Vec<u8>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
enum Internal {
    A { x: u8 },
    B { s: String, v: Option<i16> },
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Strict {
    a: u32,
    b: Option<bool>,
}

/// Receives `payload` as a `T` on a fresh pair; checks the outcome, usability afterwards, and
/// the re-encoding of a decoded value.
fn check<T: DeserializeOwned + Serialize + PartialEq + Debug>(
    a: &mut Connection,
    b: &mut Connection,
    payload: &[u8],
) {
    a.send_bytes(payload).expect("send");
    match b.recv::<T>() {
        Ok(v) => {
            a.send(&v).expect("re-encode");
            let again: T = b.recv().expect("a re-encoded value decodes");
            assert_eq!(v, again, "re-encoded value differs");
        }
        Err(Error::Decode(_)) => {}
        Err(e) => panic!("decoding gave {e:?}, not a Decode error"),
    }
    // The connection goes on: the next message arrives intact.
    a.send_bytes(b"next").expect("send");
    assert_eq!(b.recv_bytes().expect("recv after decode"), b"next");
}

/// As [`check`] for types without equality (floats, dynamic values): decode, re-encode, decode.
fn check_value<T: DeserializeOwned + Serialize>(a: &mut Connection, b: &mut Connection, payload: &[u8]) {
    a.send_bytes(payload).expect("send");
    match b.recv::<T>() {
        Ok(v) => {
            a.send(&v).expect("re-encode");
            b.recv::<T>().expect("a re-encoded value decodes");
        }
        Err(Error::Decode(_)) => {}
        Err(e) => panic!("decoding gave {e:?}, not a Decode error"),
    }
    a.send_bytes(b"next").expect("send");
    assert_eq!(b.recv_bytes().expect("recv after decode"), b"next");
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, payload)) = data.split_first() else { return };
    // Far below a socket pair's buffer, so the sends here never wait for the receives.
    if payload.len() > 32 << 10 {
        return;
    }
    let (mut a, mut b) = procwire::pipe(true).expect("socket pair");
    b.set_read_timeout(Some(Duration::from_secs(60)));
    let (a, b) = (&mut a, &mut b);
    match which % 16 {
        0 => check::<Start>(a, b, payload),
        1 => check::<Reply>(a, b, payload),
        2 => check::<Outcome<String>>(a, b, payload),
        3 => check::<Outcome<serde_bytes::ByteBuf>>(a, b, payload),
        4 => check::<Outcome<(u32, Vec<i64>)>>(a, b, payload),
        5 => check::<Nested>(a, b, payload),
        6 => check::<Internal>(a, b, payload),
        7 => check::<Strict>(a, b, payload),
        8 => check::<HashMap<String, Vec<u16>>>(a, b, payload),
        9 => check::<BTreeMap<i64, Option<String>>>(a, b, payload),
        10 => check::<(u128, i128, char, bool, ())>(a, b, payload),
        11 => check::<Vec<serde_bytes::ByteBuf>>(a, b, payload),
        12 => check_value::<ciborium::Value>(a, b, payload),
        13 => check_value::<(f64, f32, Vec<f64>)>(a, b, payload),
        14 => check::<Option<Option<Vec<Shape>>>>(a, b, payload),
        _ => check::<String>(a, b, payload),
    }
});
