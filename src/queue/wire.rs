//! The queue's messages (spec/queue.md): one opcode byte, then an item (CBOR of the item
//! type, opaque to the server), a CBOR value, or nothing.

use serde::Serialize;
use serde::de::{DeserializeOwned, IgnoredAny};

use crate::codec::{encode_header, push_cbor_uint, take_cbor_uint};
use crate::shared::AtomicValue;
use crate::{Error, Result};

/// The protocol version a client names in its `HELLO` (2: `JOINED` carries a count; 3:
/// `FINISH` and `FINISHED`).
pub(crate) const VERSION: u64 = 3;

/// The longest `HELLO` a server reads (opcode included): a version and a shared-memory handle
/// take under 100 bytes, so a longer one is refused by its length before it is read.
pub(crate) const HELLO_MAX: u64 = 4 << 10;

/// The longest body of any message but `PUT`: a CBOR unsigned integer at most.
pub(crate) const CONTROL_BODY_MAX: usize = 9;

// Client to server.
pub(crate) const HELLO: u8 = 0x00;
pub(crate) const PUT: u8 = 0x01;
pub(crate) const WANT: u8 = 0x02;
pub(crate) const ACK: u8 = 0x03;
pub(crate) const CANCEL: u8 = 0x04;
pub(crate) const RETURN: u8 = 0x05;
pub(crate) const RESERVE: u8 = 0x06;
pub(crate) const UNRESERVE: u8 = 0x07;
pub(crate) const RELEASE: u8 = 0x08;
pub(crate) const QSIZE: u8 = 0x09;
pub(crate) const TASK_DONE: u8 = 0x0a;
pub(crate) const JOIN: u8 = 0x0b;
pub(crate) const FINISH: u8 = 0x0c;

// Server to client.
pub(crate) const INFO: u8 = 0x80;
pub(crate) const ITEM: u8 = 0x81;
pub(crate) const GRANT: u8 = 0x82;
pub(crate) const CANCELLED: u8 = 0x84;
pub(crate) const UNRESERVED: u8 = 0x87;
pub(crate) const SIZE: u8 = 0x89;
pub(crate) const DONE: u8 = 0x8a;
pub(crate) const JOINED: u8 = 0x8b;
pub(crate) const FINISHED: u8 = 0x8c;
pub(crate) const REFUSED: u8 = 0x8f;

/// What the server says about itself in `INFO`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Info {
    pub(crate) version: u64,
    pub(crate) maxsize: Option<u64>,
    pub(crate) joinable: bool,
    /// Whether the server mapped the client's acknowledgement counter (`HELLO`'s `acks`):
    /// then gets count there instead of sending `ACK`.
    pub(crate) acks_shared: bool,
    /// The queue's shared-memory address, when the client asked (`HELLO`'s `shm`) through
    /// the main address (absent, as servers before it and without one write it: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) shm: Option<String>,
}

/// The body of `HELLO`.
#[derive(Serialize, Deserialize)]
pub(crate) struct Hello<A> {
    pub(crate) version: u64,
    /// A `u64` in shared memory (spec/queue.md) the client adds every item it takes to.
    pub(crate) acks: Option<A>,
    /// Whether the client asks for the queue's shared-memory address in `INFO` (absent, as
    /// clients before it write it: no).
    #[serde(default)]
    pub(crate) shm: bool,
}

/// Decodes `HELLO`'s body into the client's version, its acknowledgement counter, if it
/// named one that this process can map (`None` otherwise: the client then sends `ACK`), and
/// whether it asks for the shared-memory address.
///
/// The body is decoded into its declared types only: the shape first with `acks` skipped
/// (nothing is built from it), then, for this version, `acks` as the counter's handle.
pub(crate) fn hello(body: &[u8]) -> Result<(u64, Option<AtomicValue<u64>>, bool)> {
    let h: Hello<IgnoredAny> = value(HELLO, body)?;
    if h.version != VERSION || h.acks.is_none() {
        return Ok((h.version, None, h.shm));
    }
    let acks = value::<Hello<AtomicValue<u64>>>(HELLO, body).ok().and_then(|h| h.acks);
    Ok((h.version, acks, h.shm))
}

/// Appends one frame, `op` followed by `body`, to `out`.
pub(crate) fn push_frame(out: &mut Vec<u8>, op: u8, body: &[u8]) {
    let header = encode_header(1 + body.len() as u64);
    out.extend_from_slice(header.as_bytes());
    out.push(op);
    out.extend_from_slice(body);
}

/// Appends one frame, `op` followed by the CBOR encoding of `value`, to `out`.
pub(crate) fn push_value<V: Serialize + ?Sized>(out: &mut Vec<u8>, op: u8, value: &V) -> Result<()> {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0, op]);
    if let Err(e) = ciborium::into_writer(value, &mut *out) {
        out.truncate(start);
        return Err(crate::error::encode_error(&e));
    }
    let len = (out.len() - start - 4) as u64;
    let header = encode_header(len);
    if header.as_bytes().len() == 4 {
        out[start..start + 4].copy_from_slice(header.as_bytes());
    } else {
        out.splice(start..start + 4, header.as_bytes().iter().copied());
    }
    Ok(())
}

/// Appends one frame, `op` followed by `n` as a CBOR unsigned integer, to `out`: the body of
/// the frequent count messages, written without going through serde.
pub(crate) fn push_count(out: &mut Vec<u8>, op: u8, n: u64) {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0, op]);
    push_cbor_uint(out, n);
    // At most 10 bytes: always the 4-byte header.
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Decodes a body that is one CBOR unsigned integer (any of its encodings).
pub(crate) fn count(op: u8, body: &[u8]) -> Result<u64> {
    let mut rest = body;
    match take_cbor_uint(&mut rest) {
        Some(n) if rest.is_empty() => Ok(n),
        _ => Err(Error::Protocol(format!("queue message {op:#04x} without an unsigned integer body"))),
    }
}

/// The CBOR encoding of an item.
pub(crate) fn encode_item<T: Serialize + ?Sized>(item: &T) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    ciborium::into_writer(item, &mut v).map_err(|e| crate::error::encode_error(&e))?;
    Ok(v)
}

/// Splits a message into its opcode and body.
pub(crate) fn split(frame: &[u8]) -> Result<(u8, &[u8])> {
    match frame.split_first() {
        Some((&op, body)) => Ok((op, body)),
        None => Err(Error::Protocol("an empty queue message".into())),
    }
}

/// Decodes a body that is a CBOR value.
pub(crate) fn value<V: DeserializeOwned>(op: u8, body: &[u8]) -> Result<V> {
    crate::connection::decode(body)
        .map_err(|e| Error::Protocol(format!("queue message {op:#04x} with a bad body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_and_info_without_the_shm_fields_read_as_before() {
        /// `HELLO` and `INFO` as peers before the fields write them.
        #[derive(Serialize)]
        struct OldHello {
            version: u64,
            acks: Option<()>,
        }
        #[derive(Serialize)]
        struct OldInfo {
            version: u64,
            maxsize: Option<u64>,
            joinable: bool,
            acks_shared: bool,
        }
        let old = encode_item(&OldHello { version: VERSION, acks: None }).unwrap();
        assert!(matches!(hello(&old).unwrap(), (VERSION, None, false)), "an old client does not ask");
        let asks = encode_item(&Hello::<()> { version: VERSION, acks: None, shm: true }).unwrap();
        assert!(matches!(hello(&asks).unwrap(), (VERSION, None, true)));
        let old = OldInfo { version: VERSION, maxsize: Some(2), joinable: true, acks_shared: false };
        let info: Info = value(INFO, &encode_item(&old).unwrap()).unwrap();
        assert_eq!(info.shm, None, "an old server tells no address");
        let untold =
            Info { version: VERSION, maxsize: Some(2), joinable: true, acks_shared: false, shm: None };
        assert_eq!(encode_item(&untold).unwrap(), encode_item(&old).unwrap(), "unchanged for old clients");
    }

    #[test]
    fn counts_match_ciborium_both_ways() {
        for n in [0, 1, 23, 24, 255, 256, 65535, 65536, u32::MAX as u64, u32::MAX as u64 + 1, u64::MAX] {
            let mut ours = Vec::new();
            push_count(&mut ours, ACK, n);
            let mut theirs = Vec::new();
            push_value(&mut theirs, ACK, &n).unwrap();
            assert_eq!(ours, theirs, "{n}");
            assert_eq!(count(ACK, &ours[5..]).unwrap(), n);
        }
        assert!(count(ACK, &[]).is_err());
        assert!(count(ACK, &[0x19, 1]).is_err());
        assert!(count(ACK, &[0x20]).is_err(), "a negative integer");
    }
}
