//! Functions made by `#[procwire::function]`, run in real child processes found with no list:
//! the entry test calls `procwire::process::init(&[])`. One argument, several (a tuple), none,
//! a channel function, a custom name, a pool over a registered function, and an explicitly
//! listed function next to the registered ones.

mod common;

use std::time::Duration;

use common::InTime;
use procwire::Connection;
use procwire::pool::Pool;
use procwire::process::{Entry, Function, Process, start, use_test_entry};

const LIMIT: Duration = Duration::from_secs(30);

#[procwire::function]
fn square(x: u64) -> u64 {
    x * x
}

#[procwire::function]
fn add(a: u64, b: u64) -> u64 {
    a + b
}

#[procwire::function]
fn describe(name: String, count: u32, loud: bool) -> String {
    let s = format!("{count} x {name}");
    if loud { s.to_uppercase() } else { s }
}

#[procwire::function]
fn pid() -> u32 {
    std::process::id()
}

/// Squares what comes through the channel until it closes.
#[procwire::function]
fn squarer(mut ch: Connection, offset: u64) {
    while let Ok(x) = ch.recv::<u64>() {
        if ch.send(&(x * x + offset)).is_err() {
            return;
        }
    }
}

/// A channel function with two arguments after the channel.
#[procwire::function]
fn greet(mut ch: Connection, greeting: String, times: usize) {
    let _ = ch.send(&vec![greeting; times]);
}

#[procwire::function(name = "custom name for cube")]
fn cube(x: u64) -> u64 {
    x * x * x
}

fn negate(x: i64) -> i64 {
    -x
}
/// Not registered: listed in `init` the old way, next to the registered ones.
static NEGATE: Function<i64, i64> = Function::new("negate", negate);

#[test]
#[ignore = "the entry point of child processes"]
fn procwire_child() {
    // The registered functions need no list; the explicit one is listed.
    procwire::process::init(&[&NEGATE]);
}

fn run<A: serde::Serialize, R: serde::de::DeserializeOwned>(f: &Function<A, R>, args: A) -> R {
    use_test_entry("procwire_child");
    let mut p = Process::new(f, args);
    p.start().expect("start");
    let r = p.result_timeout(LIMIT).in_time().expect("result");
    assert_eq!(p.exitcode(), Some(0));
    r
}

#[test]
fn the_attribute_keeps_the_function_and_names_it_by_its_path() {
    assert_eq!(square(7), 49);
    assert_eq!(add(2, 3), 5);
    assert_eq!(SQUARE.name(), "registered::square");
    assert_eq!(ADD.name(), "registered::add");
    assert_eq!(SQUARER.name(), "registered::squarer");
    assert!(SQUARER.takes_channel() && !SQUARE.takes_channel());
    assert_eq!(CUBE.name(), "custom name for cube");
}

#[test]
fn a_registered_function_runs_in_a_child_without_a_list() {
    assert_eq!(run(&SQUARE, 12), 144);
    let child = run(&PID, ());
    assert_ne!(child, std::process::id());
    assert_eq!(run(&CUBE, 3), 27);
}

#[test]
fn several_parameters_take_one_tuple() {
    assert_eq!(run(&ADD, (40, 2)), 42);
    assert_eq!(run(&DESCRIBE, ("ping".to_string(), 3, true)), "3 X PING");
}

#[test]
fn a_channel_function_gets_its_end_first() {
    use_test_entry("procwire_child");
    let mut ch = start(&SQUARER, 1).expect("start");
    ch.set_read_timeout(Some(LIMIT));
    for x in 1..=5u64 {
        ch.send(&x).unwrap();
        assert_eq!(ch.recv::<u64>().unwrap(), x * x + 1);
    }
    let mut ch2 = start(&GREET, ("hi".to_string(), 3)).expect("start");
    ch2.set_read_timeout(Some(LIMIT));
    assert_eq!(ch2.recv::<Vec<String>>().unwrap(), ["hi", "hi", "hi"]);
    assert_eq!(ch2.join_timeout(LIMIT).unwrap(), Some(0));
    drop(ch);
}

#[test]
fn listed_and_registered_functions_combine() {
    assert_eq!(run(&NEGATE, 5), -5);
    assert_eq!(run(&SQUARE, 5), 25);
}

#[test]
fn a_pool_runs_registered_functions() {
    use_test_entry("procwire_child");
    let p = Pool::new(2).expect("pool");
    assert_eq!(p.map(&SQUARE, 0..20u64).unwrap(), (0..20u64).map(|x| x * x).collect::<Vec<_>>());
    assert_eq!(p.map(&ADD, (0..10u64).map(|x| (x, 100))).unwrap(), (100..110u64).collect::<Vec<_>>());
}

#[test]
fn a_manager_starts_without_listing_its_server() {
    // The entry lists only NEGATE: the manager's server (SERVE) is built in, as the pool's
    // worker is, and a registered function uses the manager's proxies from another child.
    use_test_entry("procwire_child");
    let manager = procwire::manager::Manager::start().expect("manager");
    let scores = manager.dict::<String, u64>().unwrap();
    run(&RECORD, (scores.clone(), "ada".to_string()));
    assert_eq!(scores.get(&"ada".to_string()).unwrap(), Some(3));
    manager.shutdown().unwrap();
}

#[procwire::function]
fn record(scores: procwire::manager::DictProxy<String, u64>, name: String) {
    scores.insert(&name, &(name.len() as u64)).unwrap();
}
