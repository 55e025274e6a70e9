//! The bench's output: plain-text tables for people, the JSON document for programs.

use procwire_cli::schema::{
    self, ConnectFigures, FailedRuns, Figures, PingPongFigures, StreamFigures, Workload,
};

use super::{Cell, Report, Stats};
use crate::units::{micros, si, size};

/// The CPU model, where the OS tells it simply.
fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_string())
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// procwire / raw of the headline figure (round-trip time for ping-pong, else a rate).
fn ratio(c: &Cell) -> Option<f64> {
    match (&c.procwire, &c.raw) {
        (Ok(p), Ok(r)) => Some(p.headline() / r.headline()),
        _ => None,
    }
}

/// async / procwire of the headline figure, in the same sense as [`ratio`].
fn ratio_async(c: &Cell) -> Option<f64> {
    match (&c.procwire, c.asynchronous.as_ref()?) {
        (Ok(p), Ok(a)) => Some(a.headline() / p.headline()),
        _ => None,
    }
}

/// How many times faster procwire is than Python.
fn speedup(c: &Cell) -> Option<f64> {
    match (&c.procwire, c.python.as_ref()?) {
        (Ok(p), Ok(py)) if c.workload == Workload::PingPong => Some(py.headline() / p.headline()),
        (Ok(p), Ok(py)) => Some(p.headline() / py.headline()),
        _ => None,
    }
}

fn figures(c: &Cell, r: &Result<Stats, String>) -> schema::Figures {
    let s = match r {
        Ok(s) => s,
        Err(e) => return Figures::Failed(FailedRuns { error: e.clone() }),
    };
    let spread = s.spread();
    let reps: Vec<f64> = s.reps.iter().map(|x| x.headline()).collect();
    match c.workload {
        Workload::Stream | Workload::Batched => Figures::Stream(StreamFigures {
            msgs_per_sec: s.rate(),
            mb_per_sec: s.rate() * c.size.unwrap_or(0) as f64 / 1e6,
            spread,
            reps,
        }),
        Workload::PingPong => match s.latency() {
            Some((median_us, p99_us)) => Figures::PingPong(PingPongFigures {
                median_us,
                p99_us,
                round_trips_per_sec: s.rate(),
                spread,
                reps,
            }),
            None => Figures::Failed(FailedRuns { error: "no round-trip times were reported".into() }),
        },
        Workload::Connect => Figures::Connect(ConnectFigures { connections_per_sec: s.rate(), spread, reps }),
    }
}

/// The report as the document `--json` prints.
pub fn document(r: &Report) -> schema::BenchReport {
    let finite = |x: Option<f64>| x.filter(|x| x.is_finite());
    let cells = r
        .cells
        .iter()
        .map(|c| schema::Cell {
            transport: c.transport,
            workload: c.workload,
            size: c.size.map(|s| s as u64),
            procwire: figures(c, &c.procwire),
            raw: figures(c, &c.raw),
            python: c.python.as_ref().map(|p| figures(c, p)),
            ratio_procwire_raw: finite(ratio(c)),
            speedup_vs_python: finite(speedup(c)),
            asynchronous: c.asynchronous.as_ref().map(|a| figures(c, a)),
            ratio_async_procwire: finite(ratio_async(c)),
        })
        .collect();
    schema::BenchReport {
        version: env!("CARGO_PKG_VERSION").into(),
        machine: schema::Machine {
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
            cpus: cpus() as u32,
            cpu: cpu_model(),
            load_average: r.load,
        },
        duration_ms: r.duration.as_secs_f64() * 1e3,
        repeat: r.repeat,
        sizes: r.sizes.iter().map(|&s| s as u64).collect(),
        transports: r.transports.clone(),
        workloads: r.workloads.clone(),
        python: r.python.clone(),
        cells,
    }
}

/// Lays out rows under a header: the first `left` columns aligned left, the rest right.
fn table(header: &[&str], rows: &[Vec<String>], left: usize) -> String {
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(cell));
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            let pad = " ".repeat(w - width(cell));
            if i > 0 {
                out.push_str("  ");
            }
            if i < left {
                out.push_str(cell);
                out.push_str(&pad);
            } else {
                out.push_str(&pad);
                out.push_str(cell);
            }
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
        out
    };
    let mut out = line(&mut header.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// The spread of a cell's runs, or a dash when there is none (a single run).
fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "–".into(), |x| format!("({:.0}%)", x * 100.0))
}

fn rate_cell(r: &Result<Stats, String>, unit: &str) -> String {
    match r {
        Ok(s) => format!("{}{unit} {}", si(s.rate()), pct(s.spread())),
        Err(_) => "failed".into(),
    }
}

fn mbps_cell(r: &Result<Stats, String>, size: usize) -> String {
    match r {
        Ok(s) => si(s.rate() * size as f64 / 1e6).trim_end().to_string(),
        Err(_) => String::new(),
    }
}

fn latency_cells(r: &Result<Stats, String>) -> [String; 2] {
    match r.as_ref().ok().and_then(|s| Some((s.latency()?, s.spread()))) {
        Some(((m, p), spread)) => [format!("{} {}", micros(m), pct(spread)), micros(p)],
        None => ["failed".into(), String::new()],
    }
}

/// The async column's cells of a row (`figures` of its stats, then async/pw); blank where
/// it did not run.
fn async_cells<const N: usize>(
    c: &Cell,
    figures: impl Fn(&Result<Stats, String>) -> [String; N],
) -> Vec<String> {
    let mut row = match &c.asynchronous {
        Some(a) => figures(a).to_vec(),
        None => vec![String::new(); N],
    };
    row.push(opt_ratio(ratio_async(c), ""));
    row
}

fn opt_ratio(x: Option<f64>, suffix: &str) -> String {
    x.filter(|x| x.is_finite()).map_or_else(String::new, |x| format!("{x:.2}{suffix}"))
}

/// The report as tables, one per workload.
pub fn tables(r: &Report) -> String {
    let py = r.python.is_some();
    let with_async = r.cells.iter().any(|c| c.asynchronous.is_some());
    let mut out = String::new();
    let mut imps = vec!["procwire", "raw"];
    if py {
        imps.push("python");
    }
    if with_async {
        imps.push("async");
    }
    out.push_str(&format!(
        "procwire bench {}: {} {}, {} CPUs{}{}\n",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH,
        cpus(),
        cpu_model().map_or_else(String::new, |m| format!(" ({m})")),
        r.python.as_ref().map_or_else(String::new, |v| format!(", python {v}")),
    ));
    if let Some([one, five, _]) = r.load {
        out.push_str(&format!(
            "Load average before the run: {one:.2} (1 min), {five:.2} (5 min); over 0.5 means others share the CPUs.\n"
        ));
    }
    if r.repeat == 1 {
        out.push_str(&format!(
            "Every figure is one run of {:?} ({}), each run a fresh sender and receiver process;\n\
             with one run there is no spread to show (–): --repeat 3 or more tells noise from a difference.\n",
            r.duration,
            imps.join(", ")
        ));
    } else {
        out.push_str(&format!(
            "Every figure is the median of {} runs of {:?} each, run interleaved ({}, then in reverse\n\
             order, and so on), each run a fresh sender and receiver process; (n%) is the spread of the\n\
             runs, (max - min) / median.\n",
            r.repeat,
            r.duration,
            imps.join(", ")
        ));
    }

    let of = |w: Workload| r.cells.iter().filter(move |c| c.workload == w);
    let mut section = |title: &str, header: &[&str], rows: Vec<Vec<String>>, left: usize| {
        if !rows.is_empty() {
            out.push('\n');
            out.push_str(title);
            out.push('\n');
            out.push_str(&table(header, &rows, left));
        }
    };

    for (w, title) in [
        (
            Workload::Stream,
            "Streaming, one send per message: messages/s and payload MB/s (pw/raw > 1: procwire is faster)",
        ),
        (
            Workload::Batched,
            "Streaming, batched: procwire set_batching(64 KiB) + one flush; raw BufWriter/BufReader of 64 KiB",
        ),
    ] {
        let with_py = py && w == Workload::Stream;
        let mut header = vec!["transport", "size", "procwire", "MB/s", "raw", "MB/s", "pw/raw"];
        if with_py {
            header.extend(["python", "MB/s", "pw speed-up"]);
        }
        if with_async {
            header.extend(["async", "MB/s", "async/pw"]);
        }
        let rows = of(w)
            .map(|c| {
                let s = c.size.unwrap_or(0);
                let mut row = vec![
                    c.transport.name().to_string(),
                    size(s),
                    rate_cell(&c.procwire, "/s"),
                    mbps_cell(&c.procwire, s),
                    rate_cell(&c.raw, "/s"),
                    mbps_cell(&c.raw, s),
                    opt_ratio(ratio(c), ""),
                ];
                if let (true, Some(p)) = (with_py, &c.python) {
                    row.extend([rate_cell(p, "/s"), mbps_cell(p, s), opt_ratio(speedup(c), "x")]);
                }
                if with_async {
                    row.extend(async_cells(c, |a| [rate_cell(a, "/s"), mbps_cell(a, s)]));
                }
                row
            })
            .collect();
        section(title, &header, rows, 2);
    }

    let mut header = vec!["transport", "size", "procwire", "p99", "raw", "p99", "pw/raw"];
    if py {
        header.extend(["python", "p99", "pw speed-up"]);
    }
    if with_async {
        header.extend(["async", "p99", "async/pw"]);
    }
    let rows = of(Workload::PingPong)
        .map(|c| {
            let mut row = vec![c.transport.name().to_string(), size(c.size.unwrap_or(0))];
            row.extend(latency_cells(&c.procwire));
            row.extend(latency_cells(&c.raw));
            row.push(opt_ratio(ratio(c), ""));
            if let Some(p) = &c.python {
                row.extend(latency_cells(p));
                row.push(opt_ratio(speedup(c), "x"));
            }
            if with_async {
                row.extend(async_cells(c, latency_cells));
            }
            row
        })
        .collect();
    section("Ping-pong: median and p99 round trip (pw/raw < 1: procwire is faster)", &header, rows, 2);

    let mut header = vec!["transport", "procwire (authkey)", "raw (no auth)", "pw/raw"];
    if py {
        header.extend(["python (authkey)", "pw speed-up"]);
    }
    if with_async {
        header.extend(["async (authkey)", "async/pw"]);
    }
    let rows = of(Workload::Connect)
        .map(|c| {
            let mut row = vec![
                c.transport.name().to_string(),
                rate_cell(&c.procwire, "/s"),
                rate_cell(&c.raw, "/s"),
                opt_ratio(ratio(c), ""),
            ];
            if let Some(p) = &c.python {
                row.extend([rate_cell(p, "/s"), opt_ratio(speedup(c), "x")]);
            }
            if with_async {
                row.extend(async_cells(c, |a| [rate_cell(a, "/s")]));
            }
            row
        })
        .collect();
    section(
        "Connect + handshake + close: connections/s (raw: connect, a 1-byte reply, close; no authentication)",
        &header,
        rows,
        1,
    );

    out.push_str(
        "\nraw: a hand-written loop over std sockets: 4-byte big-endian length and payload in one write,\n\
         read_exact of the length, then of the payload. MB/s counts payload bytes (1 MB = 10^6 bytes).\n",
    );
    if with_async {
        out.push_str(
            "async: the same workloads over procwire::tokio (current-thread runtime); async/pw: its\n\
             figure over procwire's (rates: above 1 is faster; round trips: below 1 is faster).\n",
        );
    }
    if py {
        out.push_str(
            "python: CPython's multiprocessing.connection (send_bytes/recv_bytes, Listener/Client with an\n\
             authkey); pw speed-up: how many times faster procwire is (rate ratio, or round-trip ratio).\n",
        );
    }
    let failures: Vec<String> = r
        .cells
        .iter()
        .flat_map(|c| {
            let what = format!(
                "{} {}{}",
                c.transport.name(),
                c.workload.name(),
                c.size.map_or_else(String::new, |s| format!(" {}", size(s)))
            );
            [
                ("procwire", Some(&c.procwire)),
                ("raw", Some(&c.raw)),
                ("python", c.python.as_ref()),
                ("async", c.asynchronous.as_ref()),
            ]
            .into_iter()
            .filter_map(move |(imp, r)| match r {
                Some(Err(e)) => Some(format!("  {what} {imp}: {e}\n")),
                _ => None,
            })
        })
        .collect();
    if !failures.is_empty() {
        out.push_str("\nFailed runs:\n");
        out.extend(failures);
    }
    out
}
