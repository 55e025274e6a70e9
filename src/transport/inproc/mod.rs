//! The in-process transport: byte streams in memory between threads of one process, with no
//! socket and no system call per message, for `procwire::dummy` and `inproc:` addresses.
//!
//! A stream is a pair of one-way channels. A channel is a ring buffer of
//! [`CAPACITY`](chan::CAPACITY) bytes (allocated at the first write) with one writer and one
//! reader, each side serialized by a lock of its own, so the two never wait for each other's
//! lock: the writer copies bytes in and publishes the new end with a release store; the reader
//! takes everything published in one go. Nobody is woken unless they sleep: a reader that finds
//! nothing first spins briefly (in a stream of small messages the next one usually comes within
//! the spin), then sleeps on a condition variable that a writer signals only when told someone
//! sleeps. A writer sleeps the same way while the ring is full. Dropping an end ends the stream
//! as a socket would: the reader sees end of stream once the ring is drained, the writer a
//! broken pipe.
//!
//! Listeners live in a process-wide table of names; a client connects by queueing the far end
//! of a new stream at the listener, which `accept` takes.
//!
//! Here: [`Stream`] and [`pair`]; `chan.rs` one direction (the ring and its counters);
//! `signal.rs` waking (the sleep handshake's fences, and the [`Signal`] of a waiter on many);
//! `listener.rs` the table of listeners, [`Listener`] and [`connect`].

mod chan;
mod listener;
mod signal;

use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::{Duration, Instant};

use self::chan::Chan;
pub(crate) use self::listener::{Listener, connect};
pub(crate) use self::signal::{Signal, sleeper_fence};
use crate::Address;

/// One end of an in-process stream.
#[derive(Debug)]
pub(crate) struct Stream {
    rx: Option<Arc<Chan>>,
    tx: Option<Arc<Chan>>,
    pub(super) local: Option<Address>,
    peer: Option<Address>,
}

impl Drop for Stream {
    fn drop(&mut self) {
        if let Some(tx) = &self.tx {
            tx.close_writer();
        }
        if let Some(rx) = &self.rx {
            rx.close_reader();
        }
    }
}

fn one_way(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, format!("this end of a one-way pipe only {what}s"))
}

impl Stream {
    pub(crate) fn can_read(&self) -> bool {
        self.rx.is_some()
    }

    pub(crate) fn can_write(&self) -> bool {
        self.tx.is_some()
    }

    /// Reads at most `len` bytes into `ptr`; 0 means end of stream; `TimedOut` after `deadline`.
    ///
    /// The caller guarantees that `ptr..ptr+len` is writable memory it owns.
    pub(crate) fn read_raw(&self, ptr: *mut u8, len: usize, deadline: Option<Instant>) -> io::Result<usize> {
        self.rx.as_ref().ok_or_else(|| one_way("send"))?.read(ptr, len, deadline)
    }

    pub(crate) fn write_vectored(
        &self,
        bufs: &[IoSlice<'_>],
        deadline: Option<Instant>,
    ) -> io::Result<usize> {
        self.tx.as_ref().ok_or_else(|| one_way("receive"))?.write(bufs, deadline)
    }

    /// Whether a read would not wait: data buffered, or the writer gone.
    pub(crate) fn readable_now(&self) -> bool {
        self.rx.as_ref().is_some_and(|rx| rx.readable_now())
    }

    pub(crate) fn wait_readable(&self, timeout: Option<Duration>) -> io::Result<bool> {
        let Some(rx) = &self.rx else { return Err(one_way("send")) };
        Ok(rx.wait_readable(timeout.and_then(|t| Instant::now().checked_add(t))))
    }

    pub(crate) fn local_addr(&self) -> Option<Address> {
        self.local.clone()
    }

    pub(crate) fn peer_addr(&self) -> Option<Address> {
        self.peer.clone()
    }

    /// Asks to be woken by `signal` when this end turns readable; `false` if it cannot read.
    pub(crate) fn watch(&self, signal: &Arc<Signal>) -> bool {
        match &self.rx {
            Some(rx) => {
                rx.watch(signal);
                true
            }
            None => false,
        }
    }

    pub(crate) fn unwatch(&self, signal: &Arc<Signal>) {
        if let Some(rx) = &self.rx {
            rx.unwatch(signal);
        }
    }
}

/// A connected pair: with `duplex` both ends send and receive; without, the first end only
/// receives and the second only sends (as `pipe(false)`).
pub(crate) fn pair(duplex: bool) -> (Stream, Stream) {
    pair_named(duplex, None, None)
}

pub(super) fn pair_named(duplex: bool, a_addr: Option<Address>, b_addr: Option<Address>) -> (Stream, Stream) {
    let ab = Chan::new();
    if duplex {
        let ba = Chan::new();
        (
            Stream {
                rx: Some(ba.clone()),
                tx: Some(ab.clone()),
                local: a_addr.clone(),
                peer: b_addr.clone(),
            },
            Stream { rx: Some(ab), tx: Some(ba), local: b_addr, peer: a_addr },
        )
    } else {
        (
            Stream { rx: Some(ab.clone()), tx: None, local: None, peer: None },
            Stream { rx: None, tx: Some(ab), local: None, peer: None },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::chan::CAPACITY;
    use super::*;

    pub(super) fn read(s: &Stream, n: usize, deadline: Option<Instant>) -> io::Result<Vec<u8>> {
        let mut v = vec![0; n];
        let got = s.read_raw(v.as_mut_ptr(), n, deadline)?;
        v.truncate(got);
        Ok(v)
    }

    #[test]
    fn bytes_travel_both_ways_and_end_of_stream_follows_the_data() {
        let (a, b) = pair(true);
        assert_eq!(a.write_vectored(&[IoSlice::new(b"he"), IoSlice::new(b"llo")], None).unwrap(), 5);
        assert_eq!(read(&b, 3, None).unwrap(), b"hel");
        assert_eq!(read(&b, 10, None).unwrap(), b"lo");
        b.write_vectored(&[IoSlice::new(b"back")], None).unwrap();
        assert_eq!(read(&a, 10, None).unwrap(), b"back");
        a.write_vectored(&[IoSlice::new(b"last")], None).unwrap();
        drop(a);
        assert_eq!(read(&b, 10, None).unwrap(), b"last");
        assert_eq!(read(&b, 10, None).unwrap(), b"");
        let e = b.write_vectored(&[IoSlice::new(b"x")], None).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn reads_and_full_writes_time_out() {
        let (a, b) = pair(true);
        let t = Instant::now();
        let e = read(&b, 1, Some(t + Duration::from_millis(30))).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(t.elapsed() >= Duration::from_millis(30));
        let big = vec![1u8; CAPACITY + 10];
        assert_eq!(a.write_vectored(&[IoSlice::new(&big)], None).unwrap(), CAPACITY);
        let e = a.write_vectored(&[IoSlice::new(&big)], Some(Instant::now() + Duration::from_millis(20)));
        assert_eq!(e.unwrap_err().kind(), io::ErrorKind::TimedOut);
        // An empty write does not wait, even on a full ring.
        assert_eq!(a.write_vectored(&[], None).unwrap(), 0);
        // Room made by the reader lets the writer on.
        assert_eq!(read(&b, 100, None).unwrap().len(), 100);
        assert_eq!(a.write_vectored(&[IoSlice::new(&big)], None).unwrap(), 100);
    }

    #[test]
    fn a_blocked_reader_wakes_for_data_from_another_thread() {
        let (a, b) = pair(false);
        assert!(!b.can_read() && !a.can_write());
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            b.write_vectored(&[IoSlice::new(b"wake")], None).unwrap();
        });
        assert_eq!(read(&a, 10, None).unwrap(), b"wake");
        t.join().unwrap();
        assert_eq!(read(&a, 10, None).unwrap(), b"");
    }

    #[test]
    fn bytes_cross_the_ring_edge_intact_between_threads() {
        // Writes and reads of uneven sizes, several times round the ring, both sides racing.
        let (rx, tx) = pair(false);
        let total = 5 * CAPACITY + 12_345;
        let byte = |i: usize| (i * 7 + i / 251) as u8;
        let writer = std::thread::spawn(move || {
            let (mut at, mut step) = (0, 1);
            while at < total {
                let n = step.min(total - at);
                let chunk: Vec<u8> = (at..at + n).map(byte).collect();
                let mut done = 0;
                while done < n {
                    let mid = (n / 2).max(done);
                    let halves = [IoSlice::new(&chunk[done..mid]), IoSlice::new(&chunk[mid..])];
                    done += tx.write_vectored(&halves, None).unwrap();
                }
                at += n;
                step = (step * 31 + 17) % 70_001;
            }
        });
        let (mut at, mut want) = (0, 3);
        while at < total {
            let got = read(&rx, want, None).unwrap();
            assert!(!got.is_empty(), "end of stream at {at} of {total}");
            for (k, b) in got.iter().enumerate() {
                assert_eq!(*b, byte(at + k), "byte {}", at + k);
            }
            at += got.len();
            want = (want * 13 + 5) % 90_001 + 1;
        }
        writer.join().unwrap();
        assert_eq!(read(&rx, 10, None).unwrap(), b"");
    }
}
