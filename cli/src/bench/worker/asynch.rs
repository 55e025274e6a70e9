//! The `async` implementation: the procwire roles over `procwire::tokio`, on a
//! current-thread runtime (one thread, as the blocking worker), over sockets only.

use std::io;
use std::time::Instant;

use procwire::tokio::{Client, Connection, DEFAULT_BATCH, Listener};
use procwire::{AuthKey, Error};

use super::{Endpoint, Outcome, Role, Spec, key_from_env, latency_outcome, report, say};

fn fail(m: String) -> Error {
    Error::Io(io::Error::other(m))
}

/// Runs the role of `s` at `ep` on a runtime of its own.
pub(super) fn run(s: &Spec, ep: &Endpoint) -> procwire::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(side(s, ep, key_from_env().map_err(fail)?))
}

async fn side(s: &Spec, ep: &Endpoint, key: AuthKey) -> procwire::Result<()> {
    match s.role {
        Role::Accept => {
            let mut listener = Listener::builder().authkey(key).bind(ep.address().map_err(fail)?).await?;
            say(&format!("ADDR {}", listener.address()));
            say("READY");
            loop {
                // Each connection is dropped (closed) as soon as its handshake is done.
                let _ = listener.accept().await;
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
                drop(builder.clone().connect(addr).await?);
                count += 1;
            }
            return report(&Outcome { count, secs: start.elapsed().as_secs_f64(), ..Outcome::default() })
                .map_err(fail);
        }
        _ => {}
    }
    let conn = match ep {
        Endpoint::Listen(a) => {
            let mut listener = Listener::builder().authkey(key).bind(a).await?;
            say(&format!("ADDR {}", listener.address()));
            listener.accept().await?
        }
        Endpoint::Connect(a) => Client::builder().authkey(key).connect(a).await?,
        Endpoint::Inherit | Endpoint::InProc => {
            return Err(fail("the async implementation runs over sockets only".into()));
        }
    };
    say("READY");
    let outcome = session(s, conn).await?;
    report(&outcome).map_err(fail)
}

/// One side of a session over `conn`, as `procwire_session` does it with the blocking API.
async fn session(s: &Spec, mut conn: Connection) -> procwire::Result<Outcome> {
    let wrong_size = |n: usize| fail(format!("received {n} bytes, expected {}", s.size));
    let outcome = match s.role {
        Role::StreamRecv | Role::BatchedRecv => {
            let mut buf = Vec::with_capacity(s.size);
            let n = conn.recv_bytes_into(&mut buf).await?;
            if n != s.size {
                return Err(wrong_size(n));
            }
            let start = Instant::now();
            let mut count = 0;
            loop {
                match conn.recv_bytes_into(&mut buf).await {
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
                    conn.send_bytes(&payload).await?;
                }
                count += burst;
            }
            conn.close().await?;
            Outcome { count, secs: start.elapsed().as_secs_f64(), ..Outcome::default() }
        }
        Role::Echo => {
            let mut buf = Vec::with_capacity(s.size);
            let mut count = 0;
            loop {
                match conn.recv_bytes_into(&mut buf).await {
                    Ok(n) => conn.send_bytes(&buf[..n]).await?,
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
                conn.send_bytes(&payload).await?;
                let n = conn.recv_bytes_into(&mut buf).await?;
                ns.push(t.elapsed().as_nanos() as u64);
                if n != s.size {
                    return Err(wrong_size(n));
                }
            }
            let secs = start.elapsed().as_secs_f64();
            drop(conn);
            latency_outcome(ns, secs)
        }
        Role::Idle => return Err(fail("the idle workload is the blocking procwire's only".into())),
        Role::Accept | Role::Connect => return Err(fail("connect roles need an address".into())),
    };
    Ok(outcome)
}
