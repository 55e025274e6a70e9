//! Queue throughput: one producer process to one consumer process, small items (integers),
//! next to CPython's `multiprocessing.Queue` doing the same in the same run.
//!
//! `cargo bench --bench queue [-- --items N --repeat R]`. Each workload times the consumer
//! from its first item to its last (process start-up excluded, on both sides), and rounds run
//! interleaved; the table shows the median of the rounds and their spread.

use std::process::Command;
use std::time::{Duration, Instant};

use procwire::process::{Function, Process};
use procwire::queue::Queue;

/// Puts `n` integers, then a `u64::MAX` stop mark.
fn produce((q, n): (Queue<u64>, u64)) -> u64 {
    for i in 0..n {
        q.put(&i).expect("put");
    }
    q.put(&u64::MAX).expect("put");
    n
}

/// Gets until the stop mark; returns items/s from the first item to the last.
fn consume(q: Queue<u64>) -> f64 {
    let first = q.get().expect("get");
    assert_eq!(first, 0);
    let t = Instant::now();
    let mut n = 1u64;
    while q.get().expect("get") != u64::MAX {
        n += 1;
    }
    (n - 1) as f64 / t.elapsed().as_secs_f64()
}

static PRODUCE: Function<(Queue<u64>, u64), u64> = Function::new("produce", produce);
static CONSUME: Function<Queue<u64>, f64> = Function::new("consume", consume);

const PYTHON: &str = r#"
import multiprocessing as mp, sys, time
def produce(q, n):
    for i in range(n):
        q.put(i)
    q.put(-1)
if __name__ == "__main__":
    n = int(sys.argv[1])
    q = mp.Queue()
    p = mp.Process(target=produce, args=(q, n))
    p.start()
    assert q.get() == 0
    t = time.perf_counter()
    k = 1
    while q.get() != -1:
        k += 1
    dt = time.perf_counter() - t
    p.join()
    print((k - 1) / dt)
"#;

const LIMIT: Option<Duration> = Some(Duration::from_secs(600));

/// Child producer, the creator (parent) consumes with its local handle.
fn child_to_parent(n: u64) -> f64 {
    let q: Queue<u64> = Queue::new().expect("queue");
    let mut p = Process::new(&PRODUCE, (q.clone(), n));
    p.start().expect("start producer");
    let rate = consume(q);
    p.result(LIMIT).expect("producer");
    rate
}

/// The parent puts, a child consumes through its connection.
fn parent_to_child(n: u64) -> f64 {
    let q: Queue<u64> = Queue::new().expect("queue");
    let mut c = Process::new(&CONSUME, q.clone());
    c.start().expect("start consumer");
    // The creator serves the queue: it keeps a handle until the consumer is done.
    produce((q.clone(), n));
    let rate = c.result(LIMIT).expect("consumer");
    drop(q);
    rate
}

/// Both ends are children; the parent only serves the queue.
fn child_to_child(n: u64) -> f64 {
    let q: Queue<u64> = Queue::new().expect("queue");
    let mut c = Process::new(&CONSUME, q.clone());
    c.start().expect("start consumer");
    let mut p = Process::new(&PRODUCE, (q.clone(), n));
    p.start().expect("start producer");
    p.result(LIMIT).expect("producer");
    c.result(LIMIT).expect("consumer")
}

fn cpython(n: u64) -> Option<f64> {
    let out = Command::new("python3").args(["-c", PYTHON, &n.to_string()]).output().ok()?;
    if !out.status.success() {
        eprintln!("python3 failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn median(v: &mut [f64]) -> f64 {
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

fn main() {
    procwire::process::init(&[&PRODUCE, &CONSUME]);
    let n = arg("--items", 500_000);
    let repeat = arg("--repeat", 3).max(1) as usize;
    let names = [
        "procwire child -> creator",
        "procwire creator -> child",
        "procwire child -> child",
        "CPython mp.Queue",
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for round in 0..repeat {
        eprintln!("round {}/{repeat}: {n} items per workload", round + 1);
        let only = arg("--only", 0);
        let run = |w: u64| only == 0 || only == w;
        if run(1) {
            rates[0].push(child_to_parent(n));
        }
        if run(2) {
            rates[1].push(parent_to_child(n));
        }
        if run(3) {
            rates[2].push(child_to_child(n));
        }
        if run(4)
            && let Some(r) = cpython(n)
        {
            rates[3].push(r);
        }
    }
    let python = (!rates[3].is_empty()).then(|| median(&mut rates[3].clone()));
    println!(
        "queue throughput, one producer process to one consumer process, {n} integers, median of {repeat}"
    );
    println!("{:<28} {:>14} {:>22} {:>12}", "workload", "items/s", "spread (min..max)", "vs CPython");
    for (name, r) in names.iter().zip(&rates) {
        if r.is_empty() {
            println!("{name:<28} {:>14}", "(python3 not found)");
            continue;
        }
        let mut r = r.clone();
        let m = median(&mut r);
        let spread = format!("{:.0}..{:.0}", r[0], r[r.len() - 1]);
        let ratio = python.map_or("-".to_string(), |p| format!("{:.2}x", m / p));
        println!("{name:<28} {m:>14.0} {spread:>22} {ratio:>12}");
    }
}
