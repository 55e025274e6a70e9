//! The parent's side of one benchmark run: start the two worker processes of an
//! implementation, connect them (an address, or a pipe whose ends they inherit), wait until
//! both are ready, say `GO`, and collect their results.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::worker::{CONN_VAR, KEY_VAR, Outcome, RING_VAR, Role, SPIN_VAR};
use super::{Impl, Transport, Workload};

/// The CPython worker, run with `python3 -c`.
const PEER_PY: &str = include_str!("peer.py");
/// How long a worker may take to start, bind, connect and authenticate.
const SETUP_LIMIT: Duration = Duration::from_secs(30);
/// How long past the run's duration a worker may take to report.
const REPORT_GRACE: Duration = Duration::from_secs(30);

/// Starts runs; owns the temporary directory of the Unix socket paths and the run's key.
pub struct Runner {
    exe: PathBuf,
    python: String,
    dir: tempfile::TempDir,
    key_hex: String,
    seq: u64,
    /// The spin window of shared-memory connections, when given.
    shm_spin: Option<Duration>,
    /// The ring size of shared-memory connections, when given.
    shm_ring: Option<usize>,
}

/// A worker process, killed when dropped.
struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr: Option<JoinHandle<String>>,
}

impl Proc {
    fn spawn(cmd: &mut Command, name: String) -> Result<Proc, String> {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| format!("cannot start {name}: {e}"))?;
        let (stdout, stderr) = match (child.stdout.take(), child.stderr.take()) {
            (Some(o), Some(e)) => (o, e),
            _ => return Err(format!("{name}: no pipes to the child")),
        };
        let (tx, lines) = mpsc::channel();
        let readers = super::worker::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        })
        .and_then(|_| {
            super::worker::spawn(move || {
                let mut s = String::new();
                let _ = BufReader::new(stderr).read_to_string(&mut s);
                s
            })
        });
        let stderr = match readers {
            Ok(h) => h,
            Err(e) => {
                // Nobody would read its output: end the child instead of leaving it waiting.
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{name}: {e}"));
            }
        };
        let stdin = child.stdin.take();
        Ok(Proc { name, child, stdin, lines, stderr: Some(stderr) })
    }

    /// Waits for the line that starts with `what` and returns the rest of it.
    fn expect(&mut self, what: &str, deadline: Instant) -> Result<String, String> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(what) {
                        return Ok(rest.trim().to_string());
                    }
                    if let Some(e) = line.strip_prefix("ERROR ") {
                        return Err(format!("{}: {e}", self.name));
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let tail = self.stderr_tail();
                    return Err(format!("{}: no {} in time{tail}", self.name, what.trim()));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let tail = self.stderr_tail();
                    return Err(format!("{} exited before {}{tail}", self.name, what.trim()));
                }
            }
        }
    }

    fn go(&mut self) -> Result<(), String> {
        let r = match &mut self.stdin {
            Some(s) => s.write_all(b"GO\n").and_then(|()| s.flush()),
            None => Ok(()),
        };
        r.map_err(|e| format!("{}: cannot say GO: {e}", self.name))
    }

    /// Ends the process and returns the end of what it wrote on stderr, for an error message.
    fn stderr_tail(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let text = self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
        let text = text.trim();
        if text.is_empty() {
            return String::new();
        }
        let start = text.char_indices().rev().nth(600).map_or(0, |(i, _)| i);
        format!("; its stderr: {}", &text[start..])
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse_outcome(json: &str, who: &str) -> Result<Outcome, String> {
    serde_json::from_str(json).map_err(|e| format!("{who}: bad result {json:?}: {e}"))
}

impl Runner {
    /// A runner of this executable's workers, with `python` for the python column and
    /// `shm_spin` and `shm_ring` for the spin window and ring size of shared-memory connections.
    pub fn new(
        python: String,
        shm_spin: Option<Duration>,
        shm_ring: Option<usize>,
    ) -> Result<Runner, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
        let dir = tempfile::Builder::new()
            .prefix("procwire-bench-")
            .tempdir()
            .map_err(|e| format!("cannot make a temporary directory: {e}"))?;
        let key = procwire::AuthKey::random().map_err(|e| e.to_string())?;
        let key_hex = key.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        Ok(Runner { exe, python, dir, key_hex, seq: 0, shm_spin, shm_ring })
    }

    fn command(&self, imp: Impl, role: Role, size: usize, duration: Duration, endpoint: &str) -> Command {
        let mut cmd = match imp {
            Impl::Python => {
                let mut c = Command::new(&self.python);
                c.arg("-c").arg(PEER_PY);
                c
            }
            Impl::Procwire | Impl::Raw | Impl::Async => {
                let mut c = Command::new(&self.exe);
                c.arg("__worker").arg(imp.name());
                c
            }
        };
        cmd.arg(role.name())
            .arg(size.to_string())
            .arg(duration.as_nanos().to_string())
            .arg(endpoint)
            .env(KEY_VAR, &self.key_hex);
        if let Some(spin) = self.shm_spin {
            cmd.env(SPIN_VAR, spin.as_nanos().to_string());
        }
        if let Some(ring) = self.shm_ring {
            cmd.env(RING_VAR, ring.to_string());
        }
        cmd
    }

    /// A fresh address of a transport reached by address.
    fn address(&mut self, t: Transport) -> String {
        self.seq += 1;
        match t {
            Transport::Unix => {
                format!("unix:{}", self.dir.path().join(format!("s{}.sock", self.seq)).display())
            }
            Transport::UnixAbstract => format!("unix:@procwire-bench-{}-{}", std::process::id(), self.seq),
            Transport::Shm => {
                format!("shm:{}", self.dir.path().join(format!("s{}.sock", self.seq)).display())
            }
            Transport::Pipe => format!("pipe:procwire-bench-{}-{}", std::process::id(), self.seq),
            _ => "tcp:127.0.0.1:0".into(),
        }
    }

    /// An idle connected pair of procwire workers over `transport` (an address one): after both
    /// are connected and `settle` has passed, the CPU time each (listener's side, client's
    /// side) uses over `duration`, read from outside by `cpu_time`.
    pub fn idle(
        &mut self,
        transport: Transport,
        settle: Duration,
        duration: Duration,
        cpu_time: impl Fn(u32) -> Result<Duration, String>,
    ) -> Result<(Duration, Duration), String> {
        let setup = Instant::now() + SETUP_LIMIT;
        let addr = self.address(transport);
        let name = |end: &str| format!("procwire idle worker ({end})");
        let mut cmd = self.command(Impl::Procwire, Role::Idle, 0, duration, &format!("listen:{addr}"));
        let mut listener = Proc::spawn(&mut cmd, name("listener"))?;
        let real = listener.expect("ADDR ", setup)?;
        let mut cmd = self.command(Impl::Procwire, Role::Idle, 0, duration, &format!("connect:{real}"));
        let mut client = Proc::spawn(&mut cmd, name("client"))?;
        listener.expect("READY", setup)?;
        client.expect("READY", setup)?;
        std::thread::sleep(settle);
        let pids = [listener.child.id(), client.child.id()];
        let before = [cpu_time(pids[0])?, cpu_time(pids[1])?];
        std::thread::sleep(duration);
        let after = [cpu_time(pids[0])?, cpu_time(pids[1])?];
        // Dropped: their stdin closes and they exit.
        Ok((after[0].saturating_sub(before[0]), after[1].saturating_sub(before[1])))
    }

    /// One run of `workload` by `imp` over `transport`; returns the measuring side's outcome.
    pub fn run(
        &mut self,
        imp: Impl,
        transport: Transport,
        workload: Workload,
        size: usize,
        duration: Duration,
    ) -> Result<Outcome, String> {
        let (passive_role, active_role) = super::roles(workload);
        let name = |role: Role| format!("{} {} worker", imp.name(), role.name());
        let setup = Instant::now() + SETUP_LIMIT;
        // An in-process run is one worker with both sides: it is both `passive` and `active`.
        let (mut passive, mut active) = if transport == Transport::Inproc {
            let mut cmd = self.command(imp, active_role, size, duration, "inproc");
            (None, Proc::spawn(&mut cmd, format!("{} in-process worker", imp.name()))?)
        } else if super::by_address(transport) {
            let addr = self.address(transport);
            let mut cmd = self.command(imp, passive_role, size, duration, &format!("listen:{addr}"));
            let mut passive = Proc::spawn(&mut cmd, name(passive_role))?;
            let real = passive.expect("ADDR ", setup)?;
            let mut cmd = self.command(imp, active_role, size, duration, &format!("connect:{real}"));
            let active = Proc::spawn(&mut cmd, name(active_role))?;
            (Some(passive), active)
        } else {
            // The first end receives (a one-way pipe's read end); each child inherits its end
            // through its command, and the commands and our ends are dropped right after
            // spawning, so that end of stream reaches each side when the other closes.
            let (a, b) = procwire::pipe(transport == Transport::Pipe).map_err(|e| e.to_string())?;
            let mut cmd = self.command(imp, passive_role, size, duration, "inherit");
            a.pass_to_child(&mut cmd, CONN_VAR).map_err(|e| e.to_string())?;
            let passive = Proc::spawn(&mut cmd, name(passive_role))?;
            drop((cmd, a));
            let mut cmd = self.command(imp, active_role, size, duration, "inherit");
            b.pass_to_child(&mut cmd, CONN_VAR).map_err(|e| e.to_string())?;
            let active = Proc::spawn(&mut cmd, name(active_role))?;
            drop((cmd, b));
            (Some(passive), active)
        };
        if let Some(p) = &mut passive {
            p.expect("READY", setup)?;
        }
        active.expect("READY", setup)?;
        active.go()?;
        let done = Instant::now() + duration + REPORT_GRACE;
        let active_out = parse_outcome(&active.expect("RESULT ", done)?, &active.name)?;
        let passive = passive.as_mut().unwrap_or(&mut active);
        let too_short = || format!("{}: too little happened to time; use a longer --duration", imp.name());
        match workload {
            Workload::Connect | Workload::PingPong => {
                if workload == Workload::PingPong {
                    passive.expect("RESULT ", done)?;
                }
                if active_out.count == 0 || active_out.secs <= 0.0 {
                    return Err(too_short());
                }
                Ok(active_out)
            }
            Workload::Stream | Workload::Batched => {
                let received = parse_outcome(&passive.expect("RESULT ", done)?, &passive.name)?;
                // The receiver's clock starts at the first message, which it does not count.
                if received.count + 1 != active_out.count {
                    return Err(format!(
                        "{}: {} messages sent but {} received",
                        imp.name(),
                        active_out.count,
                        received.count + 1
                    ));
                }
                if received.count == 0 || received.secs <= 0.0 {
                    return Err(too_short());
                }
                Ok(received)
            }
        }
    }
}
