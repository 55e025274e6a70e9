//! One side of a benchmark run, in its own process: `procwire __worker IMPL ROLE SIZE
//! DURATION_NS ENDPOINT`, started by `procwire bench`.
//!
//! IMPL is `procwire`, `async` (the same roles over `procwire::tokio`, sockets only; see
//! `asynch`) or `raw` (a hand-written loop over std sockets: a 4-byte big-endian length, one
//! write per message, `read_exact` on the other side; in batched mode the same through a
//! `BufWriter`/`BufReader` of procwire's batch size). ENDPOINT is `listen:ADDR`,
//! `connect:ADDR` or `inherit` (a pipe end passed with `Connection::pass_to_child`), or
//! `inproc`: both sides in this one process, on two threads, the active ROLE on this one and
//! its passive partner on another (procwire: `procwire::dummy::pipe`; raw: a byte stream over
//! std's `mpsc` channels, one `Vec` per write). Such a worker reports the active side's
//! `RESULT` line first, then the passive side's.
//!
//! Talking to the parent, one line each on stdout: `ADDR <address>` once listening, `READY`
//! once connected, `RESULT <json>` at the end ([`Outcome`]), `ERROR <text>` on failure. The
//! active side (sender, pinger, connector) starts when it reads `GO` on stdin; every worker
//! exits when its stdin closes, so none outlives the bench.

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Args;
use procwire::connection::DEFAULT_BATCH;
use procwire::{Address, AuthKey, Client, Connection, Error, Listener};
use serde::{Deserialize, Serialize};

use crate::Failure;

mod asynch;

/// The environment variable naming an inherited pipe end.
pub const CONN_VAR: &str = "PROCWIRE_BENCH_CONN";
/// The environment variable holding the run's authkey, in hex.
pub const KEY_VAR: &str = "PROCWIRE_BENCH_KEY";
/// The environment variable holding the spin window of shared-memory connections, in
/// nanoseconds (`procwire bench --shm-spin`).
pub const SPIN_VAR: &str = "PROCWIRE_BENCH_SHM_SPIN";
/// The environment variable holding the ring size of shared-memory connections, in bytes
/// (`procwire bench --shm-ring`).
pub const RING_VAR: &str = "PROCWIRE_BENCH_SHM_RING";
/// Round trips at the start of a ping-pong run that are not counted (cold caches, page faults).
pub const PING_WARMUP: usize = 10;

/// Arguments of the hidden worker subcommand.
#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// procwire, async or raw.
    imp: String,
    /// What this side does (see [`Role`]).
    role: String,
    /// Message size in bytes.
    size: usize,
    /// How long the active side keeps going, in nanoseconds.
    duration_ns: u64,
    /// listen:ADDR, connect:ADDR or inherit.
    endpoint: String,
}

/// What a worker does. The first of each pair is the passive side (it listens, or gets the
/// first end of a pipe); the second is the active side, which waits for `GO`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Receives messages until the sender closes; its count and time are the measurement.
    StreamRecv,
    /// Sends messages one write each for the duration, then closes.
    StreamSend,
    /// As [`Role::StreamRecv`], for the batched sender (procwire reads the same way either way).
    BatchedRecv,
    /// Sends with batching (procwire `set_batching` + `flush`; raw through a `BufWriter`).
    BatchedSend,
    /// Sends every message back.
    Echo,
    /// Sends a message, waits for it to come back, and times each round trip.
    Ping,
    /// Accepts connections (after the handshake) and drops them.
    Accept,
    /// Connects (and authenticates) and closes, again and again.
    Connect,
    /// Waits for a message that never comes, either side (`procwire bench --idle`).
    Idle,
}

impl Role {
    /// The name on the worker's command line.
    pub fn name(self) -> &'static str {
        match self {
            Role::StreamRecv => "stream-recv",
            Role::StreamSend => "stream-send",
            Role::BatchedRecv => "batched-recv",
            Role::BatchedSend => "batched-send",
            Role::Echo => "echo",
            Role::Ping => "ping",
            Role::Accept => "accept",
            Role::Connect => "connect",
            Role::Idle => "idle",
        }
    }

    fn parse(s: &str) -> Result<Role, String> {
        [
            Role::StreamRecv,
            Role::StreamSend,
            Role::BatchedRecv,
            Role::BatchedSend,
            Role::Echo,
            Role::Ping,
            Role::Accept,
            Role::Connect,
            Role::Idle,
        ]
        .into_iter()
        .find(|r| r.name() == s)
        .ok_or_else(|| format!("unknown role {s:?}"))
    }
}

/// What a worker reports at the end.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Outcome {
    /// Messages received (after the first, which starts the clock), messages sent, round
    /// trips timed, or connections made.
    pub count: u64,
    /// The time the count took, in seconds.
    pub secs: f64,
    /// Ping-pong only: the median round trip, in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub median_us: Option<f64>,
    /// Ping-pong only: the 99th percentile round trip, in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_us: Option<f64>,
}

enum Endpoint {
    Listen(Address),
    Connect(Address),
    Inherit,
    InProc,
}

impl Endpoint {
    fn parse(s: &str) -> Result<Endpoint, String> {
        match s {
            "inherit" => return Ok(Endpoint::Inherit),
            "inproc" => return Ok(Endpoint::InProc),
            _ => {}
        }
        let parse = |a: &str| a.parse::<Address>().map_err(|e| e.to_string());
        match s.split_once(':') {
            Some(("listen", a)) => Ok(Endpoint::Listen(parse(a)?)),
            Some(("connect", a)) => Ok(Endpoint::Connect(parse(a)?)),
            _ => Err(format!("bad endpoint {s:?}: expected listen:ADDR, connect:ADDR, inherit or inproc")),
        }
    }

    fn address(&self) -> Result<&Address, String> {
        match self {
            Endpoint::Listen(a) | Endpoint::Connect(a) => Ok(a),
            Endpoint::Inherit | Endpoint::InProc => Err("this role needs an address, not a pipe".into()),
        }
    }
}

struct Spec {
    role: Role,
    size: usize,
    duration: Duration,
    go: mpsc::Receiver<()>,
}

impl Spec {
    /// The passive partner of an active role, for a worker that runs both (`inproc`); it
    /// never waits for `GO`.
    fn partner(&self) -> Result<Spec, String> {
        let role = match self.role {
            Role::StreamSend => Role::StreamRecv,
            Role::BatchedSend => Role::BatchedRecv,
            Role::Ping => Role::Echo,
            other => return Err(format!("{} is not an active role that runs in-process", other.name())),
        };
        Ok(Spec { role, size: self.size, duration: self.duration, go: mpsc::channel().1 })
    }

    /// Waits for the parent's `GO`.
    fn wait_go(&self) -> Result<(), String> {
        self.go.recv().map_err(|_| "the bench went away before saying GO".to_string())
    }

    /// Messages sent between two looks at the clock: about 64 KiB worth, so that reading the
    /// clock costs nothing next to sending.
    fn burst(&self) -> u64 {
        ((64 << 10) / (self.size + 4)).clamp(1, 4096) as u64
    }
}

fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn report(o: &Outcome) -> Result<(), String> {
    say(&format!("RESULT {}", serde_json::to_string(o).map_err(|e| e.to_string())?));
    Ok(())
}

/// Reads stdin on a thread: `GO` goes to the returned channel; end of input (the bench is
/// done with us, or died) ends the process.
fn watch_stdin() -> Result<mpsc::Receiver<()>, String> {
    let (tx, rx) = mpsc::channel();
    spawn(move || {
        for line in io::stdin().lock().lines() {
            match line {
                Ok(l) if l.trim() == "GO" => {
                    let _ = tx.send(());
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        std::process::exit(0);
    })?;
    Ok(rx)
}

/// Starts a thread; when the OS cannot give one (out of threads or memory) that is an error
/// to report, not a panic.
pub(crate) fn spawn<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<std::thread::JoinHandle<T>, String> {
    std::thread::Builder::new().spawn(f).map_err(|e| format!("cannot start a thread: {e}"))
}

/// Runs the worker; errors are reported to the parent as an `ERROR` line.
pub fn run(args: &WorkerArgs) -> Result<(), Failure> {
    let r = (|| {
        let role = Role::parse(&args.role)?;
        let endpoint = Endpoint::parse(&args.endpoint)?;
        let spec = Spec {
            role,
            size: args.size,
            duration: Duration::from_nanos(args.duration_ns),
            go: watch_stdin()?,
        };
        match args.imp.as_str() {
            "procwire" => procwire_side(&spec, &endpoint).map_err(|e| e.to_string()),
            "raw" => raw::run(&spec, &endpoint),
            "async" => asynch::run(&spec, &endpoint).map_err(|e| e.to_string()),
            other => Err(format!("unknown implementation {other:?}")),
        }
    })();
    r.map_err(|e| {
        say(&format!("ERROR {e}"));
        Failure::new(e)
    })
}

fn key_from_env() -> Result<AuthKey, String> {
    let hex = std::env::var(KEY_VAR).map_err(|_| format!("{KEY_VAR} is not set"))?;
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| hex.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(|| format!("{KEY_VAR} is not hex"))?;
    Ok(AuthKey::new(bytes))
}

/// The round-trip times in `ns`, as an [`Outcome`].
fn latency_outcome(mut ns: Vec<u64>, secs: f64) -> Outcome {
    let samples: &mut [u64] = if ns.len() > PING_WARMUP * 2 { &mut ns[PING_WARMUP..] } else { &mut ns };
    if samples.is_empty() {
        return Outcome { secs, ..Outcome::default() };
    }
    samples.sort_unstable();
    let at = |q: f64| {
        let rank = (q * samples.len() as f64).ceil() as usize;
        samples[rank.clamp(1, samples.len()) - 1] as f64 / 1e3
    };
    Outcome { count: samples.len() as u64, secs, median_us: Some(at(0.5)), p99_us: Some(at(0.99)) }
}

fn procwire_side(s: &Spec, ep: &Endpoint) -> procwire::Result<()> {
    let fail = |m: String| Error::Io(io::Error::other(m));
    let key = key_from_env().map_err(fail)?;
    match s.role {
        Role::Accept => {
            let listener = Listener::builder().authkey(key).bind(ep.address().map_err(fail)?)?;
            say(&format!("ADDR {}", listener.address()));
            say("READY");
            loop {
                // Each connection is dropped (closed) as soon as its handshake is done.
                let _ = listener.accept();
            }
        }
        Role::Connect => {
            let addr = ep.address().map_err(fail)?;
            let builder = Client::builder().authkey(key);
            say("READY");
            s.wait_go().map_err(fail)?;
            let start = Instant::now();
            let mut count = 0;
            while start.elapsed() < s.duration {
                drop(builder.clone().connect(addr)?);
                count += 1;
            }
            return report(&Outcome { count, secs: start.elapsed().as_secs_f64(), ..Outcome::default() })
                .map_err(fail);
        }
        _ => {}
    }
    let ring = std::env::var(RING_VAR).ok().and_then(|v| v.parse().ok());
    let conn = match ep {
        Endpoint::Listen(a) => {
            let mut b = Listener::builder().authkey(key);
            if let Some(r) = ring {
                b = b.shm_ring_size(r);
            }
            let listener = b.bind(a)?;
            say(&format!("ADDR {}", listener.address()));
            listener.accept()?
        }
        Endpoint::Connect(a) => {
            let mut b = Client::builder().authkey(key);
            if let Some(r) = ring {
                b = b.shm_ring_size(r);
            }
            b.connect(a)?
        }
        Endpoint::Inherit => Connection::from_env(CONN_VAR)?,
        Endpoint::InProc => {
            let partner = s.partner().map_err(fail)?;
            let (passive, active) = procwire::dummy::pipe(true)?;
            let other = spawn(move || procwire_session(&partner, passive)).map_err(fail)?;
            say("READY");
            let mine = procwire_session(s, active)?;
            report(&mine).map_err(fail)?;
            let theirs = other.join().map_err(|_| fail("the passive thread panicked".into()))??;
            return report(&theirs).map_err(fail);
        }
    };
    say("READY");
    let outcome = procwire_session(s, conn)?;
    report(&outcome).map_err(fail)
}

/// One side of a session over `conn`, with the role of `s`.
fn procwire_session(s: &Spec, mut conn: Connection) -> procwire::Result<Outcome> {
    if let Some(nanos) = std::env::var(SPIN_VAR).ok().and_then(|v| v.parse().ok()) {
        conn.set_spin_window(Duration::from_nanos(nanos));
    }
    let fail = |m: String| Error::Io(io::Error::other(m));
    let wrong_size = |n: usize| fail(format!("received {n} bytes, expected {}", s.size));
    let outcome = match s.role {
        Role::StreamRecv | Role::BatchedRecv => {
            let mut buf = Vec::with_capacity(s.size);
            let n = conn.recv_bytes_into(&mut buf)?;
            if n != s.size {
                return Err(wrong_size(n));
            }
            let start = Instant::now();
            let mut count = 0;
            loop {
                match conn.recv_bytes_into(&mut buf) {
                    Ok(n) if n == s.size => count += 1,
                    Ok(n) => return Err(wrong_size(n)),
                    Err(Error::Closed) => break,
                    Err(e) => return Err(e),
                }
            }
            Outcome { count, secs: start.elapsed().as_secs_f64(), ..Outcome::default() }
        }
        Role::StreamSend | Role::BatchedSend => {
            if s.role == Role::BatchedSend {
                conn.set_batching(Some(DEFAULT_BATCH));
            }
            let payload = vec![0xa5; s.size];
            let burst = s.burst();
            s.wait_go().map_err(fail)?;
            let start = Instant::now();
            let mut count = 0;
            while start.elapsed() < s.duration {
                for _ in 0..burst {
                    conn.send_bytes(&payload)?;
                }
                count += burst;
            }
            conn.close()?;
            Outcome { count, secs: start.elapsed().as_secs_f64(), ..Outcome::default() }
        }
        Role::Echo => {
            let mut buf = Vec::with_capacity(s.size);
            let mut count = 0;
            loop {
                match conn.recv_bytes_into(&mut buf) {
                    Ok(n) => conn.send_bytes(&buf[..n])?,
                    Err(Error::Closed) => break,
                    Err(e) => return Err(e),
                }
                count += 1;
            }
            Outcome { count, ..Outcome::default() }
        }
        Role::Ping => {
            let payload = vec![0xa5; s.size];
            let mut buf = Vec::with_capacity(s.size);
            let mut ns = Vec::with_capacity(1 << 16);
            s.wait_go().map_err(fail)?;
            let start = Instant::now();
            while start.elapsed() < s.duration {
                let t = Instant::now();
                conn.send_bytes(&payload)?;
                let n = conn.recv_bytes_into(&mut buf)?;
                ns.push(t.elapsed().as_nanos() as u64);
                if n != s.size {
                    return Err(wrong_size(n));
                }
            }
            let secs = start.elapsed().as_secs_f64();
            drop(conn);
            latency_outcome(ns, secs)
        }
        Role::Idle => {
            // Nothing comes: the receive sleeps until the bench ends this process.
            match conn.recv_bytes() {
                Ok(m) => return Err(fail(format!("an idle worker received {} bytes", m.len()))),
                Err(Error::Closed) => Outcome::default(),
                Err(e) => return Err(e),
            }
        }
        Role::Accept | Role::Connect => return Err(fail("connect roles need an address".into())),
    };
    Ok(outcome)
}

/// The raw baseline: what a careful hand-written length-prefixed loop over std sockets does
/// (over a byte-mode named pipe on Windows).
mod raw {
    use super::*;

    /// Runs `$body` with `$x` bound to the concrete std stream inside `$s`, so that every
    /// loop is compiled for its own type (no dynamic dispatch in the baseline).
    macro_rules! with_stream {
        ($s:expr, |$x:ident| $body:expr) => {
            match &mut $s {
                #[cfg(unix)]
                Stream::Unix($x) => $body,
                Stream::Tcp($x) => $body,
                #[cfg(unix)]
                Stream::Fd($x) => $body,
                #[cfg(windows)]
                Stream::Pipe($x) => $body,
            }
        };
    }

    #[cfg(windows)]
    use interprocess::os::windows::named_pipe::{
        DuplexPipeStream, PipeListener, PipeListenerOptions, PipeMode, pipe_mode::Bytes,
    };

    #[cfg(unix)]
    use std::os::unix::net::{UnixListener, UnixStream};

    use std::net::{TcpListener, TcpStream};

    /// A connected std stream of any transport.
    enum Stream {
        #[cfg(unix)]
        Unix(UnixStream),
        Tcp(TcpStream),
        /// One end of an OS pipe, or a socketpair end, from the parent.
        #[cfg(unix)]
        Fd(std::fs::File),
        /// A named pipe in byte mode (the length prefix keeps the frames, as on a socket).
        #[cfg(windows)]
        Pipe(DuplexPipeStream<Bytes>),
    }

    enum RawListener {
        #[cfg(unix)]
        Unix(UnixListener),
        Tcp(TcpListener),
        #[cfg(windows)]
        Pipe(PipeListener<Bytes, Bytes>),
    }

    /// The path of a `pipe:NAME` address, as procwire names it.
    #[cfg(windows)]
    fn pipe_path(addr: &Address) -> Option<String> {
        match addr {
            Address::Pipe(name) => Some(format!(r"\\.\pipe\{name}")),
            _ => None,
        }
    }

    #[cfg(unix)]
    fn unix_addr(addr: &Address) -> io::Result<Option<std::os::unix::net::SocketAddr>> {
        match addr {
            // The raw baseline of shared memory is the raw loop over its Unix socket.
            Address::Unix(p) | Address::Shm(p) => std::os::unix::net::SocketAddr::from_pathname(p).map(Some),
            #[cfg(target_os = "linux")]
            Address::UnixAbstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).map(Some)
            }
            _ => Ok(None),
        }
    }

    fn tcp_addr(addr: &Address) -> io::Result<(String, u16)> {
        match addr {
            Address::Tcp { host, port } => Ok((host.clone(), *port)),
            other => Err(io::Error::other(format!("the raw baseline does not support {other}"))),
        }
    }

    fn bind(addr: &Address) -> io::Result<(RawListener, Address)> {
        #[cfg(unix)]
        if let Some(sa) = unix_addr(addr)? {
            return Ok((RawListener::Unix(UnixListener::bind_addr(&sa)?), addr.clone()));
        }
        #[cfg(windows)]
        if let Some(path) = pipe_path(addr) {
            let l = PipeListenerOptions::new()
                .path(path.as_str())
                .mode(PipeMode::Bytes)
                .create_duplex::<Bytes>()?;
            return Ok((RawListener::Pipe(l), addr.clone()));
        }
        let l = TcpListener::bind(tcp_addr(addr)?)?;
        let real = Address::tcp(l.local_addr()?);
        Ok((RawListener::Tcp(l), real))
    }

    fn accept(l: &RawListener) -> io::Result<Stream> {
        match l {
            #[cfg(unix)]
            RawListener::Unix(l) => Ok(Stream::Unix(l.accept()?.0)),
            RawListener::Tcp(l) => {
                let s = l.accept()?.0;
                s.set_nodelay(true)?;
                Ok(Stream::Tcp(s))
            }
            #[cfg(windows)]
            RawListener::Pipe(l) => Ok(Stream::Pipe(l.accept()?)),
        }
    }

    fn connect(addr: &Address) -> io::Result<Stream> {
        #[cfg(unix)]
        if let Some(sa) = unix_addr(addr)? {
            return Ok(Stream::Unix(UnixStream::connect_addr(&sa)?));
        }
        #[cfg(windows)]
        if let Some(path) = pipe_path(addr) {
            // Waits for a free instance of the pipe, as procwire's client does.
            let wait = interprocess::ConnectWaitMode::Timeout(Duration::from_secs(10));
            return Ok(Stream::Pipe(DuplexPipeStream::connect_by_path_with_wait_mode(path.as_str(), wait)?));
        }
        let s = TcpStream::connect(tcp_addr(addr)?)?;
        s.set_nodelay(true)?;
        Ok(Stream::Tcp(s))
    }

    /// The pipe end the parent passed: procwire adopts it, and the raw loop takes a duplicate
    /// of its descriptor (the adopted one is closed right away).
    #[cfg(unix)]
    fn inherit() -> io::Result<Stream> {
        use std::os::fd::AsFd;
        let conn = Connection::from_env(CONN_VAR).map_err(io::Error::other)?;
        let fd = conn.as_fd().try_clone_to_owned()?;
        drop(conn);
        Ok(Stream::Fd(std::fs::File::from(fd)))
    }

    #[cfg(not(unix))]
    fn inherit() -> io::Result<Stream> {
        Err(io::Error::other("inherited pipe ends are benchmarked on Unix only"))
    }

    pub(super) fn run(s: &Spec, ep: &Endpoint) -> Result<(), String> {
        let e = |e: io::Error| e.to_string();
        match s.role {
            Role::Accept => {
                let (l, real) = bind(ep.address()?).map_err(e)?;
                say(&format!("ADDR {real}"));
                say("READY");
                loop {
                    // One byte says "accepted", so the client's loop waits for the server as
                    // procwire's handshake does; then the connection is closed.
                    if let Ok(mut c) = accept(&l) {
                        let _ = with_stream!(c, |x| x.write_all(&[1]));
                    }
                }
            }
            Role::Connect => {
                let addr = ep.address()?;
                say("READY");
                s.wait_go()?;
                let start = Instant::now();
                let mut count = 0;
                let mut b = [0u8];
                while start.elapsed() < s.duration {
                    let mut c = connect(addr).map_err(e)?;
                    with_stream!(c, |x| x.read_exact(&mut b)).map_err(e)?;
                    count += 1;
                }
                return report(&Outcome { count, secs: start.elapsed().as_secs_f64(), ..Outcome::default() });
            }
            _ => {}
        }
        let mut stream = match ep {
            Endpoint::Listen(a) => {
                let (l, real) = bind(a).map_err(e)?;
                say(&format!("ADDR {real}"));
                accept(&l).map_err(e)?
            }
            Endpoint::Connect(a) => connect(a).map_err(e)?,
            Endpoint::Inherit => inherit().map_err(e)?,
            Endpoint::InProc => {
                let partner = s.partner()?;
                let (mut passive, mut active) = channel_pair();
                let other = super::spawn(move || session(&partner, &mut passive).map_err(e))?;
                say("READY");
                let mine = session(s, &mut active).map_err(e)?;
                drop(active);
                report(&mine)?;
                let theirs = other.join().map_err(|_| "the passive thread panicked".to_string())??;
                return report(&theirs);
            }
        };
        say("READY");
        let outcome = with_stream!(stream, |x| session(s, x)).map_err(e)?;
        drop(stream);
        report(&outcome)
    }

    /// One end of the in-process baseline: a byte stream over two std `mpsc` channels, each
    /// write one `Vec` sent, reads served from the `Vec` at the front.
    struct ChannelStream {
        tx: mpsc::Sender<Vec<u8>>,
        rx: mpsc::Receiver<Vec<u8>>,
        front: Vec<u8>,
        at: usize,
    }

    fn channel_pair() -> (ChannelStream, ChannelStream) {
        let (tx_a, rx_b) = mpsc::channel();
        let (tx_b, rx_a) = mpsc::channel();
        let end = |tx, rx| ChannelStream { tx, rx, front: Vec::new(), at: 0 };
        (end(tx_a, rx_a), end(tx_b, rx_b))
    }

    impl Read for ChannelStream {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.at == self.front.len() {
                match self.rx.recv() {
                    Ok(v) => (self.front, self.at) = (v, 0),
                    // The other end is gone: end of stream.
                    Err(_) => return Ok(0),
                }
            }
            let n = buf.len().min(self.front.len() - self.at);
            buf[..n].copy_from_slice(&self.front[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    impl Write for ChannelStream {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.tx.send(buf.to_vec()).map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// The frame the raw sender writes for every message: built once, written with one call.
    fn frame(size: usize) -> Vec<u8> {
        let mut f = (size as u32).to_be_bytes().to_vec();
        f.resize(4 + size, 0xa5);
        f
    }

    /// Reads one frame into `buf` (grown when too small); `None` at end of stream.
    fn read_frame<R: Read>(r: &mut R, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        let mut header = [0u8; 4];
        match r.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let len = u32::from_be_bytes(header) as usize;
        if len > buf.len() {
            buf.resize(len, 0);
        }
        r.read_exact(&mut buf[..len])?;
        Ok(Some(len))
    }

    fn session<S: Read + Write>(s: &Spec, stream: &mut S) -> io::Result<Outcome> {
        let wrong_size = |n: usize| io::Error::other(format!("received {n} bytes, expected {}", s.size));
        match s.role {
            Role::StreamRecv => receive(s, stream),
            Role::BatchedRecv => receive(s, &mut BufReader::with_capacity(DEFAULT_BATCH, stream)),
            Role::StreamSend => send(s, stream),
            Role::BatchedSend => {
                let mut w = BufWriter::with_capacity(DEFAULT_BATCH, stream);
                let o = send(s, &mut w)?;
                w.flush()?;
                Ok(o)
            }
            Role::Echo => {
                let mut buf = vec![0u8; 4 + s.size];
                let mut count = 0;
                loop {
                    // Read the frame into place behind its header and write both with one call.
                    match stream.read_exact(&mut buf[..4]) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                        Err(e) => return Err(e),
                    }
                    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                    if 4 + len > buf.len() {
                        buf.resize(4 + len, 0);
                    }
                    stream.read_exact(&mut buf[4..4 + len])?;
                    stream.write_all(&buf[..4 + len])?;
                    count += 1;
                }
                Ok(Outcome { count, ..Outcome::default() })
            }
            Role::Ping => {
                let frame = frame(s.size);
                let mut buf = vec![0u8; s.size];
                let mut ns = Vec::with_capacity(1 << 16);
                s.wait_go().map_err(io::Error::other)?;
                let start = Instant::now();
                while start.elapsed() < s.duration {
                    let t = Instant::now();
                    stream.write_all(&frame)?;
                    let n = read_frame(stream, &mut buf)?
                        .ok_or_else(|| io::Error::other("the echo side closed early"))?;
                    ns.push(t.elapsed().as_nanos() as u64);
                    if n != s.size {
                        return Err(wrong_size(n));
                    }
                }
                Ok(latency_outcome(ns, start.elapsed().as_secs_f64()))
            }
            Role::Idle => Err(io::Error::other("the idle workload is procwire's only")),
            Role::Accept | Role::Connect => unreachable!("handled in run"),
        }
    }

    fn receive<R: Read>(s: &Spec, r: &mut R) -> io::Result<Outcome> {
        let wrong_size = |n: usize| io::Error::other(format!("received {n} bytes, expected {}", s.size));
        let mut buf = vec![0u8; s.size];
        match read_frame(r, &mut buf)? {
            Some(n) if n == s.size => {}
            Some(n) => return Err(wrong_size(n)),
            None => return Err(io::Error::other("the sender closed before the first message")),
        }
        let start = Instant::now();
        let mut count = 0;
        while let Some(n) = read_frame(r, &mut buf)? {
            if n != s.size {
                return Err(wrong_size(n));
            }
            count += 1;
        }
        Ok(Outcome { count, secs: start.elapsed().as_secs_f64(), ..Outcome::default() })
    }

    fn send<W: Write>(s: &Spec, w: &mut W) -> io::Result<Outcome> {
        let frame = frame(s.size);
        let burst = s.burst();
        s.wait_go().map_err(io::Error::other)?;
        let start = Instant::now();
        let mut count = 0;
        while start.elapsed() < s.duration {
            for _ in 0..burst {
                w.write_all(&frame)?;
            }
            count += burst;
        }
        w.flush()?;
        Ok(Outcome { count, secs: start.elapsed().as_secs_f64(), ..Outcome::default() })
    }
}
