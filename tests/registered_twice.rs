//! Two `#[procwire::function]`s with one name: starting a child is an error in the parent that
//! names both places, before any child runs.

#![cfg(unix)]

use procwire::Error;
use procwire::process::{Process, use_test_entry};

#[procwire::function(name = "twice")]
fn first(x: u64) -> u64 {
    x
}

#[procwire::function(name = "twice")]
fn second(x: u64) -> u64 {
    x + 1
}

#[test]
#[ignore = "the entry point of child processes"]
fn procwire_child() {
    procwire::process::init(&[]);
}

#[test]
fn a_name_registered_twice_is_an_error_that_names_both_places() {
    use_test_entry("procwire_child");
    assert_eq!((first(1), second(1)), (1, 2));
    for mut p in [Process::new(&FIRST, 1), Process::new(&SECOND, 1)] {
        let e = p.start().expect_err("a duplicate name must not start");
        let Error::InvalidInput(message) = &e else { panic!("{e:?}") };
        assert!(message.contains("\"twice\" is registered twice"), "{message}");
        assert!(message.contains("tests/registered_twice.rs:10"), "{message}");
        assert!(message.contains("tests/registered_twice.rs:15"), "{message}");
        assert!(p.pid().is_none());
    }
}
