//! The `processing` seed: `manager = Manager(); l = manager.list(range(10)); l.reverse()`.
//!
//! `cargo run --example manager_list`: starts a manager in a child process, creates a shared
//! list there, reverses it through its proxy and prints it.

use procwire::manager::{Manager, SERVE};

fn main() -> procwire::Result<()> {
    procwire::process::init(&[&SERVE]);
    let manager = Manager::start()?;
    let l = manager.list(0..10)?;
    l.reverse()?;
    println!("{:?}", l.to_vec()?);
    println!("{l:?}");
    manager.shutdown()
}
