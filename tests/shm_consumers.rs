//! The consumers over shared memory on every platform that has it, Windows (under Wine in CI)
//! included: a manager's proxy and a queue's handle in a child process connect through shared
//! memory by default and through the manager's or queue's own address when that is turned off;
//! a pool's workers answer over their (shared-memory) pipes. A child that knows only the
//! manager's or queue's own address learns the shared-memory one from it and moves there, and
//! so does a queue handle that came without it. tests/shm_use.rs checks more on
//! Linux, where a process can see the rings it maps (and a CPython client, and kills).

mod common;

use std::time::Duration;

use common::InTime;
use procwire::manager::{DictProxy, Manager, SERVE};
use procwire::pool::Pool;
use procwire::process::{Function, Process, use_test_entry};
use procwire::queue::{Queue, QueueBuilder};
use procwire::{AuthKey, Family};

const LIMIT: Duration = Duration::from_secs(120);

/// Whether this process maps a shared-memory connection's region, where a process can tell
/// (Linux: a memory file of procwire's in its maps).
fn maps_a_ring() -> Option<bool> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    Some(std::fs::read_to_string("/proc/self/maps").unwrap().contains("/memfd:procwire-shared"))
}

/// What a manager client saw: the value it read, whether its handle's connections are shared
/// memory, and whether it maps a ring (where it can tell).
type Seen = (Option<u64>, bool, Option<bool>);

/// A child with a dict proxy: what it saw.
fn read_dict(d: DictProxy<String, u64>) -> Seen {
    let v = d.get(&"k".to_string()).unwrap();
    (v, d.proxy().manager().is_shared_memory().unwrap(), maps_a_ring())
}

/// A producer: puts `n` items, and reports whether its handle is on shared memory.
fn produce((q, n): (Queue<u64>, u64)) -> bool {
    for i in 0..n {
        q.put(&i).unwrap();
    }
    q.is_shared_memory().unwrap()
}

/// A manager client that knows only the manager's own address: whether its handle knows the
/// shared-memory address, and whether its connections use it.
fn connect_manager((address, key): (String, Vec<u8>)) -> (bool, bool) {
    let m = Manager::connect(&address, key).unwrap();
    let d = m.dict::<String, u64>().unwrap();
    d.insert(&"k".to_string(), &1).unwrap();
    assert_eq!(d.get(&"k".to_string()).unwrap(), Some(1));
    (m.shared_memory_address().is_some(), m.is_shared_memory().unwrap())
}

/// A producer that knows only the queue's own address: puts `n` items, and reports whether its
/// handle knows the shared-memory address and is on it.
fn connect_queue((address, key, n): (String, Vec<u8>, u64)) -> (bool, bool) {
    put_and_tell(Queue::connect(&address, key).unwrap(), n)
}

/// A producer given a queue handle as CBOR bytes, here without its shared-memory address (as a
/// handle made away from the queue's host comes): as [`connect_queue`].
fn produce_from_bytes((handle, n): (Vec<u8>, u64)) -> (bool, bool) {
    let q: Queue<u64> = ciborium::from_reader(&handle[..]).unwrap();
    assert!(q.shared_memory_address().is_none(), "the handle came without the address");
    put_and_tell(q, n)
}

/// Puts `n` items, and says whether the handle knows the shared-memory address and is on it.
fn put_and_tell(q: Queue<u64>, n: u64) -> (bool, bool) {
    for i in 0..n {
        q.put(&i).unwrap();
    }
    (q.shared_memory_address().is_some(), q.is_shared_memory().unwrap())
}

fn square(x: u64) -> u64 {
    x * x
}

static READ_DICT: Function<DictProxy<String, u64>, Seen> = Function::new("read_dict", read_dict);
static PRODUCE: Function<(Queue<u64>, u64), bool> = Function::new("produce", produce);
static SQUARE: Function<u64, u64> = Function::new("square", square);
static CONNECT_MANAGER: Function<(String, Vec<u8>), (bool, bool)> =
    Function::new("connect_manager", connect_manager);
static CONNECT_QUEUE: Function<(String, Vec<u8>, u64), (bool, bool)> =
    Function::new("connect_queue", connect_queue);
static PRODUCE_FROM_BYTES: Function<(Vec<u8>, u64), (bool, bool)> =
    Function::new("produce_from_bytes", produce_from_bytes);

#[test]
#[ignore = "the entry point of child processes"]
fn procwire_child() {
    procwire::process::init(&[
        &SERVE,
        &READ_DICT,
        &PRODUCE,
        &SQUARE,
        &CONNECT_MANAGER,
        &CONNECT_QUEUE,
        &PRODUCE_FROM_BYTES,
    ]);
}

#[test]
fn a_child_proxy_uses_shared_memory_unless_it_is_turned_off() {
    use_test_entry("procwire_child");
    for on in [true, false] {
        let m = Manager::builder().shared_memory(on).start().unwrap();
        assert_eq!(m.shared_memory_address().is_some(), on, "{:?}", m.shared_memory_address());
        assert_eq!(m.is_shared_memory().unwrap(), on);
        let own = m.address().family();
        assert_eq!(own, Family::default(), "the manager's own address stays: {}", m.address());
        let d = m.dict::<String, u64>().unwrap();
        d.insert(&"k".to_string(), &7).unwrap();
        let mut p = Process::new(&READ_DICT, d.clone());
        p.start().unwrap();
        let (v, shared, mapped) = p.result_timeout(LIMIT).in_time().unwrap();
        assert_eq!((v, shared), (Some(7), on), "shared memory {on}: the child's connection");
        assert!(mapped.is_none_or(|m| m == on), "shared memory {on}: the child maps a ring: {mapped:?}");
    }
}

#[test]
fn queue_handles_in_children_use_shared_memory_unless_it_is_turned_off() {
    use_test_entry("procwire_child");
    for on in [true, false] {
        let q: Queue<u64> = QueueBuilder::new().shared_memory(on).build().unwrap();
        assert_eq!(q.shared_memory_address().is_some(), on);
        assert!(!q.is_shared_memory().unwrap(), "the creator uses the queue's memory directly");
        let mut p = Process::new(&PRODUCE, (q.clone(), 100));
        p.start().unwrap();
        assert_eq!(p.result_timeout(LIMIT).in_time().unwrap(), on, "shared memory {on}: the producer");
        let got: Vec<u64> = (0..100).map(|_| q.get_timeout(LIMIT).unwrap().unwrap()).collect();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
    }
}

#[test]
fn a_child_that_knows_only_the_managers_address_moves_to_shared_memory_unless_it_is_off() {
    use_test_entry("procwire_child");
    for on in [true, false] {
        let m = Manager::builder().shared_memory(on).start().unwrap();
        let mut p =
            Process::new(&CONNECT_MANAGER, (m.address().to_string(), m.authkey().as_bytes().to_vec()));
        p.start().unwrap();
        assert_eq!(p.result_timeout(LIMIT).in_time().unwrap(), (on, on), "shared memory {on}: the child");
        assert_eq!(m.object_count().unwrap(), 0, "the child's dict went with it");
    }
}

/// Starts `p`, a producer of 100 items into `q`, and checks that it knew the shared-memory
/// address and used it (`on`) or neither, and that every item came, in order.
fn expect_producer(mut p: Process<(bool, bool)>, q: &Queue<u64>, on: bool) {
    p.start().unwrap();
    assert_eq!(p.result_timeout(LIMIT).in_time().unwrap(), (on, on), "shared memory {on}: the producer");
    let got: Vec<u64> = (0..100).map(|_| q.get_timeout(LIMIT).unwrap().unwrap()).collect();
    assert_eq!(got, (0..100).collect::<Vec<_>>(), "every item, in order, over either way");
}

#[test]
fn a_child_that_knows_only_the_queues_address_moves_to_shared_memory_unless_it_is_off() {
    use_test_entry("procwire_child");
    for on in [true, false] {
        let key = AuthKey::random().unwrap();
        let q: Queue<u64> = QueueBuilder::new().authkey(key.clone()).shared_memory(on).build().unwrap();
        let p = Process::new(&CONNECT_QUEUE, (q.address().to_string(), key.as_bytes().to_vec(), 100));
        expect_producer(p, &q, on);
    }
}

#[test]
fn a_child_given_a_queue_handle_without_the_shared_memory_address_asks_for_it() {
    use_test_entry("procwire_child");
    for on in [true, false] {
        let q: Queue<u64> = QueueBuilder::new().shared_memory(on).build().unwrap();
        let mut handle = ciborium::Value::serialized(&q).unwrap();
        let ciborium::Value::Map(fields) = &mut handle else { panic!("a handle is a map: {handle:?}") };
        fields.retain(|(k, _)| k.as_text() != Some("shm"));
        let mut bytes = Vec::new();
        ciborium::into_writer(&handle, &mut bytes).unwrap();
        expect_producer(Process::new(&PRODUCE_FROM_BYTES, (bytes, 100)), &q, on);
    }
}

#[test]
fn pool_workers_answer_with_shared_memory_on_and_off() {
    use_test_entry("procwire_child");
    for on in [true, false] {
        let pool: Pool = Pool::builder().processes(2).shared_memory(on).build().unwrap();
        let squares = pool.map(&SQUARE, 0..50u64).unwrap();
        assert_eq!(squares, (0..50u64).map(|x| x * x).collect::<Vec<_>>(), "shared memory {on}");
    }
}
