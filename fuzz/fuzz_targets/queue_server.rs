//! The queue server (SPEC.md §12.1) fed arbitrary requests by a keyed client, over a real
//! connection to a queue served in this process (the server's decoding and handling are not
//! public; this is the smallest path that reaches them).
//!
//! Input: a flags byte (bit 0: send a valid HELLO first instead of taking it from the input;
//! bit 1: a queue with maxsize 8 instead of an unbounded one), then frames, each
//! `[repeat, fill, len, len bytes]`: the frame is the `len` bytes followed by `2^fill - 1`
//! zero bytes (`fill` 0..=23), sent `2^(repeat % 17)` times, so a short input can say an 8 MiB
//! HELLO or a flood of 65536 JOINs. At most 16 MiB goes out per input. The client reads every
//! answer as it comes; it ends with an unknown opcode, which makes the server drop the
//! connection after handling everything before it, and reads until the server closes.
//!
//! Checked: the server answers (closes within 30 s) and never panics, and the bytes allocated
//! in this process (client and server) while it handles the input peak at most
//! `4 x the bytes sent + 256 x the PUTs sent + 4 MiB`: the queue keeps each item it was put
//! (with a few dozen bytes of its own), and nothing else grows with what a client says,
//! only with the bytes it sent.

#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use procwire::queue::{JoinableQueue, QueueBuilder};
use procwire::{Client, Error};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Counts the bytes allocated in the process, and their peak.
struct Counting;

static CURRENT: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

fn grew(n: usize) {
    let now = CURRENT.fetch_add(n as isize, Ordering::Relaxed) + n as isize;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call goes to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // Old and new may both be live during the move: count the new one first.
            grew(new_size);
            CURRENT.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// An item of any CBOR (items from the fuzzer are arbitrary bytes; draining just drops them).
struct Skip;

impl Serialize for Skip {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_unit()
    }
}

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| Skip)
    }
}

struct Queues {
    unbounded: JoinableQueue<Skip>,
    bounded: JoinableQueue<Skip>,
}

fn queues() -> &'static Queues {
    static Q: OnceLock<Queues> = OnceLock::new();
    Q.get_or_init(|| Queues {
        unbounded: QueueBuilder::new().build_joinable().expect("queue"),
        bounded: QueueBuilder::new().maxsize(8).build_joinable().expect("queue"),
    })
}

const WIRE_MAX: usize = 16 << 20;

/// The frames the input says, in order (each once per repeat).
fn frames(mut data: &[u8]) -> Vec<(Vec<u8>, usize)> {
    let mut out = Vec::new();
    let mut total = 0usize;
    while let [repeat, fill, len, rest @ ..] = data {
        let len = (*len as usize).min(rest.len());
        let fill = (1usize << (*fill % 24)) - 1;
        let mut frame = rest[..len].to_vec();
        frame.resize(len + fill, 0);
        data = &rest[len..];
        let repeat = (1usize << (*repeat % 17)).min((WIRE_MAX - total) / (frame.len() + 4));
        if repeat == 0 {
            break;
        }
        total += repeat * (frame.len() + 4);
        out.push((frame, repeat));
    }
    out
}

/// `HELLO {"version": 3, "acks": null}`.
fn hello() -> Vec<u8> {
    let mut h = vec![0x00, 0xa2, 0x67];
    h.extend_from_slice(b"version");
    h.extend_from_slice(&[0x03, 0x64]);
    h.extend_from_slice(b"acks");
    h.push(0xf6);
    h
}

fn drain(q: &JoinableQueue<Skip>) {
    while let Ok(Some(_)) | Err(Error::Decode(_)) = q.try_get() {}
    while q.task_done().is_ok() {}
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let q = if flags & 2 == 0 { &queues().unbounded } else { &queues().bounded };
    let mut frames = frames(rest);
    if flags & 1 != 0 {
        frames.insert(0, (hello(), 1));
    }
    let wire: usize = frames.iter().map(|(f, n)| n * (f.len() + 4)).sum::<usize>() + 5;
    let puts: usize = frames.iter().skip(1).filter(|(f, _)| f.first() == Some(&0x01)).map(|(_, n)| n).sum();

    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let mut c = Client::builder().authkey(q.authkey().clone()).connect(q.address()).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(30)));
    c.set_write_timeout(Some(Duration::from_secs(30)));
    let (mut tx, mut rx) = c.split();
    std::thread::scope(|s| {
        let reader = s.spawn(move || {
            loop {
                match rx.recv_bytes() {
                    Ok(_) => {}
                    Err(Error::Timeout(_)) => panic!("the queue server neither answered nor closed in 30 s"),
                    Err(_) => return,
                }
            }
        });
        tx.set_batching(Some(64 << 10));
        'send: for (frame, n) in &frames {
            for _ in 0..*n {
                match tx.send_bytes(frame) {
                    Ok(()) => {}
                    Err(Error::Timeout(_)) => panic!("the queue server stopped reading a client that reads"),
                    Err(_) => break 'send,
                }
            }
        }
        // An unknown opcode: the server drops the connection once it has handled the rest.
        let _ = tx.send_bytes(&[0xff]);
        let _ = tx.flush();
        reader.join().expect("reader");
        drop(tx);
    });
    drop(frames);
    let peak = (PEAK.load(Ordering::Relaxed) - base).max(0) as usize;
    let budget = 4 * wire + 256 * puts + (4 << 20);
    assert!(
        peak <= budget,
        "{peak} bytes allocated at the peak for {wire} bytes sent ({puts} PUTs): over {budget}"
    );
    drain(q);
});
