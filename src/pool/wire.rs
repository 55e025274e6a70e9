//! The pool's messages (spec/pool.md): one opcode byte, CBOR unsigned integers, then CBOR
//! values; and running a chunk's tasks on the worker's side, since both sides share the
//! outcome layout.

use serde::de::DeserializeOwned;

use crate::RemoteKind;
pub(crate) use crate::codec::push_cbor_uint as push_uint;
use crate::codec::{MAX_SHORT_PAYLOAD, encode_header, take_cbor_uint};
use crate::process::{Call, Called};
use crate::{Error, Result};

/// The pool protocol version, in the worker's start arguments.
pub(crate) const VERSION: u32 = 1;

// Parent to worker.
pub(crate) const FUNCTION: u8 = 0x01;
pub(crate) const INIT: u8 = 0x02;
pub(crate) const CHUNK: u8 = 0x03;
pub(crate) const EXIT: u8 = 0x04;

// Worker to parent.
pub(crate) const RESULT: u8 = 0x81;
pub(crate) const INIT_FAILED: u8 = 0x82;

// The tag in front of each task's outcome in a RESULT.
pub(crate) const RETURNED: u8 = 0x00;
pub(crate) const PANICKED: u8 = 0x01;
pub(crate) const UNSENDABLE: u8 = 0x02;
pub(crate) const NOT_RUN: u8 = 0x03;

/// Decoding scratch space: CBOR text and byte strings up to this length decode without
/// allocating twice; longer ones still decode, in pieces.
pub(crate) const SCRATCH: usize = 512;

/// The worker's start arguments (the ARGS of spec/process.md).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WorkerStart {
    pub(crate) version: u32,
}

/// What running a chunk's tasks did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ran {
    /// Tasks whose outcome is not `RETURNED`.
    pub(crate) failed: u64,
    /// Bytes left over after the `n` arguments (a protocol error when not 0).
    pub(crate) rest: usize,
}

/// Appends `n` as a CBOR unsigned integer (its shortest encoding).
/// Takes a CBOR unsigned integer (any of its encodings) off the front of `body`.
pub(crate) fn take_uint(body: &mut &[u8]) -> Result<u64> {
    take_cbor_uint(body)
        .ok_or_else(|| Error::Protocol("a pool message without an unsigned integer where one belongs".into()))
}

/// Starts a frame with opcode `op` in `out`; returns where it starts, for [`end_frame`].
pub(crate) fn start_frame(out: &mut Vec<u8>, op: u8) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0, op]);
    start
}

/// Writes the header of the frame started at `start`, now that its payload is complete.
pub(crate) fn end_frame(out: &mut Vec<u8>, start: usize) {
    let len = (out.len() - start - 4) as u64;
    let header = encode_header(len);
    if len <= MAX_SHORT_PAYLOAD {
        out[start..start + 4].copy_from_slice(header.as_bytes());
    } else {
        out.splice(start..start + 4, header.as_bytes().iter().copied());
    }
}

/// Appends the CBOR text `s` (encoding a string into a vector cannot fail).
pub(crate) fn push_text(out: &mut Vec<u8>, s: &str) {
    let _ = ciborium::into_writer(s, &mut *out);
}

/// Takes one CBOR value off the front of `body`.
pub(crate) fn take_value<T: DeserializeOwned>(body: &mut &[u8], scratch: &mut [u8]) -> Result<T> {
    ciborium::de::from_reader_with_buffer(&mut *body, scratch)
        .map_err(|e| crate::error::decode_error::<T, _>(&e))
}

/// In the worker: runs `f` over the `n` arguments in `args`, appending one outcome per task.
pub(crate) fn run_tasks(f: &dyn Call, args: &[u8], n: u64, out: &mut Vec<u8>) -> Ran {
    let mut rest = args;
    let mut scratch = [0u8; SCRATCH];
    let mut failed = 0;
    for i in 0..n {
        let mark = out.len();
        out.push(RETURNED);
        let (tag, why) = match f.call(&mut rest, &mut scratch, out) {
            Called::Returned => continue,
            Called::Panicked(m) => (PANICKED, m),
            Called::Unsendable(e) => (UNSENDABLE, e),
            Called::Undecodable { expected, error } => {
                out.truncate(mark);
                // The other arguments cannot be found without this one's end: none of them run.
                let why =
                    format!("the arguments of task {i} of its chunk do not decode as {expected}: {error}");
                not_run(n - i, &why, out);
                return Ran { failed: failed + (n - i), rest: 0 };
            }
        };
        out.truncate(mark);
        out.push(tag);
        push_text(out, &why);
        failed += 1;
    }
    Ran { failed, rest: rest.len() }
}

/// In the worker: reports each of the `n` tasks as not run, for `why`.
pub(crate) fn not_run(n: u64, why: &str, out: &mut Vec<u8>) -> Ran {
    for _ in 0..n {
        out.push(NOT_RUN);
        push_text(out, why);
    }
    Ran { failed: n, rest: 0 }
}

/// Why a worker runs no task of a [`ChannelFunction`](crate::process::ChannelFunction).
pub(crate) const TAKES_CHANNEL: &str =
    "this function takes a channel (a ChannelFunction); a pool runs Function items";

/// Takes one task's outcome off the front of `body`. On `Err(_, false)` the position in
/// `body` is lost (a value that did not decode): the chunk's remaining outcomes cannot be read.
pub(crate) fn take_outcome<R: DeserializeOwned>(
    body: &mut &[u8],
    scratch: &mut [u8],
) -> std::result::Result<R, (Error, bool)> {
    let Some((&tag, rest)) = body.split_first() else {
        return Err((Error::Protocol("a pool result with fewer outcomes than tasks".into()), false));
    };
    *body = rest;
    let kind = match tag {
        RETURNED => return take_value(body, scratch).map_err(|e| (e, false)),
        PANICKED => RemoteKind::Panic,
        UNSENDABLE => RemoteKind::Encode,
        NOT_RUN => RemoteKind::Start,
        _ => {
            return Err((
                Error::Protocol(format!("a pool result with an unknown outcome tag {tag:#04x}")),
                false,
            ));
        }
    };
    match take_value::<String>(body, scratch) {
        Ok(message) => Err((Error::Remote { kind, message }, true)),
        Err(e) => Err((e, false)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn double(x: u32) -> u32 {
        if x == 13 {
            panic!("unlucky {x}");
        }
        x * 2
    }
    static DOUBLE: crate::process::Function<u32, u32> = crate::process::Function::new("double", double);

    #[test]
    fn outcomes_round_trip_and_a_panic_stays_with_its_task() {
        let mut args = Vec::new();
        for x in [1u32, 13, 7] {
            ciborium::into_writer(&x, &mut args).unwrap();
        }
        let mut out = Vec::new();
        let ran = run_tasks(&DOUBLE, &args, 3, &mut out);
        assert_eq!(ran, Ran { failed: 1, rest: 0 });
        let mut body = &out[..];
        let mut scratch = [0; SCRATCH];
        assert_eq!(take_outcome::<u32>(&mut body, &mut scratch).unwrap(), 2);
        match take_outcome::<u32>(&mut body, &mut scratch) {
            Err((Error::Remote { kind, message }, true)) => {
                assert_eq!((kind, message.as_str()), (RemoteKind::Panic, "unlucky 13"))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(take_outcome::<u32>(&mut body, &mut scratch).unwrap(), 14);
        assert!(body.is_empty());
    }

    #[test]
    fn arguments_that_do_not_decode_fail_the_rest_of_the_chunk() {
        let mut args = Vec::new();
        ciborium::into_writer(&5u32, &mut args).unwrap();
        ciborium::into_writer("five", &mut args).unwrap();
        ciborium::into_writer(&6u32, &mut args).unwrap();
        let mut out = Vec::new();
        assert_eq!(run_tasks(&DOUBLE, &args, 3, &mut out).failed, 2);
        let mut body = &out[..];
        let mut scratch = [0; SCRATCH];
        assert_eq!(take_outcome::<u32>(&mut body, &mut scratch).unwrap(), 10);
        for _ in 0..2 {
            let e = take_outcome::<u32>(&mut body, &mut scratch).unwrap_err();
            assert!(
                matches!(&e.0, Error::Remote { kind: RemoteKind::Start, message } if message.contains("decode"))
            );
        }
        assert!(body.is_empty());
    }

    #[test]
    fn long_frames_get_the_long_header() {
        let mut out = vec![9];
        let start = start_frame(&mut out, CHUNK);
        out.extend_from_slice(&[1, 2, 3]);
        end_frame(&mut out, start);
        assert_eq!(out, [9, 0, 0, 0, 4, CHUNK, 1, 2, 3]);
    }
}
