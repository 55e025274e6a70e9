//! The `processing` seed's queue example: a child process puts the squares of 0..10 and then
//! `STOP` on a queue of at most 3 items; the parent prints what it gets until `STOP`.
//!
//! ```text
//! def f(q):
//!     for i in range(10):
//!         q.put(i*i)
//!     q.put('STOP')
//! ...
//! queue = Queue(maxsize=3)
//! p = Process(target=f, args=[queue]); p.start()
//! result = None
//! while result != 'STOP':
//!     result = queue.get()
//!     print result
//! p.join()
//! ```
//!
//! `cargo run --example queue_squares`

use procwire::process::{Function, Process};
use procwire::queue::Queue;
use serde::{Deserialize, Serialize};

/// What travels on the queue: Python puts ints and a string; Rust says so with an enum.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Msg {
    Square(u64),
    Stop,
}

fn f(q: Queue<Msg>) {
    for i in 0..10 {
        q.put(&Msg::Square(i * i)).expect("put");
    }
    q.put(&Msg::Stop).expect("put");
}

static F: Function<Queue<Msg>, ()> = Function::new("f", f);

fn main() -> procwire::Result<()> {
    procwire::process::init(&[&F]);

    // Served by this process; the child reaches it through the handle it is given.
    let queue: Queue<Msg> = Queue::with_maxsize(3)?;
    let mut p = Process::new(&F, queue.clone());
    p.start()?;

    loop {
        let result = queue.get()?;
        println!("{result:?}");
        if result == Msg::Stop {
            break;
        }
    }
    p.join()?;
    Ok(())
}
