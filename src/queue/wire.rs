//! The queue's messages (SPEC.md §12.1): one opcode byte, then an item (CBOR of the item
//! type, opaque to the server), a CBOR value, or nothing.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::encode_header;
use crate::{Error, Result};

/// The protocol version a client names in its `HELLO`.
pub(crate) const VERSION: u64 = 1;

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

// Server to client.
pub(crate) const INFO: u8 = 0x80;
pub(crate) const ITEM: u8 = 0x81;
pub(crate) const GRANT: u8 = 0x82;
pub(crate) const CANCELLED: u8 = 0x84;
pub(crate) const UNRESERVED: u8 = 0x87;
pub(crate) const SIZE: u8 = 0x89;
pub(crate) const DONE: u8 = 0x8a;
pub(crate) const JOINED: u8 = 0x8b;
pub(crate) const REFUSED: u8 = 0x8f;

/// What the server says about itself in `INFO`.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub(crate) struct Info {
    pub(crate) version: u64,
    pub(crate) maxsize: Option<u64>,
    pub(crate) joinable: bool,
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
        return Err(Error::Encode(e.to_string()));
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

/// The CBOR encoding of an item.
pub(crate) fn encode_item<T: Serialize + ?Sized>(item: &T) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    ciborium::into_writer(item, &mut v).map_err(|e| Error::Encode(e.to_string()))?;
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
