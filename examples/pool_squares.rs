//! The seed's pool: `p = Pool(4); result = p.mapAsync(f, range(10)); result.get(timeout=1)`,
//! with procwire's `Pool`: four worker processes square the numbers 0 to 9.
//!
//! ```text
//! cargo run --example pool_squares
//! ```

use procwire::pool::Pool;

/// Registered for the workers, with no list: the attribute also makes `static F`.
#[procwire::function]
fn f(x: u64) -> u64 {
    x * x
}

/// First in `main`, `procwire::process::init(&[])`: in a worker it runs its tasks and exits;
/// here it returns at once.
#[procwire::main]
fn main() -> procwire::Result<()> {
    let p = Pool::new(4)?;
    let result = p.map_async(&F, 0..10)?;
    let squares = result.get()?;
    println!("{squares:?}");
    assert_eq!(squares, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);

    // The same with imap, one result at a time as they come, and with one task.
    for (x, sq) in p.imap(&F, 0..3)?.enumerate() {
        println!("{x} squared is {}", sq?);
    }
    println!("apply: 12 squared is {}", p.apply(&F, 12)?);
    println!("workers: {:?}", p.pids());
    Ok(())
}
