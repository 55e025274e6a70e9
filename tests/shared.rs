//! Shared memory with real processes: exact counters under contention (under the lock and with
//! the atomic kinds, in threads and processes at once), data visible both ways, handles of the
//! wrong type or kind refused, nothing left behind by a killed creator, a lock whose holder was
//! killed (poisoned until cleared), and a timed lock while another process holds it.

#![cfg(target_os = "linux")]

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::InTime;
use procwire::Connection;
use procwire::Error;
use procwire::process::{ChannelFunction, Function, Process, start, use_test_entry};
use procwire::shared::{Array, AtomicArray, AtomicValue, Value};

const LIMIT: Duration = Duration::from_secs(60);

fn increment((v, n): (Value<u64>, u64)) -> u64 {
    for _ in 0..n {
        v.with_lock(|x| *x += 1).expect("lock");
    }
    n
}

fn increment_atomic((v, a, n): (AtomicValue<u64>, AtomicArray<u32>, u64)) -> u64 {
    for i in 0..n {
        v.atomic().fetch_add(1, Ordering::Relaxed);
        a.atomic(i as usize % a.len()).expect("in range").fetch_add(1, Ordering::Relaxed);
    }
    n
}

/// What `get` gives in this process: the value, or the error's text.
fn get_or_error(v: Value<u64>) -> Result<u64, String> {
    v.get().map_err(|e| e.to_string())
}

/// Fills the array with squares, then returns the sum of what the parent wrote to `other`.
fn fill((a, other): (Array<u64>, Array<i32>)) -> i64 {
    a.with_lock(|s| {
        for (i, x) in s.iter_mut().enumerate() {
            *x = (i * i) as u64;
        }
    })
    .expect("lock");
    other.to_vec().expect("read").iter().map(|&x| x as i64).sum()
}

/// Creates an array, sends its handle, then waits to be killed.
fn create_and_wait(mut ch: Connection, len: usize) {
    let a = Array::from_slice(&(0..len as u32).collect::<Vec<_>>()).expect("create");
    ch.send(&a).expect("send handle");
    std::thread::sleep(Duration::from_secs(60));
}

/// Takes the lock, says so, and waits to be killed holding it.
fn hold_lock(mut ch: Connection, v: Value<u64>) {
    let mut g = v.lock().expect("lock");
    *g = 99;
    ch.send(&"locked").expect("report");
    std::thread::sleep(Duration::from_secs(60));
    drop(g);
}

static INCREMENT: Function<(Value<u64>, u64), u64> = Function::new("increment", increment);
static INCREMENT_ATOMIC: Function<(AtomicValue<u64>, AtomicArray<u32>, u64), u64> =
    Function::new("increment_atomic", increment_atomic);
static GET_OR_ERROR: Function<Value<u64>, Result<u64, String>> = Function::new("get_or_error", get_or_error);
static FILL: Function<(Array<u64>, Array<i32>), i64> = Function::new("fill", fill);
static CREATE_AND_WAIT: ChannelFunction<usize> = ChannelFunction::new("create_and_wait", create_and_wait);
static HOLD_LOCK: ChannelFunction<Value<u64>> = ChannelFunction::new("hold_lock", hold_lock);

#[test]
#[ignore = "the entry point of child processes"]
fn procwire_child() {
    procwire::process::init(&[
        &INCREMENT,
        &INCREMENT_ATOMIC,
        &GET_OR_ERROR,
        &FILL,
        &CREATE_AND_WAIT,
        &HOLD_LOCK,
    ]);
}

fn spawn<A: serde::Serialize, R: serde::de::DeserializeOwned>(f: &Function<A, R>, args: A) -> Process<R> {
    use_test_entry("procwire_child");
    let mut p = Process::new(f, args);
    p.start().expect("start child");
    p
}

/// Four processes and two threads of this one at the same time, each kind on its own.
#[test]
fn processes_and_threads_count_exactly_under_the_lock_and_with_atomics() {
    let v = Value::new(0u64).unwrap();
    let ps: Vec<_> = (0..4).map(|_| spawn(&INCREMENT, (v.clone(), 5_000))).collect();
    let ts: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn({
                let v = v.clone();
                move || increment((v, 5_000))
            })
        })
        .collect();
    for mut p in ps {
        assert_eq!(p.result_timeout(LIMIT).in_time().unwrap(), 5_000);
    }
    for t in ts {
        assert_eq!(t.join().unwrap(), 5_000);
    }
    assert_eq!(v.get().unwrap(), 30_000, "increments under the lock were lost");

    let n = AtomicValue::new(0u64).unwrap();
    let a = AtomicArray::<u32>::new(7).unwrap();
    let ps: Vec<_> = (0..4).map(|_| spawn(&INCREMENT_ATOMIC, (n.clone(), a.clone(), 70_000))).collect();
    let ts: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn({
                let (n, a) = (n.clone(), a.clone());
                move || increment_atomic((n, a, 70_000))
            })
        })
        .collect();
    for mut p in ps {
        p.result_timeout(LIMIT).in_time().unwrap();
    }
    for t in ts {
        t.join().unwrap();
    }
    assert_eq!(n.load(Ordering::SeqCst), 420_000, "atomic increments were lost");
    assert_eq!(a.to_vec(Ordering::SeqCst), [60_000; 7], "atomic element increments were lost");
}

#[test]
fn array_contents_are_visible_both_ways() {
    let squares = Array::<u64>::new(1000).unwrap();
    let mine = Array::from_slice(&[5i32, -7, 100]).unwrap();
    let mut p = spawn(&FILL, (squares.clone(), mine.clone()));
    assert_eq!(p.result_timeout(LIMIT).in_time().unwrap(), 98);
    let got = squares.to_vec().unwrap();
    assert_eq!(got.iter().sum::<u64>(), (0..1000u64).map(|i| i * i).sum());
    assert_eq!(squares.get(999).unwrap(), 999 * 999);
    assert!(squares.get(1000).is_err());
    assert_eq!(squares.get(3).unwrap(), 9);
}

fn reopen<T: serde::Serialize, U: serde::de::DeserializeOwned>(h: &T) -> Result<U, String> {
    let mut bytes = Vec::new();
    ciborium::into_writer(h, &mut bytes).unwrap();
    ciborium::from_reader::<U, _>(&bytes[..]).map_err(|e| e.to_string())
}

#[test]
fn handles_of_another_type_or_size_are_refused() {
    let v = Value::new(7u64).unwrap();
    let same: Value<u64> = reopen(&v).unwrap();
    same.set(8).unwrap();
    assert_eq!(v.get().unwrap(), 8, "a reopened handle maps the same memory");
    let err = reopen::<_, Value<u32>>(&v).unwrap_err();
    assert!(err.contains("another type"), "{err}");
    let err = reopen::<_, Value<i64>>(&v).unwrap_err();
    assert!(err.contains("another type"), "{err}");
    let a = Array::<u64>::new(4).unwrap();
    let err = reopen::<_, Value<u64>>(&a).unwrap_err();
    assert!(err.contains("array handle where a single value"), "{err}");
    // A handle whose length was changed in transit.
    let mut bytes = Vec::new();
    ciborium::into_writer(&a, &mut bytes).unwrap();
    let mut doc: ciborium::Value = ciborium::from_reader(&bytes[..]).unwrap();
    for (k, val) in doc.as_map_mut().unwrap() {
        if k.as_text() == Some("len") {
            *val = ciborium::Value::Integer(5.into());
        }
    }
    let err = reopen::<_, Array<u64>>(&doc).unwrap_err();
    assert!(err.contains("holds 4 elements"), "{err}");
    // And one whose token does not match (the descriptor now names something else).
    for (k, val) in doc.as_map_mut().unwrap() {
        if k.as_text() == Some("token") {
            *val = ciborium::Value::Integer(1.into());
        }
    }
    let err = reopen::<_, Array<u64>>(&doc).unwrap_err();
    assert!(err.contains("not the shared memory"), "{err}");
    // And one that names a descriptor that is not shared memory at all: never opened.
    let file = tempfile::tempfile().unwrap();
    for (k, val) in doc.as_map_mut().unwrap() {
        if k.as_text() == Some("fd") {
            *val = ciborium::Value::Integer(std::os::fd::AsRawFd::as_raw_fd(&file).into());
        }
    }
    let err = reopen::<_, Array<u64>>(&doc).unwrap_err();
    assert!(err.contains("not procwire shared memory"), "{err}");
}

fn shm_entries() -> BTreeSet<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

#[test]
fn a_killed_creator_leaves_nothing_behind_and_holders_keep_the_data() {
    let before = shm_entries();
    use_test_entry("procwire_child");
    let mut ch = start(&CREATE_AND_WAIT, 10_000).unwrap();
    let a: Array<u32> = ch.recv().unwrap();
    assert_eq!(a.get(9_999).unwrap(), 9_999);
    ch.kill().unwrap();
    ch.join_timeout(LIMIT).unwrap();
    // The creator is gone; this process still maps the memory.
    assert_eq!(a.to_vec().unwrap(), (0..10_000).collect::<Vec<u32>>());
    a.set(0, 42).unwrap();
    assert_eq!(a.get(0).unwrap(), 42);
    assert_eq!(shm_entries(), before, "shared memory must never leave a name in /dev/shm");
}

/// A holder killed in the middle of an update leaves data that may be half-written: copies
/// refuse it in every process until a holder of the lock clears the poison.
#[test]
fn a_lock_whose_holder_was_killed_is_poisoned_until_cleared() {
    let v = Value::new(0u64).unwrap();
    use_test_entry("procwire_child");
    let mut ch = start(&HOLD_LOCK, v.clone()).unwrap();
    assert_eq!(ch.recv::<String>().unwrap(), "locked");
    ch.kill().unwrap();
    ch.join_timeout(LIMIT).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let v2 = v.clone();
    std::thread::spawn(move || {
        let _ = tx.send(v2.get().map_err(|e| e.to_string()));
    });
    let got = rx.recv_timeout(Duration::from_secs(10)).expect("the lock was not freed");
    let err = got.expect_err("get read what a killed holder left as if nothing had happened");
    assert!(err.contains("died"), "{err}");
    assert!(matches!(v.get(), Err(Error::PreviousOwnerDied)), "the poison stays");
    assert!(matches!(v.set(1), Err(Error::PreviousOwnerDied)));
    assert!(matches!(v.with_lock(|_| ()), Err(Error::PreviousOwnerDied)));
    let other = spawn(&GET_OR_ERROR, v.clone()).result_timeout(LIMIT).in_time().unwrap();
    assert!(other.is_err_and(|e| e.contains("died")), "another process read poisoned data");
    // The guard still comes, to look and repair.
    let mut g = v.lock().unwrap();
    assert!(g.previous_owner_died());
    assert_eq!(*g, 99, "what the holder wrote is there");
    *g = 100;
    g.clear_poison();
    drop(g);
    assert_eq!(v.get().unwrap(), 100);
    assert!(!v.lock().unwrap().previous_owner_died());
    assert_eq!(spawn(&GET_OR_ERROR, v.clone()).result_timeout(LIMIT).in_time().unwrap(), Ok(100));
}

#[test]
fn a_timed_lock_gives_up_while_another_process_holds_it() {
    let v = Value::new(0u64).unwrap();
    use_test_entry("procwire_child");
    let mut ch = start(&HOLD_LOCK, v.clone()).unwrap();
    assert_eq!(ch.recv::<String>().unwrap(), "locked");
    let t = Instant::now();
    let err = v.lock_timeout(Duration::from_millis(200)).unwrap_err();
    let waited = t.elapsed();
    assert!(err.is_timeout(), "{err}");
    assert!(err.to_string().contains("lock of a shared Value"), "{err}");
    assert!(waited >= Duration::from_millis(190), "gave up after {waited:?}");
    assert!(waited < Duration::from_secs(10), "waited {waited:?}");
    ch.kill().unwrap();
    ch.join_timeout(LIMIT).unwrap();
    // Once the holder is gone, a timed lock gets it (with the death reported).
    assert!(v.lock_timeout(Duration::from_secs(10)).unwrap().previous_owner_died());
}

/// A handle opened as the other kind would let a guard's `&mut T` and another handle's atomic
/// alias the same memory: refused, in both directions.
#[test]
fn locked_and_atomic_kinds_do_not_open_as_each_other() {
    let v = Value::new(1u64).unwrap();
    let err = reopen::<_, AtomicValue<u64>>(&v).unwrap_err();
    assert!(err.contains("made as a Value or Array") && err.contains("as an AtomicValue"), "{err}");
    let a = AtomicArray::<u64>::new(3).unwrap();
    let err = reopen::<_, Array<u64>>(&a).unwrap_err();
    assert!(err.contains("made as an AtomicValue or AtomicArray"), "{err}");
    let n = AtomicValue::new(1u32).unwrap();
    let err = reopen::<_, Value<u32>>(&n).unwrap_err();
    assert!(err.contains("cannot be opened as a Value"), "{err}");
    let same: AtomicArray<u64> = reopen(&a).unwrap();
    same.store(2, 5, Ordering::SeqCst).unwrap();
    assert_eq!(a.to_vec(Ordering::SeqCst), [0, 0, 5], "a reopened handle maps the same memory");
}

fn handle_fd<T: serde::Serialize>(h: &T) -> i32 {
    let mut bytes = Vec::new();
    ciborium::into_writer(h, &mut bytes).unwrap();
    let doc: ciborium::Value = ciborium::from_reader(&bytes[..]).unwrap();
    let fd = doc.as_map().unwrap().iter().find(|(k, _)| k.as_text() == Some("fd")).unwrap().1.clone();
    i128::from(fd.as_integer().unwrap()) as i32
}

/// A process that maps memory another process made (a queue server maps every local
/// consumer's acknowledgement counter) must not be at the mercy of that process: a memory file
/// that shrinks under a mapping turns the next access into SIGBUS, which kills the mapper.
#[test]
fn no_holder_can_shrink_or_grow_the_memory_and_unsealed_files_are_refused() {
    use std::io::{Read, Seek, Write};
    use std::os::fd::FromRawFd;

    let v = AtomicValue::new(5u64).unwrap();
    let fd = handle_fd(&v);
    let path = format!("/proc/self/fd/{fd}");
    let mut holder = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
    let len = holder.metadata().unwrap().len();
    assert!(holder.set_len(0).is_err(), "a holder shrank shared memory that others map");
    assert!(holder.set_len(len * 2).is_err(), "a holder resized shared memory that others map");
    assert_eq!(v.load(Ordering::SeqCst), 5);

    // A peer that makes a file of the same name and contents without the seals is refused.
    let mut contents = Vec::new();
    holder.rewind().unwrap();
    holder.read_to_end(&mut contents).unwrap();
    // SAFETY: a NUL-terminated name; the new descriptor is owned by `fake` from here on.
    let raw = unsafe { libc::memfd_create(c"procwire-shared".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(raw >= 0);
    // SAFETY: memfd_create returned a descriptor nothing else owns.
    let mut fake = unsafe { std::fs::File::from_raw_fd(raw) };
    fake.write_all(&contents).unwrap();
    let mut bytes = Vec::new();
    ciborium::into_writer(&v, &mut bytes).unwrap();
    let mut doc: ciborium::Value = ciborium::from_reader(&bytes[..]).unwrap();
    for (k, val) in doc.as_map_mut().unwrap() {
        if k.as_text() == Some("fd") {
            *val = ciborium::Value::Integer(raw.into());
        }
    }
    let err = reopen::<_, AtomicValue<u64>>(&doc).unwrap_err();
    assert!(err.contains("sealed"), "{err}");
}
