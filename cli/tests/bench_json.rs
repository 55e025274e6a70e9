//! `procwire bench` in CI mode: a short run whose JSON is checked for every transport,
//! workload and field (not for speed, which a shared CI machine cannot promise).

use std::process::{Command, Output};

use procwire_cli::schema::{BenchReport, Figures};
use serde_json::Value;

const EXE: &str = env!("CARGO_BIN_EXE_procwire");

fn bench(args: &[&str]) -> Output {
    Command::new(EXE).arg("bench").args(args).output().expect("run procwire bench")
}

fn json_of(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "bench failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{stdout}"))
}

/// The document as the typed schema, checked to hold all of it: written back, it is the same
/// JSON, field for field.
fn typed(v: &Value) -> BenchReport {
    let report: BenchReport =
        serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("not a BenchReport ({e}):\n{v:#}"));
    assert_eq!(&serde_json::to_value(&report).unwrap(), v, "the schema lost or changed a field");
    report
}

fn transports() -> Vec<&'static str> {
    if cfg!(target_os = "linux") {
        vec!["unix", "unix-abstract", "tcp", "pipe", "pipe-oneway", "inproc"]
    } else if cfg!(unix) {
        vec!["unix", "tcp", "pipe", "pipe-oneway", "inproc"]
    } else {
        vec!["pipe", "tcp", "inproc"]
    }
}

/// Transports a client reaches by address (so they have a connect cell): sockets, and named
/// pipes on Windows.
fn by_address(t: &str) -> bool {
    matches!(t, "unix" | "unix-abstract" | "tcp") || (cfg!(windows) && t == "pipe")
}

/// The platform's local transport: Unix sockets, or named pipes on Windows.
const LOCAL: &str = if cfg!(windows) { "pipe" } else { "unix" };

/// Repetitions of the CI run: one under Windows, where it runs under Wine (slow process starts).
const CI_REPEAT: usize = if cfg!(windows) { 1 } else { 3 };

/// A positive, finite number.
fn positive(v: &Value, what: &str) -> f64 {
    let x = v.as_f64().unwrap_or_else(|| panic!("{what} is not a number: {v}"));
    assert!(x.is_finite() && x > 0.0, "{what} = {x}");
    x
}

/// Checks one implementation's figures in a cell.
fn check_figures(cell: &Value, imp: &str, repeat: usize) {
    let what = format!("{} {} {} {imp}", cell["transport"], cell["workload"], cell["size"]);
    let f = &cell[imp];
    assert!(f.get("error").is_none(), "{what} failed: {}", f["error"]);
    let fields: &[&str] = match cell["workload"].as_str().unwrap() {
        "stream" | "batched" => &["msgs_per_sec", "mb_per_sec", "spread", "reps"],
        "pingpong" => &["median_us", "p99_us", "round_trips_per_sec", "spread", "reps"],
        "connect" => &["connections_per_sec", "spread", "reps"],
        w => panic!("unknown workload {w}"),
    };
    let mut keys: Vec<&str> = f.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut want = fields.to_vec();
    want.sort_unstable();
    assert_eq!(keys, want, "{what}: fields");
    for k in fields.iter().filter(|k| !matches!(**k, "spread" | "reps")) {
        positive(&f[k], &format!("{what} {k}"));
    }
    if repeat > 1 {
        let spread = f["spread"].as_f64().unwrap();
        assert!(spread.is_finite() && spread >= 0.0, "{what} spread {spread}");
    } else {
        assert!(f["spread"].is_null(), "{what}: a single run has no spread: {}", f["spread"]);
    }
    let reps = f["reps"].as_array().unwrap();
    assert_eq!(reps.len(), repeat, "{what}: one figure per repetition");
    for r in reps {
        positive(r, &format!("{what} rep"));
    }
    if cell["workload"] == "pingpong" {
        assert!(f["p99_us"].as_f64() >= f["median_us"].as_f64(), "{what}: p99 below the median");
    }
    if matches!(cell["workload"].as_str(), Some("stream" | "batched")) {
        let size = cell["size"].as_f64().unwrap();
        let mb = f["msgs_per_sec"].as_f64().unwrap() * size / 1e6;
        assert!((f["mb_per_sec"].as_f64().unwrap() - mb).abs() <= mb * 1e-9, "{what}: MB/s");
    }
}

#[test]
fn ci_mode_json_has_every_transport_workload_and_field() {
    let (all, repeat) = (transports().join(","), CI_REPEAT.to_string());
    let out =
        bench(&["--transports", &all, "--sizes", "16", "--duration", "50ms", "--repeat", &repeat, "--json"]);
    let v = json_of(&out);
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["machine"]["os"].is_string() && v["machine"]["arch"].is_string());
    positive(&v["machine"]["cpus"], "cpus");
    assert!(v["machine"].get("cpu").is_some() && v["machine"].get("load_average").is_some());
    assert_eq!(v["duration_ms"].as_f64(), Some(50.0));
    assert_eq!(v["repeat"], CI_REPEAT);
    assert_eq!(v["sizes"], serde_json::json!([16]));
    assert_eq!(v["transports"], serde_json::json!(transports()));
    assert_eq!(v["workloads"], serde_json::json!(["stream", "batched", "pingpong", "connect"]));
    assert!(v["python"].is_null());

    let cells = v["cells"].as_array().unwrap();
    for t in transports() {
        let mut want = vec![("stream", Some(16)), ("batched", Some(16))];
        if t != "pipe-oneway" {
            want.push(("pingpong", Some(16)));
        }
        if by_address(t) {
            want.push(("connect", None));
        }
        let got: Vec<(&str, Option<u64>)> = cells
            .iter()
            .filter(|c| c["transport"] == t)
            .map(|c| (c["workload"].as_str().unwrap(), c["size"].as_u64()))
            .collect();
        assert_eq!(got, want, "cells of {t}");
    }
    for c in cells {
        check_figures(c, "procwire", CI_REPEAT);
        check_figures(c, "raw", CI_REPEAT);
        assert!(c["python"].is_null() && c["speedup_vs_python"].is_null());
        positive(&c["ratio_procwire_raw"], "ratio");
        let (p, r) = match c["workload"].as_str().unwrap() {
            "pingpong" => (&c["procwire"]["median_us"], &c["raw"]["median_us"]),
            "connect" => (&c["procwire"]["connections_per_sec"], &c["raw"]["connections_per_sec"]),
            _ => (&c["procwire"]["msgs_per_sec"], &c["raw"]["msgs_per_sec"]),
        };
        let ratio = p.as_f64().unwrap() / r.as_f64().unwrap();
        assert!((c["ratio_procwire_raw"].as_f64().unwrap() - ratio).abs() < 1e-9 * ratio);
    }

    let report = typed(&v);
    assert_eq!(report.repeat as usize, CI_REPEAT);
    assert_eq!(report.cells.len(), cells.len());
    for c in &report.cells {
        for f in [&c.procwire, &c.raw] {
            let kind_fits = match f {
                Figures::Stream(_) => matches!(c.workload.name(), "stream" | "batched"),
                Figures::PingPong(_) => c.workload.name() == "pingpong",
                Figures::Connect(_) => c.workload.name() == "connect",
                Figures::Failed(e) => panic!("{c:?} failed: {}", e.error),
            };
            assert!(kind_fits, "{:?} figures in a {} cell", f, c.workload.name());
            assert_eq!(f.reps().len(), CI_REPEAT);
            assert!(f.headline().is_some_and(|h| h > 0.0));
        }
    }
}

#[test]
fn the_python_column_runs_cpython_on_the_same_workloads() {
    let Ok(py) = Command::new("python3").arg("--version").output() else {
        eprintln!("no python3: the python column is not tested here");
        return;
    };
    assert!(py.status.success());
    let out = bench(&[
        "--sizes",
        "1k",
        "--duration",
        "50ms",
        "--repeat",
        "1",
        "--transports",
        if cfg!(windows) { "pipe,tcp" } else { "unix,tcp,pipe,pipe-oneway" },
        "--compare-python",
        "--json",
    ]);
    let v = json_of(&out);
    assert!(v["python"].as_str().is_some_and(|s| s.starts_with('3')), "python version: {}", v["python"]);
    for c in v["cells"].as_array().unwrap() {
        if c["workload"] == "batched" {
            // CPython has no batched sender.
            assert!(c["python"].is_null(), "{c}");
            continue;
        }
        check_figures(c, "python", 1);
        positive(&c["speedup_vs_python"], "speedup");
    }
    let report = typed(&v);
    assert!(report.cells.iter().any(|c| matches!(c.python, Some(Figures::Stream(_)))));
}

#[test]
fn tables_go_to_stdout_and_nothing_else() {
    let out = bench(&["--sizes", "16,4k", "--duration", "20ms", "--repeat", "1", "--transports", LOCAL]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for heading in
        ["Streaming, one send per message", "Streaming, batched", "Ping-pong", "Connect + handshake"]
    {
        assert!(stdout.contains(heading), "missing {heading:?}:\n{stdout}");
    }
    assert!(stdout.contains("16 B") && stdout.contains("4 KiB"), "{stdout}");
    assert!(!stdout.contains("Failed runs"), "{stdout}");
    // One run has no spread: a dash, not "(0%)".
    assert!(stdout.contains("/s –") && stdout.contains("µs –"), "{stdout}");
    assert!(!stdout.contains("%)"), "{stdout}");
}

/// `--html FILE` writes a page with a chart per workload, every figure of every transport on
/// it, that fetches nothing; the tables still go to stdout.
#[test]
fn the_html_report_has_a_chart_per_workload_and_fetches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.html");
    let transports = format!("{LOCAL},tcp");
    let out = bench(&[
        "--sizes",
        "16,1k",
        "--duration",
        "20ms",
        "--repeat",
        "1",
        "--transports",
        &transports,
        "--html",
        path.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("Ping-pong"), "the tables still go to stdout: {stdout}");
    let page = std::fs::read_to_string(&path).expect("the report was written");
    assert!(page.starts_with("<!DOCTYPE html>") && page.trim_end().ends_with("</html>"));
    let charts: Vec<&str> = page.split("<svg").skip(1).collect();
    assert_eq!(charts.len(), 4, "one chart per workload");
    for (chart, title) in
        charts.iter().zip(["Streaming, one send", "Streaming, batched", "Ping-pong", "Connect"])
    {
        assert!(chart.contains(title), "{title}: {chart}");
    }
    // 2 transports x 2 sizes x procwire and raw as points; connect: 2 transports x 2 bars.
    for chart in &charts[..3] {
        assert_eq!(chart.matches("<circle").count(), 8, "{chart}");
        assert!(chart.contains("tcp procwire") && chart.contains("tcp raw"), "legend: {chart}");
    }
    assert_eq!(charts[3].matches("<title>").count(), 4, "{}", charts[3]);
    for fetch in ["<script", "<link", "<img", "<iframe", "url(", "src=", "href=", "@import", "http"] {
        assert!(!page.contains(fetch), "the page fetches something ({fetch}):\n{page}");
    }

    // Fewer workloads, fewer charts.
    let out = bench(&[
        "--sizes",
        "16",
        "--duration",
        "20ms",
        "--repeat",
        "1",
        "--transports",
        LOCAL,
        "--workloads",
        "stream,connect",
        "--json",
        "--html",
        path.to_str().unwrap(),
    ]);
    typed(&json_of(&out));
    let page = std::fs::read_to_string(&path).unwrap();
    assert_eq!(page.matches("<svg").count(), 2, "{page}");
}

#[test]
fn bad_options_are_refused() {
    for args in [
        &["--sizes", "16,x"][..],
        &["--duration", "5"],
        &["--transports", "carrier-pigeon"],
        &["--sizes", "128m"],
        &["--repeat", "0"],
        &["--duration", "0s"],
    ] {
        let out = bench(args);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}");
    }
}

#[test]
fn impl_async_adds_the_async_face_on_socket_transports_only() {
    let out = bench(&[
        "--transports",
        &format!("tcp,{LOCAL}"),
        "--sizes",
        "16",
        "--duration",
        "30ms",
        "--repeat",
        "1",
        "--impl",
        "async",
        "--json",
    ]);
    let v = json_of(&out);
    typed(&v);
    for c in v["cells"].as_array().unwrap() {
        let socket = c["transport"] != "pipe";
        assert_eq!(c.get("async").is_some(), socket, "{c}");
        if socket {
            check_figures(c, "async", 1);
            positive(&c["ratio_async_procwire"], "async/procwire");
        } else {
            assert!(c.get("ratio_async_procwire").is_none(), "{c}");
        }
    }
}

/// `--idle`: a row per transport, each end's CPU time as milliseconds and a share of a core.
#[test]
#[cfg(target_os = "linux")]
fn the_idle_workload_prints_both_ends_of_a_socket_pair_and_a_shared_memory_pair() {
    let out = bench(&["--idle", "300ms"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "bench --idle failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for t in ["unix", "shm"] {
        let row = stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(t))
            .unwrap_or_else(|| panic!("no {t} row:\n{stdout}"));
        assert_eq!(row.matches(" ms (").count(), 2, "two ends in {row:?}");
        assert_eq!(row.matches("% of a core)").count(), 2, "two ends in {row:?}");
    }
    assert!(!bench(&["--idle", "10ms"]).status.success(), "too short to say anything");
}
