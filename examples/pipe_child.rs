//! `Pipe()` across a process boundary, the seed's "objects can be transferred between
//! processes using pipes": the parent keeps one end of a duplex pipe, a child process gets the
//! other, and they trade typed messages until the parent sends `None`.
//!
//! ```text
//! cargo run --example pipe_child
//! ```

use std::process::Command;
use std::time::Duration;

use procwire::Connection;

const VAR: &str = "PIPE_CHILD_CONN";

fn main() -> procwire::Result<()> {
    if std::env::var_os(VAR).is_some() {
        // The child: square every number until told to stop.
        let mut conn = Connection::from_env(VAR)?;
        while let Some(n) = conn.recv::<Option<u64>>()? {
            conn.send(&(n, n * n))?;
        }
        println!("[child {}] done", std::process::id());
        return Ok(());
    }
    let (mut mine, theirs) = procwire::pipe(true)?;
    let mut cmd = Command::new(std::env::current_exe()?);
    theirs.pass_to_child(&mut cmd, VAR)?;
    let mut child = cmd.spawn()?;
    // The child has its own copy now. The command holds another until it is dropped; closing
    // both lets end-of-stream reach each side properly.
    drop(cmd);
    drop(theirs);
    mine.set_read_timeout(Some(Duration::from_secs(10)));
    for n in 1..=5u64 {
        mine.send(&Some(n))?;
        let (x, sq): (u64, u64) = mine.recv()?;
        println!("[parent] {x} squared is {sq}");
    }
    mine.send(&None::<u64>)?;
    let status = child.wait()?;
    println!("[parent] child exited with {status}");
    Ok(())
}
