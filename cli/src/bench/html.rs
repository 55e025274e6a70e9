//! `procwire bench --html FILE`: the report as one self-contained HTML page, a chart per
//! workload (every implementation on every transport, over the message sizes).

use std::fmt::Write;

use procwire_cli::schema::{BenchReport, Cell, Figures, Transport, Workload};

use super::svg::{self, Bar, Dash, Point, Series, esc};
use crate::units::{micros, si, size};

/// A colour per transport (the same in every chart).
fn color(t: Transport) -> &'static str {
    match t {
        Transport::Unix => "#1f77b4",
        Transport::UnixAbstract => "#9467bd",
        Transport::Tcp => "#d62728",
        Transport::Pipe => "#2ca02c",
        Transport::PipeOneway => "#8c564b",
        Transport::Inproc => "#ff7f0e",
        Transport::Shm => "#17becf",
    }
}

/// How many implementations a cell can have.
const IMPLEMENTATIONS: usize = 4;

/// The implementations of a cell: name, how it is drawn (line, bar opacity), its figures.
fn implementations(c: &Cell) -> [(&'static str, Dash, f64, Option<&Figures>); IMPLEMENTATIONS] {
    [
        ("procwire", Dash::Solid, 1.0, Some(&c.procwire)),
        ("async", Dash::LongShort, 0.75, c.asynchronous.as_ref()),
        ("raw", Dash::Dashed, 0.55, Some(&c.raw)),
        ("python", Dash::Dotted, 0.25, c.python.as_ref()),
    ]
}

/// What a chart shows of a workload: its title, the y axis, and the figure plotted.
fn axis(w: Workload) -> (&'static str, &'static str) {
    match w {
        Workload::Stream => ("Streaming, one send per message", "messages/s (log scale; higher is faster)"),
        Workload::Batched => {
            ("Streaming, batched (64 KiB, one flush)", "messages/s (log scale; higher is faster)")
        }
        Workload::PingPong => ("Ping-pong round trips", "median round trip, µs (log scale; lower is faster)"),
        Workload::Connect => ("Connect + handshake + close", "connections/s (higher is faster)"),
    }
}

/// A tooltip: what, where, the figures and their spread.
fn note(c: &Cell, imp: &str, f: &Figures) -> String {
    let at = c.size.map_or_else(String::new, |s| format!(" {}", size(s as usize)));
    let spread = |s: Option<f64>| s.map_or_else(|| "one run".into(), |s| format!("spread {:.0}%", s * 100.0));
    let figures = match f {
        Figures::Stream(f) => {
            format!("{}msgs/s, {}MB/s, {}", si(f.msgs_per_sec), si(f.mb_per_sec), spread(f.spread))
        }
        Figures::PingPong(f) => {
            format!("median {}, p99 {}, {}", micros(f.median_us), micros(f.p99_us), spread(f.spread))
        }
        Figures::Connect(f) => format!("{}connections/s, {}", si(f.connections_per_sec), spread(f.spread)),
        Figures::Failed(e) => format!("failed: {}", e.error),
    };
    format!("{}{at} {imp}: {figures}", c.transport.name())
}

/// The chart of a workload measured over message sizes: a line per transport and
/// implementation.
fn sized_chart(r: &BenchReport, w: Workload, title: &str, y: &str) -> String {
    let mut sizes: Vec<u64> = r.cells.iter().filter(|c| c.workload == w).filter_map(|c| c.size).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let labels: Vec<String> = sizes.iter().map(|&s| size(s as usize)).collect();
    let mut series: Vec<Series> = Vec::new();
    for &t in &r.transports {
        let cells: Vec<&Cell> = r.cells.iter().filter(|c| c.workload == w && c.transport == t).collect();
        for i in 0..IMPLEMENTATIONS {
            let mut name = "";
            let mut dash = Dash::Solid;
            let mut points = Vec::new();
            for c in &cells {
                let (imp, d, _, f) = implementations(c)[i];
                let (Some(f), Some(s)) = (f, c.size) else { continue };
                (name, dash) = (imp, d);
                let Some(y) = f.headline() else { continue };
                let reps = f.reps();
                let lo = reps.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = reps.iter().copied().fold(0.0, f64::max);
                let x = sizes.binary_search(&s).unwrap_or(0);
                points.push(Point { x, y, lo, hi, note: note(c, imp, f) });
            }
            if !name.is_empty() {
                series.push(Series { name: format!("{} {name}", t.name()), color: color(t), dash, points });
            }
        }
    }
    svg::lines(title, &labels, "message size", y, &series)
}

/// The connect chart: a group of bars per transport.
fn connect_chart(r: &BenchReport, title: &str, y: &str) -> String {
    let groups: Vec<(String, Vec<Bar>)> = r
        .cells
        .iter()
        .filter(|c| c.workload == Workload::Connect)
        .map(|c| {
            let bars = implementations(c)
                .into_iter()
                .filter_map(|(imp, _, opacity, f)| {
                    let f = f?;
                    Some(Bar {
                        label: imp,
                        value: f.headline().unwrap_or(0.0),
                        color: color(c.transport),
                        opacity,
                        note: note(c, imp, f),
                    })
                })
                .collect();
            (c.transport.name().to_string(), bars)
        })
        .collect();
    svg::bars(title, &groups, "transport", y)
}

/// The whole page.
pub fn page(r: &BenchReport) -> String {
    let m = &r.machine;
    let mut out = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>procwire bench</title>\n\
         <style>body{font-family:sans-serif;max-width:900px;margin:2em auto;padding:0 1em;color:#222}\
         h2{margin-top:2em;font-size:1.2em}p{line-height:1.4}</style>\n</head>\n<body>\n",
    );
    let _ = writeln!(out, "<h1>procwire bench {}</h1>", esc(&r.version));
    let _ = write!(
        out,
        "<p>{} {}, {} CPUs{}{}",
        esc(&m.os),
        esc(&m.arch),
        m.cpus,
        m.cpu.as_ref().map_or_else(String::new, |c| format!(" ({})", esc(c))),
        r.python.as_ref().map_or_else(String::new, |v| format!(", python {}", esc(v))),
    );
    if let Some([one, five, _]) = m.load_average {
        let _ = write!(out, "; load average before the run {one:.2} (1 min), {five:.2} (5 min)");
    }
    let runs = if r.repeat == 1 { "one run".to_string() } else { format!("the median of {} runs", r.repeat) };
    let _ = writeln!(
        out,
        ".</p>\n<p>Every point is {runs} of {} ms, each a fresh sender and receiver process; its \
         whisker spans the runs. Solid lines are procwire, dashed the raw baseline (a hand-written \
         loop over the same OS object: 4-byte length, one write per message, no authentication), \
         dotted CPython's multiprocessing.connection. Hover over a point for its figures.</p>",
        r.duration_ms
    );
    for &w in &r.workloads {
        if !r.cells.iter().any(|c| c.workload == w) {
            continue;
        }
        let (title, y) = axis(w);
        let chart =
            if w == Workload::Connect { connect_chart(r, title, y) } else { sized_chart(r, w, title, y) };
        let _ = writeln!(out, "<section>\n<h2>{}</h2>\n{chart}\n</section>", esc(title));
    }
    let failures: Vec<String> = r
        .cells
        .iter()
        .flat_map(|c| implementations(c).map(move |(imp, _, _, f)| (c, imp, f)))
        .filter_map(|(c, imp, f)| match f {
            Some(f @ Figures::Failed(_)) => Some(format!("<li>{}</li>", esc(&note(c, imp, f)))),
            _ => None,
        })
        .collect();
    if !failures.is_empty() {
        let _ = writeln!(out, "<h2>Failed runs</h2>\n<ul>\n{}\n</ul>", failures.join("\n"));
    }
    out.push_str("</body>\n</html>\n");
    out
}
