//! Two processes increment one counter in shared memory under its lock; the final count is
//! exact. (Linux: shared memory needs memfd.)
//!
//! `cargo run --example shared_counter`

use procwire::process::{Function, Process};
use procwire::shared::Value;

fn count((counter, times): (Value<u64>, u64)) {
    for _ in 0..times {
        counter.with_lock(|n| *n += 1).expect("lock");
    }
}

static COUNT: Function<(Value<u64>, u64), ()> = Function::new("count", count);

fn main() -> procwire::Result<()> {
    procwire::process::init(&[&COUNT]);
    let counter = Value::new(0u64)?;
    let mut child = Process::new(&COUNT, (counter.clone(), 100_000));
    child.start()?;
    count((counter.clone(), 100_000));
    child.join()?;
    let total = counter.get()?;
    println!("final count: {total}");
    assert_eq!(total, 200_000);
    Ok(())
}
