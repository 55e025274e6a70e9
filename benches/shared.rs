//! Shared-memory Value increments against a Manager Value's, measured in the same run.
//!
//! `cargo bench --bench shared [-- --seconds S]`. A shared increment takes the value's lock in
//! shared memory; a manager increment is what the same program does with a manager-hosted
//! value: a `get` and a `set`, each a round trip to the manager process (one process
//! incrementing, so no lock is needed there either). Also printed: the lock-free increment of
//! an `AtomicValue`, and two processes incrementing one shared value under its lock at once.

use std::time::{Duration, Instant};

#[cfg(target_os = "linux")]
mod run {
    use super::*;
    use procwire::manager::{Manager, SERVE};
    use procwire::process::{Function, Process};
    use procwire::shared::{AtomicValue, Value};
    use std::sync::atomic::Ordering;

    /// Increments under the lock for `secs` seconds; returns how many.
    fn hammer((v, secs): (Value<u64>, f64)) -> u64 {
        let end = Instant::now() + Duration::from_secs_f64(secs);
        let mut n = 0;
        while Instant::now() < end {
            for _ in 0..1000 {
                v.with_lock(|x| *x += 1).expect("lock");
            }
            n += 1000;
        }
        n
    }

    static HAMMER: Function<(Value<u64>, f64), u64> = Function::new("hammer", hammer);

    fn rate(secs: f64, mut step: impl FnMut() -> u64) -> f64 {
        let t = Instant::now();
        let mut n = 0;
        while t.elapsed().as_secs_f64() < secs {
            n += step();
        }
        n as f64 / t.elapsed().as_secs_f64()
    }

    pub fn main() -> procwire::Result<()> {
        procwire::process::init(&[&HAMMER, &SERVE]);
        let args: Vec<String> = std::env::args().collect();
        let secs: f64 = args
            .iter()
            .position(|a| a == "--seconds")
            .and_then(|i| args.get(i + 1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(1.0);

        let v = Value::new(0u64)?;
        let locked = rate(secs, || {
            for _ in 0..1000 {
                v.with_lock(|x| *x += 1).expect("lock");
            }
            1000
        });
        let n = AtomicValue::new(0u64)?;
        let atomic = rate(secs, || {
            for _ in 0..1000 {
                n.atomic().fetch_add(1, Ordering::Relaxed);
            }
            1000
        });
        let manager = Manager::start()?;
        let mv = manager.value(&0u64)?;
        let managed = rate(secs, || {
            let x: u64 = mv.get().expect("get");
            mv.set(&(x + 1)).expect("set");
            1
        });
        let before = v.get()?;
        let mut child = Process::new(&HAMMER, (v.clone(), secs));
        child.start()?;
        let t = Instant::now();
        let mine = hammer((v.clone(), secs));
        let theirs = child.result()?;
        let both = (mine + theirs) as f64 / t.elapsed().as_secs_f64();
        assert_eq!(v.get()? - before, mine + theirs, "every increment counted");

        println!("shared-memory Value vs Manager Value increments, {secs} s per row, one run");
        println!("{:<44} {:>16} {:>12}", "workload", "increments/s", "vs manager");
        for (name, r) in [
            ("Manager value: get + set (2 round trips)", managed),
            ("shared Value, under its lock", locked),
            ("shared AtomicValue, fetch_add", atomic),
            ("shared Value, lock, 2 processes at once", both),
        ] {
            println!("{name:<44} {r:>16.0} {:>11.0}x", r / managed);
        }
        Ok(())
    }
}

#[cfg(target_os = "linux")]
fn main() -> procwire::Result<()> {
    run::main()
}

#[cfg(not(target_os = "linux"))]
fn main() {
    let _ = (Instant::now(), Duration::ZERO);
    eprintln!("shared memory needs Linux");
}
