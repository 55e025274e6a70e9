//! Manager round trips: one client's dict gets over shared memory (the default) and over a Unix
//! socket (`ManagerBuilder::shared_memory(false)`), next to a raw Unix-socket ping-pong of the
//! same message sizes and CPython's `Manager().dict()` in the same run; then the aggregate rate
//! of 16 client processes next to one client process (shared memory).
//!
//! `cargo bench --bench manager [-- --secs S --repeat R --clients N]`. Rounds run interleaved
//! (procwire, raw, CPython, then the client processes); the table shows the median of the
//! rounds and their range.

#[cfg(unix)]
mod unix {
    use std::io::{Read, Write};
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::process::Command;
    use std::time::{Duration, Instant};

    use procwire::manager::{BarrierProxy, DictProxy, Manager, SERVE};
    use procwire::process::{Function, Process};
    use serde::Serialize;

    /// The shapes of the manager's dict get request and reply (spec/manager.md), to size the raw
    /// ping-pong's messages like the manager's.
    #[derive(Serialize)]
    enum Req<'a> {
        Call { id: u64, method: &'a str, args: &'a str },
    }
    #[derive(Serialize)]
    enum Rep {
        Ok(Vec<u64>),
    }

    fn cbor_len<T: Serialize>(v: &T) -> usize {
        let mut b = Vec::new();
        ciborium::into_writer(v, &mut b).expect("encode");
        b.len()
    }

    const KEY: &str = "key";
    const VALUE: u64 = 12345;

    /// Gets for `secs` seconds; gets/s.
    fn get_loop(d: &DictProxy<String, u64>, secs: f64) -> f64 {
        let key = KEY.to_string();
        let t = Instant::now();
        let mut n = 0u64;
        loop {
            for _ in 0..64 {
                assert_eq!(d.get(&key).expect("get"), Some(VALUE));
            }
            n += 64;
            let dt = t.elapsed().as_secs_f64();
            if dt >= secs {
                return n as f64 / dt;
            }
        }
    }

    /// A client process: waits at the barrier with the others, then gets for `secs`.
    fn client((d, start, secs): (DictProxy<String, u64>, BarrierProxy, f64)) -> f64 {
        // One get first, so that the connection exists before timing starts.
        d.get(&KEY.to_string()).expect("warm-up get");
        start.wait_timeout(Duration::from_secs(120)).expect("barrier");
        get_loop(&d, secs)
    }

    /// The raw baseline's server: a std Unix socket, 4-byte length prefix, answers each request
    /// with `reply` bytes.
    fn raw_server((path, reply): (String, usize)) -> u64 {
        let listener = UnixListener::bind(&path).expect("bind");
        let (mut s, _) = listener.accept().expect("accept");
        let mut out = (reply as u32).to_be_bytes().to_vec();
        out.resize(4 + reply, 7);
        let mut buf = vec![0u8; 1 << 16];
        let mut n = 0;
        loop {
            let mut len = [0u8; 4];
            if s.read_exact(&mut len).is_err() {
                return n;
            }
            let len = u32::from_be_bytes(len) as usize;
            s.read_exact(&mut buf[..len]).expect("payload");
            s.write_all(&out).expect("reply");
            n += 1;
        }
    }

    static CLIENT: Function<(DictProxy<String, u64>, BarrierProxy, f64), f64> =
        Function::new("client", client);
    static RAW_SERVER: Function<(String, usize), u64> = Function::new("raw_server", raw_server);

    fn raw_pingpong(request: usize, reply: usize, secs: f64) -> f64 {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raw.sock").to_string_lossy().into_owned();
        let mut server = Process::new(&RAW_SERVER, (path.clone(), reply));
        server.start().expect("start raw server");
        let t = Instant::now();
        let mut s = loop {
            match UnixStream::connect(&path) {
                Ok(s) => break s,
                Err(e) if t.elapsed() < Duration::from_secs(30) => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => panic!("raw server not up: {e}"),
            }
        };
        let mut msg = (request as u32).to_be_bytes().to_vec();
        msg.resize(4 + request, 7);
        let mut buf = vec![0u8; 4 + reply];
        let t = Instant::now();
        let mut n = 0u64;
        let rate = loop {
            for _ in 0..64 {
                s.write_all(&msg).expect("write");
                s.read_exact(&mut buf).expect("read");
            }
            n += 64;
            let dt = t.elapsed().as_secs_f64();
            if dt >= secs {
                break n as f64 / dt;
            }
        };
        drop(s);
        server.result().expect("raw server");
        rate
    }

    const PYTHON: &str = r#"
import multiprocessing as mp, sys, time
if __name__ == "__main__":
    secs = float(sys.argv[1])
    with mp.Manager() as m:
        d = m.dict()
        d["key"] = 12345
        t = time.perf_counter()
        n = 0
        while True:
            for _ in range(64):
                assert d["key"] == 12345
            n += 64
            dt = time.perf_counter() - t
            if dt >= secs:
                break
        print(n / dt)
"#;

    fn cpython(secs: f64) -> Option<f64> {
        let out = Command::new("python3").args(["-c", PYTHON, &secs.to_string()]).output().ok()?;
        if !out.status.success() {
            eprintln!("python3 failed: {}", String::from_utf8_lossy(&out.stderr));
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    }

    /// `clients` processes getting at once; their summed rate.
    fn concurrent(m: &Manager, d: &DictProxy<String, u64>, clients: u64, secs: f64) -> f64 {
        let start = m.barrier(clients).expect("barrier");
        let mut kids: Vec<_> = (0..clients)
            .map(|_| {
                let mut p = Process::new(&CLIENT, (d.clone(), start.clone(), secs));
                p.start().expect("start client");
                p
            })
            .collect();
        kids.iter_mut().map(|p| p.result().expect("client")).sum()
    }

    fn median(v: &[f64]) -> (f64, f64, f64) {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[0], v[v.len() - 1])
    }

    fn arg(name: &str, default: f64) -> f64 {
        let args: Vec<String> = std::env::args().collect();
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    pub fn main() {
        procwire::process::init(&[&SERVE, &CLIENT, &RAW_SERVER]);
        let secs = arg("--secs", 1.0);
        let repeat = arg("--repeat", 3.0).max(1.0) as usize;
        let clients = arg("--clients", 16.0).max(2.0) as u64;
        let request = cbor_len(&Req::Call { id: 1, method: "get", args: KEY });
        let reply = cbor_len(&Rep::Ok(vec![VALUE]));

        let m = Manager::start().expect("start manager");
        let d = m.dict::<String, u64>().expect("dict");
        d.insert(&KEY.to_string(), &VALUE).expect("insert");
        let ms = Manager::builder().shared_memory(false).start().expect("start socket manager");
        let ds = ms.dict::<String, u64>().expect("dict");
        ds.insert(&KEY.to_string(), &VALUE).expect("insert");
        assert!(m.is_shared_memory().expect("kind") && !ms.is_shared_memory().expect("kind"));

        let (mut pw, mut sock, mut raw, mut py, mut one, mut many) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for round in 0..repeat {
            eprintln!("round {}/{repeat}", round + 1);
            pw.push(get_loop(&d, secs));
            sock.push(get_loop(&ds, secs));
            raw.push(raw_pingpong(request, reply, secs));
            if let Some(r) = cpython(secs) {
                py.push(r);
            }
            one.push(concurrent(&m, &d, 1, secs));
            many.push(concurrent(&m, &d, clients, secs));
        }
        m.shutdown().expect("shutdown");
        ms.shutdown().expect("shutdown");

        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!(
            "manager round trips: median of {repeat} runs of {secs} s (range in brackets); {} CPUs; load average {}",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
        );
        println!(
            "request {request} B, reply {reply} B (CBOR payloads; the raw ping-pong sends the same sizes)\n"
        );
        let row = |name: &str, v: &[f64]| {
            let (m, lo, hi) = median(v);
            println!("{name:<44} {m:>10.0}/s  [{lo:.0}..{hi:.0}]");
            m
        };
        let p = row("procwire dict get, one client (shared memory)", &pw);
        let s = row("procwire dict get, one client (unix socket)", &sock);
        let r = row("raw unix-socket ping-pong, same sizes", &raw);
        let c = if py.is_empty() {
            println!("{:<44} {:>12}", "CPython Manager().dict() get", "(no python3)");
            None
        } else {
            Some(row("CPython Manager().dict() get", &py))
        };
        let o = row("procwire, 1 client process", &one);
        let n = row(&format!("procwire, {clients} client processes (aggregate)"), &many);
        println!();
        println!("shared memory / unix socket:       {:.2}x", p / s);
        println!("unix socket / raw ping-pong:       {:.2}x  (aim >= 0.8x)", s / r);
        println!("shared memory / raw ping-pong:     {:.2}x", p / r);
        if let Some(c) = c {
            println!("shared memory / CPython manager:   {:.2}x  (aim >= 10x)", p / c);
            println!("unix socket / CPython manager:     {:.2}x", s / c);
        }
        println!("{clients} clients / 1 client process:     {:.2}x  (aim >= 1.5x)", n / o);
    }
}

fn main() {
    #[cfg(unix)]
    unix::main();
    #[cfg(not(unix))]
    eprintln!("the manager benchmark runs on Unix only (child processes are Unix-only for now)");
}
