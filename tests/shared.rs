//! Shared-memory Value and Array with real processes: exact counters under contention, data
//! visible both ways, handles of the wrong type refused, nothing left behind by a killed
//! creator, and a lock whose holder was killed.

#![cfg(target_os = "linux")]

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use procwire::Connection;
use procwire::process::{ChannelFunction, Function, Process, start, use_test_entry};
use procwire::shared::{Array, Value};

const LIMIT: Option<Duration> = Some(Duration::from_secs(60));

fn increment((v, n): (Value<u64>, u64)) -> u64 {
    for _ in 0..n {
        v.with_lock(|x| *x += 1).expect("lock");
    }
    n
}

fn increment_atomic((v, n): (Value<u64>, u64)) -> u64 {
    for _ in 0..n {
        v.atomic().fetch_add(1, Ordering::SeqCst);
    }
    n
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
static INCREMENT_ATOMIC: Function<(Value<u64>, u64), u64> =
    Function::new("increment_atomic", increment_atomic);
static FILL: Function<(Array<u64>, Array<i32>), i64> = Function::new("fill", fill);
static CREATE_AND_WAIT: ChannelFunction<usize> = ChannelFunction::new("create_and_wait", create_and_wait);
static HOLD_LOCK: ChannelFunction<Value<u64>> = ChannelFunction::new("hold_lock", hold_lock);

#[test]
#[ignore = "the entry point of child processes"]
fn procwire_child() {
    procwire::process::init(&[&INCREMENT, &INCREMENT_ATOMIC, &FILL, &CREATE_AND_WAIT, &HOLD_LOCK]);
}

fn spawn<A: serde::Serialize, R: serde::de::DeserializeOwned>(f: &Function<A, R>, args: A) -> Process<R> {
    use_test_entry("procwire_child");
    let mut p = Process::new(f, args);
    p.start().expect("start child");
    p
}

#[test]
fn four_processes_count_exactly_under_the_lock_and_with_atomics() {
    let v = Value::new(0u64).unwrap();
    let ps: Vec<_> = (0..4).map(|_| spawn(&INCREMENT, (v.clone(), 5_000))).collect();
    v.with_lock(|x| *x += 1).unwrap();
    for mut p in ps {
        assert_eq!(p.result(LIMIT).unwrap(), 5_000);
    }
    assert_eq!(v.get().unwrap(), 20_001);

    let a = Value::new(0u64).unwrap();
    let ps: Vec<_> = (0..4).map(|_| spawn(&INCREMENT_ATOMIC, (a.clone(), 50_000))).collect();
    for mut p in ps {
        p.result(LIMIT).unwrap();
    }
    assert_eq!(a.atomic().load(Ordering::SeqCst), 200_000);
}

#[test]
fn array_contents_are_visible_both_ways() {
    let squares = Array::<u64>::new(1000).unwrap();
    let mine = Array::from_slice(&[5i32, -7, 100]).unwrap();
    let mut p = spawn(&FILL, (squares.clone(), mine.clone()));
    assert_eq!(p.result(LIMIT).unwrap(), 98);
    let got = squares.to_vec().unwrap();
    assert_eq!(got.iter().sum::<u64>(), (0..1000u64).map(|i| i * i).sum());
    assert_eq!(squares.get(999).unwrap(), 999 * 999);
    assert!(squares.get(1000).is_err());
    assert_eq!(squares.atomic(3).unwrap().load(Ordering::SeqCst), 9);
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
    assert!(err.contains("Array handle"), "{err}");
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
    ch.join(LIMIT).unwrap();
    // The creator is gone; this process still maps the memory.
    assert_eq!(a.to_vec().unwrap(), (0..10_000).collect::<Vec<u32>>());
    a.set(0, 42).unwrap();
    assert_eq!(a.get(0).unwrap(), 42);
    assert_eq!(shm_entries(), before, "shared memory must never leave a name in /dev/shm");
}

#[test]
fn a_lock_whose_holder_was_killed_is_taken_over_with_a_flag() {
    let v = Value::new(0u64).unwrap();
    use_test_entry("procwire_child");
    let mut ch = start(&HOLD_LOCK, v.clone()).unwrap();
    assert_eq!(ch.recv::<String>().unwrap(), "locked");
    ch.kill().unwrap();
    ch.join(LIMIT).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let v2 = v.clone();
    std::thread::spawn(move || {
        let g = v2.lock().map(|g| (g.previous_owner_died(), *g));
        let _ = tx.send(g.map_err(|e| e.to_string()));
    });
    let (died, value) = rx.recv_timeout(Duration::from_secs(10)).expect("the lock was not freed").unwrap();
    assert!(died, "the next locker is told the holder died");
    assert_eq!(value, 99, "what the holder wrote is there");
    // And the lock works normally afterwards.
    assert!(!v.lock().unwrap().previous_owner_died());
}

#[test]
fn values_without_a_lock_refuse_to_lock() {
    let v = Value::new_unlocked(3i32).unwrap();
    v.set(4).unwrap();
    assert_eq!(v.get().unwrap(), 4);
    assert!(v.lock().is_err());
    let a = Array::<f32>::new_unlocked(2).unwrap();
    a.set(1, 2.5).unwrap();
    assert_eq!(a.to_vec().unwrap(), [0.0, 2.5]);
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

    let v = Value::new_unlocked(5u64).unwrap();
    let fd = handle_fd(&v);
    let path = format!("/proc/self/fd/{fd}");
    let mut holder = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
    let len = holder.metadata().unwrap().len();
    assert!(holder.set_len(0).is_err(), "a holder shrank shared memory that others map");
    assert!(holder.set_len(len * 2).is_err(), "a holder resized shared memory that others map");
    assert_eq!(v.atomic().load(Ordering::SeqCst), 5);

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
    let err = reopen::<_, Value<u64>>(&doc).unwrap_err();
    assert!(err.contains("sealed"), "{err}");
}
