//! The doorbell of a shared-memory stream: the socket (Windows: named pipe) the connection was
//! made on. A side that is about to sleep says so in the ring ([`super::ring`]) and sleeps
//! waiting for the socket to be readable; the other side, seeing that, writes the platform's
//! bell to it (one byte; on a pipe, a one-byte message). The socket also carries the peer's
//! death: end of file once its process is gone, however it ended.
//!
//! Nothing else travels on the socket (but for a keyless client's first message, which the
//! listener expects there): any other byte means the peer is not on shared memory at all, a
//! plain client that connected to the `shm:` listener's socket, and the stream reports that.
//!
//! The two halves of a split connection may sleep at once on the one socket. Only one of them
//! polls it (the leader); the other waits on a condition variable the leader signals after each
//! wake-up, so a byte meant for one is never taken by the other while it sleeps.

use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::transport::platform::Stream as Socket;
use crate::transport::platform::shm_region::BELL;
use crate::util::{lock, wait_deadline};

/// The longest one sleep lasts before the sleeper looks at its ring again even if nobody rang:
/// a bound on the cost of a wake-up lost in a way not foreseen here.
pub(crate) const RECHECK: Duration = Duration::from_millis(100);

/// Who sleeps on a doorbell.
#[derive(Debug, Default)]
struct Sleepers {
    /// Whether a thread is polling the socket now (the leader).
    polling: bool,
    /// Threads waiting for the leader's signal: only then is there anyone to signal (a
    /// signal is a system call even when nobody waits).
    following: usize,
}

/// The socket under a shared-memory stream, as doorbell and liveness signal.
#[derive(Debug)]
pub(crate) struct Doorbell {
    pub(super) socket: Socket,
    sleepers: Mutex<Sleepers>,
    woken: Condvar,
    /// The peer's end of the socket is closed: it is gone, or dropped its end.
    closed: AtomicBool,
    /// The bytes expected on the socket before the first bell, and how many bytes came (up
    /// to the end of those, then counting through the bell's bytes).
    first: Vec<u8>,
    seen: AtomicUsize,
    /// The peer wrote something that is neither those bytes nor a doorbell byte.
    foreign: AtomicBool,
}

impl Doorbell {
    /// The doorbell on `socket`, where the peer first writes `first`, then only [`BELL`]s.
    pub(crate) fn new(socket: Socket, first: &[u8]) -> Doorbell {
        Doorbell {
            socket,
            sleepers: Mutex::new(Sleepers::default()),
            woken: Condvar::new(),
            closed: AtomicBool::new(false),
            first: first.to_vec(),
            seen: AtomicUsize::new(0),
            foreign: AtomicBool::new(false),
        }
    }

    /// An error once the peer wrote bytes no shared-memory peer writes: it is a plain
    /// client of the `shm:` listener's socket (or it answered our region with a refusal), or
    /// it breaks the protocol. The doorbell does not know which kind of connection it serves
    /// (a listener's, a client's, a pipe's), so the message names both causes.
    pub(crate) fn check_peer(&self) -> io::Result<()> {
        if !self.foreign.load(Ordering::Acquire) {
            return Ok(());
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            crate::Error::Protocol(
                "the peer wrote bytes on the doorbell socket that no shared-memory peer writes: a \
                 client without shared memory connected to this shm: listener (it must connect to \
                 the shm: address, not to the plain one at the same path), or a peer that broke the \
                 protocol"
                    .into(),
            ),
        ))
    }

    /// Reads the bytes the peer writes first, if they have not all been read yet, waiting
    /// until `deadline` at most: from then on the socket carries doorbell bytes only, as the
    /// doorbell of a process this stream is passed to expects.
    pub(crate) fn take_first(&self, deadline: Option<Instant>) -> io::Result<()> {
        while self.seen.load(Ordering::Relaxed) < self.first.len() && !self.closed() {
            self.check_peer()?;
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left.is_some_and(|l| l.is_zero()) {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the shared-memory client's first message has not arrived",
                ));
            }
            if self.socket.wait_readable(left)? {
                self.take_rung();
            }
        }
        self.check_peer()
    }

    /// Checks bytes read from the socket against what the peer may write.
    fn check(&self, bytes: &[u8]) {
        let first = self.first.len();
        let mut seen = self.seen.load(Ordering::Relaxed);
        for &b in bytes {
            let want = match self.first.get(seen) {
                Some(&want) => want,
                None => BELL[seen - first],
            };
            if b != want {
                self.foreign.store(true, Ordering::Release);
                return;
            }
            seen += 1;
            // Past the first bytes, only the position within a bell counts.
            if seen == first + BELL.len() {
                seen = first;
            }
        }
        self.seen.store(seen, Ordering::Relaxed);
    }

    /// Whether the peer's end has been seen closed.
    pub(crate) fn closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Wakes the peer (one bell, never waiting: a full socket buffer already holds bells enough).
    pub(crate) fn ring(&self) {
        match self.socket.write_vectored(&[IoSlice::new(BELL)], Some(Instant::now())) {
            Err(e) if matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset) => {
                self.closed.store(true, Ordering::Release);
            }
            _ => {}
        }
    }

    /// Takes the bytes rung so far without waiting, and notes end of file; then wakes the
    /// threads waiting on the leader.
    fn drain(&self) {
        self.read_rung();
        self.wake_followers(&lock(&self.sleepers));
    }

    /// Signals the threads waiting on the leader, if any (the caller holds the lock).
    fn wake_followers(&self, sleepers: &Sleepers) {
        if sleepers.following > 0 {
            self.woken.notify_all();
        }
    }

    /// For a wait over many objects that polled the socket itself: takes the bytes rung,
    /// unless a sleeper polls the socket now (it takes them, and may need them to wake: had
    /// it not been polling when we looked, it looks at its ring after this, under the lock).
    pub(crate) fn take_rung(&self) {
        let sleepers = lock(&self.sleepers);
        if !sleepers.polling {
            self.read_rung();
            self.wake_followers(&sleepers);
        }
        drop(sleepers);
    }

    /// Reads and discards the doorbell bytes there are, and notes end of file.
    fn read_rung(&self) {
        let mut buf = [0u8; 64];
        // A bounded number of reads: a peer that keeps ringing cannot keep us here (what is
        // left is taken at the next drain).
        for _ in 0..16 {
            match self.socket.read(&mut buf, Some(Instant::now())) {
                Ok(0) => {
                    self.closed.store(true, Ordering::Release);
                    break;
                }
                Ok(n) if n == buf.len() => self.check(&buf),
                Ok(n) => {
                    self.check(&buf[..n]);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => break,
                Err(_) => {
                    self.closed.store(true, Ordering::Release);
                    break;
                }
            }
        }
    }

    /// Sleeps until rung, until the peer's end closes, or until `deadline` (at most
    /// [`RECHECK`]), unless `ready()` says there is no need. The caller said in the ring that
    /// it sleeps before calling, and looks at the ring again after.
    pub(crate) fn sleep(&self, deadline: Option<Instant>, ready: impl Fn() -> bool) -> io::Result<()> {
        let recheck = Instant::now() + RECHECK;
        let until = Some(deadline.map_or(recheck, |d| d.min(recheck)));
        let mut sleepers = lock(&self.sleepers);
        if sleepers.polling {
            // The leader polls for both and signals after each wake-up, under this lock: if
            // it took our byte before we got here, the ring says so now.
            if ready() {
                return Ok(());
            }
            sleepers.following += 1;
            let (mut sleepers, _) = wait_deadline(&self.woken, sleepers, until);
            sleepers.following -= 1;
            return Ok(());
        }
        sleepers.polling = true;
        drop(sleepers);
        let r = if ready() || self.closed() {
            Ok(())
        } else {
            match self.socket.wait_readable(until.map(|u| u.saturating_duration_since(Instant::now()))) {
                Ok(true) => {
                    self.drain();
                    Ok(())
                }
                Ok(false) => Ok(()),
                Err(e) => Err(e),
            }
        };
        let mut sleepers = lock(&self.sleepers);
        sleepers.polling = false;
        self.wake_followers(&sleepers);
        r
    }
}
