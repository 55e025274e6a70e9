//! Debug output of public types: short enough to read in a log line, with the state a reader
//! needs (kind, counts, settings), and never the authkey or the bytes in a buffer.

use std::fmt::Debug;

use procwire::process::{Function, Process, use_test_entry};
use procwire::shared::{Array, AtomicValue, Value};
use procwire::{Address, AuthKey, Client, Listener};

/// The key every object here is made with; its text and its bytes must never be printed.
const KEY: &[u8] = b"k3y-that-must-not-leak";

/// The longest Debug line accepted: a builder with every option is about 260 characters.
const MAX: usize = 400;

fn check<T: Debug>(what: &str, v: &T) -> String {
    let s = format!("{v:?}");
    println!("{what} ({} chars): {s}", s.len());
    assert!(s.len() <= MAX, "{what}: {} characters of Debug output: {s:.600}", s.len());
    assert!(!s.contains("k3y-that"), "{what} prints the key: {s}");
    let bytes = format!("{:?}", &KEY[..6]);
    assert!(!s.contains(&bytes[1..bytes.len() - 1]), "{what} prints the key's bytes: {s}");
    s
}

fn double(x: u64) -> u64 {
    x * 2
}
static DOUBLE: Function<u64, u64> = Function::new("debug_output::double", double);

fn sum(v: Vec<u8>) -> u64 {
    v.iter().map(|&b| u64::from(b)).sum()
}
static SUM: Function<Vec<u8>, u64> = Function::new("debug_output::sum", sum);

#[test]
fn connections_show_their_stream_and_counts_not_their_buffers() {
    let (mut a, mut b) = procwire::pipe(true).unwrap();
    check("fresh pipe", &a);
    a.send_bytes(b"one").unwrap();
    a.send_bytes(b"two").unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"one");
    // The second message waits in the receive buffer: its count shows, its bytes do not.
    let s = check("pipe with a buffered message", &b);
    assert!(s.contains("buffered: 7"), "{s}");
    a.set_batching(Some(1 << 20));
    a.send_bytes(b"queued").unwrap();
    let s = check("pipe with a batched send", &a);
    assert!(s.contains("queued: 10"), "{s}");
    let s = check("in-process pipe", &procwire::dummy::pipe(true).unwrap().0);
    assert!(s.contains("InProcess"), "{s}");
    let (tx, rx) = b.split();
    check("sender", &tx);
    check("receiver", &rx);
}

#[test]
fn endpoints_and_keys_never_show_the_key() {
    let key = AuthKey::new(KEY.to_vec());
    check("authkey", &key);
    let dir = tempfile::tempdir().unwrap();
    let addr: Address = format!("unix:{}", dir.path().join("s").display()).parse().unwrap();
    let listener = Listener::builder().authkey(key.clone()).bind(&addr).unwrap();
    check("listener", &listener);
    check("listener builder", &Listener::builder().authkey(key.clone()));
    check("client builder", &Client::builder().authkey(key.clone()));
    let t = std::thread::spawn(move || listener.accept().unwrap());
    let c = Client::builder().authkey(key).connect(&addr).unwrap();
    check("client connection", &c);
    check("accepted connection", &t.join().unwrap());
}

#[test]
fn consumers_print_short_lines() {
    let q: procwire::queue::Queue<u64> = procwire::queue::Queue::new().unwrap();
    q.put(&1).unwrap();
    check("queue", &q);
    let jq: procwire::queue::JoinableQueue<u64> = procwire::queue::JoinableQueue::new().unwrap();
    check("joinable queue", &jq);
    check("dummy queue", &procwire::dummy::queue::Queue::<u64>::new().unwrap());
    check("value", &Value::new(7u64).unwrap());
    check("atomic value", &AtomicValue::<u64>::new(7).unwrap());
    check("array of 100,000", &Array::<u64>::new(100_000).unwrap());
    let m = procwire::dummy::manager::Manager::start().unwrap();
    check("dummy manager", &m);
    check("dummy list proxy", &m.list(0..10_000u64).unwrap());
    check("dummy lock proxy", &m.lock().unwrap());
    let pool = procwire::dummy::pool::Pool::new(2).unwrap();
    check("dummy pool", &pool);
}

#[test]
fn processes_pools_and_managers_print_short_lines() {
    use_test_entry("procwire_child");
    let mut p = Process::new(&DOUBLE, 21);
    check("process before start", &p);
    // Its argument is encoded before the start: a large one must not show.
    check("process with a large argument", &Process::new(&SUM, vec![7u8; 100_000]));
    p.start().unwrap();
    check("started process", &p);
    assert_eq!(p.result().unwrap(), 42);
    let pool = procwire::pool::Pool::new(2).unwrap();
    check("pool", &pool);
    let m = procwire::manager::Manager::start().unwrap();
    check("manager", &m);
    let d = m.dict::<String, u64>().unwrap();
    check("dict proxy", &d);
}

#[test]
#[ignore = "the entry point of child processes"]
fn procwire_child() {
    procwire::process::init(&[&DOUBLE, &SUM, &procwire::manager::SERVE]);
}
