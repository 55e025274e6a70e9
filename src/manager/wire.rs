//! The manager's request and reply messages (SPEC.md §12.2): one CBOR request, one CBOR reply.

use ciborium::Value;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The protocol version a Hello carries.
pub(crate) const VERSION: u32 = 1;

/// A request as the server decodes it: arguments stay a CBOR value until the object's method
/// decodes them as its own types.
#[derive(Debug, Deserialize)]
pub(crate) enum Request {
    Hello { version: u32, session: u64 },
    Create { typeid: String, args: Value },
    Call { id: u64, method: String, args: Value },
    IncRef { id: u64 },
    Adopt { id: u64 },
    DecRef { id: u64 },
    Count,
    Shutdown,
}

/// The same messages as the client sends them: arguments encoded straight from the caller's
/// types (no intermediate value).
#[derive(Debug, Serialize)]
pub(crate) enum RequestOut<'a, A> {
    Hello { version: u32, session: u64 },
    Create { typeid: &'a str, args: &'a A },
    Call { id: u64, method: &'a str, args: &'a A },
    IncRef { id: u64 },
    Adopt { id: u64 },
    DecRef { id: u64 },
    Count,
    Shutdown,
}

/// Requests without arguments, spelled with a unit argument type.
pub(crate) type Plain = RequestOut<'static, ()>;

/// The server's answer to one request.
#[derive(Debug, Serialize)]
pub(crate) enum Reply {
    Ok(Value),
    Err { kind: String, message: String },
}

/// The answer as the client decodes it, straight into the expected type.
#[derive(Debug, Deserialize)]
pub(crate) enum ReplyIn<R> {
    Ok(R),
    Err { kind: String, message: String },
}

/// What a proxy serializes as (its manager, the key to reach it, the object).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ProxyRef {
    pub(crate) address: String,
    pub(crate) authkey: Vec<u8>,
    pub(crate) id: u64,
    pub(crate) typeid: String,
}

/// Decodes one message as `T`, as `Connection::recv` does (SPEC.md §7.2), but first with a
/// small scratch buffer: ciborium's default one is 4 KiB, zeroed for every message, which
/// costs more than the rest of a small request. Anything that fails that way (a long string
/// read by reference, say) is decoded again the standard way, so the results are the same.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> crate::Result<T> {
    let mut scratch = [0u8; 256];
    let mut rest = bytes;
    if let Ok(v) = ciborium::from_reader_with_buffer(&mut rest, &mut scratch)
        && rest.is_empty()
    {
        return Ok(v);
    }
    crate::connection::decode(bytes)
}

/// An optional value where the value itself may be null: an array of zero or one item.
pub(crate) type Maybe<T> = Vec<T>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_and_server_shapes_agree() {
        let mut bytes = Vec::new();
        let out = RequestOut::Call { id: 7, method: "get", args: &("k", 1u8) };
        ciborium::into_writer(&out, &mut bytes).unwrap();
        let back: Request = ciborium::from_reader(&bytes[..]).unwrap();
        match back {
            Request::Call { id, method, args } => {
                assert_eq!((id, method.as_str()), (7, "get"));
                assert_eq!(args.deserialized::<(String, u8)>().unwrap(), ("k".to_string(), 1));
            }
            other => panic!("decoded as {other:?}"),
        }
        let mut bytes = Vec::new();
        ciborium::into_writer(&Plain::Shutdown, &mut bytes).unwrap();
        assert!(matches!(ciborium::from_reader(&bytes[..]).unwrap(), Request::Shutdown));
        let mut bytes = Vec::new();
        ciborium::into_writer(&Reply::Err { kind: "key".into(), message: "m".into() }, &mut bytes).unwrap();
        match ciborium::from_reader::<ReplyIn<u32>, _>(&bytes[..]).unwrap() {
            ReplyIn::Err { kind, message } => assert_eq!((kind.as_str(), message.as_str()), ("key", "m")),
            ReplyIn::Ok(v) => panic!("decoded as Ok({v})"),
        }
    }
}
