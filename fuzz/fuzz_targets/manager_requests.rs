//! Manager requests from arbitrary bytes, to a real `ManagerServer` over an authenticated
//! Unix socket (SPEC.md §12.2). Input: requests, each a 2-byte big-endian length and then
//! that many bytes (the last one cut where the input ends), at most 32 of them. Object ids
//! in the input count from the first object the input creates (0), since the server numbers
//! objects for all inputs: a request that decodes as one with an `id` gets it shifted.
//!
//! Checked: every request gets a reply and the server keeps serving (a malformed one is an
//! error reply, never a panic, an abort or a closed connection); and the memory the whole
//! process (server and client side) allocates while the requests are handled stays within a
//! constant times the bytes sent plus a constant (SPEC.md §10.3: the server's memory grows
//! with the bytes that arrived), counted by a global allocator.

#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use libfuzzer_sys::fuzz_target;
use procwire::manager::{ManagerServer, Registry};
use procwire::{Address, AuthKey, Client, Family};

/// Bytes allocated now, and the most since the last reset.
static NOW: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

struct Counting;

fn grew(n: usize) {
    let now = NOW.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call goes to the system allocator as it is; the counters are only counters.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            grew(l.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            grew(l.size());
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        NOW.fetch_sub(l.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            // Counted as if the old and new blocks lived at once, as when realloc copies.
            grew(new);
            NOW.fetch_sub(l.size(), Ordering::Relaxed);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The budget: this many times the bytes sent, plus `SLACK`.
const FACTOR: usize = 32;
const SLACK: usize = 64 << 10;

fn server() -> &'static (ManagerServer, AuthKey) {
    static SERVER: OnceLock<(ManagerServer, AuthKey)> = OnceLock::new();
    SERVER.get_or_init(|| {
        let mut reg = Registry::new();
        // A queue starts a server of its own (a listener and threads): a fixed cost per
        // object that is not the request handling measured here.
        reg.register("queue", |(): ()| ()).method("handle", |_: &mut (), (): ()| ());
        reg.register("Echo", |(): ()| Vec::<u8>::new())
            .method("echo", |v: &mut Vec<u8>, x: Vec<u8>| std::mem::replace(v, x))
            .method("sum", |_: &mut Vec<u8>, x: Vec<u64>| x.iter().fold(0u64, |a, b| a.wrapping_add(*b)))
            .try_method("parse", |_: &mut Vec<u8>, s: String| s.parse::<i64>().map_err(|e| e.to_string()));
        let key = AuthKey::random().expect("key");
        let address = Address::fresh(Family::Unix).expect("address");
        (ManagerServer::bind(&address, key.clone(), reg).expect("bind"), key)
    })
}

/// `{"Hello": {"version": 1, "session": session}}`, as the client encodes it.
fn hello(session: u64) -> Vec<u8> {
    let mut b = vec![0xa1, 0x65];
    b.extend_from_slice(b"Hello");
    b.extend_from_slice(&[0xa2, 0x67]);
    b.extend_from_slice(b"version");
    b.push(0x01);
    b.push(0x67);
    b.extend_from_slice(b"session");
    b.push(0x1b);
    b.extend_from_slice(&session.to_be_bytes());
    b
}

/// `Count`: a request that blocks nothing, sent last so that a blocking one before it finds
/// its client talking again and ends (as when a client goes away).
const COUNT: &[u8] = &[0x65, b'C', b'o', b'u', b'n', b't'];

/// `req` with its object id shifted by `first`, when it is a request with an id.
fn shift(req: &[u8], first: u64) -> Vec<u8> {
    use ciborium::Value;
    let Ok(mut v) = ciborium::from_reader::<Value, _>(req) else { return req.to_vec() };
    if let Value::Map(outer) = &mut v
        && let [(Value::Text(_), Value::Map(fields))] = &mut outer[..]
    {
        for (k, x) in fields.iter_mut() {
            if let (Value::Text(k), Value::Integer(i)) = (k, &mut *x)
                && k == "id"
                && let Ok(i) = u64::try_from(*i)
            {
                *x = Value::Integer(first.saturating_add(i).into());
            }
        }
    }
    let mut out = Vec::new();
    ciborium::into_writer(&v, &mut out).expect("encode");
    out
}

fn requests(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while let Some((len, rest)) = data.split_first_chunk::<2>() {
        if out.len() == 32 {
            break;
        }
        let n = usize::from(u16::from_be_bytes(*len)).min(rest.len());
        let (req, rest) = rest.split_at(n);
        // A Shutdown would end the server that every later input uses.
        let shutdown = matches!(
            ciborium::from_reader::<ciborium::Value, _>(req),
            Ok(ciborium::Value::Text(t)) if t == "Shutdown"
        );
        if !shutdown {
            out.push(req);
        }
        data = rest;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    static SESSION: AtomicU64 = AtomicU64::new(1);
    let (server, key) = server();
    let reqs = requests(data);
    let mut conn = Client::builder().authkey(key.clone()).connect(server.address()).expect("connect");
    let session = SESSION.fetch_add(1, Ordering::Relaxed);
    conn.send_bytes(&hello(session)).expect("hello");
    assert_eq!(conn.recv_bytes().expect("hello reply"), [0xa1, 0x62, b'O', b'k', 0xf6]);
    // The id the next object gets: one more than a probe's.
    let mut probe = vec![0xa1, 0x66];
    probe.extend_from_slice(b"Create");
    probe.extend_from_slice(&[0xa2, 0x66]);
    probe.extend_from_slice(b"typeid");
    probe.extend_from_slice(&[0x65]);
    probe.extend_from_slice(b"event");
    probe.extend_from_slice(&[0x64]);
    probe.extend_from_slice(b"args");
    probe.push(0xf6);
    conn.send_bytes(&probe).expect("probe");
    let first = match ciborium::from_reader(&conn.recv_bytes().expect("probe reply")[..]) {
        Ok(ciborium::Value::Map(m)) => match &m[..] {
            [(_, ciborium::Value::Integer(i))] => u64::try_from(*i).expect("id") + 1,
            other => panic!("probe reply {other:?}"),
        },
        other => panic!("probe reply {other:?}"),
    };
    let reqs: Vec<Vec<u8>> = reqs.iter().map(|r| shift(r, first)).collect();
    let (mut tx, mut rx) = conn.split();
    let expected = reqs.len() + 1;
    // Replies are read while requests are written: neither side waits on a full socket.
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut n = 0;
        while n < expected && rx.recv_bytes_into(&mut buf).is_ok() {
            // {"Ok": ...} or {"Err": {...}}.
            assert_eq!(buf[0], 0xa1, "a reply is a map of one entry: {buf:x?}");
            n += 1;
        }
        n
    });
    let sent: usize = reqs.iter().map(|r| r.len() + 12).sum::<usize>() + COUNT.len();
    let base = NOW.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    for r in &reqs {
        tx.send_bytes(r).expect("send");
    }
    tx.send_bytes(COUNT).expect("send");
    let answered = reader.join().expect("reader");
    let peak = PEAK.load(Ordering::Relaxed) - base;
    assert_eq!(answered, expected, "every request is answered");
    assert!(
        peak <= FACTOR * sent + SLACK,
        "{peak} bytes allocated at the peak for {sent} bytes of {} requests",
        reqs.len()
    );
});
