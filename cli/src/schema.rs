//! The JSON document of `procwire bench --json`: one [`BenchReport`] object.
//!
//! Units are in the field names: `_per_sec` is per second, `_us` microseconds, `_ms`
//! milliseconds, sizes are bytes and `mb` is 10^6 bytes. A figure that does not apply or could
//! not be computed is `null` (an [`Option`] here). Transports and workloads are the names the
//! command line takes (`unix-abstract`, `pingpong`, ...).
//!
//! Fields may be added in later versions (readers should ignore unknown ones); a field is not
//! removed or changed in meaning without a new major version of procwire-cli.

use serde::{Deserialize, Serialize};

/// Everything a `procwire bench` run measured, and under what conditions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// The version of procwire-cli that ran the benchmark.
    pub version: String,
    /// The machine it ran on.
    pub machine: Machine,
    /// How long each run lasted, in milliseconds (`--duration`).
    pub duration_ms: f64,
    /// How many runs each implementation had in each cell (`--repeat`); figures are their medians.
    pub repeat: u32,
    /// The message sizes, in bytes (`--sizes`).
    pub sizes: Vec<u64>,
    /// The transports measured, in the order they ran.
    pub transports: Vec<Transport>,
    /// The workloads measured.
    pub workloads: Vec<Workload>,
    /// The version of the CPython that ran the `python` figures; `null` without
    /// `--compare-python` (or when no usable Python was found).
    pub python: Option<String>,
    /// One entry per (transport, workload, size), in the order they ran.
    pub cells: Vec<Cell>,
}

/// The machine a benchmark ran on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// The operating system, as Rust names it (`linux`, `macos`, `windows`).
    pub os: String,
    /// The CPU architecture, as Rust names it (`x86_64`, `aarch64`).
    pub arch: String,
    /// The CPUs this process could use.
    pub cpus: u32,
    /// The CPU model, where the OS tells it simply (Linux); else `null`.
    pub cpu: Option<String>,
    /// The 1, 5 and 15 minute load averages when the run started (Linux); else `null`. Above
    /// about 0.5 other work shared the CPUs.
    pub load_average: Option<[f64; 3]>,
}

/// One transport, workload and size, measured for every implementation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// The transport.
    pub transport: Transport,
    /// The workload.
    pub workload: Workload,
    /// The message size in bytes; `null` for [`Workload::Connect`].
    pub size: Option<u64>,
    /// procwire's figures.
    pub procwire: Figures,
    /// The raw baseline's figures: a hand-written loop over the same OS object (4-byte length,
    /// one write per message, `read_exact` on the other side; no authentication).
    pub raw: Figures,
    /// CPython's `multiprocessing.connection`, with `--compare-python`; `null` without it and
    /// where CPython has no counterpart (batched streaming, the in-process transport).
    pub python: Option<Figures>,
    /// procwire's [headline figure](Figures::headline) divided by raw's: above 1 procwire is
    /// faster for rates, below 1 for round trips. `null` if either failed.
    pub ratio_procwire_raw: Option<f64>,
    /// How many times faster procwire is than CPython (rate ratio, or round-trip ratio for
    /// ping-pong); `null` without a python figure.
    pub speedup_vs_python: Option<f64>,
    /// The async face (`procwire::tokio`), with `--impl async` on a socket transport; absent
    /// otherwise.
    #[serde(default, rename = "async", skip_serializing_if = "Option::is_none")]
    pub asynchronous: Option<Figures>,
    /// The async face's [headline figure](Figures::headline) divided by procwire's: above 1
    /// it is faster for rates, below 1 for round trips. Absent without an async figure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_async_procwire: Option<f64>,
}

/// One implementation's figures in a cell: the kind follows the cell's workload, or
/// [`Figures::Failed`]. In JSON, the object's fields tell which (there is no tag).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Figures {
    /// [`Workload::Stream`] and [`Workload::Batched`].
    Stream(StreamFigures),
    /// [`Workload::PingPong`].
    PingPong(PingPongFigures),
    /// [`Workload::Connect`].
    Connect(ConnectFigures),
    /// The runs failed.
    Failed(FailedRuns),
}

impl Figures {
    /// The figure a cell is judged by: messages/s for streaming, the median round trip in µs for
    /// ping-pong (lower is better), connections/s for connect; `None` for a failure.
    pub fn headline(&self) -> Option<f64> {
        match self {
            Figures::Stream(f) => Some(f.msgs_per_sec),
            Figures::PingPong(f) => Some(f.median_us),
            Figures::Connect(f) => Some(f.connections_per_sec),
            Figures::Failed(_) => None,
        }
    }

    /// The headline figure of each run, in the order they ran (empty for a failure).
    pub fn reps(&self) -> &[f64] {
        match self {
            Figures::Stream(f) => &f.reps,
            Figures::PingPong(f) => &f.reps,
            Figures::Connect(f) => &f.reps,
            Figures::Failed(_) => &[],
        }
    }
}

/// One-way streaming figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamFigures {
    /// Messages received per second (median of the runs).
    pub msgs_per_sec: f64,
    /// Payload received, in MB (10^6 bytes) per second: `msgs_per_sec` times the size.
    pub mb_per_sec: f64,
    /// (max - min) / median of the runs' messages/s; `null` with a single run.
    pub spread: Option<f64>,
    /// Messages/s of each run, in the order they ran.
    pub reps: Vec<f64>,
}

/// Ping-pong (round trip) figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PingPongFigures {
    /// The median round trip in microseconds (median over the runs of each run's median).
    pub median_us: f64,
    /// The 99th percentile round trip in microseconds (median over the runs).
    pub p99_us: f64,
    /// Round trips per second (median of the runs).
    pub round_trips_per_sec: f64,
    /// (max - min) / median of the runs' median round trips; `null` with a single run.
    pub spread: Option<f64>,
    /// The median round trip of each run in microseconds, in the order they ran.
    pub reps: Vec<f64>,
}

/// Connect figures: connect, authenticate (raw: a 1-byte reply), close.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConnectFigures {
    /// Connections per second (median of the runs).
    pub connections_per_sec: f64,
    /// (max - min) / median of the runs' connections/s; `null` with a single run.
    pub spread: Option<f64>,
    /// Connections/s of each run, in the order they ran.
    pub reps: Vec<f64>,
}

/// Why an implementation has no figures in a cell. After a failed run, its later runs in the
/// cell are skipped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailedRuns {
    /// What went wrong, as the command printed it.
    pub error: String,
}

/// A transport under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// Unix domain socket at a filesystem path.
    Unix,
    /// Linux abstract Unix socket.
    UnixAbstract,
    /// TCP over 127.0.0.1.
    Tcp,
    /// `procwire::pipe(true)`: a socketpair, one end in each process. On Windows, a named pipe
    /// (`pipe:NAME`) that one process listens on and the other connects to.
    Pipe,
    /// `procwire::pipe(false)`: an OS pipe, one way.
    PipeOneway,
    /// `procwire::dummy::pipe(true)`: the in-process transport, both ends threads of one
    /// worker process (the raw baseline: a byte stream over std `mpsc` channels).
    Inproc,
    /// `shm:PATH`: procwire's shared-memory connection between the two processes, its
    /// handshake on a Unix socket at PATH (the raw baseline: the raw Unix-socket loop over
    /// that path, so its ratio is shared memory against the kernel's socket).
    Shm,
}

impl Transport {
    /// The name on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Unix => "unix",
            Transport::UnixAbstract => "unix-abstract",
            Transport::Tcp => "tcp",
            Transport::Pipe => "pipe",
            Transport::PipeOneway => "pipe-oneway",
            Transport::Inproc => "inproc",
            Transport::Shm => "shm",
        }
    }
}

/// What a cell measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// One-way streaming, one send (one write) per message.
    Stream,
    /// One-way streaming, batched: many sends, one flush.
    Batched,
    /// Round trips of one message.
    #[value(name = "pingpong")]
    #[serde(rename = "pingpong")]
    PingPong,
    /// Connect, authenticate, close.
    Connect,
}

impl Workload {
    /// Every workload, in the order they run.
    pub const ALL: [Workload; 4] =
        [Workload::Stream, Workload::Batched, Workload::PingPong, Workload::Connect];

    /// The name on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Stream => "stream",
            Workload::Batched => "batched",
            Workload::PingPong => "pingpong",
            Workload::Connect => "connect",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each kind of figures is told apart by its fields alone.
    #[test]
    fn figures_are_read_by_their_fields() {
        let read = |s: &str| serde_json::from_str::<Figures>(s).unwrap();
        let stream = read(r#"{"msgs_per_sec": 2.0, "mb_per_sec": 0.5, "spread": null, "reps": [2.0]}"#);
        assert_eq!(stream.headline(), Some(2.0));
        assert!(matches!(stream, Figures::Stream(StreamFigures { spread: None, .. })));
        let ping = read(
            r#"{"median_us": 9.5, "p99_us": 20.0, "round_trips_per_sec": 1e5, "spread": 0.1, "reps": [9, 10]}"#,
        );
        assert_eq!(ping.headline(), Some(9.5));
        assert_eq!(ping.reps(), [9.0, 10.0]);
        let connect = read(r#"{"connections_per_sec": 3000.0, "spread": 0.2, "reps": [1, 2, 3]}"#);
        assert!(matches!(connect, Figures::Connect(_)));
        let failed = read(r#"{"error": "raw stream-recv worker exited"}"#);
        assert_eq!(failed.headline(), None);
        assert!(failed.reps().is_empty());
        assert!(serde_json::from_str::<Figures>(r#"{"spread": 0.1}"#).is_err());
    }

    #[test]
    fn names_are_the_command_line_and_json_names() {
        use clap::ValueEnum;
        for t in Transport::value_variants() {
            assert_eq!(t.to_possible_value().unwrap().get_name(), t.name());
            assert_eq!(serde_json::to_value(t).unwrap(), t.name());
        }
        assert_eq!(Workload::value_variants(), Workload::ALL);
        for w in Workload::ALL {
            assert_eq!(w.to_possible_value().unwrap().get_name(), w.name());
            assert_eq!(serde_json::to_value(w).unwrap(), w.name());
        }
    }
}
