//! `process::create` (fork with a channel) and `Exchange::ready`/`remove` used directly. This
//! test has its own `main` (`harness = false`): `create` needs a single-threaded process, and
//! libtest runs tests on threads. Unix only, as `create` (Windows has no fork).

#[cfg(unix)]
use std::time::Duration;

#[cfg(unix)]
use procwire::process::{Exchange, Forked, create};

#[cfg(not(unix))]
fn main() {
    println!("process::create (fork) exists on Unix only: nothing to test here");
}

#[cfg(unix)]
fn check(ok: bool, what: &str) {
    if !ok {
        eprintln!("FAILED: {what}");
        std::process::exit(1);
    }
    println!("ok: {what}");
}

#[cfg(unix)]
fn main() -> procwire::Result<()> {
    if cfg!(not(unix)) {
        println!("create() is Unix-only: nothing to test here");
        return Ok(());
    }
    // One child: a request and its answer, then the exit code.
    // SAFETY: no thread has been started; the child ends with process::exit.
    match unsafe { create() }? {
        Forked::Child(mut conn) => {
            let n: u64 = conn.recv()?;
            conn.send(&(n * n, std::process::id()))?;
            std::process::exit(7);
        }
        Forked::Parent(mut ch) => {
            ch.set_read_timeout(Some(Duration::from_secs(30)));
            ch.send(&12u64)?;
            let (sq, pid): (u64, u32) = ch.recv()?;
            check(sq == 144, "the forked child computed 12 squared");
            check(pid == ch.pid(), "the child's pid is the channel's pid");
            check(ch.join_timeout(Duration::from_secs(30))? == Some(7), "the child's exit code arrives");
        }
    }

    // Four children in an Exchange, taken with ready() and remove() instead of a handler.
    let mut ex = Exchange::new();
    for i in 0..4u64 {
        // SAFETY: still single-threaded; each child exits.
        match unsafe { create() }? {
            Forked::Child(mut conn) => {
                conn.send(&(i * 10))?;
                // Wait for the parent's word, so the channel is still open when it is removed.
                let _ = conn.recv_bytes();
                std::process::exit(0);
            }
            Forked::Parent(ch) => ex.add(ch),
        }
    }
    check(ex.active().len() == 4, "four channels are active");
    let mut got = Vec::new();
    let mut pids = Vec::new();
    while got.len() < 4 {
        for ch in ex.ready_timeout(Duration::from_secs(30))? {
            got.push(ch.recv::<u64>()?);
            pids.push(ch.pid());
        }
    }
    got.sort_unstable();
    check(got == [0, 10, 20, 30], "every child's message arrived exactly once");
    for pid in pids {
        let mut ch = ex.remove(pid).expect("a removed channel comes back");
        ch.send_bytes(b"bye")?;
        check(ch.join_timeout(Duration::from_secs(30))? == Some(0), "a removed child exits cleanly");
    }
    check(ex.active().is_empty(), "the exchange is empty after removing every channel");
    ex.finish()?;
    println!("1 passed, 0 failed");
    Ok(())
}
