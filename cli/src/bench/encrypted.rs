//! `procwire bench --encrypted`: encrypted procwire beside rustls TLS 1.3 (a self-signed
//! certificate from rcgen, full handshakes) and plaintext procwire, over the same loopback TCP,
//! measured in the same run and printed as ratios.
//!
//! Unlike the transport cells, both ends run as two threads of this process: the three
//! implementations are measured the same way, interleaved, `--repeat` times in alternating
//! order, and each figure is the median of its repetitions. The workloads are streaming 64 KiB
//! and 1 MiB messages, batched 16-byte messages, and connect + handshake + close.

use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use procwire::connection::DEFAULT_BATCH;
use procwire::{Client, Connection, Error, Listener};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection, StreamOwned};

use super::Workload;
use crate::Failure;
use crate::units::{si, size, three_digits};

const KEY: &[u8] = b"procwire bench encrypted key";

/// Who carries the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Imp {
    Encrypted,
    Tls,
    Plain,
}

impl Imp {
    const ALL: [Imp; 3] = [Imp::Encrypted, Imp::Tls, Imp::Plain];
}

/// A workload: streaming or batched messages of a size, or connections.
#[derive(Clone, Copy, Debug)]
enum Work {
    Stream(usize),
    Batched(usize),
    Connect,
}

impl Work {
    fn name(self) -> String {
        match self {
            Work::Stream(n) => format!("stream {}", size(n)),
            Work::Batched(n) => format!("batched {}", size(n)),
            Work::Connect => "connect+handshake+close".into(),
        }
    }
}

const WORKS: [Work; 4] = [Work::Stream(64 << 10), Work::Stream(1 << 20), Work::Batched(16), Work::Connect];

/// The TLS configurations of one run: a fresh self-signed certificate, TLS 1.3 only, no
/// session resumption (every connection a full handshake).
struct Tls {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

impl Tls {
    fn new() -> Result<Tls, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).map_err(|e| e.to_string())?;
        let cert = CertificateDer::from(certified.cert.der().to_vec());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .map_err(|e| e.to_string())?;
        // No resumption, so no tickets: a client that never reads them would close with
        // them unread, which resets the connection.
        server.send_tls13_tickets = 0;
        let mut roots = RootCertStore::empty();
        roots.add(cert).map_err(|e| e.to_string())?;
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.resumption = rustls::client::Resumption::disabled();
        Ok(Tls { server: Arc::new(server), client: Arc::new(client) })
    }

    fn accept(&self, sock: TcpStream) -> Result<StreamOwned<ServerConnection, TcpStream>, String> {
        let conn = ServerConnection::new(self.server.clone()).map_err(|e| e.to_string())?;
        let mut s = StreamOwned::new(conn, sock);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock).map_err(|e| e.to_string())?;
        }
        Ok(s)
    }

    fn connect(
        &self,
        addr: std::net::SocketAddr,
    ) -> Result<StreamOwned<ClientConnection, TcpStream>, String> {
        let sock = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        sock.set_nodelay(true).map_err(|e| e.to_string())?;
        let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
        let conn = ClientConnection::new(self.client.clone(), name).map_err(|e| e.to_string())?;
        let mut s = StreamOwned::new(conn, sock);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock).map_err(|e| e.to_string())?;
        }
        Ok(s)
    }
}

/// One measurement: messages or connections per second.
fn measure(imp: Imp, work: Work, duration: Duration, tls: &Tls) -> Result<f64, String> {
    match imp {
        Imp::Tls => tls_run(work, duration, tls),
        Imp::Encrypted | Imp::Plain => procwire_run(imp == Imp::Encrypted, work, duration),
    }
}

fn procwire_run(encrypt: bool, work: Work, duration: Duration) -> Result<f64, String> {
    let err = |e: Error| e.to_string();
    let listener = Listener::builder().authkey(KEY).encrypt(encrypt).bind("tcp:127.0.0.1:0").map_err(err)?;
    let addr = listener.address().clone();
    let client = move || Client::builder().authkey(KEY).encrypt(encrypt).connect(&addr);
    if let Work::Connect = work {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let t = thread::spawn(move || {
            let start = Instant::now();
            let mut count = 0u64;
            while start.elapsed() < duration {
                client()?.close()?;
                count += 1;
            }
            let rate = count as f64 / start.elapsed().as_secs_f64();
            stop2.store(true, Ordering::Relaxed);
            Ok::<f64, Error>(rate)
        });
        // A refused or broken connection is the client's to report. The listener looks at the
        // flag between short waits: a wake-up connection would need a handshake, and one that
        // arrives after the last look would wait out the handshake timeout.
        while !stop.load(Ordering::Relaxed) {
            let _ = listener.accept_timeout(Duration::from_millis(10));
        }
        return t.join().map_err(|_| "client thread panicked".to_string())?.map_err(err);
    }
    let (n, batched) = match work {
        Work::Stream(n) => (n, false),
        Work::Batched(n) => (n, true),
        Work::Connect => unreachable!(),
    };
    let sender = thread::spawn(move || -> procwire::Result<()> {
        let mut conn = client()?;
        if batched {
            conn.set_batching(Some(DEFAULT_BATCH));
        }
        let payload = vec![0xa5u8; n];
        let start = Instant::now();
        while start.elapsed() < duration {
            for _ in 0..64 {
                conn.send_bytes(&payload)?;
            }
        }
        conn.close()
    });
    let mut conn: Connection = listener.accept().map_err(err)?;
    let mut buf = Vec::with_capacity(n);
    conn.recv_bytes_into(&mut buf).map_err(err)?;
    let start = Instant::now();
    let mut count = 0u64;
    loop {
        match conn.recv_bytes_into(&mut buf) {
            Ok(got) if got == n => count += 1,
            Ok(got) => return Err(format!("received {got} bytes, expected {n}")),
            Err(Error::Closed) => break,
            Err(e) => return Err(e.to_string()),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    sender.join().map_err(|_| "sender panicked".to_string())?.map_err(err)?;
    Ok(count as f64 / secs)
}

fn tls_run(work: Work, duration: Duration, tls: &Tls) -> Result<f64, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let client_tls = Tls { server: tls.server.clone(), client: tls.client.clone() };
    if let Work::Connect = work {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let t = thread::spawn(move || -> Result<f64, String> {
            let start = Instant::now();
            let mut count = 0u64;
            while start.elapsed() < duration {
                let mut s = client_tls.connect(addr)?;
                s.conn.send_close_notify();
                let _ = s.flush();
                count += 1;
            }
            let rate = count as f64 / start.elapsed().as_secs_f64();
            stop2.store(true, Ordering::Relaxed);
            // Wakes the listener for it to see the flag (no handshake: it only accepts).
            let _ = TcpStream::connect(addr);
            Ok(rate)
        });
        while !stop.load(Ordering::Relaxed) {
            let (sock, _) = listener.accept().map_err(|e| e.to_string())?;
            if stop.load(Ordering::Relaxed) {
                break;
            }
            sock.set_nodelay(true).map_err(|e| e.to_string())?;
            let _ = tls.accept(sock);
        }
        return t.join().map_err(|_| "client thread panicked".to_string())?;
    }
    let (n, batched) = match work {
        Work::Stream(n) => (n, false),
        Work::Batched(n) => (n, true),
        Work::Connect => unreachable!(),
    };
    let sender = thread::spawn(move || -> Result<(), String> {
        let s = client_tls.connect(addr)?;
        let e = |e: std::io::Error| e.to_string();
        let header = (n as u32).to_be_bytes();
        let payload = vec![0xa5u8; n];
        let start = Instant::now();
        // Batched: frames gather in a 64 KiB buffer, as procwire's batching does.
        let mut w = BufWriter::with_capacity(if batched { DEFAULT_BATCH } else { 0 }, s);
        while start.elapsed() < duration {
            for _ in 0..64 {
                w.write_all(&header).map_err(e)?;
                w.write_all(&payload).map_err(e)?;
            }
        }
        let mut s = w.into_inner().map_err(|e| e.to_string())?;
        s.conn.send_close_notify();
        s.flush().map_err(e)
    });
    let (sock, _) = listener.accept().map_err(|e| e.to_string())?;
    sock.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut r = BufReader::with_capacity(64 << 10, tls.accept(sock)?);
    let mut buf = vec![0u8; n];
    let mut next = |r: &mut BufReader<_>| -> Result<bool, String> {
        let mut header = [0u8; 4];
        match r.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(e) => return Err(e.to_string()),
        }
        if u32::from_be_bytes(header) as usize != n {
            return Err("a frame of the wrong size".into());
        }
        r.read_exact(&mut buf).map_err(|e| e.to_string())?;
        Ok(true)
    };
    next(&mut r)?;
    let start = Instant::now();
    let mut count = 0u64;
    while next(&mut r)? {
        count += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    sender.join().map_err(|_| "sender panicked".to_string())??;
    Ok(count as f64 / secs)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// Whether `work` is one of `only` (all when empty): `--workloads` picks rows.
fn picked(work: Work, only: &[Workload]) -> bool {
    let kind = match work {
        Work::Stream(_) => Workload::Stream,
        Work::Batched(_) => Workload::Batched,
        Work::Connect => Workload::Connect,
    };
    only.is_empty() || only.contains(&kind)
}

/// Runs the comparison of the workloads of `only` (all when empty) and prints its table.
pub fn run(duration: Duration, repeat: u32, only: &[Workload]) -> Result<(), Failure> {
    let tls = Tls::new().map_err(|e| Failure::new(format!("TLS setup: {e}")))?;
    println!(
        "encrypted TCP on loopback, both ends threads of one process; median of {repeat} runs of {duration:?}"
    );
    println!(
        "{:<26}{:>14}{:>14}{:>14}{:>12}{:>12}",
        "workload (per second)", "procwire enc", "rustls 1.3", "procwire", "enc/tls", "enc/plain"
    );
    for work in WORKS.into_iter().filter(|&w| picked(w, only)) {
        let mut reps: [Vec<f64>; 3] = Default::default();
        for rep in 0..repeat {
            let order: Vec<usize> = if rep % 2 == 0 { vec![0, 1, 2] } else { vec![2, 1, 0] };
            for i in order {
                let r = measure(Imp::ALL[i], work, duration, &tls)
                    .map_err(|e| Failure::new(format!("{} {:?}: {e}", work.name(), Imp::ALL[i])))?;
                reps[i].push(r);
            }
        }
        let [enc, tls_rate, plain] = reps.map(median);
        println!(
            "{:<26}{:>14}{:>14}{:>14}{:>11}x{:>11}x",
            work.name(),
            si(enc),
            si(tls_rate),
            si(plain),
            three_digits(enc / tls_rate),
            three_digits(enc / plain)
        );
    }
    Ok(())
}
