//! A CPU-bound job on a pool: count the primes below a limit in 64 ranges, first in this one
//! process, then on a pool with one worker per CPU, and print the speed-up.
//!
//! ```text
//! cargo run --release --example pool_primes [LIMIT [CHUNKSIZE]]   # 5000000 and 1 by default
//! ```
//!
//! On a machine whose CPUs are busy with other work the speed-up is smaller: the pool can only
//! use the CPU time the others leave.

use std::time::Instant;

use procwire::pool::Pool;
use procwire::process::Function;

fn is_prime(n: u64) -> bool {
    if n < 4 {
        return n >= 2;
    }
    if n.is_multiple_of(2) {
        return false;
    }
    let mut d = 3;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

/// The number of primes in `lo..hi`.
fn count_primes((lo, hi): (u64, u64)) -> u64 {
    (lo..hi).filter(|&n| is_prime(n)).count() as u64
}

static COUNT_PRIMES: Function<(u64, u64), u64> = Function::new("count_primes", count_primes);

fn main() -> procwire::Result<()> {
    procwire::process::init(&[&COUNT_PRIMES]);
    let limit: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(5_000_000);
    // Each range is a sizeable task already: one per chunk keeps the workers evenly busy.
    let chunksize: usize = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(1);
    let ranges: Vec<(u64, u64)> = (0..64).map(|k| (limit * k / 64, limit * (k + 1) / 64)).collect();

    let t = Instant::now();
    let single: u64 = ranges.iter().map(|&r| count_primes(r)).sum();
    let t_single = t.elapsed();
    println!("one process: {single} primes below {limit} in {t_single:.2?}");

    let pool = Pool::builder().build()?;
    let t = Instant::now();
    let counts = pool.with_chunksize(chunksize).map(&COUNT_PRIMES, ranges)?;
    let t_pool = t.elapsed();
    let total: u64 = counts.iter().sum();
    assert_eq!(total, single);
    println!(
        "pool of {} workers, chunksize {chunksize}: {total} primes in {t_pool:.2?}, {:.2}x the speed of one process",
        pool.processes(),
        t_single.as_secs_f64() / t_pool.as_secs_f64()
    );
    Ok(())
}
