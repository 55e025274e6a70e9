//! Pool throughput and speed-up, next to CPython's `multiprocessing.Pool` doing the same in the
//! same run (when `python3` is there).
//!
//! `cargo bench --bench pool [-- --tasks N --repeat R --processes P --limit L]`
//!
//! - map of a trivial function (`x * x`) over N integers (default 100,000) with chunksize 1,
//!   and with the default chunksize: tasks/s, timed from the call to the last result (the pool
//!   is started and warmed up before);
//! - a CPU-bound map (counting primes below L, default 3,000,000, in 64 ranges) on P workers
//!   (default 2): the time of the same work in this one process divided by the pool's time,
//!   with chunksize 1 and with the default chunksize. CPython runs the same shape with a limit
//!   20 times smaller (its trial division is that much slower); only its speed-up is compared.
//!   A baseline row does the same work on P threads of this process: on a machine whose CPUs
//!   are busy with other work, it shows the best speed-up the run could get; the pool/threads
//!   rows compare the pool with it, measured side by side.
//!
//! The pool's workers talk to it over shared memory (the default); a second pool of the same
//! size whose workers use Unix socket pairs (`PoolBuilder::shared_memory(false)`) runs the map
//! with chunksize 1 beside it, in the same rounds.
//!
//! Rounds run interleaved (procwire, then CPython); the table shows the median of the rounds
//! and their spread.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use procwire::pool::Pool;
use procwire::process::Function;

fn square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

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

fn count_primes((lo, hi): (u64, u64)) -> u64 {
    (lo..hi).filter(|&n| is_prime(n)).count() as u64
}

static SQUARE: Function<u64, u64> = Function::new("square", square);
static COUNT_PRIMES: Function<(u64, u64), u64> = Function::new("count_primes", count_primes);

const RANGES: u64 = 64;

const PYTHON: &str = r#"
import multiprocessing as mp, sys, time

def square(x):
    return x * x

def is_prime(n):
    if n < 4:
        return n >= 2
    if n % 2 == 0:
        return False
    d = 3
    while d * d <= n:
        if n % d == 0:
            return False
        d += 2
    return True

def count_primes(r):
    lo, hi = r
    return sum(1 for n in range(lo, hi) if is_prime(n))

if __name__ == "__main__":
    n, procs, limit = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    ranges = [(limit * k // 64, limit * (k + 1) // 64) for k in range(64)]
    with mp.Pool(procs) as pool:
        pool.map(square, range(100))
        t = time.perf_counter()
        out = pool.map(square, range(n), chunksize=1)
        chunk1 = n / (time.perf_counter() - t)
        assert out[-1] == (n - 1) ** 2
        t = time.perf_counter()
        out = pool.map(square, range(n))
        default = n / (time.perf_counter() - t)
        assert out[-1] == (n - 1) ** 2
        def single():
            return sum(count_primes(r) for r in ranges)
        def ratio(parallel):
            # single, parallel, parallel, single, as on the Rust side
            times, results = [], []
            for f in (single, parallel, parallel, single):
                t = time.perf_counter()
                results.append(f())
                times.append(time.perf_counter() - t)
            assert len(set(results)) == 1
            return (times[0] + times[3]) / (times[1] + times[2])
        cpu1 = ratio(lambda: sum(pool.map(count_primes, ranges, chunksize=1)))
        cpu_default = ratio(lambda: sum(pool.map(count_primes, ranges)))
    print(chunk1, default, cpu1, cpu_default)
"#;

fn cpython(n: u64, procs: u64, limit: u64) -> Option<Vec<f64>> {
    let out = Command::new("python3")
        .args(["-c", PYTHON, &n.to_string(), &procs.to_string(), &(limit / 20).to_string()])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("python3 failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let v: Vec<f64> =
        String::from_utf8_lossy(&out.stdout).split_whitespace().filter_map(|s| s.parse().ok()).collect();
    (v.len() == 4).then_some(v)
}

fn map_rate(pool: &Pool, n: u64, chunksize: Option<usize>) -> f64 {
    let t = Instant::now();
    let out = match chunksize {
        Some(c) => pool.with_chunksize(c).map(&SQUARE, 0..n),
        None => pool.map(&SQUARE, 0..n),
    }
    .expect("map");
    let rate = n as f64 / t.elapsed().as_secs_f64();
    assert_eq!(out.len() as u64, n);
    assert_eq!(out[out.len() - 1], square(n - 1));
    rate
}

fn ranges(limit: u64) -> Vec<(u64, u64)> {
    (0..RANGES).map(|k| (limit * k / RANGES, limit * (k + 1) / RANGES)).collect()
}

/// Counts the primes on `threads` threads of this process taking the ranges one at a time:
/// the best parallel run the CPUs left to this benchmark allow.
fn on_threads(threads: u64, limit: u64) -> u64 {
    let next = AtomicUsize::new(0);
    let rs = ranges(limit);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut sum = 0;
                    while let Some(&r) = rs.get(next.fetch_add(1, Ordering::Relaxed)) {
                        sum += count_primes(r);
                    }
                    sum
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("thread")).sum()
    })
}

/// One round of the CPU-bound work: the speed-ups over one process of the pool with chunksize
/// 1, with the default chunksize, and of threads, then the threads' time over the pool's for
/// both chunksizes. Each is measured twice, in the order single, pool 1, pool default,
/// threads, threads, pool default, pool 1, single, so that a change in the machine's load
/// during the round weighs on every side alike.
fn cpu_round(pool: &Pool, threads: u64, limit: u64) -> [f64; 5] {
    let mut times = [0.0; 4];
    let mut expected = None;
    for i in [0, 1, 2, 3, 3, 2, 1, 0] {
        let t = Instant::now();
        let n: u64 = match i {
            0 => ranges(limit).into_iter().map(count_primes).sum(),
            1 => pool.with_chunksize(1).map(&COUNT_PRIMES, ranges(limit)).expect("map").iter().sum(),
            2 => pool.map(&COUNT_PRIMES, ranges(limit)).expect("map").iter().sum(),
            _ => on_threads(threads, limit),
        };
        times[i] += t.elapsed().as_secs_f64();
        assert_eq!(*expected.get_or_insert(n), n);
    }
    let [s, p1, pd, t] = times;
    [s / p1, s / pd, s / t, t / p1, t / pd]
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn fmt_rate(r: f64) -> String {
    if r >= 1e6 { format!("{:.2} M/s", r / 1e6) } else { format!("{:.1} k/s", r / 1e3) }
}

fn main() {
    procwire::process::init(&[&SQUARE, &COUNT_PRIMES]);
    let n = arg("--tasks", 100_000);
    let repeat = arg("--repeat", 5).max(1) as usize;
    let procs = arg("--processes", 2).max(1);
    let limit = arg("--limit", 3_000_000);
    let pool = Pool::new(procs as usize).expect("start the pool");
    pool.map(&SQUARE, 0..100).expect("warm-up");
    let sockets: Pool = Pool::builder()
        .processes(procs as usize)
        .shared_memory(false)
        .build()
        .expect("start the socket pool");
    sockets.map(&SQUARE, 0..100).expect("warm-up");
    // Rows: map chunksize 1, map default, primes chunksize 1, primes default, then without a
    // CPython column: primes on threads, pool over threads with chunksize 1 and the default,
    // map chunksize 1 over sockets.
    let mut pw: Vec<Vec<f64>> = vec![Vec::new(); 8];
    let mut py: Vec<Vec<f64>> = vec![Vec::new(); 8];
    for round in 0..repeat {
        eprintln!("round {}/{repeat}", round + 1);
        pw[0].push(map_rate(&pool, n, Some(1)));
        pw[7].push(map_rate(&sockets, n, Some(1)));
        pw[1].push(map_rate(&pool, n, None));
        for (row, x) in pw[2..].iter_mut().zip(cpu_round(&pool, procs, limit)) {
            row.push(x);
        }
        if let Some(v) = cpython(n, procs, limit) {
            for (row, x) in py.iter_mut().zip(v) {
                row.push(x);
            }
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "pool benchmark: {procs} workers, {cpus} CPUs, load average {}, median of {repeat} rounds (min..max)",
        load.split_whitespace().next().unwrap_or("?")
    );
    println!("{:<40} {:>26} {:>26} {:>6}", "workload", "procwire", "CPython mp.Pool", "pw/py");
    let rows = [
        (format!("map x*x, {n} ints, chunksize 1"), true),
        (format!("map x*x, {n} ints, default chunksize"), true),
        (format!("primes, {RANGES} ranges, chunksize 1"), false),
        (format!("primes, {RANGES} ranges, default chunksize"), false),
        (format!("primes, {procs} threads (baseline)"), false),
        ("primes, pool/threads, chunksize 1".to_string(), false),
        ("primes, pool/threads, default".to_string(), false),
        (format!("map x*x, {n} ints, chunksize 1, socket"), true),
    ];
    for (i, (name, is_rate)) in rows.iter().enumerate() {
        let cell = |v: &[f64]| {
            if v.is_empty() {
                return (if i < 4 { "(no python3)" } else { "-" }.to_string(), None);
            }
            let (lo, hi) =
                (v.iter().copied().fold(f64::MAX, f64::min), v.iter().copied().fold(0.0, f64::max));
            let m = median(v);
            let s = if *is_rate {
                format!("{} ({}..{})", fmt_rate(m), fmt_rate(lo), fmt_rate(hi))
            } else {
                format!("{m:.2}x ({lo:.2}..{hi:.2})")
            };
            (s, Some(m))
        };
        let (a, ma) = cell(&pw[i]);
        let (b, mb) = cell(&py[i]);
        let ratio = match (ma, mb) {
            (Some(a), Some(b)) if *is_rate => format!("{:.2}", a / b),
            _ => "-".to_string(),
        };
        println!("{name:<40} {a:>26} {b:>26} {ratio:>6}");
    }
    println!(
        "primes rows: the time of the same work in one process divided by the pool's (CPython: limit {});",
        limit / 20
    );
    println!(
        "the baseline divides it by the time of {procs} threads of one process: what the free CPUs allow;"
    );
    println!("pool/threads: the threads' time divided by the pool's (1.00: the pool is as fast as threads).");
    println!("map chunksize 1, shared memory / socket: {:.2}x (aim >= 2x)", median(&pw[0]) / median(&pw[7]));
}
