//! The consumers over shared memory on Linux, with real processes (tests/shm_consumers.rs has
//! what runs on every platform): a queue's handles and a pool's workers in child processes
//! connect through shared memory by default (each child reports its connection's kind and
//! whether it maps a ring), and through their socket when that is turned off; a client killed over shared memory frees its locks, a
//! consumer killed loses no item, a worker killed mid-task is replaced; a TCP client on the
//! manager's host learns its shared-memory address and moves there, unless that socket is gone
//! or stale; handles that travelled to another host, encrypted managers and a CPython-style
//! client keep using the socket, and a server that does not tell the address keeps a client
//! there.

#![cfg(target_os = "linux")]

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::InTime;
use procwire::manager::{DictProxy, LockProxy, Manager, ManagerServer, Registry, SERVE};
use procwire::pool::Pool;
use procwire::process::{ChannelFunction, Function, Process, start, use_test_entry};
use procwire::queue::Queue;
use procwire::{Address, AuthKey, Connection, Error, RemoteKind};

const LIMIT: Duration = Duration::from_secs(120);
const LONG: Duration = Duration::from_secs(60);

/// Whether this process maps a shared-memory connection's region (a memory file of procwire's).
fn maps_a_ring() -> bool {
    std::fs::read_to_string("/proc/self/maps").unwrap().contains("/memfd:procwire-shared")
}

// ---------------------------------------------------------------------------------------------
// Children

/// What a manager client saw: the value it read, whether its handle's connections are shared
/// memory, and whether it maps a ring.
type Seen = (Option<u64>, bool, bool);

/// A child with a dict proxy: the value it reads, whether its handle's connections are shared
/// memory, and whether it maps a ring.
fn read_dict(d: DictProxy<String, u64>) -> Seen {
    let v = d.get(&"k".to_string()).unwrap();
    (v, d.proxy().manager().is_shared_memory().unwrap(), maps_a_ring())
}

/// A client of the manager at an address it was given: what it reads back, its kind.
fn connect((address, key): (String, Vec<u8>)) -> Seen {
    let m = Manager::connect(&address, key).unwrap();
    let d = m.dict::<String, u64>().unwrap();
    d.insert(&"k".to_string(), &1).unwrap();
    read_dict(d)
}

/// [`read_dict`] with a proxy that arrives as CBOR bytes (edited by the test).
fn read_far(bytes: Vec<u8>) -> Seen {
    read_dict(ciborium::from_reader(&bytes[..]).unwrap())
}

/// A child that holds a lock, says so with its connection's kind, and hangs until killed.
fn hold_lock(mut ch: Connection, lock: LockProxy) {
    lock.acquire().unwrap();
    ch.send(&lock.proxy().manager().is_shared_memory().unwrap()).unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// A consumer: gets one item, says which and its handle's kind, then hangs with whatever it
/// prefetched until killed.
fn consume_one(mut ch: Connection, q: Queue<u64>) {
    let first = q.get_timeout(LONG).unwrap().unwrap();
    ch.send(&(first, q.is_shared_memory().unwrap(), maps_a_ring())).unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// A producer: puts `n` items, and reports its handle's kind.
fn produce((q, n): (Queue<u64>, u64)) -> bool {
    for i in 0..n {
        q.put(&i).unwrap();
    }
    q.is_shared_memory().unwrap()
}

/// [`produce`] with a queue handle that arrives as CBOR bytes (edited by the test).
fn produce_far((bytes, n): (Vec<u8>, u64)) -> bool {
    produce((ciborium::from_reader(&bytes[..]).unwrap(), n))
}

/// A pool task: whether its worker maps a ring, and its pid.
fn worker_kind(_: u64) -> (bool, u32) {
    (maps_a_ring(), std::process::id())
}

/// A pool task that kills its own worker when `x == victim`.
fn dies_on((x, victim): (u64, u64)) -> u64 {
    if x == victim {
        // SAFETY: a plain system call on this very process.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
    x
}

static READ_DICT: Function<DictProxy<String, u64>, Seen> = Function::new("read_dict", read_dict);
static READ_FAR: Function<Vec<u8>, Seen> = Function::new("read_far", read_far);
static CONNECT: Function<(String, Vec<u8>), Seen> = Function::new("connect", connect);
static HOLD_LOCK: ChannelFunction<LockProxy> = ChannelFunction::new("hold_lock", hold_lock);
static CONSUME_ONE: ChannelFunction<Queue<u64>> = ChannelFunction::new("consume_one", consume_one);
static PRODUCE: Function<(Queue<u64>, u64), bool> = Function::new("produce", produce);
static PRODUCE_FAR: Function<(Vec<u8>, u64), bool> = Function::new("produce_far", produce_far);
static WORKER_KIND: Function<u64, (bool, u32)> = Function::new("worker_kind", worker_kind);
static DIES_ON: Function<(u64, u64), u64> = Function::new("dies_on", dies_on);

#[test]
#[ignore = "the entry point of child processes"]
fn procwire_child() {
    procwire::process::init(&[
        &SERVE,
        &READ_DICT,
        &CONNECT,
        &READ_FAR,
        &HOLD_LOCK,
        &CONSUME_ONE,
        &PRODUCE,
        &PRODUCE_FAR,
        &WORKER_KIND,
        &DIES_ON,
    ]);
}

// ---------------------------------------------------------------------------------------------
// Manager

#[test]
fn a_client_killed_over_shared_memory_frees_its_lock() {
    use_test_entry("procwire_child");
    let m = Manager::start().unwrap();
    let lock = m.lock().unwrap();
    let mut ch = start(&HOLD_LOCK, lock.clone()).unwrap();
    ch.set_read_timeout(Some(LONG));
    assert!(ch.recv::<bool>().unwrap(), "the holder's connection is shared memory");
    assert!(!lock.try_acquire().unwrap());
    let waiter = {
        let lock = lock.clone();
        std::thread::spawn(move || lock.acquire_timeout(LONG))
    };
    ch.kill().unwrap();
    ch.join_timeout(LIMIT).unwrap();
    let t = Instant::now();
    assert!(waiter.join().unwrap().unwrap(), "the blocked acquire got the dead holder's lock");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}

#[test]
fn tcp_clients_on_the_host_move_to_memory_and_handles_from_another_host_use_the_socket() {
    use_test_entry("procwire_child");
    let m = Manager::builder().address("tcp:127.0.0.1:0".parse().unwrap()).start().unwrap();
    assert!(m.shared_memory_address().is_some(), "a TCP manager serves its own host through memory too");
    assert!(m.is_shared_memory().unwrap());
    let mut p = Process::new(&CONNECT, (m.address().to_string(), m.authkey().as_bytes().to_vec()));
    p.start().unwrap();
    assert_eq!(
        p.result_timeout(LIMIT).in_time().unwrap(),
        (Some(1), true, true),
        "a TCP client on the manager's host learns its shared-memory address"
    );
    let d = m.dict::<String, u64>().unwrap();
    d.insert(&"k".to_string(), &1).unwrap();

    // A proxy that reached another host names a shared-memory path that is not there: it
    // connects to the manager's address.
    let far = with_shm(&d, "shm:/nonexistent-procwire-dir/shm.sock");
    let mut p = Process::new(&READ_FAR, far);
    p.start().unwrap();
    assert_eq!(p.result_timeout(LIMIT).in_time().unwrap(), (Some(1), false, false));
}

/// `handle` (a proxy or a queue) serialized with its shared-memory address replaced by `shm`.
fn with_shm<T: serde::Serialize>(handle: &T, shm: &str) -> Vec<u8> {
    let mut v = ciborium::Value::serialized(handle).unwrap();
    let ciborium::Value::Map(fields) = &mut v else { panic!("a handle is a map: {v:?}") };
    let field =
        fields.iter_mut().find(|(k, _)| k.as_text() == Some("shm")).expect("it carries the shm address");
    field.1 = ciborium::Value::Text(shm.into());
    let mut bytes = Vec::new();
    ciborium::into_writer(&v, &mut bytes).unwrap();
    bytes
}

/// A socket file nobody listens at any more (as a crashed server leaves it), in `dir`.
fn stale_socket(dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(std::os::unix::net::UnixStream::connect(&path).is_err(), "nothing listens there");
    format!("shm:{}", path.display())
}

#[test]
fn a_proxy_whose_shared_memory_address_is_stale_uses_the_managers_address() {
    use_test_entry("procwire_child");
    let m = Manager::start().unwrap();
    let d = m.dict::<String, u64>().unwrap();
    d.insert(&"k".to_string(), &3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut p = Process::new(&READ_FAR, with_shm(&d, &stale_socket(&dir)));
    p.start().unwrap();
    assert_eq!(p.result_timeout(LIMIT).in_time().unwrap(), (Some(3), false, false));
}

#[test]
fn a_bound_manager_server_serves_its_host_through_memory_too() {
    use_test_entry("procwire_child");
    let key = AuthKey::random().unwrap();
    let server = ManagerServer::bind("tcp:127.0.0.1:0", key.clone(), Registry::new()).unwrap();
    let shm = server.shared_memory_address().expect("a shared-memory listener beside the TCP one").clone();
    assert!(matches!(shm, Address::Shm(_)), "{shm}");
    let here = Manager::connect(&shm, key.clone()).unwrap();
    assert!(here.is_shared_memory().unwrap());
    let by_address = Manager::connect(server.address(), key.clone()).unwrap();
    assert_eq!(by_address.shared_memory_address(), Some(&shm), "learned from the manager");
    assert!(by_address.is_shared_memory().unwrap());
    let mut p = Process::new(&CONNECT, (shm.to_string(), key.as_bytes().to_vec()));
    p.start().unwrap();
    assert_eq!(p.result_timeout(LIMIT).in_time().unwrap(), (Some(1), true, true), "a child over shm");
    let q = here.queue::<u64>().unwrap();
    assert!(q.shared_memory_address().is_some(), "the queues it serves listen on shared memory too");
}

#[test]
fn a_client_by_address_stays_on_it_when_the_shared_memory_socket_is_gone_or_stale() {
    use_test_entry("procwire_child");
    let key = AuthKey::random().unwrap();
    let server = ManagerServer::bind("tcp:127.0.0.1:0", key.clone(), Registry::new()).unwrap();
    let Some(Address::Shm(path)) = server.shared_memory_address() else { panic!("{server:?}") };
    let args = (server.address().to_string(), key.as_bytes().to_vec());
    // Gone: the client does not try it.
    std::fs::remove_file(path).unwrap();
    let mut p = Process::new(&CONNECT, args.clone());
    p.start().unwrap();
    assert_eq!(p.result_timeout(LIMIT).in_time().unwrap(), (Some(1), false, false), "socket gone");
    // Stale (a socket file nobody listens at): the client tries it, and keeps its connection.
    drop(std::os::unix::net::UnixListener::bind(path).unwrap());
    let mut p = Process::new(&CONNECT, args);
    p.start().unwrap();
    assert_eq!(p.result_timeout(LIMIT).in_time().unwrap(), (Some(1), false, false), "socket stale");
}

/// `{"Ok": null}`, the answer to a Hello of a manager without a shared-memory address to tell
/// (or before the question).
const OK_NULL: [u8; 5] = [0xa1, 0x62, b'O', b'k', 0xf6];

#[test]
fn a_hello_that_does_not_ask_and_a_manager_that_does_not_tell_keep_the_socket() {
    use_test_entry("procwire_child");
    let key = AuthKey::random().unwrap();
    // A client before the question, at a manager that has a shared-memory address: null.
    let server = ManagerServer::bind("tcp:127.0.0.1:0", key.clone(), Registry::new()).unwrap();
    assert!(server.shared_memory_address().is_some());
    let hello = ciborium::Value::Map(vec![(
        "Hello".into(),
        ciborium::Value::Map(vec![("version".into(), 1.into()), ("session".into(), 7.into())]),
    )]);
    let mut msg = Vec::new();
    ciborium::into_writer(&hello, &mut msg).unwrap();
    let mut old = procwire::Client::builder().authkey(key.clone()).connect(server.address()).unwrap();
    old.send_bytes(&msg).unwrap();
    assert_eq!(old.recv_bytes().unwrap(), OK_NULL, "an old client's answer is unchanged");

    // A manager before the question (it ignores the field and answers null): the client asks,
    // and stays at the address.
    let listener = procwire::Listener::builder().authkey(key.clone()).bind("tcp:127.0.0.1:0").unwrap();
    let address = listener.address().clone();
    let old_server = std::thread::spawn(move || {
        let mut c = listener.accept().unwrap();
        let hello: ciborium::Value = ciborium::from_reader(&c.recv_bytes().unwrap()[..]).unwrap();
        c.send_bytes(&OK_NULL).unwrap();
        // One more request (Count): answered 0.
        c.recv_bytes().unwrap();
        c.send_bytes(&[0xa1, 0x62, b'O', b'k', 0x00]).unwrap();
        hello
    });
    let m = Manager::connect(&address, key).unwrap();
    assert_eq!(m.object_count().unwrap(), 0);
    assert_eq!(m.shared_memory_address(), None);
    assert!(!m.is_shared_memory().unwrap());
    let hello = old_server.join().unwrap();
    let fields = hello.as_map().and_then(|m| m[0].1.as_map()).expect("{\"Hello\": {...}}");
    let shm = fields.iter().find(|(k, _)| k.as_text() == Some("shm")).map(|(_, v)| v.clone());
    assert_eq!(shm, Some(ciborium::Value::Bool(true)), "the client asked: {hello:?}");
}

#[cfg(feature = "encrypt")]
#[test]
fn an_encrypted_manager_stays_on_its_socket() {
    use_test_entry("procwire_child");
    let m = Manager::builder().encrypt(true).start().unwrap();
    assert_eq!(m.shared_memory_address(), None);
    assert!(!m.is_shared_memory().unwrap());
    let d = m.dict::<String, u64>().unwrap();
    d.insert(&"k".to_string(), &7).unwrap();
    let mut p = Process::new(&READ_DICT, d);
    p.start().unwrap();
    assert_eq!(p.result_timeout(LIMIT).in_time().unwrap(), (Some(7), false, false));
}

// ---------------------------------------------------------------------------------------------
// Queue

#[test]
fn a_queue_handle_whose_shared_memory_address_is_stale_uses_the_queues_address() {
    use_test_entry("procwire_child");
    let q: Queue<u64> = Queue::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let far = with_shm(&q, &stale_socket(&dir));
    let mut p = Process::new(&PRODUCE_FAR, (far, 10));
    p.start().unwrap();
    assert!(!p.result_timeout(LIMIT).in_time().unwrap(), "the producer is on the socket");
    let got: Vec<u64> = (0..10).map(|_| q.get_timeout(LONG).unwrap().unwrap()).collect();
    assert_eq!(got, (0..10).collect::<Vec<_>>());
}

#[test]
fn a_consumer_killed_over_shared_memory_loses_nothing() {
    use_test_entry("procwire_child");
    let q: Queue<u64> = Queue::new().unwrap();
    for i in 0..50 {
        q.put(&i).unwrap();
    }
    let mut ch = start(&CONSUME_ONE, q.clone()).unwrap();
    ch.set_read_timeout(Some(LONG));
    let (first, shared, mapped) = ch.recv::<(u64, bool, bool)>().unwrap();
    assert!(shared && mapped, "the consumer's handle is on shared memory");
    ch.kill().unwrap();
    ch.join_timeout(LIMIT).unwrap();
    // What the consumer had prefetched and not acknowledged comes back when its connection
    // ends; nothing else is missing.
    let mut rest = BTreeSet::new();
    while rest.len() < 49 {
        match q.get_timeout(LONG) {
            Ok(Some(x)) => assert!(rest.insert(x), "{x} delivered twice"),
            other => panic!("after {} items: {other:?}", rest.len()),
        }
    }
    assert!(!rest.contains(&first));
    assert_eq!(rest.len() + 1, 50);
    assert_eq!(q.try_get().unwrap(), None);
}

// ---------------------------------------------------------------------------------------------
// Pool

#[test]
fn pool_workers_use_shared_memory_unless_it_is_turned_off() {
    use_test_entry("procwire_child");
    for on in [true, false] {
        let pool: Pool = Pool::builder().processes(2).shared_memory(on).build().unwrap();
        let kinds = pool.with_chunksize(1).map(&WORKER_KIND, 0..20).unwrap();
        assert!(kinds.iter().all(|(mapped, _)| *mapped == on), "shared memory {on}: {kinds:?}");
    }
}

#[test]
fn a_worker_killed_mid_task_over_shared_memory_is_replaced() {
    use_test_entry("procwire_child");
    let pool: Pool = Pool::builder().processes(1).build().unwrap();
    let (mapped, first) = pool.apply(&WORKER_KIND, 0).unwrap();
    assert!(mapped);
    match pool.apply(&DIES_ON, (5, 5)) {
        Err(Error::Remote { kind: RemoteKind::Exit, .. }) => {}
        other => panic!("the task that killed its worker fails with kind exit: {other:?}"),
    }
    let results = pool.with_chunksize(1).map(&DIES_ON, (0..10).map(|x| (x, 99))).unwrap();
    assert_eq!(results, (0..10).collect::<Vec<_>>());
    let (mapped, second) = pool.apply(&WORKER_KIND, 0).unwrap();
    assert!(mapped, "the replacement is on shared memory too");
    assert_ne!(first, second, "a new worker took over");
}

// ---------------------------------------------------------------------------------------------
// A client that is not procwire, at the manager's socket

/// CPython's `multiprocessing.connection` framing with the handshake of 3.12 written out
/// (the `python3` here may be 3.11, whose `Client` answers with MD5): connects to a Unix
/// socket, sends one message, prints the reply in hex.
const PY_CLIENT: &str = r##"
import hmac, os, socket, sys
from multiprocessing.connection import Connection
path, key, msg = sys.argv[1], bytes.fromhex(sys.argv[2]), bytes.fromhex(sys.argv[3])
s = socket.socket(socket.AF_UNIX)
s.connect(path)
c = Connection(s.detach())
body = c.recv_bytes(256)[len(b"#CHALLENGE#"):]
c.send_bytes(b"{sha256}" + hmac.new(key, body, "sha256").digest())
assert c.recv_bytes(256) == b"#WELCOME#"
mine = b"{sha256}" + os.urandom(40)
c.send_bytes(b"#CHALLENGE#" + mine)
assert c.recv_bytes(256) == b"{sha256}" + hmac.new(key, mine, "sha256").digest()
c.send_bytes(b"#WELCOME#")
c.send_bytes(msg)
print(c.recv_bytes().hex())
"##;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn a_cpython_client_at_the_socket_of_a_shared_memory_manager_is_served() {
    use_test_entry("procwire_child");
    let m = Manager::start().unwrap();
    assert!(m.shared_memory_address().is_some());
    let Address::Unix(path) = m.address() else { panic!("{}", m.address()) };
    // The manager's Hello (spec/manager.md): {"Hello": {"version": 1, "session": 7}}.
    let hello = ciborium::Value::Map(vec![(
        "Hello".into(),
        ciborium::Value::Map(vec![("version".into(), 1.into()), ("session".into(), 7.into())]),
    )]);
    let mut msg = Vec::new();
    ciborium::into_writer(&hello, &mut msg).unwrap();
    let mut py = Command::new("python3")
        .args(["-I", "-", &path.display().to_string(), &hex(m.authkey().as_bytes()), &hex(&msg)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 on PATH");
    py.stdin.take().unwrap().write_all(PY_CLIENT.as_bytes()).unwrap();
    let out = py.wait_with_output().unwrap();
    assert!(out.status.success(), "python: {}", String::from_utf8_lossy(&out.stderr));
    // {"Ok": null}
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "a1624f6bf6");
}
