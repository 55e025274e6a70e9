//! `procwire bench --idle`: the CPU time an idle connected pair of processes uses, over a Unix
//! socket and over shared memory, side by side. Both ends wait in a receive for a message that
//! never comes; past its spin window a shared-memory end should sleep on its doorbell as a
//! socket end sleeps in the kernel. The time is read from outside the workers, from Linux's
//! per-thread scheduler statistics (nanoseconds on a CPU, every thread of the process).

use std::time::Duration;

use super::Transport;
use super::runner::Runner;
use crate::Failure;

/// How long both ends have to settle (past their spin windows) before the measurement starts.
const SETTLE: Duration = Duration::from_millis(200);

/// Runs `procwire bench --idle`, measuring each pair for `over`.
pub fn run(mut runner: Runner, over: Duration) -> Result<(), Failure> {
    if !cfg!(target_os = "linux") {
        return Err(Failure::new("--idle reads Linux's scheduler statistics: it runs on Linux only"));
    }
    if over < Duration::from_millis(100) {
        return Err(Failure::new("--idle needs at least 100ms (10s says more)"));
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "An idle connected pair of procwire processes, each end waiting in a receive: the CPU time each \
         end used over {over:?}, {SETTLE:?} after both connected.\nLoad average before the run: {}",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!("{:<10} {:>28} {:>28}", "transport", "listener's side", "client's side");
    for t in [Transport::Unix, Transport::Shm] {
        let (a, b) = runner.idle(t, SETTLE, over, cpu_time).map_err(Failure::new)?;
        let show = |d: Duration| {
            format!(
                "{:.2} ms ({:.3}% of a core)",
                d.as_secs_f64() * 1e3,
                100.0 * d.as_secs_f64() / over.as_secs_f64()
            )
        };
        println!("{:<10} {:>28} {:>28}", t.name(), show(a), show(b));
    }
    Ok(())
}

/// The CPU time process `pid` has used so far: the sum over its threads of the first field of
/// `/proc/PID/task/TID/schedstat` (nanoseconds on a CPU).
fn cpu_time(pid: u32) -> Result<Duration, String> {
    let dir = format!("/proc/{pid}/task");
    let tasks = std::fs::read_dir(&dir).map_err(|e| format!("cannot read {dir}: {e}"))?;
    let mut ns: u64 = 0;
    for task in tasks.flatten() {
        let path = task.path().join("schedstat");
        // A thread may end between the listing and the read: it counts no more.
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let first = text.split_whitespace().next().unwrap_or("");
        ns += first.parse::<u64>().map_err(|_| format!("{}: unexpected content {text:?}", path.display()))?;
    }
    Ok(Duration::from_nanos(ns))
}
