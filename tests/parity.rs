//! One test suite, two implementations: every body below runs once against `procwire`
//! (processes) and once against `procwire::dummy` (threads), so the two cannot drift apart.
//!
//! [`parity!`] takes a topic and its items (statics, helpers, `#[test]` functions) written
//! against the module path `pw`, and expands them twice: in `TOPIC::processes` with
//! `use procwire as pw` (Unix only, as child processes are) and in `TOPIC::threads` with
//! `use procwire::dummy as pw`. A new topic is one more `parity! { topic { ... } }`; a
//! function that child processes run must also be listed (as `topic::processes::NAME`) in
//! [`procwire_child`], the entry point of the process version's children.

mod common;

use std::time::Duration;

use common::InTime;
use procwire::{Error, RemoteKind};

const LIMIT: Duration = Duration::from_secs(120);

/// Runs the same items against both implementations; see the module documentation.
macro_rules! parity {
    ($topic:ident { $($item:item)* }) => {
        mod $topic {
            #[cfg(unix)]
            pub mod processes {
                #[allow(unused_imports)]
                use super::super::*;
                #[allow(unused_imports)]
                use procwire as pw;
                $($item)*
            }

            pub mod threads {
                #[allow(unused_imports)]
                use super::super::*;
                #[allow(unused_imports)]
                use procwire::dummy as pw;
                $($item)*
            }
        }
    };
}

/// The process version's children are this binary running [`procwire_child`]; the thread
/// version ignores it.
fn entry() {
    procwire::process::use_test_entry("procwire_child");
}

/// The kind and message of an [`Error::Remote`], or a panic saying what came instead.
fn remote<T: std::fmt::Debug>(r: &procwire::Result<T>) -> (RemoteKind, String) {
    match r {
        Err(Error::Remote { kind, message }) => (kind.clone(), message.clone()),
        other => panic!("expected a remote error, got {other:?}"),
    }
}

#[cfg(unix)]
#[test]
#[ignore = "the entry point of child processes"]
fn procwire_child() {
    use process::processes as p;
    procwire::process::init(&[
        &p::SQUARE,
        &p::PANICS,
        &p::SLEEP_MS,
        &p::MY_NAME,
        &p::SQUARES,
        &queue::processes::SUM_TASKS,
        &queue::processes::PRODUCE,
        &pool::processes::SQUARE,
        &pool::processes::POW,
        &pool::processes::PANICS_ON_13,
        &pool::processes::SLEEP_MS,
        &pool::processes::NAME_OF,
        &pool::processes::INIT,
        &pool::processes::INIT_VALUE,
        &pool::processes::BAD_INIT,
        &procwire::manager::SERVE,
        &sync::processes::COUNT_UNDER_LOCK,
        &sync::processes::MEET,
    ]);
}

parity! { process {
    use pw::process::{Function, Process};

    fn square(x: u64) -> u64 {
        x * x
    }
    fn panics(x: u64) -> u64 {
        panic!("no {x} today")
    }
    fn sleep_ms(ms: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(ms));
        ms
    }
    fn my_name(_: ()) -> Option<String> {
        pw::process::current_name().map(str::to_string)
    }
    fn squares(mut ch: procwire::Connection, upto: u64) {
        for i in 0..upto {
            if ch.send(&(i * i)).is_err() {
                return;
            }
        }
    }
    pub static SQUARE: Function<u64, u64> = Function::new("parity_square", square);
    pub static PANICS: Function<u64, u64> = Function::new("parity_panics", panics);
    pub static SLEEP_MS: Function<u64, u64> = Function::new("parity_sleep_ms", sleep_ms);
    pub static MY_NAME: Function<(), Option<String>> = Function::new("parity_my_name", my_name);
    pub static SQUARES: pw::process::ChannelFunction<u64> =
        pw::process::ChannelFunction::new("parity_squares", squares);

    #[test]
    fn a_result_comes_back_once_with_exit_code_0() {
        entry();
        let mut p = Process::new(&SQUARE, 12);
        assert!(!p.is_alive());
        assert_eq!(p.exitcode(), None);
        assert!(p.join().is_err(), "join before start");
        p.start().unwrap();
        assert!(p.start().is_err(), "started twice");
        assert_eq!(p.result_timeout(LIMIT).in_time().unwrap(), 144);
        assert_eq!(p.exitcode(), Some(0));
        assert!(!p.is_alive());
        assert!(p.result_timeout(LIMIT).in_time().is_err(), "the result was taken");
    }

    #[test]
    fn a_panic_is_a_remote_error_and_exit_code_1() {
        entry();
        let mut p = Process::new(&PANICS, 7);
        p.start().unwrap();
        let (kind, message) = remote(&p.result_timeout(LIMIT).in_time());
        assert_eq!(kind, RemoteKind::Panic);
        assert!(message.contains("no 7 today"), "{message}");
        assert_eq!(p.exitcode(), Some(pw::process::EXIT_PANICKED));
    }

    #[test]
    fn join_times_out_while_it_runs() {
        entry();
        let mut p = Process::new(&SLEEP_MS, 500);
        p.start().unwrap();
        assert_eq!(p.join_timeout(Duration::from_millis(10)).unwrap(), None);
        assert!(matches!(p.result_timeout(Duration::from_millis(10)), Ok(None)));
        assert_eq!(p.join_timeout(LIMIT).unwrap(), Some(0));
        assert_eq!(p.result().unwrap(), 500);
    }

    #[test]
    fn the_function_sees_its_name() {
        entry();
        let mut p = Process::new(&MY_NAME, ());
        assert!(p.name().starts_with("Process-"), "{}", p.name());
        p.set_name("parity-named");
        p.set_daemon(true);
        assert!(p.is_daemon());
        p.start().unwrap();
        assert_eq!(p.result_timeout(LIMIT).in_time().unwrap().as_deref(), Some("parity-named"));
    }

    #[test]
    fn a_started_channel_streams_and_ends() {
        entry();
        let mut ch = pw::process::start(&SQUARES, 4).unwrap();
        ch.set_read_timeout(Some(LIMIT));
        for i in 0..4u64 {
            assert_eq!(ch.recv::<u64>().unwrap(), i * i);
        }
        assert!(matches!(ch.recv::<u64>(), Err(Error::Closed)));
        assert_eq!(ch.join_timeout(LIMIT).unwrap(), Some(0));
        assert!(!ch.is_alive());
        assert_eq!(ch.exitcode(), Some(0));
    }
}}

parity! { queue {
    use pw::queue::{JoinableQueue, Queue, QueueBuilder};
    use pw::process::{Function, Process};

    /// Takes tasks until a 0, marking each done; their sum.
    fn sum_tasks(q: JoinableQueue<u64>) -> u64 {
        let mut sum = 0;
        loop {
            let x = q.get().expect("get");
            q.task_done().expect("task_done");
            if x == 0 {
                return sum;
            }
            sum += x;
        }
    }
    /// Puts `from..to`, then closes its handle.
    fn produce((q, from, to): (Queue<u64>, u64, u64)) -> u64 {
        for x in from..to {
            q.put(&x).expect("put");
        }
        q.close().expect("close");
        to - from
    }
    pub static SUM_TASKS: Function<JoinableQueue<u64>, u64> = Function::new("parity_sum_tasks", sum_tasks);
    pub static PRODUCE: Function<(Queue<u64>, u64, u64), u64> = Function::new("parity_produce", produce);

    #[test]
    fn fifo_bounds_and_timeouts() {
        let q: Queue<u32> = Queue::with_maxsize(2).unwrap();
        assert_eq!(q.maxsize(), Some(2));
        assert!(q.is_empty().unwrap());
        assert!(q.try_put(&1).unwrap());
        assert!(q.try_put(&2).unwrap());
        assert!(q.is_full().unwrap());
        assert!(!q.try_put(&3).unwrap());
        assert!(!q.put_timeout(&3, Duration::from_millis(20)).unwrap(), "full");
        assert_eq!(q.qsize().unwrap(), 2);
        assert_eq!(q.get().unwrap(), 1);
        assert_eq!(q.get_timeout(Duration::from_millis(20)).unwrap(), Some(2));
        assert_eq!(q.get_timeout(Duration::from_millis(20)).unwrap(), None);
        assert_eq!(q.try_get().unwrap(), None);
        let unbounded: Queue<String> = QueueBuilder::new().prefetch(0).build().unwrap();
        unbounded.set_prefetch(4);
        assert_eq!(unbounded.maxsize(), None);
        for i in 0..100 {
            unbounded.put(&i.to_string()).unwrap();
        }
        assert!(!unbounded.is_full().unwrap());
        let got: Vec<String> = (0..100).map(|_| unbounded.get().unwrap()).collect();
        assert_eq!(got, (0..100).map(|i| i.to_string()).collect::<Vec<_>>());
    }

    #[test]
    fn a_closed_handle_refuses_puts_and_still_gets() {
        let q: Queue<u8> = Queue::new().unwrap();
        q.put(&1).unwrap();
        q.close().unwrap();
        assert!(matches!(q.put(&2), Err(Error::Closed)));
        assert_eq!(q.get().unwrap(), 1);
    }

    #[test]
    fn a_blocked_put_and_get_are_released_by_other_threads() {
        let q: Queue<u64> = Queue::with_maxsize(1).unwrap();
        q.put(&1).unwrap();
        let putter = { let q = q.clone(); std::thread::spawn(move || q.put(&2)) };
        assert_eq!(q.get().unwrap(), 1);
        putter.join().unwrap().unwrap();
        assert_eq!(q.get().unwrap(), 2);
        let getter = { let q = q.clone(); std::thread::spawn(move || q.get()) };
        std::thread::sleep(Duration::from_millis(20));
        q.put(&3).unwrap();
        assert_eq!(getter.join().unwrap().unwrap(), 3);
    }

    #[test]
    fn joinable_counts_tasks_across_workers() {
        entry();
        let q: JoinableQueue<u64> = JoinableQueue::new().unwrap();
        let mut workers: Vec<Process<u64>> = (0..2).map(|_| Process::new(&SUM_TASKS, q.clone())).collect();
        for w in &mut workers {
            w.start().unwrap();
        }
        for x in 1..=100 {
            q.put(&x).unwrap();
        }
        assert!(q.join_timeout(Duration::from_secs(120)).unwrap());
        for _ in &workers {
            q.put(&0).unwrap();
        }
        q.join().unwrap();
        let total: u64 = workers.iter_mut().map(|w| w.result_timeout(LIMIT).in_time().unwrap()).sum();
        assert_eq!(total, 5050);
        let (kind, _) = remote(&q.task_done());
        assert_eq!(kind, RemoteKind::Value);
    }

    #[test]
    fn producers_in_workers_deliver_every_item_once() {
        entry();
        let q: Queue<u64> = Queue::new().unwrap();
        let mut producers: Vec<Process<u64>> =
            (0..3).map(|k| Process::new(&PRODUCE, (q.clone(), k * 100, k * 100 + 100))).collect();
        for p in &mut producers {
            p.start().unwrap();
        }
        let mut got: Vec<u64> = (0..300).map(|_| q.get_timeout(Duration::from_secs(120)).unwrap().unwrap()).collect();
        for p in &mut producers {
            assert_eq!(p.result_timeout(LIMIT).in_time().unwrap(), 100);
        }
        got.sort_unstable();
        assert_eq!(got, (0..300).collect::<Vec<_>>());
        assert_eq!(q.try_get().unwrap(), None);
    }

    #[test]
    fn try_iter_takes_what_is_there_and_iter_timeout_what_comes() {
        entry();
        let q: Queue<u64> = Queue::new().unwrap();
        assert_eq!(q.try_iter().count(), 0);
        for x in 0..5 {
            q.put(&x).unwrap();
        }
        let now: Vec<u64> = q.try_iter().map(|r| r.unwrap()).collect();
        assert_eq!(now, [0, 1, 2, 3, 4]);
        assert_eq!(q.try_get().unwrap(), None, "try_iter took them");

        let mut producers: Vec<Process<u64>> =
            (0..2).map(|k| Process::new(&PRODUCE, (q.clone(), k * 100, k * 100 + 100))).collect();
        for p in &mut producers {
            p.start().unwrap();
        }
        let mut got: Vec<u64> = q.iter_timeout(Duration::from_secs(30)).take(200).map(|r| r.unwrap()).collect();
        for p in &mut producers {
            assert_eq!(p.result_timeout(LIMIT).in_time().unwrap(), 100);
        }
        got.sort_unstable();
        assert_eq!(got, (0..200).collect::<Vec<_>>());
        let started = std::time::Instant::now();
        assert_eq!(q.iter_timeout(Duration::from_millis(50)).count(), 0, "quiet: ends");
        assert!(started.elapsed() >= Duration::from_millis(50));
    }
}}

parity! { pool {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicU32, Ordering};
    use pw::pool::{Pool, PoolBuilder};
    use pw::process::Function;

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
    fn name_of(_: ()) -> String {
        pw::process::current_name().unwrap_or("none").to_string()
    }
    static INIT_SEEN: AtomicU32 = AtomicU32::new(0);
    fn init(value: u32) {
        INIT_SEEN.store(value, Ordering::SeqCst);
    }
    fn init_value(_: u64) -> u32 {
        INIT_SEEN.load(Ordering::SeqCst)
    }
    fn bad_init(_: ()) {
        panic!("no database here");
    }
    pub static SQUARE: Function<u64, u64> = Function::new("parity_pool_square", square);
    pub static POW: Function<(u64, u32), u64> = Function::new("parity_pool_pow", pow);
    pub static PANICS_ON_13: Function<u64, u64> = Function::new("parity_pool_panics_on_13", panics_on_13);
    pub static SLEEP_MS: Function<u64, u64> = Function::new("parity_pool_sleep_ms", sleep_ms);
    pub static NAME_OF: Function<(), String> = Function::new("parity_pool_name_of", name_of);
    pub static INIT: Function<u32, ()> = Function::new("parity_pool_init", init);
    pub static INIT_VALUE: Function<u64, u32> = Function::new("parity_pool_init_value", init_value);
    pub static BAD_INIT: Function<(), ()> = Function::new("parity_pool_bad_init", bad_init);

    fn built(b: PoolBuilder) -> Pool {
        entry();
        b.build().expect("start the pool")
    }

    #[test]
    fn every_method_returns_results_in_order() {
        let p = built(Pool::builder().processes(2));
        assert_eq!(p.processes(), 2);
        let squares: Vec<u64> = (0..50).map(|x| x * x).collect();
        assert_eq!(p.map(&SQUARE, 0..50).unwrap(), squares);
        assert_eq!(p.with_chunksize(7).map(&SQUARE, 0..50).unwrap(), squares);
        assert_eq!(p.map(&SQUARE, Vec::<u64>::new()).unwrap(), Vec::<u64>::new());
        assert_eq!(p.starmap(&POW, [(2, 3), (3, 2)]).unwrap(), [8, 9]);
        assert_eq!(p.starmap_async(&POW, [(2, 10)]).unwrap().get_timeout(LIMIT).in_time().unwrap(), [1024]);
        assert_eq!(p.apply(&SQUARE, 12).unwrap(), 144);
        let r = p.apply_async(&SQUARE, 9).unwrap();
        assert_eq!(r.get_timeout(LIMIT).in_time().unwrap(), 81);
        assert_eq!(r.get_timeout(LIMIT).in_time().unwrap(), 81, "get again");
        assert!(r.ready());
        assert!(r.wait_timeout(Duration::ZERO));
        assert_eq!(r.successful(), Some(true));
        let m = p.with_chunksize(3).map_async(&SQUARE, 0..10).unwrap();
        assert_eq!(m.len(), 10);
        assert!(!m.is_empty());
        assert_eq!(m.get_timeout(LIMIT).in_time().unwrap(), squares[..10]);
        assert!(m.get_each_timeout(LIMIT).unwrap().into_iter().map(Result::unwrap).eq(squares[..10].iter().copied()));
        let firsts: Vec<u64> = p.with_chunksize(4).imap(&SQUARE, 0..).unwrap().take(5).collect::<Result<_, _>>().unwrap();
        assert_eq!(firsts, [0, 1, 4, 9, 16]);
        let mut it = p.imap(&SQUARE, 0..20u64).unwrap();
        assert_eq!(it.next_timeout(LIMIT).unwrap().unwrap(), 0);
        assert_eq!(it.collect::<Result<Vec<_>, _>>().unwrap(), squares[1..20]);
        let mut unordered: Vec<u64> =
            p.with_chunksize(3).imap_unordered(&SQUARE, 0..50).unwrap().collect::<Result<_, _>>().unwrap();
        unordered.sort_unstable();
        assert_eq!(unordered, squares);
    }

    #[test]
    fn the_default_chunksize_is_cpythons_and_zero_is_refused() {
        assert_eq!(pw::pool::default_chunksize(100_000, 2), 12_500);
        assert_eq!(pw::pool::default_chunksize(0, 4), 1);
        let p = built(Pool::builder().processes(1));
        assert!(p.with_chunksize(0).map(&SQUARE, 0..3).is_err());
        assert!(p.with_chunksize(0).imap(&SQUARE, 0..3).is_err());
        assert!(Pool::builder().processes(0).build().is_err());
    }

    #[test]
    fn a_panicking_task_fails_alone() {
        let p = built(Pool::builder().processes(2));
        let m = p.with_chunksize(1).map_async(&PANICS_ON_13, 0..20).unwrap();
        let each = m.get_each_timeout(LIMIT).unwrap();
        assert_eq!(m.successful(), Some(false));
        for (x, r) in each.iter().enumerate() {
            if x == 13 {
                let (kind, message) = remote(r);
                assert_eq!(kind, RemoteKind::Panic);
                assert!(message.contains("unlucky 13"), "{message}");
            } else {
                assert_eq!(*r.as_ref().unwrap(), x as u64 + 1);
            }
        }
        let (kind, _) = remote(&p.with_chunksize(2).map(&PANICS_ON_13, 10..15));
        assert_eq!(kind, RemoteKind::Panic);
        assert_eq!(p.apply(&PANICS_ON_13, 1).unwrap(), 2, "the pool keeps working");
    }

    #[test]
    fn completion_callbacks_get_the_results() {
        let p = built(Pool::builder().processes(2));
        let (tx, rx) = std::sync::mpsc::channel();
        let tx2 = tx.clone();
        let _a = p.apply_async(&SQUARE, 7).unwrap().on_complete(move |r| tx.send(vec![r.unwrap()]).unwrap());
        let _m = p.map_async(&SQUARE, 1..4).unwrap().on_complete(move |r| tx2.send(r.unwrap()).unwrap());
        let mut got = vec![rx.recv().unwrap(), rx.recv().unwrap()];
        got.sort();
        assert_eq!(got, [vec![1, 4, 9], vec![49]]);
        p.close();
        assert!(p.join_timeout(LIMIT).unwrap(), "the pool ended in time");
    }

    #[test]
    fn workers_are_named_and_replaced_after_maxtasksperchild() {
        let p = built(Pool::builder().processes(1).name_prefix("parity").maxtasksperchild(2));
        let names: Vec<String> = p.with_chunksize(1).map(&NAME_OF, vec![(); 6]).unwrap();
        let distinct: HashSet<&String> = names.iter().collect();
        assert!(names.iter().all(|n| n.starts_with("parity-")), "{names:?}");
        assert!(distinct.len() >= 3, "a worker runs at most 2 tasks: {names:?}");
        assert!(p.pids().len() <= 1);
    }

    #[test]
    fn the_initializer_runs_before_the_tasks() {
        let p = built(Pool::builder().processes(2).initializer(&INIT, 42));
        assert!(p.with_chunksize(1).map(&INIT_VALUE, 0..20).unwrap().iter().all(|v| *v == 42));
    }

    #[test]
    fn a_failing_initializer_fails_tasks_then_refuses_work() {
        let p = built(Pool::builder().processes(2).initializer(&BAD_INIT, ()));
        // The tasks fail with kind "initializer", or are refused ("pool") if the workers
        // failed before they were submitted; either way with the panic's message.
        let (kind, message) = remote(&p.map(&SQUARE, 0..10));
        assert!(matches!(kind, RemoteKind::Initializer | RemoteKind::Pool), "{kind}");
        assert!(message.contains("no database here"), "{message}");
        let e = p.apply_async(&SQUARE, 1).map(|_| ()).unwrap_err();
        assert!(matches!(&e, Error::Remote { kind: RemoteKind::Pool, .. }), "{e}");
    }

    #[test]
    fn close_lets_work_finish_and_join_waits() {
        let p = built(Pool::builder().processes(2));
        assert!(p.join_timeout(LIMIT).is_err(), "join before close");
        let squares = p.map_async(&SQUARE, 0..200).unwrap();
        p.close();
        assert!(p.apply_async(&SQUARE, 1).is_err(), "closed");
        assert!(p.join_timeout(LIMIT).unwrap(), "the pool ended in time");
        assert_eq!(squares.get_timeout(Duration::ZERO).in_time().unwrap().len(), 200);
    }

    #[test]
    fn terminate_fails_unfinished_tasks() {
        let p = built(Pool::builder().processes(1));
        let slow = p.with_chunksize(1).map_async(&SLEEP_MS, [300, 300, 300]).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        p.terminate();
        let each = slow.get_each_timeout(LIMIT).unwrap();
        assert!(each.iter().skip(1).all(|r| remote(r).0 == RemoteKind::Terminated), "{each:?}");
        assert!(p.apply_async(&SQUARE, 1).is_err());
        assert!(p.join_timeout(LIMIT).unwrap(), "the pool ended in time");
    }
}}

parity! { sync {
    use std::collections::HashSet;
    use pw::manager::{BarrierProxy, LockProxy, Manager, ValueProxy};
    use pw::process::{Function, Process};

    /// Adds 1 to the value `n` times, each time under the lock.
    fn count_under_lock((lock, value, n): (LockProxy, ValueProxy<u64>, u64)) {
        for _ in 0..n {
            lock.acquire().expect("acquire");
            let v = value.get().expect("get");
            value.set(&(v + 1)).expect("set");
            lock.release().expect("release");
        }
    }
    fn meet(barrier: BarrierProxy) -> u64 {
        barrier.wait_timeout(LIMIT).expect("barrier")
    }
    pub static COUNT_UNDER_LOCK: Function<(LockProxy, ValueProxy<u64>, u64), ()> =
        Function::new("parity_count_under_lock", count_under_lock);
    pub static MEET: Function<BarrierProxy, u64> = Function::new("parity_meet", meet);

    fn manager() -> Manager {
        entry();
        Manager::start().expect("start a manager")
    }

    #[test]
    fn locks_rlocks_and_semaphores() {
        let m = manager();
        let l = m.lock().unwrap();
        l.acquire().unwrap();
        assert!(l.locked().unwrap());
        assert!(!l.try_acquire().unwrap());
        assert!(!l.acquire_timeout(Duration::from_millis(20)).unwrap());
        let other = { let l = l.clone(); std::thread::spawn(move || l.release()) };
        other.join().unwrap().unwrap();
        assert!(!l.locked().unwrap(), "any thread may release a lock");
        assert_eq!(remote(&l.release()).0, RemoteKind::Runtime);

        let r = m.rlock().unwrap();
        r.acquire().unwrap();
        assert!(r.try_acquire().unwrap(), "reentrant");
        let stranger = { let r = r.clone(); std::thread::spawn(move || (r.try_acquire(), r.release())) };
        let (tried, released) = stranger.join().unwrap();
        assert!(!tried.unwrap());
        assert_eq!(remote(&released).0, RemoteKind::Runtime);
        r.release().unwrap();
        r.release().unwrap();
        assert_eq!(remote(&r.release()).0, RemoteKind::Runtime);

        let s = m.semaphore(2).unwrap();
        s.acquire().unwrap();
        assert!(s.try_acquire().unwrap());
        assert!(!s.acquire_timeout(Duration::from_millis(20)).unwrap());
        assert_eq!(s.value().unwrap(), 0);
        s.release_n(3).unwrap();
        assert_eq!(s.value().unwrap(), 3, "a plain semaphore goes past its start");
        assert_eq!(remote(&s.release_n(0)).0, RemoteKind::Value);
        let b = m.bounded_semaphore(1).unwrap();
        b.acquire().unwrap();
        b.release().unwrap();
        assert_eq!(remote(&b.release()).0, RemoteKind::Value);
    }

    #[test]
    fn events_conditions_and_barriers_between_threads() {
        let m = manager();
        let ev = m.event().unwrap();
        assert!(!ev.is_set().unwrap());
        assert!(!ev.wait_timeout(Duration::from_millis(20)).unwrap());
        let setter = { let ev = ev.clone(); std::thread::spawn(move || ev.set()) };
        assert!(ev.wait_timeout(LIMIT).unwrap());
        setter.join().unwrap().unwrap();
        ev.clear().unwrap();
        assert!(!ev.is_set().unwrap());

        let cond = m.condition().unwrap();
        let ready = m.value(&false).unwrap();
        assert_eq!(remote(&cond.wait_timeout(Duration::ZERO)).0, RemoteKind::Runtime);
        assert_eq!(remote(&cond.notify(1)).0, RemoteKind::Runtime);
        let waiter = {
            let (cond, ready) = (cond.clone(), ready.clone());
            std::thread::spawn(move || -> procwire::Result<bool> {
                cond.acquire()?;
                let seen = cond.wait_for_timeout(|| ready.get(), LIMIT)?;
                cond.release()?;
                Ok(seen)
            })
        };
        cond.acquire().unwrap();
        ready.set(&true).unwrap();
        cond.notify_all().unwrap();
        cond.release().unwrap();
        assert!(waiter.join().unwrap().unwrap());
        cond.acquire().unwrap();
        assert!(!cond.wait_timeout(Duration::from_millis(20)).unwrap(), "nobody notifies");
        cond.release().unwrap();

        let barrier = m.barrier(3).unwrap();
        assert_eq!(barrier.parties().unwrap(), 3);
        let parties: Vec<_> =
            (0..3).map(|_| { let b = barrier.clone(); std::thread::spawn(move || b.wait_timeout(LIMIT)) }).collect();
        let indices: HashSet<u64> = parties.into_iter().map(|t| t.join().unwrap().unwrap()).collect();
        assert_eq!(indices, HashSet::from([0, 1, 2]));
        assert_eq!(remote(&barrier.wait_timeout(Duration::from_millis(20))).0, RemoteKind::BrokenBarrier);
        assert!(barrier.broken().unwrap());
        barrier.reset().unwrap();
        assert!(!barrier.broken().unwrap());
        assert_eq!(barrier.n_waiting().unwrap(), 0);
        assert_eq!(remote(&m.barrier(0)).0, RemoteKind::Value);
    }

    #[test]
    fn containers_behave_like_pythons() {
        let m = manager();
        let d = m.dict::<String, u32>().unwrap();
        assert_eq!(d.insert(&"b".into(), &2).unwrap(), None);
        assert_eq!(d.insert(&"a".into(), &1).unwrap(), None);
        assert_eq!(d.insert(&"b".into(), &3).unwrap(), Some(2));
        assert_eq!(d.setdefault(&"c".into(), &4).unwrap(), 4);
        assert_eq!(d.setdefault(&"c".into(), &5).unwrap(), 4);
        assert_eq!(d.keys().unwrap(), ["b", "a", "c"], "insertion order");
        assert_eq!(d.values().unwrap(), [3, 1, 4]);
        d.update(&[("d".into(), 5)]).unwrap();
        assert_eq!(d.remove(&"a".into()).unwrap(), Some(1));
        assert!(!d.contains_key(&"a".into()).unwrap());
        assert_eq!(d.get(&"d".into()).unwrap(), Some(5));
        assert_eq!(d.items().unwrap(), [("b".to_string(), 3), ("c".to_string(), 4), ("d".to_string(), 5)]);
        d.clear().unwrap();
        assert!(d.is_empty().unwrap());

        let l = m.list([3i64, 1, 2]).unwrap();
        l.push(&5).unwrap();
        l.extend(&[1, 9]).unwrap();
        l.insert(-100, &0).unwrap();
        assert_eq!(l.to_vec().unwrap(), [0, 3, 1, 2, 5, 1, 9]);
        assert_eq!(l.get(-1).unwrap(), 9);
        assert_eq!(remote(&l.get(7)).0, RemoteKind::Index);
        l.set(0, &7).unwrap();
        assert_eq!(l.count(&1).unwrap(), 2);
        assert_eq!(l.index(&2).unwrap(), 3);
        assert_eq!(remote(&l.index(&42)).0, RemoteKind::Value);
        l.remove(&1).unwrap();
        assert_eq!(l.pop().unwrap(), 9);
        assert_eq!(l.pop_at(0).unwrap(), 7);
        l.sort().unwrap();
        assert_eq!(l.to_vec().unwrap(), [1, 2, 3, 5]);
        l.reverse().unwrap();
        assert!(l.contains(&5).unwrap());
        assert_eq!(l.len().unwrap(), 4);
        l.clear().unwrap();
        assert_eq!(remote(&l.pop()).0, RemoteKind::Index);

        let v = m.value(&10u64).unwrap();
        assert_eq!(v.swap(&11).unwrap(), 10);
        assert_eq!(v.get().unwrap(), 11);

        let ns = m.namespace().unwrap();
        ns.set("x", &1.5f64).unwrap();
        ns.set("name", &"parity").unwrap();
        assert_eq!(ns.get::<f64>("x").unwrap(), 1.5);
        assert!(ns.contains("name").unwrap());
        assert_eq!(ns.items().unwrap().len(), 2);
        ns.del("x").unwrap();
        assert_eq!(remote(&ns.get::<f64>("x")).0, RemoteKind::Attribute);
        assert_eq!(remote(&ns.del("x")).0, RemoteKind::Attribute);

        let q = m.queue_with_maxsize::<u64>(1).unwrap();
        q.put(&1).unwrap();
        assert!(!q.try_put(&2).unwrap());
        assert_eq!(q.get().unwrap(), 1);
        assert_eq!(m.object_count().unwrap(), 5, "dict, list, value, namespace, queue");
        drop((d, l, v));
        assert_eq!(m.object_count().unwrap(), 2);
    }

    #[test]
    fn workers_share_a_lock_a_value_and_a_barrier() {
        let m = manager();
        let lock = m.lock().unwrap();
        let value = m.value(&0u64).unwrap();
        let mut counters: Vec<Process<()>> =
            (0..3).map(|_| Process::new(&COUNT_UNDER_LOCK, (lock.clone(), value.clone(), 50))).collect();
        for c in &mut counters {
            c.start().unwrap();
        }
        for c in &mut counters {
            c.result_timeout(LIMIT).in_time().unwrap();
        }
        assert_eq!(value.get().unwrap(), 150);

        let barrier = m.barrier(3).unwrap();
        let mut parties: Vec<Process<u64>> = (0..2).map(|_| Process::new(&MEET, barrier.clone())).collect();
        for p in &mut parties {
            p.start().unwrap();
        }
        let mine = barrier.wait_timeout(LIMIT).unwrap();
        let mut indices: HashSet<u64> = parties.iter_mut().map(|p| p.result_timeout(LIMIT).in_time().unwrap()).collect();
        indices.insert(mine);
        assert_eq!(indices, HashSet::from([0, 1, 2]));
    }

    #[test]
    fn after_shutdown_proxies_fail() {
        let m = manager();
        let v = m.value(&1u8).unwrap();
        m.shutdown().unwrap();
        assert!(v.get().is_err());
    }
}}

parity! { connection {
    use procwire::{Address, Family};

    fn fresh() -> Address {
        Address::fresh(Family::default()).unwrap()
    }

    #[test]
    fn pipe_messages_arrive_whole_in_order_in_both_directions() {
        let (mut a, mut b) = pw::pipe(true).unwrap();
        let t = std::thread::spawn(move || {
            for i in 0..10_000u32 {
                b.send(&i).unwrap();
            }
            let big = b.recv_bytes().unwrap();
            b.send_bytes(&big).unwrap();
            b.send_bytes(b"").unwrap();
        });
        for i in 0..10_000u32 {
            assert_eq!(a.recv::<u32>().unwrap(), i);
        }
        let big: Vec<u8> = (0..(3 << 20)).map(|i| (i % 251) as u8).collect();
        a.send_bytes(&big).unwrap();
        assert_eq!(a.recv_bytes().unwrap(), big);
        assert_eq!(a.recv_bytes().unwrap(), b"");
        t.join().unwrap();
        // The sender is gone: end of stream.
        assert!(matches!(a.recv_bytes(), Err(Error::Closed)), "expected Closed");
        assert!(a.send_bytes(b"x").is_err());
    }

    #[test]
    fn a_one_way_pipe_refuses_the_wrong_direction() {
        let (mut rx, mut tx) = pw::pipe(false).unwrap();
        tx.send_bytes(b"one way").unwrap();
        assert_eq!(rx.recv_bytes().unwrap(), b"one way");
        assert!(rx.send_bytes(b"no").is_err());
        assert!(tx.recv_bytes().is_err());
    }

    #[test]
    fn receive_timeouts_and_the_size_limit_hold() {
        let (mut a, mut b) = pw::pipe(true).unwrap();
        b.set_read_timeout(Some(Duration::from_millis(30)));
        assert!(matches!(b.recv_bytes(), Err(Error::Timeout(_))));
        assert!(!b.poll_timeout(Duration::from_millis(10)).unwrap());
        b.set_max_message_size(100);
        a.send_bytes(&[0u8; 101]).unwrap();
        assert!(b.poll_timeout(Duration::from_secs(5)).unwrap());
        assert!(matches!(b.recv_bytes(), Err(Error::MessageTooLarge { len: 101, max: 100 })));
    }

    #[test]
    fn split_halves_work_from_two_threads() {
        let (a, mut b) = pw::pipe(true).unwrap();
        let (mut tx, mut rx) = a.split();
        let sender = std::thread::spawn(move || {
            for i in 0..1000u64 {
                tx.send(&i).unwrap();
            }
        });
        let receiver = std::thread::spawn(move || {
            for i in 0..1000u64 {
                assert_eq!(rx.recv::<u64>().unwrap(), i + 1);
            }
        });
        for i in 0..1000u64 {
            let n: u64 = b.recv().unwrap();
            assert_eq!(n, i);
            b.send(&(n + 1)).unwrap();
        }
        sender.join().unwrap();
        receiver.join().unwrap();
    }

    #[test]
    fn wait_reports_the_ready_ends() {
        let (mut a1, b1) = pw::pipe(true).unwrap();
        let (a2, b2) = pw::pipe(true).unwrap();
        assert!(pw::wait_timeout(&[(&b1).into(), (&b2).into()], Duration::ZERO).unwrap().is_empty());
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            a1.send_bytes(b"hi").unwrap();
            a1
        });
        let ready = pw::wait_timeout(&[(&b1).into(), (&b2).into()], Duration::from_secs(10)).unwrap();
        assert_eq!(ready, [0]);
        let _a1 = t.join().unwrap();
        drop(a2);
        let ready = pw::wait_timeout(&[(&b1).into(), (&b2).into()], Duration::from_secs(10)).unwrap();
        assert_eq!(ready, [0, 1], "the dropped peer makes b2 ready (end of stream)");
    }

    #[test]
    fn listener_and_client_authenticate_and_talk() {
        let listener = pw::Listener::builder().authkey("parity key").bind(fresh()).unwrap();
        let addr = listener.address().clone();
        let t = std::thread::spawn(move || {
            let mut c = pw::Client::builder().authkey("parity key").connect(&addr).unwrap();
            c.send(&"ping").unwrap();
            c.recv::<String>().unwrap()
        });
        let mut s = listener.accept_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(s.recv::<String>().unwrap(), "ping");
        s.send(&"pong").unwrap();
        assert_eq!(t.join().unwrap(), "pong");
    }

    #[test]
    fn a_wrong_key_is_refused_on_both_sides_and_the_listener_goes_on() {
        let listener = pw::Listener::builder().authkey("right").bind(fresh()).unwrap();
        let addr = listener.address().clone();
        let a2 = addr.clone();
        let bad = std::thread::spawn(move || pw::Client::builder().authkey("wrong").connect(&a2));
        assert!(matches!(listener.accept_timeout(Duration::from_secs(10)), Err(Error::AuthenticationFailed(_))));
        assert!(matches!(bad.join().unwrap(), Err(Error::AuthenticationFailed(_))));
        let good = std::thread::spawn(move || pw::Client::builder().authkey("right").connect(&addr));
        let _s = listener.accept_timeout(Duration::from_secs(10)).unwrap();
        good.join().unwrap().unwrap();
    }

    #[test]
    fn wait_sees_a_listener_with_a_client_to_accept() {
        let listener = pw::Listener::builder().authkey("k").bind(fresh()).unwrap();
        assert!(pw::wait_timeout(&[(&listener).into()], Duration::from_millis(10)).unwrap().is_empty());
        let addr = listener.address().clone();
        let t = std::thread::spawn(move || pw::Client::builder().authkey("k").connect(&addr));
        assert_eq!(pw::wait_timeout(&[(&listener).into()], Duration::from_secs(10)).unwrap(), [0]);
        let _s = listener.accept_timeout(Duration::from_secs(10)).unwrap();
        t.join().unwrap().unwrap();
    }

    #[test]
    fn nobody_listening_is_an_error_and_keyless_tcp_is_refused() {
        let addr = fresh();
        let e = pw::Client::builder().authkey("k").connect(&addr).unwrap_err();
        assert!(matches!(e, Error::Io(_)), "{e:?}");
        let tcp = Address::fresh(Family::Tcp).unwrap();
        assert!(pw::Listener::bind(&tcp).is_err());
        assert!(pw::Client::connect(&tcp).is_err());
    }
}}
