//! Writes the committed seed corpus: `cargo run --example make_seeds` (from `fuzz/`) fills
//! `seeds/<target>/` with a few valid and broken inputs per target. Needs no nightly.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use procwire::codec::encode_header;
use procwire_fuzz::process_messages::{Outcome, Reply, Start};
use serde::Serialize;

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = encode_header(payload.len() as u64).as_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

fn long_frame(payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0xff; 4];
    v.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn cbor<T: Serialize>(which: u8, v: &T) -> Vec<u8> {
    let mut out = vec![which];
    ciborium::into_writer(v, &mut out).unwrap();
    out
}

fn main() {
    // frame_decoder: 4 option bytes (capacity, max hi, max lo, mode), then the stream.
    let small = [0x10, 0x01, 0x00, 0x04]; // capacity 76, max 256, through a connection too
    let three = cat(&[&frame(b"hello"), &frame(b""), &frame(&[7; 300])]);
    write("frame_decoder", "three_frames", &cat(&[&small, &three]));
    write("frame_decoder", "long_header_small_len", &cat(&[&[0x10, 0, 0, 5], &long_frame(b"abc")]));
    write("frame_decoder", "negative_length", &cat(&[&small, &frame(b"x"), &[0xff, 0xff, 0xff, 0xfe]]));
    write("frame_decoder", "cut_in_payload", &cat(&[&small, &frame(b"one"), &[0, 0, 0, 9, 1, 2]]));
    write("frame_decoder", "cut_in_long_header", &cat(&[&small, &[0xff, 0xff, 0xff, 0xff, 0, 0]]));
    write("frame_decoder", "over_max", &cat(&[&[0x00, 0, 16, 4], &frame(&[1; 17])]));
    write(
        "frame_decoder",
        "huge_announced",
        &cat(&[&[0x00, 0, 0, 7], &[0xff; 4], &(1u64 << 40).to_be_bytes()]),
    );
    // Larger than the connection's 64 KiB receive buffer: the large-message path.
    let big: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    write("frame_decoder", "large_frame", &cat(&[&[0x40, 0, 0, 6], &frame(&big), &frame(b"after")]));

    // sealed_decoder: the read-size byte, then the bytes (sealed twice, or fed raw).
    write("sealed_decoder", "small", &cat(&[&[0], b"hello"]));
    write("sealed_decoder", "two_messages", &cat(&[&[3], &big]));
    // A flipped bit in a message opened through the inbox's own buffer (once a crash).
    write("sealed_decoder", "failed_open_small_buffer", &[0x00, 0xa2, 0x00, 0x01, 0x00, 0x00]);

    // handshake_*: option byte, then steps (odd: the honest peer's next message; even: raw
    // bytes, length in the next byte).
    let honest = [0u8, 1, 1, 1, 1, 1, 1, 1, 1];
    for target in ["handshake_listener", "handshake_client"] {
        write(target, "honest", &honest);
        write(target, "honest_early_challenge", &[4, 1, 1, 1, 1, 1, 1, 1, 1]);
        write(target, "wrong_key", &[1, 1, 1, 1, 1, 1, 1]);
        write(target, "legacy_allowed", &[2, 1, 1, 1, 1, 1, 1, 1]);
        let welcome = frame(b"#WELCOME#");
        write(target, "forged_welcome", &cat(&[&[0, 0, welcome.len() as u8], &welcome, &[1, 1, 1]]));
        let failure = frame(b"#FAILURE#");
        write(target, "failure", &cat(&[&[0, 1, 0, failure.len() as u8], &failure]));
        let nokey = frame(b"#NOKEY#");
        write(target, "nokey", &cat(&[&[0, 0, nokey.len() as u8], &nokey]));
        let mut challenge = b"#CHALLENGE#{sha256}".to_vec();
        challenge.extend(0u8..40);
        let challenge = frame(&challenge);
        write(target, "foreign_challenge", &cat(&[&[0, 0, challenge.len() as u8], &challenge, &[1, 1]]));
        let mut legacy = b"#CHALLENGE#".to_vec();
        legacy.extend(0u8..20);
        let legacy = frame(&legacy);
        write(target, "legacy_challenge", &cat(&[&[2, 0, legacy.len() as u8], &legacy, &[1, 1]]));
        let mut sha384 = b"{sha384}".to_vec();
        sha384.extend([0u8; 48]);
        let sha384 = frame(&sha384);
        write(target, "bad_sha384_answer", &cat(&[&[0, 1, 0, sha384.len() as u8], &sha384]));
        write(target, "over_the_cap", &[0, 0, 4, 0, 0, 1, 1]);
        write(target, "split_reads", &[0xfc, 1, 1, 1, 1, 1, 1]);
    }

    // cbor_decode: type selector, then the payload.
    let start = Start {
        version: 1,
        function: "square".into(),
        name: "Process-1".into(),
        channel: false,
        daemon: true,
    };
    write("cbor_decode", "start", &cbor(0, &start));
    write("cbor_decode", "reply_started", &cbor(1, &Reply::Started { pid: 4242 }));
    write("cbor_decode", "reply_refused", &cbor(1, &Reply::Refused { reason: "no such function".into() }));
    write("cbor_decode", "outcome_string", &cbor(2, &Outcome::Returned("done".to_string())));
    write("cbor_decode", "outcome_panicked", &cbor(3, &Outcome::<()>::Panicked("boom".into())));
    write("cbor_decode", "outcome_tuple", &cbor(4, &Outcome::Returned((7u32, vec![-1i64, 2]))));
    let mut tags = BTreeMap::new();
    tags.insert("alpha".to_string(), vec![1u8, 2, 3]);
    #[derive(Serialize)]
    struct Nested {
        name: String,
        id: u64,
        tags: BTreeMap<String, Vec<u8>>,
        shapes: Vec<ciborium::Value>,
        parent: Option<Box<Nested>>,
        #[serde(with = "serde_bytes")]
        blob: Vec<u8>,
    }
    let nested = Nested {
        name: "root".into(),
        id: u64::MAX,
        tags,
        shapes: vec![ciborium::Value::Text("Point".into())],
        parent: None,
        blob: vec![0; 3],
    };
    write("cbor_decode", "nested", &cbor(5, &nested));
    let mut internal = BTreeMap::new();
    internal.insert("type", ciborium::Value::Text("A".into()));
    internal.insert("x", ciborium::Value::Integer(1.into()));
    write("cbor_decode", "internal_tag", &cbor(6, &internal));
    let mut strict = BTreeMap::new();
    strict.insert("a", 5u32);
    write("cbor_decode", "strict", &cbor(7, &strict));
    let mut map = HashMap::new();
    map.insert("k".to_string(), vec![1u16, 65535]);
    write("cbor_decode", "hashmap", &cbor(8, &map));
    let mut bmap = BTreeMap::new();
    bmap.insert(-5i64, Some("x".to_string()));
    bmap.insert(9, None);
    write("cbor_decode", "btreemap", &cbor(9, &bmap));
    write("cbor_decode", "big_ints", &cbor(10, &(u128::MAX, i128::MIN, 'é', true, ())));
    write("cbor_decode", "byte_strings", &cbor(11, &vec![serde_bytes::ByteBuf::from(vec![1, 2, 3])]));
    write("cbor_decode", "value_tagged", &[12, 0xc2, 0x49, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    write("cbor_decode", "floats", &cbor(13, &(1.5f64, f32::NAN, vec![0.1f64, -0.0])));
    write("cbor_decode", "indefinite_array", &[14, 0x9f, 0x65, b'P', b'o', b'i', b'n', b't', 0xff]);
    write("cbor_decode", "chunked_text", &[15, 0x7f, 0x62, b'h', b'i', 0x61, b'!', 0xff]);
    write("cbor_decode", "deep_nesting", &[&[12u8][..], &[0x81; 300]].concat());
    write(
        "cbor_decode",
        "huge_byte_string",
        &[11, 0x81, 0x5b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    );
    write("cbor_decode", "trailing_bytes", &[15, 0x61, b'a', 0x00]);

    // manager_requests: requests, each a 2-byte length and its bytes; ids count from the
    // input's first object (0).
    #[derive(Serialize)]
    enum Req<'a, A> {
        Create { typeid: &'a str, args: A },
        Call { id: u64, method: &'a str, args: A },
        DecRef { id: u64 },
    }
    fn reqs(parts: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in parts {
            out.extend_from_slice(&(p.len() as u16).to_be_bytes());
            out.extend_from_slice(p);
        }
        out
    }
    fn enc<T: Serialize>(v: &T) -> Vec<u8> {
        let mut b = Vec::new();
        ciborium::into_writer(v, &mut b).unwrap();
        b
    }
    let list = reqs(&[
        enc(&Req::Create { typeid: "list", args: vec![3u8, 1, 2] }),
        enc(&Req::Call { id: 0, method: "extend", args: ((), [(); 0], 1.5f64, "x") }),
        enc(&Req::Call { id: 0, method: "insert", args: (-1i64, vec![(); 4]) }),
        enc(&Req::Call { id: 0, method: "sort", args: () }),
        enc(&Req::Call { id: 0, method: "to_vec", args: () }),
        enc(&Req::Call { id: 0, method: "pop", args: Some(0i64) }),
        enc::<Req<'_, ()>>(&Req::DecRef { id: 0 }),
    ]);
    write("manager_requests", "list", &list);
    let dict = reqs(&[
        enc(&Req::Create { typeid: "dict", args: () }),
        enc(&Req::Call { id: 0, method: "update", args: vec![(1u8, "a"), (2, "b"), (1, "c")] }),
        enc(&Req::Call { id: 0, method: "remove", args: 2u8 }),
        enc(&Req::Call { id: 0, method: "items", args: () }),
        enc(&Req::Create { typeid: "namespace", args: () }),
        enc(&Req::Call { id: 1, method: "set", args: ("n", [1u8, 2]) }),
        enc(&Req::Call { id: 1, method: "items", args: () }),
    ]);
    write("manager_requests", "dict_namespace", &dict);
    let lock = reqs(&[
        enc(&Req::Create { typeid: "lock", args: Some(0.01f64) }),
        enc(&Req::Call { id: 0, method: "acquire", args: (1u64, true, None::<f64>) }),
        enc(&Req::Call { id: 0, method: "acquire", args: (2u64, true, Some(0.05f64)) }),
        enc(&Req::Call { id: 0, method: "release", args: 1u64 }),
        enc(&Req::Create { typeid: "Echo", args: () }),
        enc(&Req::Call { id: 1, method: "sum", args: vec![1u64, 2, 3] }),
        enc(&Req::Call { id: 1, method: "parse", args: "-12" }),
    ]);
    write("manager_requests", "lock_lease_custom", &lock);
    write("manager_requests", "malformed", &reqs(&[vec![0xa1, 0x64, b'C', b'a', b'l', b'l', 0x9f], vec![0x85, 0xf6]]));
}
