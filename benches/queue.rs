//! Queue throughput: one producer process to one consumer process, small items (integers),
//! next to CPython's `multiprocessing.Queue` doing the same in the same run. Each procwire
//! workload runs twice, its children's handles over shared memory (the default) and over the
//! queue's Unix socket (`QueueBuilder::shared_memory(false)`).
//!
//! `cargo bench --bench queue [-- --items N --repeat R]`. Each workload times the consumer
//! from its first item to its last (process start-up excluded, on both sides), and rounds run
//! interleaved; the table shows the median of the rounds and their spread.
//!
//! `cargo bench --bench queue -- --hostile [--hello-mib M] [--joins N] [--hello-version V]`
//! instead loads a queue server in a child process with a hostile keyed client: one HELLO of
//! M MiB (default 8) whose `acks` is an array of that many one-byte items, then (against a
//! fresh server) N JOINs (default 10M) while another client measures its QSIZE and task_done
//! latency. It prints the server's peak RSS growth (VmHWM) for each.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use procwire::process::{Channel, ChannelFunction, Function, Process};
use procwire::queue::{JoinableQueue, Queue, QueueBuilder};
use procwire::{AuthKey, Connection};

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
static SERVE: ChannelFunction<()> = ChannelFunction::new("serve", serve);

/// Serves a joinable queue with one unfinished task; sends its address and key, then serves
/// until the parent closes the channel.
fn serve(mut ch: Connection, (): ()) {
    let q: JoinableQueue<u64> = JoinableQueue::new().expect("queue");
    q.put(&1).expect("put");
    ch.send(&(q.address().to_string(), q.authkey().as_bytes().to_vec())).expect("send");
    let _ = ch.recv::<()>();
}

/// The peak resident set of `pid` in bytes (Linux; 0 elsewhere).
fn vm_hwm(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb << 10)
}

fn hostile_server() -> (Channel, procwire::Address, AuthKey) {
    let mut ch = procwire::process::start(&SERVE, ()).expect("start server");
    let (address, key): (String, Vec<u8>) = ch.recv().expect("address");
    (ch, address.parse().expect("address"), AuthKey::new(key))
}

/// A raw keyed client that has said HELLO (the reply's opcode is returned too).
fn raw_client(address: &procwire::Address, key: &AuthKey, hello: &[u8]) -> (Connection, Option<u8>) {
    let mut c = procwire::Client::builder().authkey(key.clone()).connect(address).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(60)));
    let _ = c.send_bytes(hello);
    let reply = c.recv_bytes().ok().and_then(|r| r.first().copied());
    (c, reply)
}

/// `HELLO {"version": v, "acks": acks}` with `acks` already CBOR.
fn hello(version: u8, acks: &[u8]) -> Vec<u8> {
    let mut h = vec![0x00, 0xa2, 0x67];
    h.extend_from_slice(b"version");
    h.extend_from_slice(&[version, 0x64]);
    h.extend_from_slice(b"acks");
    h.extend_from_slice(acks);
    h
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

fn hostile() {
    let version = arg("--hello-version", 3) as u8;
    // One HELLO whose acks is an array of one-byte items.
    let size = arg("--hello-mib", 8) << 20;
    let n = size - 32;
    let mut acks = vec![0x9b];
    acks.extend_from_slice(&n.to_be_bytes());
    acks.resize(acks.len() + n as usize, 0);
    let frame = hello(version, &acks);
    drop(acks);
    let (ch, address, key) = hostile_server();
    let before = vm_hwm(ch.pid());
    let t = Instant::now();
    let (_c, reply) = raw_client(&address, &key, &frame);
    let answered = t.elapsed();
    std::thread::sleep(Duration::from_millis(200));
    let grew = vm_hwm(ch.pid()).saturating_sub(before);
    println!(
        "HELLO of {:.1} MiB, acks of {n} items: reply {reply:02x?} after {answered:.2?}; server peak RSS +{:.1} MiB ({:.1}x the bytes sent)",
        mib(frame.len() as u64),
        mib(grew),
        grew as f64 / frame.len() as f64
    );
    drop(frame);
    drop(ch);

    // JOIN flood against a fresh server with one unfinished task.
    let joins = arg("--joins", 10_000_000);
    let (ch, address, key) = hostile_server();
    let probe: JoinableQueue<u64> = JoinableQueue::connect(&address, key.clone()).expect("probe");
    probe.qsize().expect("qsize");
    let before = vm_hwm(ch.pid());
    let (mut c, reply) = raw_client(&address, &key, &hello(version, &[0xf6]));
    assert_eq!(reply, Some(0x80), "INFO");
    let flooding = AtomicBool::new(true);
    let (sent_in, worst_qsize, task_done, qsize_after) = std::thread::scope(|s| {
        let flooder = s.spawn(|| {
            let t = Instant::now();
            c.set_batching(Some(procwire::connection::DEFAULT_BATCH));
            for _ in 0..joins {
                c.send_bytes(&[0x0b]).expect("JOIN");
            }
            c.flush().expect("flush");
            flooding.store(false, Ordering::Relaxed);
            t.elapsed()
        });
        let mut worst = Duration::ZERO;
        while flooding.load(Ordering::Relaxed) {
            let t = Instant::now();
            probe.qsize().expect("qsize");
            worst = worst.max(t.elapsed());
            std::thread::sleep(Duration::from_millis(10));
        }
        let sent_in = flooder.join().expect("flooder");
        // The server may still be reading the JOINs: a QSIZE answered means it has read them.
        let t = Instant::now();
        probe.qsize().expect("qsize");
        worst = worst.max(t.elapsed());
        let t = Instant::now();
        probe.task_done().expect("task_done");
        let task_done = t.elapsed();
        let t = Instant::now();
        probe.qsize().expect("qsize");
        (sent_in, worst, task_done, t.elapsed())
    });
    // The flooder reads its answers: every JOIN must be answered.
    let mut answered = 0u64;
    let t = Instant::now();
    while answered < joins {
        let Ok(f) = c.recv_bytes() else { break };
        if f.first() == Some(&0x8b) {
            answered += joined_count(&f[1..]);
        }
    }
    let read_in = t.elapsed();
    std::thread::sleep(Duration::from_millis(200));
    let grew = vm_hwm(ch.pid()).saturating_sub(before);
    println!(
        "{joins} JOINs ({:.1} MiB) sent in {sent_in:.2?}: another client's worst QSIZE during the flood {worst_qsize:.2?}, its task_done {task_done:.2?}, QSIZE right after {qsize_after:.2?}; {answered} JOINs answered (read in {read_in:.2?}); server peak RSS +{:.1} MiB ({:.1}x the bytes sent)",
        mib(joins * 5),
        mib(grew),
        grew as f64 / (joins * 5) as f64
    );
}

/// How many JOINs a JOINED body answers: none (one), or a CBOR unsigned integer.
fn joined_count(body: &[u8]) -> u64 {
    match body {
        [] => 1,
        [b] if *b <= 23 => *b as u64,
        [0x18, b] => *b as u64,
        [0x19, a, b] => u16::from_be_bytes([*a, *b]) as u64,
        [0x1a, rest @ ..] => rest.try_into().map_or(0, |b: [u8; 4]| u32::from_be_bytes(b) as u64),
        [0x1b, rest @ ..] => rest.try_into().map_or(0, u64::from_be_bytes),
        _ => 0,
    }
}

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

/// A workload: `n` items through a queue whose children's handles use shared memory or not;
/// the consumer's items/s.
type Workload = fn(u64, bool) -> f64;

fn queue(shared_memory: bool) -> Queue<u64> {
    QueueBuilder::new().shared_memory(shared_memory).build().expect("queue")
}

/// Child producer, the creator (parent) consumes with its local handle.
fn child_to_parent(n: u64, shared_memory: bool) -> f64 {
    let q = queue(shared_memory);
    let mut p = Process::new(&PRODUCE, (q.clone(), n));
    p.start().expect("start producer");
    let rate = consume(q);
    p.result().expect("producer");
    rate
}

/// The parent puts, a child consumes through its connection.
fn parent_to_child(n: u64, shared_memory: bool) -> f64 {
    let q = queue(shared_memory);
    let mut c = Process::new(&CONSUME, q.clone());
    c.start().expect("start consumer");
    // The creator serves the queue: it keeps a handle until the consumer is done.
    produce((q.clone(), n));
    let rate = c.result().expect("consumer");
    drop(q);
    rate
}

/// Both ends are children; the parent only serves the queue.
fn child_to_child(n: u64, shared_memory: bool) -> f64 {
    let q = queue(shared_memory);
    let mut c = Process::new(&CONSUME, q.clone());
    c.start().expect("start consumer");
    let mut p = Process::new(&PRODUCE, (q.clone(), n));
    p.start().expect("start producer");
    p.result().expect("producer");
    c.result().expect("consumer")
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
    procwire::process::init(&[&PRODUCE, &CONSUME, &SERVE]);
    if std::env::args().any(|a| a == "--hostile") {
        hostile();
        return;
    }
    let n = arg("--items", 500_000);
    let repeat = arg("--repeat", 3).max(1) as usize;
    let workloads: [(&str, Workload); 3] = [
        ("child -> creator", child_to_parent),
        ("creator -> child", parent_to_child),
        ("child -> child", child_to_child),
    ];
    let mut names: Vec<String> = Vec::new();
    for (name, _) in &workloads {
        names.push(format!("procwire {name}, shm"));
        names.push(format!("procwire {name}, socket"));
    }
    names.push("CPython mp.Queue".into());
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let only = arg("--only", 0);
    for round in 0..repeat {
        eprintln!("round {}/{repeat}: {n} items per workload", round + 1);
        for (w, (_, f)) in workloads.iter().enumerate() {
            if only == 0 || only == w as u64 + 1 {
                rates[2 * w].push(f(n, true));
                rates[2 * w + 1].push(f(n, false));
            }
        }
        if (only == 0 || only == 4)
            && let Some(r) = cpython(n)
        {
            rates[6].push(r);
        }
    }
    let python = (!rates[6].is_empty()).then(|| median(&mut rates[6].clone()));
    println!(
        "queue throughput, one producer process to one consumer process, {n} integers, median of {repeat}"
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average {}", load.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    println!(
        "{:<36} {:>14} {:>22} {:>12} {:>10}",
        "workload", "items/s", "spread (min..max)", "vs CPython", "shm/socket"
    );
    let medians: Vec<Option<f64>> =
        rates.iter().map(|r| (!r.is_empty()).then(|| median(&mut r.clone()))).collect();
    for (i, (name, r)) in names.iter().zip(&rates).enumerate() {
        let Some(m) = medians[i] else {
            println!("{name:<36} {:>14}", "(not run)");
            continue;
        };
        let mut r = r.clone();
        r.sort_by(f64::total_cmp);
        let spread = format!("{:.0}..{:.0}", r[0], r[r.len() - 1]);
        let ratio = python.map_or("-".to_string(), |p| format!("{:.2}x", m / p));
        let shm = match (i < 6 && i % 2 == 0, medians.get(i + 1).copied().flatten()) {
            (true, Some(s)) => format!("{:.2}x", m / s),
            _ => "-".to_string(),
        };
        println!("{name:<36} {m:>14.0} {spread:>22} {ratio:>12} {shm:>10}");
    }
}
