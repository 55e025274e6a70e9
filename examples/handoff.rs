//! A listener process hands the connections it accepts to worker processes, which answer the
//! clients directly (Unix: descriptors travel over the workers' Unix-socket channels).
//!
//! `cargo run --example handoff`

#[cfg(unix)]
mod demo {
    use procwire::handles::{recv_connection, send_connection};
    use procwire::process::{ChannelFunction, start};
    use procwire::{Address, Client, Connection, Family, Listener};

    /// A worker: takes connections from its channel and answers one request on each.
    fn worker(mut ch: Connection, id: u32) {
        while let Ok(mut client) = recv_connection(&mut ch) {
            let Ok(n) = client.recv::<u64>() else { continue };
            let _ = client.send(&(id, n * n));
        }
    }

    pub static WORKER: ChannelFunction<u32> = ChannelFunction::new("worker", worker);

    pub fn main() -> procwire::Result<()> {
        procwire::process::init(&[&WORKER]);
        let mut workers = [start(&WORKER, 0)?.into_connection(), start(&WORKER, 1)?.into_connection()];

        let key = procwire::AuthKey::random()?;
        let listener = Listener::builder().authkey(key.clone()).bind(&Address::fresh(Family::Unix)?)?;
        let addr = listener.address().clone();
        let clients = std::thread::spawn(move || -> procwire::Result<Vec<(u32, u64)>> {
            (0..6u64)
                .map(|n| {
                    let mut c = Client::builder().authkey(key.clone()).connect(&addr)?;
                    c.send(&n)?;
                    c.recv()
                })
                .collect()
        });
        for i in 0..6 {
            let conn = listener.accept()?;
            send_connection(&mut workers[i % 2], conn)?;
        }
        for (n, (worker, square)) in clients.join().expect("clients")?.into_iter().enumerate() {
            println!("client {n}: worker {worker} answered {square}");
            assert_eq!(square, (n * n) as u64);
        }
        Ok(())
    }
}

#[cfg(unix)]
fn main() -> procwire::Result<()> {
    demo::main()
}

#[cfg(not(unix))]
fn main() {
    eprintln!("handing descriptors to other processes needs Unix");
}
