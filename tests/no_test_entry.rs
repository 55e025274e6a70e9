//! A test binary that starts children without `use_test_entry`: its children would run the
//! test harness (every test) instead of a function, so starting one fails at once, saying what
//! to do, whether or not a test called `init`.

use procwire::Error;
use procwire::pool::Pool;
use procwire::process::Process;

#[procwire::function]
fn square(x: u64) -> u64 {
    x * x
}

fn assert_loud(e: &Error) {
    let Error::InvalidInput(message) = e else { panic!("{e:?}") };
    assert!(message.contains("use_test_entry"), "{message}");
    assert!(message.contains("procwire::process::init was not called"), "{message}");
}

#[test]
fn a_pool_in_a_test_without_the_test_entry_fails_loudly() {
    // init on a test's thread is not init in main: a child would not reach it.
    procwire::process::init(&[]);
    let e = Pool::new(3).expect_err("workers would run the whole test binary");
    assert_loud(&e);
}

#[test]
fn a_process_in_a_test_without_init_fails_loudly() {
    let mut p = Process::new(&SQUARE, 3);
    assert_loud(&p.start().expect_err("the child would run the whole test binary"));
    assert!(p.pid().is_none());
}
