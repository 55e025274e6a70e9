//! pprocess's convenient message exchange: 32 tasks, at most 4 child processes at a time, each
//! child computing one result that a handler adds up as it arrives.
//!
//! ```text
//! cargo run --example process_exchange
//! ```

use std::time::{Duration, Instant};

use procwire::Connection;
use procwire::process::{ChannelFunction, Exchange, start};

/// The task: the number of primes below `10_000 * (n + 1)`, with a little sieve.
fn count_primes(mut channel: Connection, n: u64) {
    let limit = 10_000 * (n as usize + 1);
    let mut composite = vec![false; limit];
    let mut count = 0u64;
    for i in 2..limit {
        if !composite[i] {
            count += 1;
            for j in (i * i..limit).step_by(i) {
                composite[j] = true;
            }
        }
    }
    let _ = channel.send(&(n, count));
}

static COUNT_PRIMES: ChannelFunction<u64> = ChannelFunction::new("count_primes", count_primes);

fn main() -> procwire::Result<()> {
    procwire::process::init(&[&COUNT_PRIMES]);

    let started = Instant::now();
    let mut total = 0u64;
    let mut results = 0;
    let mut exchange = Exchange::with_limit(4).on_ready(|channel| {
        let (n, count): (u64, u64) = channel.recv()?;
        println!("[parent] task {n:2} (pid {}): {count} primes below {}", channel.pid(), 10_000 * (n + 1));
        total += count;
        results += 1;
        Ok(())
    });
    for n in 0..32 {
        // Waits (handling results) while 4 children are running.
        exchange.add_wait(start(&COUNT_PRIMES, n)?)?;
    }
    exchange.finish()?;
    drop(exchange);
    println!("[parent] {results} results, total {total}, in {:?}", started.elapsed());
    procwire::process::waitall_timeout(Duration::from_secs(10))?;
    Ok(())
}
