//! Child processes: `Process`, `start`/`waitall`, `Exchange` and `wait` over process sentinels,
//! with real processes. The children are this test binary running its `procwire_child` test
//! (see `procwire::process::use_test_entry`).

mod common;

use std::collections::HashMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::InTime;
use procwire::process::{
    ChannelFunction, Exchange, Function, Process, start, use_test_entry, waitall_timeout,
};
use procwire::{Connection, Error, RemoteKind, Waitable, wait_timeout};

const LIMIT: Duration = Duration::from_secs(30);
/// What `terminate` and `kill` give as exit codes: minus these signal numbers (on Windows too).
const SIGTERM: i32 = 15;
const SIGKILL: i32 = 9;

fn square(x: u64) -> u64 {
    x * x
}
fn panics(s: String) -> u32 {
    panic!("boom: {s}")
}
fn exit_with(code: i32) {
    std::process::exit(code)
}
fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}
fn big(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}
fn name_of(_: ()) -> String {
    procwire::process::current_name().unwrap_or("none").to_string()
}
fn work(mut ch: Connection, n: u64) {
    std::thread::sleep(Duration::from_millis(n % 7));
    let _ = ch.send(&(n, n * n));
}
/// Starts a daemon child that sleeps, reports its pid, then sleeps itself until killed.
fn start_daemon(mut ch: Connection, _: ()) {
    let mut p = Process::new(&SLEEP, 60_000);
    p.set_daemon(true);
    p.start().expect("start the daemon");
    let _ = ch.send(&p.pid());
    std::thread::sleep(Duration::from_secs(60));
}

/// Takes a connection handed over its channel and answers on it in upper case.
fn upper_on_handed(mut ch: Connection, _: ()) {
    let mut c = procwire::handles::recv_connection(&mut ch).expect("recv_connection");
    let msg = c.recv_bytes().expect("recv");
    c.send_bytes(&msg.to_ascii_uppercase()).expect("send");
    ch.send(&"served").expect("report");
}

static SQUARE: Function<u64, u64> = Function::new("square", square);
static PANICS: Function<String, u32> = Function::new("panics", panics);
static EXIT_WITH: Function<i32, ()> = Function::new("exit_with", exit_with);
static SLEEP: Function<u64, u64> = Function::new("sleep", sleep_ms);
static BIG: Function<usize, Vec<u8>> = Function::new("big", big);
static NAME_OF: Function<(), String> = Function::new("name_of", name_of);
static WORK: ChannelFunction<u64> = ChannelFunction::new("work", work);
static START_DAEMON: ChannelFunction<()> = ChannelFunction::new("start_daemon", start_daemon);
static UPPER_ON_HANDED: ChannelFunction<()> = ChannelFunction::new("upper_on_handed", upper_on_handed);
/// Not given to `init`.
static UNREGISTERED: Function<u64, u64> = Function::new("unregistered", square);
/// Registered as `square`, but with arguments of another type.
static SQUARE_OF_TEXT: Function<String, u64> = Function::new("square", |_| 0);

#[test]
#[ignore = "the entry point of child processes"]
fn procwire_child() {
    procwire::process::init(&[
        &SQUARE,
        &PANICS,
        &EXIT_WITH,
        &SLEEP,
        &BIG,
        &NAME_OF,
        &WORK,
        &START_DAEMON,
        &UPPER_ON_HANDED,
    ]);
}

fn started<R: serde::de::DeserializeOwned>(mut p: Process<R>) -> Process<R> {
    use_test_entry("procwire_child");
    p.start().expect("start");
    p
}

#[test]
fn return_value_name_and_panic_reach_the_parent() {
    let mut p = started(Process::new(&SQUARE, 12));
    assert!(p.pid().is_some());
    assert_eq!(p.result_timeout(LIMIT).in_time().unwrap(), 144);
    assert_eq!(p.exitcode(), Some(0));
    assert!(!p.is_alive());

    let mut p = Process::new(&NAME_OF, ());
    p.set_name("worker-7");
    let mut p = started(p);
    assert_eq!(p.result_timeout(LIMIT).in_time().unwrap(), "worker-7");

    let mut p = started(Process::new(&PANICS, "the message".to_string()));
    match p.result_timeout(LIMIT).in_time() {
        Err(Error::Remote { kind, message }) => {
            assert_eq!(kind, RemoteKind::Panic);
            assert_eq!(message, "boom: the message");
        }
        other => panic!("expected a panic, got {other:?}"),
    }
    assert_eq!(p.exitcode(), Some(procwire::process::EXIT_PANICKED));
}

#[test]
fn a_large_result_does_not_block_the_child() {
    let mut p = started(Process::new(&BIG, 8 << 20));
    assert_eq!(p.join_timeout(LIMIT).unwrap(), Some(0));
    assert_eq!(p.result_timeout(LIMIT).in_time().unwrap(), big(8 << 20));
}

#[test]
fn exit_codes_are_reported() {
    for code in [0, 3, 7] {
        let mut p = started(Process::new(&EXIT_WITH, code));
        assert_eq!(p.join_timeout(LIMIT).unwrap(), Some(code));
        match p.result_timeout(LIMIT).in_time() {
            Err(Error::Remote { kind, .. }) => assert_eq!(kind, RemoteKind::Exit),
            other => panic!("expected no result, got {other:?}"),
        }
    }
}

#[test]
fn terminate_and_kill() {
    let mut p = started(Process::new(&SLEEP, 60_000));
    assert!(p.is_alive());
    p.terminate().unwrap();
    assert_eq!(p.join_timeout(LIMIT).unwrap(), Some(-SIGTERM));
    assert!(!p.is_alive());
    // A second signal to an exited child is a no-op.
    p.kill().unwrap();

    let mut p = started(Process::new(&SLEEP, 60_000));
    p.kill().unwrap();
    assert_eq!(p.join_timeout(LIMIT).unwrap(), Some(-SIGKILL));
    assert!(matches!(p.result_timeout(LIMIT).in_time(), Err(Error::Remote { .. })));
}

#[test]
fn join_with_a_timeout_on_a_sleeping_child() {
    let mut p = started(Process::new(&SLEEP, 700));
    let t = Instant::now();
    assert_eq!(p.join_timeout(Duration::from_millis(100)).unwrap(), None);
    assert!(t.elapsed() >= Duration::from_millis(90));
    assert!(p.is_alive());
    assert!(matches!(p.result_timeout(Duration::ZERO), Ok(None)));
    assert_eq!(p.join_timeout(LIMIT).unwrap(), Some(0));
    assert_eq!(p.result_timeout(LIMIT).in_time().unwrap(), 700);
}

#[test]
fn a_connection_handed_to_a_child_over_its_channel_works_there() {
    use_test_entry("procwire_child");
    let ch = start(&UPPER_ON_HANDED, ()).unwrap();
    let mut carrier = ch.into_connection();
    carrier.set_read_timeout(Some(LIMIT));
    let (mut mine, theirs) = procwire::pipe(true).unwrap();
    procwire::handles::send_connection(&mut carrier, theirs).unwrap();
    mine.set_read_timeout(Some(LIMIT));
    mine.send_bytes(b"handed over").unwrap();
    assert_eq!(mine.recv_bytes().unwrap(), b"HANDED OVER");
    assert_eq!(carrier.recv::<String>().unwrap(), "served");
}

#[test]
fn a_daemon_child_dies_when_its_parent_is_killed() {
    use_test_entry("procwire_child");
    let mut ch = start(&START_DAEMON, ()).unwrap();
    ch.set_read_timeout(Some(LIMIT));
    let daemon: u32 = ch.recv::<Option<u32>>().unwrap().expect("the daemon's pid");
    assert!(!common::is_dead(daemon));
    ch.kill().unwrap();
    assert_eq!(ch.join_timeout(LIMIT).unwrap(), Some(-SIGKILL));
    let t = Instant::now();
    while !common::is_dead(daemon) {
        assert!(t.elapsed() < Duration::from_secs(10), "the daemon {daemon} outlived its parent");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn fifty_children_through_an_exchange_with_limit_4() {
    use_test_entry("procwire_child");
    let (done_tx, done_rx) = mpsc::channel();
    // The whole exchange runs on a thread so that the test can bound it.
    std::thread::spawn(move || {
        let mut seen: HashMap<u64, u32> = HashMap::new();
        let mut most = 0;
        let r = (|| -> procwire::Result<()> {
            let mut ex = Exchange::with_limit(4).on_ready(|ch| {
                let (n, sq): (u64, u64) = ch.recv()?;
                assert_eq!(sq, n * n);
                *seen.entry(n).or_default() += 1;
                Ok(())
            });
            for n in 0..50 {
                ex.add_wait(start(&WORK, n)?)?;
                most = most.max(ex.active().len());
            }
            ex.finish()?;
            Ok(())
        })();
        let _ = done_tx.send((r, seen, most));
    });
    let (r, seen, most) = done_rx.recv_timeout(Duration::from_secs(120)).expect("the exchange finished");
    r.unwrap();
    assert!(most <= 4, "{most} channels at once");
    assert_eq!(seen.len(), 50);
    assert!(seen.values().all(|&c| c == 1), "{seen:?}");
    // Every child was reaped by the exchange (waitall may still see other tests' children).
    let _alone = lock_waitall();
    waitall_timeout(LIMIT).unwrap();
}

/// Held by the tests that call `waitall`, which reaps every child this process started: one
/// test's call would otherwise take another's children from it.
fn lock_waitall() -> std::sync::MutexGuard<'static, ()> {
    static WAITALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    WAITALL.lock().unwrap_or_else(|p| p.into_inner())
}

#[test]
fn start_gives_the_child_its_channel_and_waitall_reaps() {
    use_test_entry("procwire_child");
    let _alone = lock_waitall();
    let mut chans: Vec<_> = (1..=3).map(|n| start(&WORK, n).unwrap()).collect();
    for (i, ch) in chans.iter_mut().enumerate() {
        ch.set_read_timeout(Some(LIMIT));
        let n = i as u64 + 1;
        assert_eq!(ch.recv::<(u64, u64)>().unwrap(), (n, n * n));
    }
    let pids: Vec<u32> = chans.iter().map(|c| c.pid()).collect();
    let reaped = waitall_timeout(LIMIT).unwrap();
    for pid in pids {
        assert!(reaped.contains(&(pid, 0)), "{pid} not in {reaped:?}");
    }
}

#[test]
fn wait_sees_process_sentinels() {
    let mut short = started(Process::new(&SLEEP, 50));
    let mut long = started(Process::new(&SLEEP, 60_000));
    let (a, b) = procwire::pipe(true).unwrap();
    let objects: [Waitable<'_>; 3] = [(&b).into(), (&short).into(), (&long).into()];
    assert_eq!(wait_timeout(&objects, LIMIT).unwrap(), [1]);
    // The same process twice is ready twice (Windows waits on its handle once).
    let twice: [Waitable<'_>; 3] = [(&long).into(), (&short).into(), (&short).into()];
    assert_eq!(wait_timeout(&twice, LIMIT).unwrap(), [1, 2]);
    drop(a);
    long.kill().unwrap();
    let t = Instant::now();
    loop {
        let objects: [Waitable<'_>; 3] = [(&b).into(), (&short).into(), (&long).into()];
        let ready = wait_timeout(&objects, LIMIT).unwrap();
        if ready == [0, 1, 2] {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{ready:?}");
    }
    assert_eq!(short.join_timeout(LIMIT).unwrap(), Some(0));
    assert_eq!(long.join_timeout(LIMIT).unwrap(), Some(-SIGKILL));
    // A process that was not started has nothing to wait for.
    let idle = Process::new(&SQUARE, 1);
    assert_eq!(wait_timeout(&[(&idle).into()], Duration::ZERO).unwrap(), [0]);
}

fn start_error<R: serde::de::DeserializeOwned>(mut p: Process<R>) -> Error {
    use_test_entry("procwire_child");
    p.set_start_timeout(Duration::from_secs(30));
    let t = Instant::now();
    let e = p.start().expect_err("the child must not start");
    assert!(t.elapsed() < Duration::from_secs(20));
    e
}

#[test]
fn a_child_that_cannot_start_is_an_error() {
    let e = start_error(Process::new(&UNREGISTERED, 3));
    assert!(
        matches!(&e, Error::Remote { kind: RemoteKind::Start, message } if message.contains("not registered")),
        "{e}"
    );

    let e = start_error(Process::new(&SQUARE_OF_TEXT, "twelve".to_string()));
    assert!(matches!(&e, Error::Remote { message, .. } if message.contains("do not decode")), "{e}");

    let mut p = Process::new(&SQUARE, 3);
    p.set_executable(if cfg!(windows) {
        r"C:\nonexistent\procwire-child.exe"
    } else {
        "/nonexistent/procwire-child"
    });
    let e = start_error(p);
    assert!(matches!(&e, Error::Io(io) if io.kind() == std::io::ErrorKind::NotFound), "{e}");

    // A program that never calls init: it just exits (given the test entry's arguments).
    let mut p = Process::new(&SQUARE, 3);
    p.set_executable(if cfg!(windows) { r"C:\windows\system32\hostname.exe" } else { "/bin/true" });
    let e = start_error(p);
    assert!(matches!(&e, Error::Remote { message, .. } if message.contains("init")), "{e}");
}
