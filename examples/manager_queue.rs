//! The `processing` seed: a manager-hosted `Queue(maxsize=10)` shared with a child process
//! that puts the squares of 0..10 and then "STOP"; the parent prints what it gets.
//!
//! `cargo run --example manager_queue`

use procwire::manager::{Manager, QueueProxy, SERVE};
use procwire::process::{Function, Process};

fn f(q: QueueProxy<String>) {
    for i in 0..10u64 {
        q.put(&(i * i).to_string()).expect("put");
    }
    q.put(&"STOP".to_string()).expect("put");
}

static F: Function<QueueProxy<String>, ()> = Function::new("f", f);

fn main() -> procwire::Result<()> {
    procwire::process::init(&[&SERVE, &F]);
    let manager = Manager::start()?;
    let queue = manager.queue_with_maxsize::<String>(10)?;

    let mut p = Process::new(&F, queue.clone());
    p.start()?;

    loop {
        let result = queue.get()?;
        println!("{result}");
        if result == "STOP" {
            break;
        }
    }
    p.join()?;
    manager.shutdown()
}
