//! Pool with real worker processes: every method's results in order, timeouts, a panicking
//! task, workers killed in the middle of a map, maxtasksperchild, the initializer, close and
//! join, terminate and drop with tasks in flight. The workers are this test binary running its
//! `procwire_child` test (see `procwire::process::use_test_entry`).

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use common::InTime;
use procwire::pool::{Pool, PoolBuilder};
use procwire::process::{Function, use_test_entry};
use procwire::{Error, RemoteKind};

const LIMIT: Duration = Duration::from_secs(120);

fn square(x: u64) -> u64 {
    x * x
}
fn pow((base, exp): (u64, u32)) -> u64 {
    base.pow(exp)
}
fn panics_on_13(x: u64) -> u64 {
    if x == 13 {
        panic!("unlucky {x}");
    }
    x + 1
}
fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}
fn pid_of(x: u64) -> (u64, u32) {
    (x, std::process::id())
}
fn name_of(_: ()) -> String {
    procwire::process::current_name().unwrap_or("none").to_string()
}
fn big(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// What task `x` does to its own worker when `x == victim`.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
enum Fate {
    Kill,
    Abort,
    Exit(i32),
}
fn dies_on((x, victim, fate): (u64, u64, Fate)) -> u64 {
    if x == victim {
        match fate {
            Fate::Kill => common::kill_self(),
            Fate::Abort => std::process::abort(),
            Fate::Exit(code) => std::process::exit(code),
        }
    }
    x * 10
}

/// Writes this worker's pid to `dir/x`, then sleeps `ms`: the test knows who runs what.
fn report_and_sleep((dir, x, ms): (PathBuf, u64, u64)) -> u64 {
    let tmp = dir.join(format!("{x}.tmp"));
    std::fs::write(&tmp, std::process::id().to_string()).expect("write the pid");
    std::fs::rename(&tmp, dir.join(x.to_string())).expect("publish the pid");
    std::thread::sleep(Duration::from_millis(ms));
    x
}

static INITIALIZED: AtomicU32 = AtomicU32::new(0);
static INIT_VALUE: AtomicU32 = AtomicU32::new(0);
fn init(value: u32) {
    INITIALIZED.fetch_add(1, Ordering::SeqCst);
    INIT_VALUE.store(value, Ordering::SeqCst);
}
fn bad_init(_: ()) {
    panic!("no database here");
}
/// (pid, how many times the initializer ran in this process, the value it was given)
fn init_state(_: u64) -> (u32, u32, u32) {
    (std::process::id(), INITIALIZED.load(Ordering::SeqCst), INIT_VALUE.load(Ordering::SeqCst))
}

static SQUARE: Function<u64, u64> = Function::new("square", square);
static POW: Function<(u64, u32), u64> = Function::new("pow", pow);
static PANICS_ON_13: Function<u64, u64> = Function::new("panics_on_13", panics_on_13);
static SLEEP: Function<u64, u64> = Function::new("sleep", sleep_ms);
static PID_OF: Function<u64, (u64, u32)> = Function::new("pid_of", pid_of);
static NAME_OF: Function<(), String> = Function::new("name_of", name_of);
static BIG: Function<usize, Vec<u8>> = Function::new("big", big);
static DIES_ON: Function<(u64, u64, Fate), u64> = Function::new("dies_on", dies_on);
static REPORT_AND_SLEEP: Function<(PathBuf, u64, u64), u64> =
    Function::new("report_and_sleep", report_and_sleep);
static INIT: Function<u32, ()> = Function::new("init", init);
static BAD_INIT: Function<(), ()> = Function::new("bad_init", bad_init);
static INIT_STATE: Function<u64, (u32, u32, u32)> = Function::new("init_state", init_state);
/// Not given to `init`.
static UNREGISTERED: Function<u64, u64> = Function::new("unregistered", square);

#[test]
#[ignore = "the entry point of child processes"]
fn procwire_child() {
    procwire::process::init(&[
        &SQUARE,
        &POW,
        &PANICS_ON_13,
        &SLEEP,
        &PID_OF,
        &NAME_OF,
        &BIG,
        &DIES_ON,
        &REPORT_AND_SLEEP,
        &INIT,
        &BAD_INIT,
        &INIT_STATE,
    ]);
}

fn pool(n: usize) -> Pool {
    built(Pool::builder().processes(n))
}

fn built(b: PoolBuilder) -> Pool {
    use_test_entry("procwire_child");
    b.build().expect("start the pool")
}

fn remote(r: &procwire::Result<impl std::fmt::Debug>) -> (&RemoteKind, &str) {
    match r {
        Err(Error::Remote { kind, message }) => (kind, message),
        other => panic!("expected a remote error, got {other:?}"),
    }
}

fn wait_for_file(path: &Path) -> u32 {
    let t = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            return s.parse().expect("a pid");
        }
        assert!(t.elapsed() < Duration::from_secs(60), "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn map_and_starmap_return_results_in_order() {
    let p = pool(2);
    let want: Vec<u64> = (0..1000u64).map(|x| x * x).collect();
    for chunksize in [None, Some(1), Some(7), Some(5000)] {
        let got = match chunksize {
            Some(n) => p.with_chunksize(n).map(&SQUARE, 0..1000),
            None => p.map(&SQUARE, 0..1000),
        };
        assert_eq!(got.unwrap(), want, "chunksize {chunksize:?}");
    }
    let r = p.map_async(&SQUARE, 0..1000).unwrap();
    assert_eq!(r.len(), 1000);
    assert_eq!(r.get_timeout(LIMIT).in_time().unwrap(), want);
    // A result can be asked for again.
    assert_eq!(r.get_timeout(Duration::ZERO).unwrap(), Some(want));
    assert_eq!(r.successful(), Some(true));
    assert!(r.ready());

    let pairs: Vec<(u64, u32)> = (0..50).map(|i| (i % 7, (i % 5) as u32)).collect();
    let want: Vec<u64> = pairs.iter().map(|&(b, e)| b.pow(e)).collect();
    assert_eq!(p.starmap(&POW, pairs.clone()).unwrap(), want);
    assert_eq!(
        p.with_chunksize(3).starmap_async(&POW, pairs).unwrap().get_timeout(LIMIT).in_time().unwrap(),
        want
    );

    assert!(p.map(&SQUARE, Vec::new()).unwrap().is_empty());
    let empty = p.map_async(&SQUARE, 0..0).unwrap();
    assert!(empty.is_empty());
    assert!(empty.ready());
    assert_eq!(empty.successful(), Some(true));
}

#[test]
fn apply_apply_async_and_callbacks() {
    let p = pool(2);
    assert_eq!(p.apply(&POW, (3, 4)).unwrap(), 81);
    let r = p.apply_async(&SQUARE, 12).unwrap();
    assert!(r.wait_timeout(LIMIT));
    assert!(r.ready());
    assert_eq!(r.successful(), Some(true));
    assert_eq!(r.get().unwrap(), 144);
    assert_eq!(r.get().unwrap(), 144);

    // Callbacks, set before and after the result is there, run once each.
    let (tx, rx) = mpsc::channel();
    let tx2 = tx.clone();
    let slow =
        p.apply_async(&SLEEP, 200).unwrap().on_complete(move |r| tx.send(("apply", r.unwrap())).unwrap());
    let done = p.map_async(&SQUARE, 0..10).unwrap();
    done.wait_timeout(LIMIT);
    let _done = done.on_complete(move |r| tx2.send(("map", r.unwrap().iter().sum())).unwrap());
    let mut got: Vec<(&str, u64)> = (0..2).map(|_| rx.recv_timeout(LIMIT).unwrap()).collect();
    got.sort();
    assert_eq!(got, [("apply", 200), ("map", 285)]);
    assert_eq!(slow.get().unwrap(), 200);
    // A callback that panics does not stop the next ones.
    let _bad = p.apply_async(&SQUARE, 1).unwrap().on_complete(|_| panic!("a callback that panics"));
    let (tx, rx) = mpsc::channel();
    let _good = p.apply_async(&SQUARE, 2).unwrap().on_complete(move |r| tx.send(r.unwrap()).unwrap());
    assert_eq!(rx.recv_timeout(LIMIT).unwrap(), 4);
    // Many tasks at once from several threads.
    let p = Arc::new(p);
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let p = p.clone();
            std::thread::spawn(move || {
                let rs: Vec<_> = (0..50).map(|i| p.apply_async(&SQUARE, t * 100 + i).unwrap()).collect();
                for (i, r) in rs.iter().enumerate() {
                    let x = t * 100 + i as u64;
                    assert_eq!(r.get_timeout(LIMIT).in_time().unwrap(), x * x);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn imap_is_ordered_and_lazy_and_imap_unordered_yields_everything() {
    let p = pool(2);
    for chunksize in [None, Some(1), Some(9)] {
        let (ordered, unordered) = match chunksize {
            Some(n) => (
                p.with_chunksize(n).imap(&SQUARE, 0..500),
                p.with_chunksize(n).imap_unordered(&SQUARE, 0..500),
            ),
            None => (p.imap(&SQUARE, 0..500), p.imap_unordered(&SQUARE, 0..500)),
        };
        let got: Vec<u64> = ordered.unwrap().map(Result::unwrap).collect();
        assert_eq!(got, (0..500u64).map(|x| x * x).collect::<Vec<_>>(), "chunksize {chunksize:?}");
        let got: HashSet<u64> = unordered.unwrap().map(Result::unwrap).collect();
        assert_eq!(got, (0..500u64).map(|x| x * x).collect::<HashSet<_>>());
    }
    // Unordered really yields in finishing order: quick tasks overtake a slow first one.
    let got: Vec<u64> = p.imap_unordered(&SLEEP, [600, 1, 2, 3]).unwrap().map(Result::unwrap).collect();
    assert_ne!(got[0], 600, "{got:?}");
    assert_eq!(got.iter().collect::<HashSet<_>>(), [600, 1, 2, 3].iter().collect());

    // An endless iterator: taken from only as results are consumed.
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    let items = (0u64..).inspect(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    let first: Vec<u64> =
        p.with_chunksize(4).imap(&SQUARE, items).unwrap().take(100).map(Result::unwrap).collect();
    assert_eq!(first, (0..100u64).map(|x| x * x).collect::<Vec<_>>());
    let n = pulled.load(Ordering::Relaxed);
    assert!((100..1_000_000).contains(&n), "{n} items pulled");

    assert_eq!(p.imap(&SQUARE, 0..0).unwrap().count(), 0);
}

#[test]
fn timeouts_leave_results_to_ask_for_later() {
    let p = pool(2);
    let r = p.apply_async(&SLEEP, 700).unwrap();
    let t = Instant::now();
    assert!(matches!(r.get_timeout(Duration::from_millis(50)), Ok(None)));
    assert!(t.elapsed() >= Duration::from_millis(45));
    assert!(!r.ready());
    assert_eq!(r.successful(), None);
    assert!(!r.wait_timeout(Duration::from_millis(10)));
    assert_eq!(r.get_timeout(LIMIT).in_time().unwrap(), 700);

    let m = p.with_chunksize(1).map_async(&SLEEP, [300, 300, 300]).unwrap();
    assert!(matches!(m.get_timeout(Duration::from_millis(20)), Ok(None)));
    assert!(m.get_each_timeout(Duration::ZERO).is_none());
    assert_eq!(m.get_timeout(LIMIT).in_time().unwrap(), [300, 300, 300]);

    let mut it = p.imap(&SLEEP, [400, 1]).unwrap();
    assert!(matches!(it.next_timeout(Duration::from_millis(20)), Some(Err(Error::Timeout(_)))));
    assert_eq!(it.next_timeout(LIMIT).unwrap().unwrap(), 400);
    assert_eq!(it.next().unwrap().unwrap(), 1);
    assert!(it.next().is_none());
}

#[test]
fn a_panicking_task_fails_alone_and_the_pool_keeps_working() {
    let p = pool(2);
    for chunksize in [Some(1), Some(5), None] {
        let r = match chunksize {
            Some(n) => p.with_chunksize(n).map_async(&PANICS_ON_13, 0..50),
            None => p.map_async(&PANICS_ON_13, 0..50),
        }
        .unwrap();
        let each = r.get_each_timeout(LIMIT).unwrap();
        assert_eq!(each.len(), 50);
        for (x, got) in each.iter().enumerate() {
            if x == 13 {
                assert_eq!(remote(got), (&RemoteKind::Panic, "unlucky 13"));
            } else {
                assert_eq!(*got.as_ref().unwrap(), x as u64 + 1);
            }
        }
        assert_eq!(r.successful(), Some(false));
        assert_eq!(remote(&r.get()), (&RemoteKind::Panic, "unlucky 13"));
    }
    let got: Vec<_> = p.with_chunksize(2).imap(&PANICS_ON_13, 10..16).unwrap().collect();
    assert_eq!(got.len(), 6);
    assert_eq!(remote(&got[3]), (&RemoteKind::Panic, "unlucky 13"));
    assert_eq!(*got[4].as_ref().unwrap(), 15);
    assert_eq!(remote(&p.apply(&PANICS_ON_13, 13)), (&RemoteKind::Panic, "unlucky 13"));
    assert_eq!(p.map(&SQUARE, 0..5).unwrap(), [0, 1, 4, 9, 16]);
}

#[test]
fn a_worker_killed_in_the_middle_of_a_map_fails_its_task_only() {
    let p = pool(2);
    let dir = tempfile::tempdir().unwrap();
    let items: Vec<(PathBuf, u64, u64)> = (0..12).map(|x| (dir.path().to_path_buf(), x, 150)).collect();
    let r = p.with_chunksize(1).map_async(&REPORT_AND_SLEEP, items).unwrap();
    // Task 4 is running: kill its worker.
    let victim = wait_for_file(&dir.path().join("4"));
    let before = p.pids();
    assert!(before.contains(&victim), "{victim} not in {before:?}");
    assert!(common::kill_pid(victim));
    let t = Instant::now();
    let each = r.get_each_timeout(LIMIT).unwrap();
    assert!(t.elapsed() < Duration::from_secs(60));
    for (x, got) in each.iter().enumerate() {
        if x == 4 {
            let (kind, message) = remote(got);
            assert_eq!(kind, &RemoteKind::Exit);
            assert!(message.contains(&format!("pid {victim}")), "{message}");
            assert!(message.contains("signal 9"), "{message}");
            assert!(message.contains("while running this task"), "{message}");
        } else {
            assert_eq!(*got.as_ref().unwrap(), x as u64, "task {x}");
        }
    }
    // A replacement took its place, and later maps succeed.
    assert!(common::is_dead(victim));
    assert_eq!(
        p.with_chunksize(3).map(&SQUARE, 0..100).unwrap(),
        (0..100u64).map(|x| x * x).collect::<Vec<_>>()
    );
    let t = Instant::now();
    while p.pids().len() < 2 {
        assert!(t.elapsed() < Duration::from_secs(60), "no replacement worker");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!p.pids().contains(&victim));
}

#[test]
fn a_task_that_kills_its_worker_fails_its_chunk_or_alone_when_retried() {
    let p = pool(2);
    let items = |victim, fate| (0..40u64).map(move |x| (x, victim, fate));
    // Chunks of 4: tasks 8..=11 were in the lost chunk; all the others finish.
    let each = p
        .with_chunksize(4)
        .map_async(&DIES_ON, items(9, Fate::Kill))
        .unwrap()
        .get_each_timeout(LIMIT)
        .unwrap();
    for (x, got) in each.iter().enumerate() {
        if (8..12).contains(&x) {
            let (kind, message) = remote(got);
            assert_eq!(kind, &RemoteKind::Exit);
            assert!(message.contains("signal 9") && message.contains("tasks 8 to 11"), "{message}");
        } else {
            assert_eq!(*got.as_ref().unwrap(), x as u64 * 10, "task {x}");
        }
    }
    // Other ways to die.
    let each = p
        .with_chunksize(1)
        .map_async(&DIES_ON, items(3, Fate::Abort))
        .unwrap()
        .get_each_timeout(LIMIT)
        .unwrap();
    assert!(remote(&each[3]).1.contains("signal 6"), "{:?}", each[3]);
    assert_eq!(each.iter().filter(|r| r.is_err()).count(), 1);
    let each = p
        .with_chunksize(1)
        .map_async(&DIES_ON, items(5, Fate::Exit(3)))
        .unwrap()
        .get_each_timeout(LIMIT)
        .unwrap();
    assert!(remote(&each[5]).1.contains("exited with code 3"), "{:?}", each[5]);
    assert_eq!(each.iter().filter(|r| r.is_err()).count(), 1);

    // Retried alone, the killer fails on its second try and its chunk's other tasks succeed.
    let p = built(Pool::builder().processes(2).retry_lost(true));
    let each = p
        .with_chunksize(4)
        .map_async(&DIES_ON, items(9, Fate::Kill))
        .unwrap()
        .get_each_timeout(LIMIT)
        .unwrap();
    for (x, got) in each.iter().enumerate() {
        if x == 9 {
            let (kind, message) = remote(got);
            assert_eq!(kind, &RemoteKind::Exit);
            assert!(message.contains("second try"), "{message}");
        } else {
            assert_eq!(*got.as_ref().unwrap(), x as u64 * 10, "task {x}");
        }
    }
    // A task whose worker died once, but not the second time, succeeds.
    let dir = tempfile::tempdir().unwrap();
    let r = p.apply_async(&REPORT_AND_SLEEP, (dir.path().to_path_buf(), 1, 400)).unwrap();
    let victim = wait_for_file(&dir.path().join("1"));
    std::fs::remove_file(dir.path().join("1")).unwrap();
    assert!(common::kill_pid(victim));
    assert_eq!(r.get_timeout(LIMIT).in_time().unwrap(), 1);
    assert_ne!(wait_for_file(&dir.path().join("1")), victim);
}

#[test]
fn maxtasksperchild_replaces_workers() {
    let p = built(Pool::builder().processes(2).maxtasksperchild(5));
    let got = p.with_chunksize(1).map(&PID_OF, 0..40).unwrap();
    assert_eq!(got.iter().map(|r| r.0).collect::<Vec<_>>(), (0..40).collect::<Vec<_>>());
    let pids: HashSet<u32> = got.iter().map(|r| r.1).collect();
    assert!(pids.len() >= 8, "{} workers ran 40 tasks at 5 each: {pids:?}", pids.len());
    for pid in &pids {
        let n = got.iter().filter(|r| r.1 == *pid).count();
        assert!(n <= 5, "worker {pid} ran {n} tasks");
    }
    // The replacements work as the first ones did.
    assert_eq!(
        p.with_chunksize(2).map(&SQUARE, 0..20).unwrap(),
        (0..20u64).map(|x| x * x).collect::<Vec<_>>()
    );
}

#[test]
fn the_initializer_runs_once_in_every_worker() {
    let p = built(Pool::builder().processes(3).initializer(&INIT, 42).maxtasksperchild(50));
    let got = p.with_chunksize(1).map(&INIT_STATE, 0..300).unwrap();
    let pids: HashSet<u32> = got.iter().map(|r| r.0).collect();
    assert!(pids.len() >= 6, "{pids:?}");
    for (pid, count, value) in got {
        assert_eq!((count, value), (1, 42), "worker {pid}");
    }
}

#[test]
fn a_failing_initializer_fails_tasks_instead_of_hanging() {
    let p = built(Pool::builder().processes(2).initializer(&BAD_INIT, ()));
    let r = p.map(&SQUARE, 0..10);
    let (kind, message) = remote(&r);
    // Failed with the initializer's kind, or refused as a broken pool when the initializer
    // failed before the map came (a worker that starts slowly, as under Wine, reports
    // `Started` and fails before this thread submits); the message says why either way.
    assert!(matches!(kind, RemoteKind::Initializer | RemoteKind::Pool), "{kind:?}: {message}");
    assert!(message.contains("no database here"), "{message}");
    let e = p.apply_async(&SQUARE, 1).map(|_| ()).unwrap_err();
    assert!(matches!(&e, Error::Remote { kind: RemoteKind::Pool, .. }), "{e}");
}

#[test]
fn workers_are_named_with_the_prefix() {
    let p = built(Pool::builder().processes(2).name_prefix("cruncher"));
    let names: HashSet<String> = (0..40)
        .map(|_| p.apply_async(&NAME_OF, ()).unwrap())
        .collect::<Vec<_>>()
        .iter()
        .map(|r| r.get_timeout(LIMIT).in_time().unwrap())
        .collect();
    assert!(names.iter().all(|n| n == "cruncher-1" || n == "cruncher-2"), "{names:?}");
}

#[test]
fn large_arguments_and_results_travel() {
    let p = pool(2);
    let sizes = [0, 1, 70_000, 3 << 20];
    let got = p.with_chunksize(1).map(&BIG, sizes).unwrap();
    for (len, v) in sizes.iter().zip(&got) {
        assert_eq!(v, &big(*len));
    }
}

#[test]
fn close_and_join_finish_queued_work() {
    let p = pool(2);
    assert!(p.join_timeout(Duration::ZERO).is_err(), "join before close");
    let r = p.with_chunksize(1).map_async(&SLEEP, [50; 8]).unwrap();
    let mut it = p.with_chunksize(10).imap(&SQUARE, 0..100).unwrap();
    // An endless imap dropped early takes nothing more, and does not keep the pool open.
    let mut endless = p.with_chunksize(3).imap(&SQUARE, 0u64..).unwrap();
    assert_eq!(endless.next().unwrap().unwrap(), 0);
    drop(endless);
    let pids = p.pids();
    p.close();
    assert!(p.apply_async(&SQUARE, 1).is_err(), "submitted to a closed pool");
    // An imap made before close still runs to its end.
    assert_eq!(it.next().unwrap().unwrap(), 0);
    assert_eq!(it.map(Result::unwrap).count(), 99);
    assert!(p.join_timeout(LIMIT).unwrap(), "the pool ended in time");
    assert_eq!(r.get_timeout(Duration::ZERO).unwrap(), Some(vec![50; 8]));
    for pid in pids {
        assert!(common::is_dead(pid), "worker {pid} still there");
    }
}

#[test]
fn terminate_and_drop_with_tasks_in_flight_leave_no_child() {
    let p = pool(2);
    let r = p.with_chunksize(1).map_async(&SLEEP, [30_000; 6]).unwrap();
    let pids = p.pids();
    assert_eq!(pids.len(), 2);
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    p.terminate();
    let each = r.get_each_timeout(LIMIT).unwrap();
    assert!(each.iter().all(|r| *remote(r).0 == RemoteKind::Terminated), "{each:?}");
    assert!(p.join_timeout(LIMIT).unwrap(), "the pool ended in time");
    assert!(t.elapsed() < Duration::from_secs(20));
    for pid in &pids {
        assert!(common::is_dead(*pid), "worker {pid} still there");
    }
    assert!(p.apply_async(&SQUARE, 1).is_err());

    let p = pool(2);
    let r = p.apply_async(&SLEEP, 30_000).unwrap();
    let it = p.imap(&SLEEP, [30_000; 4]).unwrap();
    let pids = p.pids();
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    drop(p);
    assert!(t.elapsed() < Duration::from_secs(20));
    for pid in &pids {
        assert!(common::is_dead(*pid), "worker {pid} still there");
    }
    assert_eq!(remote(&r.get_timeout(LIMIT).in_time()).0, &RemoteKind::Terminated);
    let rest: Vec<_> = it.collect();
    assert!(!rest.is_empty() && rest.iter().all(|r| r.is_err()), "{rest:?}");
}

#[test]
fn bad_input_is_a_clear_error() {
    use_test_entry("procwire_child");
    let e = Pool::new(0).unwrap_err();
    assert!(matches!(&e, Error::InvalidInput(_)), "{e}");
    let p = pool(1);
    let e = p.with_chunksize(0).map_async(&SQUARE, 0..10).map(|_| ()).unwrap_err();
    assert!(matches!(&e, Error::InvalidInput(_)), "{e}");
    assert!(p.with_chunksize(0).imap(&SQUARE, 0..10).is_err());
    let r = p.map(&UNREGISTERED, 0..3);
    let (kind, message) = remote(&r);
    assert_eq!(kind, &RemoteKind::Start);
    assert!(message.contains("not registered"), "{message}");
    // The worker is fine afterwards.
    assert_eq!(p.apply(&SQUARE, 5).unwrap(), 25);
}
