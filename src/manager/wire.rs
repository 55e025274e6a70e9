//! The manager's request and reply messages (spec/manager.md): one CBOR request, one CBOR reply.

use serde::{Deserialize, Serialize};

use super::cbor::{self, Malformed};

/// The protocol version a Hello carries.
pub(crate) const VERSION: u32 = 1;

/// A request as the server reads it, borrowing from the received message: the arguments
/// stay the raw CBOR item the client sent (checked to be one well-formed item) until the
/// object's method decodes them as its own types, so a request costs no more memory than its
/// bytes.
///
/// Hello's `shm`: the client asks for the server's shared-memory address (absent, as clients
/// before it and CPython's write it: no).
#[derive(Debug, PartialEq)]
pub(crate) enum Request<'a> {
    Hello { version: u32, session: u64, shm: bool },
    Create { typeid: &'a str, args: &'a [u8] },
    Call { id: u64, method: &'a str, args: &'a [u8] },
    IncRef { id: u64 },
    Adopt { id: u64 },
    DecRef { id: u64 },
    Count,
    Shutdown,
}

/// The largest Hello the server reads: a few numbers.
pub(crate) const MAX_HELLO: u64 = 4096;

/// The text of the item `b` (a definite-length text string).
fn text(b: &[u8]) -> Result<&str, Malformed> {
    let mut pos = 0;
    match cbor::head(b, &mut pos)? {
        (3, ai, _) if ai != 31 => std::str::from_utf8(&b[pos..]).map_err(|e| e.to_string()),
        _ => Err("a text string was expected".into()),
    }
}

/// The unsigned integer `b`.
fn uint(b: &[u8]) -> Result<u64, Malformed> {
    match cbor::head(b, &mut 0)? {
        (0, ai, n) if ai != 31 => Ok(n),
        _ => Err("an unsigned integer was expected".into()),
    }
}

/// The boolean `b`.
fn boolean(b: &[u8]) -> Result<bool, Malformed> {
    match b {
        [0xf4] => Ok(false),
        [0xf5] => Ok(true),
        _ => Err("a boolean was expected".into()),
    }
}

/// Reads a request as ciborium encodes a [`RequestOut`]: a unit variant as its name, any
/// other as a map of one entry, its name to the map of its fields (in any order; unknown ones
/// are ignored, as serde does). Nothing is allocated.
pub(crate) fn parse(b: &[u8]) -> Result<Request<'_>, Malformed> {
    cbor::check(b)?;
    let mut pos = 0;
    let item = |pos: &mut usize| -> Result<&[u8], Malformed> {
        let start = *pos;
        *pos = cbor::skip(b, start)?;
        Ok(&b[start..*pos])
    };
    match cbor::head(b, &mut 0)? {
        (3, _, _) => {
            return match text(b)? {
                "Count" => Ok(Request::Count),
                "Shutdown" => Ok(Request::Shutdown),
                other => Err(format!("unknown request {:?}", super::objects::clip(other))),
            };
        }
        (5, ai, 1) if ai != 31 => {
            cbor::head(b, &mut pos)?;
        }
        _ => return Err("a request is a map of one entry".into()),
    }
    let variant = text(item(&mut pos)?)?;
    let n = match cbor::head(b, &mut pos)? {
        (5, ai, n) if ai != 31 => n,
        _ => return Err("a request's fields are a map".into()),
    };
    const NAMES: [&str; 7] = ["version", "session", "id", "typeid", "method", "args", "shm"];
    let mut fields: [Option<&[u8]>; 7] = [None; 7];
    for _ in 0..n {
        let key = text(item(&mut pos)?)?;
        let value = item(&mut pos)?;
        if let Some(i) = NAMES.iter().position(|n| *n == key)
            && fields[i].replace(value).is_some()
        {
            return Err(format!("duplicate field {key:?}"));
        }
    }
    let field = |i: usize| fields[i].ok_or_else(|| format!("{variant} without its field {:?}", NAMES[i]));
    Ok(match variant {
        "Hello" => Request::Hello {
            version: u32::try_from(uint(field(0)?)?).map_err(|e| e.to_string())?,
            session: uint(field(1)?)?,
            // Clients before it (and CPython's) do not send it.
            shm: fields[6].map(boolean).transpose()?.unwrap_or(false),
        },
        "Create" => Request::Create { typeid: text(field(3)?)?, args: field(5)? },
        "Call" => Request::Call { id: uint(field(2)?)?, method: text(field(4)?)?, args: field(5)? },
        "IncRef" => Request::IncRef { id: uint(field(2)?)? },
        "Adopt" => Request::Adopt { id: uint(field(2)?)? },
        "DecRef" => Request::DecRef { id: uint(field(2)?)? },
        other => return Err(format!("unknown request {:?}", super::objects::clip(other))),
    })
}

/// The same messages as the client sends them: arguments encoded straight from the caller's
/// types (no intermediate value).
///
/// Hello's `shm` asks the server for its shared-memory address, which it answers instead of
/// null (servers before it ignore the field and answer null).
#[derive(Debug, Serialize)]
pub(crate) enum RequestOut<'a, A> {
    Hello { version: u32, session: u64, shm: bool },
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

/// The server's answer to one request, for its errors (a success is written as raw bytes:
/// [`OK`] then the result).
#[derive(Debug, Serialize)]
pub(crate) enum Reply {
    Err { kind: String, message: String },
}

/// How a successful reply starts, as ciborium encodes `ReplyIn::Ok(v)`: a map of one entry,
/// "Ok" to the result.
pub(crate) const OK: [u8; 4] = [0xa1, 0x62, b'O', b'k'];

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
    /// Whether the manager encrypts its connections (absent, as older versions write it: no).
    #[serde(default)]
    pub(crate) encrypted: bool,
    /// The manager's shared-memory address, for processes on its host (absent, as older
    /// versions and managers without one write it: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) shm: Option<String>,
}

/// An optional value where the value itself may be null: an array of zero or one item.
pub(crate) type Maybe<T> = Vec<T>;

#[cfg(test)]
mod tests {
    use super::*;

    fn enc<T: Serialize>(v: &T) -> Vec<u8> {
        let mut bytes = Vec::new();
        ciborium::into_writer(v, &mut bytes).unwrap();
        bytes
    }

    #[test]
    fn a_proxy_without_the_encrypted_flag_reads_as_plain() {
        /// A proxy as versions before encrypted managers wrote it.
        #[derive(Serialize)]
        struct Older {
            address: String,
            authkey: Vec<u8>,
            id: u64,
            typeid: String,
        }
        let old =
            Older { address: "tcp:127.0.0.1:9".into(), authkey: b"k".to_vec(), id: 3, typeid: "dict".into() };
        let r: ProxyRef = ciborium::from_reader(&enc(&old)[..]).unwrap();
        assert!(!r.encrypted && r.id == 3);
        let sealed = ProxyRef { encrypted: true, ..r };
        assert!(ciborium::from_reader::<ProxyRef, _>(&enc(&sealed)[..]).unwrap().encrypted);
    }

    #[test]
    fn a_hello_without_the_shm_field_does_not_ask() {
        /// A Hello as clients before the field (and CPython's) write it.
        #[derive(Serialize)]
        enum Older {
            Hello { version: u32, session: u64 },
        }
        let old = enc(&Older::Hello { version: 1, session: 9 });
        assert_eq!(parse(&old), Ok(Request::Hello { version: 1, session: 9, shm: false }));
        /// A Hello whose field is not a boolean.
        #[derive(Serialize)]
        enum Odd {
            Hello { version: u32, session: u64, shm: u8 },
        }
        assert!(parse(&enc(&Odd::Hello { version: 1, session: 9, shm: 1 })).is_err());
    }

    #[test]
    fn client_and_server_shapes_agree() {
        let bytes = enc(&RequestOut::Call { id: 7, method: "get", args: &("k", 1u8) });
        assert_eq!(parse(&bytes), Ok(Request::Call { id: 7, method: "get", args: &enc(&("k", 1u8))[..] }));
        let bytes = enc(&RequestOut::Create { typeid: "list", args: &vec![(); 3] });
        assert_eq!(
            parse(&bytes),
            Ok(Request::Create { typeid: "list", args: &[0x83, 0xf6, 0xf6, 0xf6][..] })
        );
        assert_eq!(
            parse(&enc(&Plain::Hello { version: 1, session: u64::MAX, shm: true })),
            Ok(Request::Hello { version: 1, session: u64::MAX, shm: true })
        );
        assert_eq!(parse(&enc(&Plain::Shutdown)), Ok(Request::Shutdown));
        assert_eq!(parse(&enc(&Plain::Count)), Ok(Request::Count));
        assert_eq!(parse(&enc(&Plain::IncRef { id: 3 })), Ok(Request::IncRef { id: 3 }));
        assert_eq!(parse(&enc(&Plain::Adopt { id: 4 })), Ok(Request::Adopt { id: 4 }));
        assert_eq!(parse(&enc(&Plain::DecRef { id: 5 })), Ok(Request::DecRef { id: 5 }));
        let mut bytes = enc(&Plain::Count);
        bytes.push(0);
        assert!(parse(&bytes).is_err(), "a byte left over");
        assert!(parse(&enc(&Plain::IncRef { id: 3 })[..5]).is_err(), "cut short");
        let mut told = OK.to_vec();
        ciborium::into_writer(&Some("shm:/x/s"), &mut told).unwrap();
        let told = ciborium::from_reader::<ReplyIn<Option<String>>, _>(&told[..]).unwrap();
        assert!(matches!(told, ReplyIn::Ok(Some(a)) if a == "shm:/x/s"));
        let null =
            ciborium::from_reader::<ReplyIn<Option<String>>, _>(&[OK[0], OK[1], OK[2], OK[3], 0xf6][..]);
        assert!(matches!(null.unwrap(), ReplyIn::Ok(None)), "an old server's answer");
        let mut ok = OK.to_vec();
        ciborium::into_writer(&5u32, &mut ok).unwrap();
        assert!(matches!(ciborium::from_reader::<ReplyIn<u32>, _>(&ok[..]).unwrap(), ReplyIn::Ok(5)));
        let bytes = enc(&Reply::Err { kind: "key".into(), message: "m".into() });
        match ciborium::from_reader::<ReplyIn<u32>, _>(&bytes[..]).unwrap() {
            ReplyIn::Err { kind, message } => assert_eq!((kind.as_str(), message.as_str()), ("key", "m")),
            ReplyIn::Ok(v) => panic!("decoded as Ok({v})"),
        }
    }
}
