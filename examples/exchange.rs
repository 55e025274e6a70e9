//! A Listener and a Client in two processes, authenticated with a shared key, exchanging
//! byte and typed messages; both sides print what they send and receive.
//!
//! ```text
//! cargo run --release --example exchange                 # Unix socket (named pipe on Windows)
//! cargo run --release --example exchange -- tcp          # TCP on loopback
//! ```
//!
//! The parent binds a fresh address and starts this same program again as the client, passing
//! the address and a random key through the environment (a real deployment would keep the key
//! in a file only its processes can read: `AuthKey::from_file`).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use procwire::{Address, AuthKey, Client, Family, Listener};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
enum Request {
    Square(i64),
    Stats { values: Vec<f64> },
    Bye,
}

#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    Square(i64),
    Stats(BTreeMap<String, f64>),
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex key")).collect()
}

fn main() -> procwire::Result<()> {
    if let Ok(addr) = std::env::var("EXCHANGE_ADDR") {
        return client(&addr.parse()?, AuthKey::new(unhex(&std::env::var("EXCHANGE_KEY").expect("key"))));
    }
    let family = match std::env::args().nth(1).as_deref() {
        Some("tcp") => Family::Tcp,
        Some("abstract") => Family::UnixAbstract,
        _ => Family::default(),
    };
    let key = AuthKey::random()?;
    let listener = Listener::builder().authkey(key.clone()).bind(&Address::fresh(family)?)?;
    println!("[listener pid {}] listening on {}", std::process::id(), listener.address());

    let mut child = Command::new(std::env::current_exe()?)
        .env("EXCHANGE_ADDR", listener.address().to_string())
        .env("EXCHANGE_KEY", hex(key.as_bytes()))
        .spawn()?;

    let started = Instant::now();
    let mut conn = listener.accept_timeout(Duration::from_secs(30))?;
    println!(
        "[listener] accepted an authenticated client from {} in {:?}",
        listener
            .last_accepted()
            .map_or("a peer without an address (Unix socket or pipe)".into(), |a| a.to_string()),
        started.elapsed()
    );
    conn.set_read_timeout(Some(Duration::from_secs(30)));

    let greeting = conn.recv_bytes()?;
    println!("[listener] received bytes: {:?}", String::from_utf8_lossy(&greeting));
    conn.send_bytes(b"hello from the listener")?;

    loop {
        let req: Request = conn.recv()?;
        println!("[listener] received {req:?}");
        let reply = match req {
            Request::Square(n) => Reply::Square(n.saturating_mul(n)),
            Request::Stats { values } => {
                let n = values.len() as f64;
                let mean = values.iter().sum::<f64>() / n;
                let mut m = BTreeMap::new();
                m.insert("count".to_string(), n);
                m.insert("mean".to_string(), mean);
                m.insert("max".to_string(), values.iter().copied().fold(f64::MIN, f64::max));
                Reply::Stats(m)
            }
            Request::Bye => break,
        };
        println!("[listener] sending {reply:?}");
        conn.send(&reply)?;
    }
    let big = conn.recv_bytes()?;
    println!(
        "[listener] received a {} byte message, checksum {}",
        big.len(),
        big.iter().map(|&b| b as u64).sum::<u64>()
    );
    conn.send_bytes(&big)?;
    let status = child.wait()?;
    println!("[listener] client exited with {status}");
    if !status.success() {
        std::process::exit(1);
    }
    Ok(())
}

fn client(addr: &Address, key: AuthKey) -> procwire::Result<()> {
    let mut conn = Client::builder()
        .authkey(key)
        .wait_for_listener(Duration::from_secs(10))
        .read_timeout(Some(Duration::from_secs(30)))
        .connect(addr)?;
    let me = std::process::id();
    println!("[client pid {me}] connected and authenticated to {addr}");
    conn.send_bytes(b"hello from the client")?;
    println!("[client] received bytes: {:?}", String::from_utf8_lossy(&conn.recv_bytes()?));
    for req in [Request::Square(12), Request::Stats { values: vec![1.5, 2.5, 9.0] }] {
        println!("[client] sending {req:?}");
        conn.send(&req)?;
        let reply: Reply = conn.recv()?;
        println!("[client] received {reply:?}");
    }
    conn.send(&Request::Bye)?;
    let big: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
    let t = Instant::now();
    conn.send_bytes(&big)?;
    let back = conn.recv_bytes()?;
    assert!(back == big, "the 4 MiB message came back changed");
    println!("[client] a 4 MiB message went there and back intact in {:?}", t.elapsed());
    Ok(())
}
