//! One program, processes or threads: the `processing` seed's "change the import line".
//!
//! `cargo run --example switch` runs it with child processes (`use procwire as pw`);
//! `cargo run --example switch --features threads` runs the same code with threads
//! (`use procwire::dummy as pw`). It maps a function over a pool, has producers fill a queue,
//! and counts under a manager's lock.

#[cfg(not(feature = "threads"))]
use procwire as pw;
#[cfg(feature = "threads")]
use procwire::dummy as pw;

use pw::manager::{LockProxy, Manager, ValueProxy};
use pw::pool::Pool;
use pw::process::{Function, Process};
use pw::queue::Queue;

fn square(x: u64) -> u64 {
    x * x
}
static SQUARE: Function<u64, u64> = Function::new("square", square);

/// A producer's arguments: the queue, the lock and counter, and its range of items.
type Job = (Queue<u64>, LockProxy, ValueProxy<u64>, u64, u64);

/// Puts `from..to` on the queue and counts each item under the lock; returns how many.
fn produce((q, lock, count, from, to): Job) -> u64 {
    for x in from..to {
        q.put(&x).expect("put");
        lock.acquire().expect("acquire");
        let n = count.get().expect("get");
        count.set(&(n + 1)).expect("set");
        lock.release().expect("release");
    }
    q.close().expect("close");
    to - from
}
static PRODUCE: Function<Job, u64> = Function::new("produce", produce);

fn main() -> pw::Result<()> {
    // With processes: a child runs its function from here. With threads: nothing happens.
    pw::process::init(&[&SQUARE, &PRODUCE, &pw::manager::SERVE]);
    let mode = if cfg!(feature = "threads") { "threads (procwire::dummy)" } else { "processes (procwire)" };

    let pool = Pool::new(2)?;
    let squares = pool.map(&SQUARE, 0..10)?;
    assert_eq!(squares, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
    println!("{mode}: pool map: {squares:?}");

    let manager = Manager::start()?;
    let (lock, count) = (manager.lock()?, manager.value(&0u64)?);
    let q: Queue<u64> = Queue::new()?;
    let mut producers: Vec<Process<u64>> = (0..3)
        .map(|k| Process::new(&PRODUCE, (q.clone(), lock.clone(), count.clone(), k * 10, k * 10 + 10)))
        .collect();
    for p in &mut producers {
        p.start()?;
    }
    let mut items: Vec<u64> = (0..30).map(|_| q.get()).collect::<pw::Result<_>>()?;
    for p in &mut producers {
        assert_eq!(p.result()?, 10);
    }
    items.sort_unstable();
    assert_eq!(items, (0..30).collect::<Vec<_>>());
    assert_eq!(count.get()?, 30);
    println!("{mode}: 3 producers put {} items, counted {} under the lock", items.len(), count.get()?);
    manager.shutdown()
}
