//! A child fills an array in shared memory; the parent sums it. (Linux: shared memory needs
//! memfd.)
//!
//! `cargo run --example shared_array`

use procwire::process::{Function, Process};
use procwire::shared::Array;

fn fill(a: Array<f64>) {
    a.with_lock(|xs| {
        for (i, x) in xs.iter_mut().enumerate() {
            *x = 1.0 / (1 + i) as f64;
        }
    })
    .expect("lock");
}

static FILL: Function<Array<f64>, ()> = Function::new("fill", fill);

fn main() -> procwire::Result<()> {
    procwire::process::init(&[&FILL]);
    let a = Array::<f64>::new(1_000_000)?;
    let mut child = Process::new(&FILL, a.clone());
    child.start()?;
    child.join()?;
    let sum: f64 = a.with_lock(|xs| xs.iter().sum())?;
    println!("harmonic number H(1,000,000) = {sum:.6}");
    assert!((sum - 14.392727).abs() < 1e-5);
    Ok(())
}
