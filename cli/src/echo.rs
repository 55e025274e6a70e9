//! `procwire echo` (an authenticated echo server) and `procwire ping` (round trips against
//! one), for checking a deployment and for testing peers written in other languages.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use procwire::connection::DEFAULT_MAX_MESSAGE_SIZE;
use procwire::{Address, AuthKey, Client, Connection, Error, Listener};

use crate::Failure;
use crate::units::{micros, parse_duration, parse_size};

/// The environment variable that holds the authkey when no `--authkey-file` is given.
pub const AUTHKEY_VAR: &str = "PROCWIRE_AUTHKEY";
/// How long `ping` waits for a refusal after a failed send.
const REFUSAL_WAIT: Duration = Duration::from_secs(2);

/// Where the authkey comes from.
#[derive(Args, Debug)]
pub struct KeyArgs {
    /// Read the authkey from this file (its whole content, byte for byte). Without it, the
    /// key is the value of the PROCWIRE_AUTHKEY environment variable.
    #[arg(long, value_name = "FILE")]
    authkey_file: Option<PathBuf>,
    /// Also accept CPython 3.11's HMAC-MD5 handshake (MD5 is weak: only for such peers).
    #[cfg(feature = "legacy-md5")]
    #[arg(long)]
    legacy_md5: bool,
    /// Encrypt the connection, keyed by the authkey (Noise; both sides need it).
    #[arg(long)]
    encrypt: bool,
}

impl KeyArgs {
    fn key(&self) -> Result<AuthKey, Failure> {
        if let Some(path) = &self.authkey_file {
            return AuthKey::from_file(path).map_err(|e| Failure::new(format!("{e}")));
        }
        match std::env::var_os(AUTHKEY_VAR) {
            Some(v) if !v.is_empty() => Ok(AuthKey::new(v.into_encoded_bytes())),
            Some(_) => Err(Failure::new(format!("{AUTHKEY_VAR} is set but empty"))),
            None => Err(Failure::new(format!(
                "no authkey: pass --authkey-file FILE or set the {AUTHKEY_VAR} environment variable"
            ))),
        }
    }
}

/// Options of `procwire echo`.
#[derive(Args, Debug)]
pub struct EchoArgs {
    /// The address to listen on: unix:/path, unix:@name (Linux), tcp:host:port (port 0: any
    /// free port), pipe:NAME (a Windows named pipe).
    #[arg(long, value_name = "ADDR")]
    listen: Address,
    #[command(flatten)]
    key: KeyArgs,
    /// The largest message accepted, e.g. 64m.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_message_size: Option<usize>,
}

/// Options of `procwire ping`.
#[derive(Args, Debug)]
pub struct PingArgs {
    /// The address of a `procwire echo` server (or any echoing peer).
    #[arg(value_name = "ADDR")]
    addr: Address,
    #[command(flatten)]
    key: KeyArgs,
    /// Number of round trips.
    #[arg(long, short = 'c', default_value_t = 10)]
    count: u64,
    /// Message size, e.g. 64, 4k, 1m.
    #[arg(long, short = 's', default_value = "64", value_parser = parse_size)]
    size: usize,
    /// Pause between round trips, e.g. 100ms.
    #[arg(long, short = 'i', default_value = "0s", value_parser = parse_duration)]
    interval: Duration,
    /// Limit for connecting, the handshake and each reply.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// Print only the summary.
    #[arg(long, short = 'q')]
    quiet: bool,
}

/// Runs the echo server until it is killed.
pub fn echo(args: &EchoArgs) -> Result<(), Failure> {
    let mut builder = Listener::builder().authkey(args.key.key()?).encrypt(args.key.encrypt);
    #[cfg(feature = "legacy-md5")]
    {
        builder = builder.legacy_md5(args.key.legacy_md5);
    }
    if let Some(max) = args.max_message_size {
        builder = builder.max_message_size(max as u64);
    }
    let listener = builder.bind(&args.listen).map_err(|e| Failure::new(format!("{e}")))?;
    // The first line on stdout is the address alone (the real port after binding port 0), for
    // scripts; everything else goes to stderr.
    println!("{}", listener.address());
    note(format_args!("listening on {}", listener.address()));
    note(format_args!("every message comes back as it was; stop with Ctrl-C"));
    for n in 1u64.. {
        match listener.accept() {
            Ok(conn) => {
                let from = listener.last_accepted().map_or_else(String::new, |a| format!(" from {a}"));
                let creds = conn.peer_credentials().map_or_else(String::new, |c| format!(" ({c})"));
                let peer = format!("client {n}");
                note(format_args!("{peer} connected{from}{creds}"));
                // Out of threads or memory refuses this client (its connection closes when the
                // closure is dropped) and keeps serving the others.
                let spawned = std::thread::Builder::new().spawn(move || serve(conn, &peer));
                if let Err(e) = spawned {
                    note(format_args!("client {n} refused: cannot start a thread for it: {e}"));
                }
            }
            Err(e) => note(format_args!("refused a client: {e}")),
        }
    }
    Ok(())
}

fn serve(mut conn: Connection, peer: &str) {
    let mut buf = Vec::new();
    let mut count = 0u64;
    let end = loop {
        match conn.recv_bytes_into(&mut buf) {
            Ok(n) => {
                if let Err(e) = conn.send_bytes(&buf[..n]) {
                    break format!("send failed: {e}");
                }
                count += 1;
            }
            Err(Error::Closed) => break "closed".into(),
            Err(Error::MessageTooLarge { len, max }) => {
                // Without a word the client would see only its connection reset.
                let why =
                    format!("message too large: the server accepts at most {max} bytes, this one has {len}");
                let _ = conn.send_bytes(format!("{REFUSAL}{why}").as_bytes());
                break why;
            }
            Err(e) => break format!("{e}"),
        }
    };
    note(format_args!("{peer} after {count} messages: {end}"));
}

/// How a refusal starts: the one message `echo` sends instead of an echo, before it closes the
/// connection, when it cannot take a message (one over `--max-message-size`). The rest is the
/// reason, in UTF-8.
pub const REFUSAL: &str = "procwire echo refused: ";

/// The reason in `reply` if it is a refusal rather than the echo of `msg`.
fn refusal<'a>(reply: &'a [u8], msg: &[u8]) -> Option<std::borrow::Cow<'a, str>> {
    let why = reply.strip_prefix(REFUSAL.as_bytes()).filter(|_| reply != msg)?;
    Some(String::from_utf8_lossy(why))
}

/// A line on stderr. A closed or full stderr is ignored: `eprintln!` would panic, and the
/// server must not stop over its log.
fn note(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "procwire echo: {line}");
}

/// Byte `i` of the message of round trip `seq`, so that a reply to another round trip shows.
fn pattern(buf: &mut [u8], seq: u64) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = ((i as u64 + seq * 7) % 251) as u8;
    }
}

/// Runs `count` round trips and prints them and a summary, like ping.
pub fn ping(args: &PingArgs) -> Result<(), Failure> {
    let addr = &args.addr;
    let builder = Client::builder()
        .authkey(args.key.key()?)
        .encrypt(args.key.encrypt)
        .connect_timeout(args.timeout)
        .handshake_timeout(args.timeout)
        .read_timeout(Some(args.timeout))
        .write_timeout(Some(args.timeout))
        // The reply is as large as the message.
        .max_message_size(DEFAULT_MAX_MESSAGE_SIZE.max(args.size as u64));
    #[cfg(feature = "legacy-md5")]
    let builder = builder.legacy_md5(args.key.legacy_md5);
    let started = Instant::now();
    let mut conn = builder.connect(addr).map_err(|e| match e {
        Error::AuthenticationFailed(why) => Failure {
            code: 3,
            message: format!(
                "authentication with {addr} failed: {why}\n\
                 hint: both sides need the same key (--authkey-file FILE or {AUTHKEY_VAR})"
            ),
        },
        e => Failure::new(e.to_string()),
    })?;
    let handshake = started.elapsed();
    println!(
        "PING {addr}: {} byte messages, connected and authenticated in {}",
        args.size,
        micros(handshake.as_secs_f64() * 1e6)
    );
    let mut msg = vec![0u8; args.size];
    let mut reply = Vec::with_capacity(args.size);
    let mut rtts = Vec::with_capacity(args.count.min(1 << 24) as usize);
    for seq in 1..=args.count {
        pattern(&mut msg, seq);
        let t = Instant::now();
        round_trip(&mut conn, addr, &msg, &mut reply)
            .map_err(|e| Failure::new(format!("round trip {seq}: {e}")))?;
        let rtt = t.elapsed();
        rtts.push(rtt.as_secs_f64() * 1e6);
        if !args.quiet {
            println!("{} bytes from {addr}: seq={seq} time={}", reply.len(), micros(rtts[rtts.len() - 1]));
        }
        if !args.interval.is_zero() && seq < args.count {
            std::thread::sleep(args.interval);
        }
    }
    let _ = conn.close();
    println!("--- {addr} procwire ping statistics ---");
    println!("{} round trips of {} bytes, all replies intact", rtts.len(), args.size);
    if !rtts.is_empty() {
        rtts.sort_by(f64::total_cmp);
        let us = |x: f64| crate::units::three_digits(x);
        println!(
            "rtt min/median/p99/max = {}/{}/{}/{} µs",
            us(rtts[0]),
            us(quantile(&rtts, 0.5)),
            us(quantile(&rtts, 0.99)),
            us(rtts[rtts.len() - 1])
        );
    }
    Ok(())
}

/// Sends `msg` and receives its echo into `reply`. A refusal (see [`REFUSAL`]) is reported
/// with the server's reason, also when it comes after the send failed: the server closes the
/// connection without reading the rest of a message it refused.
fn round_trip(conn: &mut Connection, addr: &Address, msg: &[u8], reply: &mut Vec<u8>) -> Result<(), String> {
    let refused = |why: &str| format!("{addr} refused the message: {why}");
    if let Err(e) = conn.send_bytes(msg) {
        // A refusal, if there is one, is already here or about to be.
        conn.set_read_timeout(Some(REFUSAL_WAIT));
        if conn.recv_bytes_into(reply).is_ok()
            && let Some(why) = refusal(reply, msg)
        {
            return Err(refused(&why));
        }
        return Err(format!("send failed: {e}"));
    }
    conn.recv_bytes_into(reply).map_err(|e| format!("no reply from {addr}: {e}"))?;
    if let Some(why) = refusal(reply, msg) {
        return Err(refused(&why));
    }
    if reply != msg {
        return Err(format!(
            "the reply ({} bytes) differs from the message sent ({} bytes)",
            reply.len(),
            msg.len()
        ));
    }
    Ok(())
}

/// The `q` quantile of sorted, non-empty `v` (nearest rank).
pub fn quantile(v: &[f64], q: f64) -> f64 {
    let rank = (q * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}
