//! [`Sealed`]: a stream whose bytes travel as Noise transport messages (feature `encrypt`).
//!
//! It drives the sans-IO [`crate::secure`] session over an inner stream: writes are sealed into
//! messages and written whole, reads fill an [`Inbox`] and take plaintext out of it. The
//! connection above sees a plain byte stream of frames, so framing, batching and large
//! messages work as on any stream. Dropping it sends the end message; the end of the inner
//! stream without the peer's is an integrity error, not the end of the stream.

use std::io::{self, IoSlice};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::Stream;
use crate::secure::{Inbox, MAX_PLAINTEXT, Session};

/// The most plaintext one write seals: several messages, written together.
pub(crate) const WRITE_LIMIT: usize = 16 * MAX_PLAINTEXT;
/// The most plaintext one read into a caller's spare capacity takes (what the inbox holds).
#[cfg(feature = "tokio")]
pub(crate) const READ_LIMIT: usize = 4 * MAX_PLAINTEXT;
/// How long dropping a stream waits at most to send the end message.
const END_LIMIT: Duration = Duration::from_secs(10);

/// An encrypted stream over `inner`. The session's keys serve both directions; the two halves
/// of a split connection each lock it only while sealing or opening one message.
pub(crate) struct Sealed {
    inner: Stream,
    session: Mutex<Session>,
    rx: Mutex<Inbox>,
    /// Sealed bytes the inner stream did not take yet (a write that timed out): they go out
    /// first with the next write.
    tx: Mutex<Vec<u8>>,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed").field("inner", &self.inner).finish()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An error of ours carried through `io::Result` (unwrapped again by the connection).
pub(crate) fn carry(e: crate::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl Sealed {
    /// Seals `inner` with `session`; `unread` is ciphertext the handshake read past its end.
    pub(crate) fn new(inner: Stream, session: Session, unread: &[u8]) -> Sealed {
        let mut inbox = Inbox::new();
        inbox.push(unread);
        Sealed { inner, session: Mutex::new(session), rx: Mutex::new(inbox), tx: Mutex::new(Vec::new()) }
    }

    pub(crate) fn inner(&self) -> &Stream {
        &self.inner
    }

    /// Whether a read can return without the inner stream.
    pub(crate) fn ready_now(&self) -> bool {
        lock(&self.rx).is_ready()
    }

    pub(crate) fn read(&self, buf: &mut [u8], deadline: Option<Instant>) -> io::Result<usize> {
        // More whole messages already here go along, without another read.
        self.read_with(deadline, |rx, session| rx.read_many(session, buf))
    }

    /// Reads at most `max` bytes into the spare capacity of `v`, extending its length.
    pub(crate) fn read_spare(
        &self,
        v: &mut Vec<u8>,
        max: usize,
        deadline: Option<Instant>,
    ) -> io::Result<usize> {
        let max = max.min(v.capacity() - v.len());
        self.read_with(deadline, |rx, session| {
            let mut n = 0;
            while n < max {
                match rx.read_to_vec(session, v, max - n) {
                    Ok(Some(m)) if m > 0 => n += m,
                    _ if n > 0 => break,
                    r => return r,
                }
            }
            Ok(Some(n))
        })
    }

    /// Takes plaintext with `take` (which returns `Ok(None)` when the inbox needs ciphertext,
    /// `Ok(Some(0))` at the peer's end message), reading the inner stream until it has some.
    fn read_with(
        &self,
        deadline: Option<Instant>,
        mut take: impl FnMut(&mut Inbox, &mut Session) -> crate::Result<Option<usize>>,
    ) -> io::Result<usize> {
        let mut rx = lock(&self.rx);
        loop {
            if let Some(n) = take(&mut rx, &mut lock(&self.session)).map_err(carry)? {
                return Ok(n);
            }
            let n = self.inner.read(rx.spare(), deadline)?;
            if n == 0 {
                rx.check_end().map_err(carry)?;
                return Ok(0);
            }
            rx.filled(n);
        }
    }

    /// Seals up to [`WRITE_LIMIT`] bytes of `bufs` and writes them; returns the plaintext
    /// bytes taken. A write that stops early keeps the sealed rest for the next write.
    pub(crate) fn write_vectored(
        &self,
        bufs: &[IoSlice<'_>],
        deadline: Option<Instant>,
    ) -> io::Result<usize> {
        let mut tx = lock(&self.tx);
        self.write_out(&mut tx, deadline)?;
        let taken = lock(&self.session).seal_vectored(bufs, WRITE_LIMIT, &mut tx).map_err(carry)?;
        match self.write_out(&mut tx, deadline) {
            // The plaintext is sealed (its nonces used): it counts as written.
            Err(e) if e.kind() == io::ErrorKind::TimedOut && taken > 0 => Ok(taken),
            r => r.map(|()| taken),
        }
    }

    /// Seals the end message (close-notify) and writes it after anything left unwritten.
    fn write_end(&self) {
        let mut tx = std::mem::take(&mut *lock(&self.tx));
        if self.inner.can_write() && lock(&self.session).seal_end(&mut tx).is_ok() {
            let _ = self.write_out(&mut tx, Some(Instant::now() + END_LIMIT));
        }
    }

    fn write_out(&self, tx: &mut Vec<u8>, deadline: Option<Instant>) -> io::Result<()> {
        let mut done = 0;
        let r = loop {
            if done == tx.len() {
                break Ok(());
            }
            match self.inner.write_vectored(&[IoSlice::new(&tx[done..])], deadline) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) => break Err(e),
            }
        };
        tx.drain(..done);
        r
    }

    pub(crate) fn wait_readable(&self, timeout: Option<Duration>) -> io::Result<bool> {
        if self.ready_now() {
            return Ok(true);
        }
        self.inner.wait_readable(timeout)
    }
}

/// A clean close: the peer reads to the end message and sees the end of the stream; one that
/// gets the end of the stream without it reports a cut.
impl Drop for Sealed {
    fn drop(&mut self) {
        self.write_end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed_pair() -> (Sealed, Sealed) {
        let (client, listener) = crate::secure::test_sessions();
        let (a, b) = super::super::pipe(true).unwrap();
        (Sealed::new(a, client, &[]), Sealed::new(b, listener, &[]))
    }

    #[test]
    fn bytes_cross_in_order_across_message_boundaries() {
        let (a, b) = sealed_pair();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let t = std::thread::spawn(move || {
            let mut sent = 0;
            while sent < data.len() {
                sent += a.write_vectored(&[IoSlice::new(&data[sent..])], None).unwrap();
            }
            data
        });
        let mut got = Vec::with_capacity(300_000);
        while got.len() < 300_000 {
            let n = b.read_spare(&mut got, 300_000, None).unwrap();
            assert!(n > 0);
        }
        assert_eq!(got, t.join().unwrap());
    }
}
