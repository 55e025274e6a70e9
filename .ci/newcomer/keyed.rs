//! A keyed server and client with typed messages and a read timeout, as a newcomer writes it
//! from README alone.
use std::time::Duration;

use procwire::{AuthKey, Client, Error, Listener};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum Request {
    Greet { name: String },
    Bye,
}

fn main() -> procwire::Result<()> {
    let key = AuthKey::random()?;
    let listener = Listener::builder().authkey(key.clone()).bind("tcp:127.0.0.1:0")?;
    let address = listener.address().clone();
    let server = std::thread::spawn(move || -> procwire::Result<u32> {
        let mut conn = listener.accept()?;
        let mut served = 0;
        while let Request::Greet { name } = conn.recv()? {
            conn.send(&format!("hello, {name}"))?;
            served += 1;
        }
        Ok(served)
    });
    let mut conn = Client::builder().authkey(key).connect(&address)?;
    conn.set_read_timeout(Some(Duration::from_millis(200)));
    conn.send(&Request::Greet { name: "ada".into() })?;
    assert_eq!(conn.recv::<String>()?, "hello, ada");
    // Nothing more comes: the read times out and loses nothing.
    assert!(matches!(conn.recv::<String>(), Err(Error::Timeout(_))));
    conn.send(&Request::Bye)?;
    assert_eq!(server.join().expect("server thread")?, 1);
    println!("keyed: ok");
    Ok(())
}
