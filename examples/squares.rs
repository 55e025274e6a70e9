//! The seed's worker that squares numbers coming through a pipe until it is told to stop, with
//! procwire's child processes: `start` gives the child its end of a duplex pipe (the channel),
//! and a `Process` returns a typed result. Both functions are registered by
//! `#[procwire::function]`, so `init` needs no list.
//!
//! ```text
//! cargo run --example squares
//! ```

use std::time::Duration;

use procwire::Connection;
use procwire::process::{Process, start, waitall_timeout};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
enum Job {
    Square(i64),
    Stop,
}

/// The child: squares every number that arrives until `Stop`. Takes the channel first, so the
/// attribute makes `static SQUARER: ChannelFunction<String>`.
#[procwire::function]
fn squarer(mut pipe: Connection, greeting: String) {
    println!("[child {}] {greeting}", std::process::id());
    while let Ok(Job::Square(n)) = pipe.recv::<Job>() {
        if pipe.send(&(n, n * n)).is_err() {
            return;
        }
    }
    println!("[child {}] got STOP", std::process::id());
}

/// A child with a result: the sum of the squares of `values` (`static SUM_OF_SQUARES:
/// Function<Vec<i64>, i64>`).
#[procwire::function]
fn sum_of_squares(values: Vec<i64>) -> i64 {
    values.iter().map(|v| v * v).sum()
}

fn main() -> procwire::Result<()> {
    // In a child this runs the requested function and exits. Registered functions need no list.
    procwire::process::init(&[]);

    let mut pipe = start(&SQUARER, "hello from the parent".to_string())?;
    pipe.set_read_timeout(Some(Duration::from_secs(10)));
    for n in 1..=10 {
        pipe.send(&Job::Square(n))?;
        let (x, sq): (i64, i64) = pipe.recv()?;
        println!("[parent] {x} squared is {sq}");
    }
    pipe.send(&Job::Stop)?;
    println!("[parent] squarer {} exited with {:?}", pipe.pid(), pipe.join_timeout(Duration::from_secs(10))?);

    let mut p = Process::new(&SUM_OF_SQUARES, (1..=10).collect());
    p.set_name("summer");
    p.start()?;
    let sum = p.result()?;
    println!("[parent] {} (pid {:?}) says the sum is {sum}", p.name(), p.pid());
    waitall_timeout(Duration::from_secs(10))?;
    Ok(())
}
