//! `procwire bench`: every transport, every message size, four workloads, each beside a
//! hand-written raw baseline (and optionally CPython) measured in the same run.
//!
//! Each run is two fresh worker processes (this binary started again, or `python3`): one
//! sends or echoes, the other receives or times round trips. A cell (transport, workload,
//! size) runs its implementations interleaved, `--repeat` times, in alternating order
//! (procwire, raw and python if compared, then the same in reverse order, ...), and reports
//! the median of the repetitions and their spread, (max - min) / median.

mod encrypted;
mod html;
mod idle;
mod report;
mod runner;
mod svg;
pub mod worker;

use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
pub use procwire_cli::schema::{Transport, Workload};

use crate::Failure;
use crate::units::{parse_duration, parse_sizes};
use worker::{Outcome, Role};

/// Options of `procwire bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Message sizes, comma-separated, with k/m suffixes (KiB, MiB).
    #[arg(long, default_value = "16,1k,64k,1m", value_name = "LIST")]
    sizes: String,
    /// Time per run of each cell (e.g. 50ms, 1s).
    #[arg(long, default_value = "150ms", value_parser = parse_duration)]
    duration: Duration,
    /// Transports to measure, comma-separated (default: all this platform has).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "LIST")]
    transports: Vec<Transport>,
    /// Workloads to measure, comma-separated (default: all).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "LIST")]
    workloads: Vec<Workload>,
    /// Repetitions of every cell; the median is reported (at least 3 for a spread that means something).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    repeat: u32,
    /// Also run CPython's multiprocessing.connection on the same workloads (needs python3).
    #[arg(long)]
    compare_python: bool,
    /// Also measure these implementations beside procwire and raw: `async` (the same workloads
    /// over `procwire::tokio` on a current-thread runtime; Unix sockets and TCP only).
    #[arg(long = "impl", value_enum, value_delimiter = ',', value_name = "LIST")]
    also: Vec<Extra>,
    /// The Python interpreter for --compare-python.
    #[arg(long, default_value = "python3", value_name = "PATH")]
    python: String,
    /// The spin window of shared-memory connections (`Connection::set_spin_window`), to
    /// choose one by measurement (default: procwire's).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    shm_spin: Option<Duration>,
    /// The ring size of shared-memory connections (`shm_ring_size` on both builders; a power
    /// of two, with k/m suffixes), to choose one by measurement (default: procwire's).
    #[arg(long, value_parser = crate::units::parse_size, value_name = "SIZE")]
    shm_ring: Option<usize>,
    /// Print the results as JSON instead of tables (the schema: the procwire_cli::schema docs).
    #[arg(long)]
    json: bool,
    /// Also write the results as an HTML page of charts, one per workload, to FILE (a
    /// self-contained page: it fetches nothing).
    #[arg(long, value_name = "FILE")]
    html: Option<std::path::PathBuf>,
    /// Instead of the transport cells: encrypted procwire beside rustls TLS 1.3 and plaintext
    /// procwire over loopback TCP (streaming 64 KiB and 1 MiB, batched 16 B, connects, or those
    /// of --workloads), as same-run ratios.
    #[arg(long)]
    encrypted: bool,
    /// Instead of the transport cells: the CPU time an idle connected pair of processes uses
    /// over DURATION (e.g. 10s) once past its spin window, over a Unix socket and over shared
    /// memory, side by side (Linux).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    idle: Option<Duration>,
}

/// Every transport this platform benchmarks.
fn available() -> Vec<Transport> {
    if cfg!(target_os = "linux") {
        vec![
            Transport::Unix,
            Transport::UnixAbstract,
            Transport::Tcp,
            Transport::Pipe,
            Transport::PipeOneway,
            Transport::Inproc,
            Transport::Shm,
        ]
    } else if cfg!(unix) {
        vec![
            Transport::Unix,
            Transport::Tcp,
            Transport::Pipe,
            Transport::PipeOneway,
            Transport::Inproc,
            Transport::Shm,
        ]
    } else {
        vec![Transport::Pipe, Transport::Tcp, Transport::Inproc]
    }
}

/// Whether `t` is reached through an address (listen and connect) rather than an inherited
/// pipe end: sockets, and named pipes on Windows (where connections are not handed to children).
pub fn by_address(t: Transport) -> bool {
    match t {
        Transport::Unix | Transport::UnixAbstract | Transport::Tcp | Transport::Shm => true,
        Transport::Pipe => cfg!(windows),
        Transport::PipeOneway | Transport::Inproc => false,
    }
}

/// Whether `w` makes sense on `t`: no round trips on a one-way pipe, connections only on sockets.
fn supports(t: Transport, w: Workload) -> bool {
    match w {
        Workload::Stream | Workload::Batched => true,
        Workload::PingPong => t != Transport::PipeOneway,
        Workload::Connect => by_address(t),
    }
}

/// The passive role of `w` (listens, or gets the first pipe end) and the active one.
fn roles(w: Workload) -> (Role, Role) {
    match w {
        Workload::Stream => (Role::StreamRecv, Role::StreamSend),
        Workload::Batched => (Role::BatchedRecv, Role::BatchedSend),
        Workload::PingPong => (Role::Echo, Role::Ping),
        Workload::Connect => (Role::Accept, Role::Connect),
    }
}

/// Implementations `--impl` adds to procwire and raw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Extra {
    /// `procwire::tokio`.
    Async,
}

/// Who runs a workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Impl {
    Procwire,
    Raw,
    Python,
    Async,
}

impl Impl {
    pub fn name(self) -> &'static str {
        match self {
            Impl::Procwire => "procwire",
            Impl::Raw => "raw",
            Impl::Python => "python",
            Impl::Async => "async",
        }
    }
}

/// One repetition's figures.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Messages, round trips or connections per second.
    pub rate: f64,
    /// Ping-pong: median and 99th percentile round trip in µs.
    pub latency: Option<(f64, f64)>,
}

impl Sample {
    fn of(w: Workload, o: &Outcome) -> Sample {
        let rate = o.count as f64 / o.secs;
        let latency = match (w, o.median_us, o.p99_us) {
            (Workload::PingPong, Some(m), Some(p)) => Some((m, p)),
            _ => None,
        };
        Sample { rate, latency }
    }

    /// The figure a cell is judged by: the median round trip for ping-pong, else the rate.
    fn headline(&self) -> f64 {
        self.latency.map_or(self.rate, |(m, _)| m)
    }
}

/// The repetitions of one implementation in one cell, or why they failed.
#[derive(Clone, Debug)]
pub struct Stats {
    pub reps: Vec<Sample>,
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

impl Stats {
    fn of(&self, f: impl Fn(&Sample) -> f64) -> Vec<f64> {
        self.reps.iter().map(f).collect()
    }

    /// Median of the headline figure.
    pub fn headline(&self) -> f64 {
        median(&self.of(Sample::headline))
    }

    /// Median rate.
    pub fn rate(&self) -> f64 {
        median(&self.of(|s| s.rate))
    }

    /// Medians of the round-trip median and p99.
    pub fn latency(&self) -> Option<(f64, f64)> {
        let m: Vec<f64> = self.reps.iter().filter_map(|s| s.latency.map(|l| l.0)).collect();
        let p: Vec<f64> = self.reps.iter().filter_map(|s| s.latency.map(|l| l.1)).collect();
        (!m.is_empty()).then(|| (median(&m), median(&p)))
    }

    /// (max - min) / median of the headline figure; none from a single repetition, which has
    /// no spread to show.
    pub fn spread(&self) -> Option<f64> {
        let v = self.of(Sample::headline);
        let (lo, hi) =
            v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        Some((hi - lo) / median(&v)).filter(|s| v.len() > 1 && s.is_finite())
    }
}

/// A cell's results.
#[derive(Debug)]
pub struct Cell {
    pub transport: Transport,
    pub workload: Workload,
    /// Message size; none for connect.
    pub size: Option<usize>,
    pub procwire: Result<Stats, String>,
    pub raw: Result<Stats, String>,
    /// None when Python is not compared (or cannot run this workload).
    pub python: Option<Result<Stats, String>>,
    /// None without `--impl async` (or on a transport it does not serve).
    pub asynchronous: Option<Result<Stats, String>>,
}

/// Everything a bench run found, and under what conditions.
#[derive(Debug)]
pub struct Report {
    pub duration: Duration,
    pub repeat: u32,
    pub sizes: Vec<usize>,
    pub transports: Vec<Transport>,
    pub workloads: Vec<Workload>,
    pub python: Option<String>,
    /// The 1, 5 and 15 minute load averages when the run started (Linux), to tell a busy machine.
    pub load: Option<[f64; 3]>,
    pub cells: Vec<Cell>,
}

/// The system's load averages, where the OS tells them simply.
fn load_average() -> Option<[f64; 3]> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = s.split_whitespace().map(|x| x.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// The version of `python` if it can run multiprocessing.connection.
fn python_version(python: &str) -> Result<String, String> {
    let out = std::process::Command::new(python)
        .args(["-c", "import sys, multiprocessing.connection; print(sys.version.split()[0])"])
        .output()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{python} cannot import multiprocessing.connection"));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Runs `procwire bench`.
pub fn run(args: &BenchArgs) -> Result<(), Failure> {
    if args.encrypted {
        return encrypted::run(args.duration, args.repeat, &args.workloads);
    }
    if let Some(over) = args.idle {
        let runner =
            runner::Runner::new(args.python.clone(), args.shm_spin, args.shm_ring).map_err(Failure::new)?;
        return idle::run(runner, over);
    }
    let sizes = parse_sizes(&args.sizes).map_err(Failure::new)?;
    if let Some(&big) = sizes.iter().find(|&&s| s as u64 > procwire::connection::DEFAULT_MAX_MESSAGE_SIZE) {
        return Err(Failure::new(format!("size {big} is over the 64 MiB message limit")));
    }
    if args.duration < Duration::from_millis(1) {
        return Err(Failure::new("--duration must be at least 1ms"));
    }
    let available = available();
    let transports = if args.transports.is_empty() { available.clone() } else { args.transports.clone() };
    if let Some(t) = transports.iter().find(|t| !available.contains(t)) {
        return Err(Failure::new(format!("transport {} is not available on this platform", t.name())));
    }
    let workloads = if args.workloads.is_empty() { Workload::ALL.to_vec() } else { args.workloads.clone() };
    let python = if args.compare_python {
        match python_version(&args.python) {
            Ok(v) => Some(v),
            Err(e) => {
                eprintln!("procwire bench: no python column: {e}");
                None
            }
        }
    } else {
        None
    };

    // The plan: (transport, workload, size) cells in the order they run.
    let mut plan = Vec::new();
    for &t in &transports {
        for &w in workloads.iter().filter(|&&w| supports(t, w)) {
            if w == Workload::Connect {
                plan.push((t, w, None));
            } else {
                plan.extend(sizes.iter().map(|&s| (t, w, Some(s))));
            }
        }
    }
    let imps_of = |t: Transport, w: Workload| {
        let mut v = vec![Impl::Procwire, Impl::Raw];
        // CPython has no batched sender: its column would repeat the streaming one; nor an
        // in-process or a shared-memory Connection.
        if python.is_some() && w != Workload::Batched && !matches!(t, Transport::Inproc | Transport::Shm) {
            v.push(Impl::Python);
        }
        if args.also.contains(&Extra::Async)
            && matches!(t, Transport::Unix | Transport::UnixAbstract | Transport::Tcp)
        {
            v.push(Impl::Async);
        }
        v
    };
    let total: u64 = plan.iter().map(|&(t, w, _)| imps_of(t, w).len() as u64 * u64::from(args.repeat)).sum();

    let load = load_average();
    let mut runner =
        runner::Runner::new(args.python.clone(), args.shm_spin, args.shm_ring).map_err(Failure::new)?;
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} runs, about {eta} left  {msg}")
            .map_err(|e| Failure::new(e.to_string()))?
            .progress_chars("=> "),
    );
    let mut cells = Vec::new();
    for (t, w, size) in plan {
        let imps = imps_of(t, w);
        let mut results: Vec<Result<Vec<Sample>, String>> = vec![Ok(Vec::new()); imps.len()];
        for rep in 1..=args.repeat {
            // Every other repetition runs them in reverse (procwire, raw, raw, procwire, ...), so
            // that none always goes first after the previous cell.
            let order: Vec<usize> =
                if rep % 2 == 1 { (0..imps.len()).collect() } else { (0..imps.len()).rev().collect() };
            for i in order {
                let imp = imps[i];
                let what = size.map_or(String::new(), |s| format!(" {}", crate::units::size(s)));
                bar.set_message(format!(
                    "{} {}{what}: {} ({rep}/{})",
                    t.name(),
                    w.name(),
                    imp.name(),
                    args.repeat
                ));
                // After a failure, later repetitions of the same implementation are skipped.
                if let Ok(samples) = &mut results[i] {
                    match runner.run(imp, t, w, size.unwrap_or(0), args.duration) {
                        Ok(o) => samples.push(Sample::of(w, &o)),
                        Err(e) => {
                            bar.suspend(|| eprintln!("procwire bench: {} {}: {e}", t.name(), w.name()));
                            results[i] = Err(e);
                        }
                    }
                }
                bar.inc(1);
            }
        }
        let mut stats: Vec<_> =
            imps.into_iter().zip(results.into_iter().map(|r| r.map(|reps| Stats { reps }))).collect();
        let mut take =
            |imp: Impl| stats.iter().position(|(i, _)| *i == imp).map(|at| stats.swap_remove(at).1);
        let (Some(procwire), Some(raw)) = (take(Impl::Procwire), take(Impl::Raw)) else {
            unreachable!("procwire and raw always run")
        };
        let (python, asynchronous) = (take(Impl::Python), take(Impl::Async));
        cells.push(Cell { transport: t, workload: w, size, procwire, raw, python, asynchronous });
    }
    bar.finish_and_clear();

    let failed = cells.iter().any(|c| {
        c.procwire.is_err()
            || c.raw.is_err()
            || c.python.as_ref().is_some_and(|p| p.is_err())
            || c.asynchronous.as_ref().is_some_and(|p| p.is_err())
    });
    let rep = Report {
        duration: args.duration,
        repeat: args.repeat,
        sizes,
        transports,
        workloads,
        python,
        load,
        cells,
    };
    let doc = report::document(&rep);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&doc).map_err(|e| Failure::new(e.to_string()))?);
    } else {
        print!("{}", report::tables(&rep));
    }
    if let Some(path) = &args.html {
        std::fs::write(path, html::page(&doc))
            .map_err(|e| Failure::new(format!("cannot write {}: {e}", path.display())))?;
        eprintln!("procwire bench: charts written to {}", path.display());
    }
    if failed {
        return Err(Failure::new("some runs failed (see above)"));
    }
    Ok(())
}
