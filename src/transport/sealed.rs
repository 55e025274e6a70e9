//! [`Sealed`]: a stream whose bytes travel as Noise transport messages (feature `encrypt`).
//!
//! It drives the sans-IO [`crate::secure`] session over an inner stream: writes are sealed into
//! messages and written whole, reads fill an [`Inbox`] and take plaintext out of it. The
//! connection above sees a plain byte stream of frames, so framing, batching and large
//! messages work as on any stream. Closing the connection sends the end message, waiting for
//! room at most [`CLOSE_LIMIT`]; dropping it sends the end message only if the inner stream
//! takes it at once. The end of the inner stream without the peer's end message is an
//! integrity error, not the end of the stream.

use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::Stream;
use crate::codec::decode_header;
use crate::secure::{Inbox, MAX_MESSAGE, MAX_PLAINTEXT, Session, TAG_LEN, integrity_error};

/// The most plaintext one write seals: several messages, written together.
pub(crate) const WRITE_LIMIT: usize = 16 * MAX_PLAINTEXT;
/// The most plaintext one read into a caller's spare capacity takes (what the inbox holds).
#[cfg(feature = "tokio")]
pub(crate) const READ_LIMIT: usize = 4 * MAX_PLAINTEXT;
/// The least plaintext still to come for which reading straight into the caller's buffer
/// pays: below it, reads of what fits there would be shorter than the inbox's, and more of
/// them cost more than the copy out of the inbox they save.
const DIRECT_MIN: usize = 2 * MAX_PLAINTEXT;
/// How long an explicit close waits at most to send the end message; a drop does not wait.
pub(crate) const CLOSE_LIMIT: Duration = Duration::from_secs(10);

/// An encrypted stream over `inner`. The session's keys serve both directions; the two halves
/// of a split connection each lock it only while sealing or opening one message.
pub(crate) struct Sealed {
    inner: Stream,
    session: Mutex<Session>,
    rx: Mutex<Inbox>,
    /// Sealed bytes the inner stream did not take yet (a write that timed out): they go out
    /// first with the next write.
    tx: Mutex<Vec<u8>>,
    /// The end message is sealed: nothing may follow it.
    ended: AtomicBool,
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
        Sealed {
            inner,
            session: Mutex::new(session),
            rx: Mutex::new(inbox),
            tx: Mutex::new(Vec::new()),
            ended: AtomicBool::new(false),
        }
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
    /// Messages that lie wholly inside it are read and opened there, not in the inbox: the
    /// payload of a large frame is not copied on the way.
    pub(crate) fn read_spare(
        &self,
        v: &mut Vec<u8>,
        max: usize,
        deadline: Option<Instant>,
    ) -> io::Result<usize> {
        let max = max.min(v.capacity() - v.len());
        let mut rx = lock(&self.rx);
        let mut n = 0;
        while n < max {
            // The session's lock ends here: the direct read takes it again.
            let taken = rx.read_to_vec(&mut lock(&self.session), v, max - n);
            let step = match taken {
                Ok(None) => match rx.direct_len(max - n, v.capacity() - v.len()) {
                    Some(len) if max - n >= DIRECT_MIN => {
                        self.read_direct(&mut rx, v, len, max - n, deadline)
                    }
                    // Return what is here rather than wait for more.
                    _ if n > 0 => break,
                    _ => self.fill(&mut rx, deadline).map(|()| 0),
                },
                // The peer's end message.
                Ok(Some(0)) => break,
                Ok(Some(m)) => Ok(m),
                Err(e) => Err(carry(e)),
            };
            match step {
                Ok(m) => n += m,
                // What was taken stays taken; the error comes again with the next read.
                Err(_) if n > 0 => break,
                Err(e) => return Err(e),
            }
        }
        Ok(n)
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
            self.fill(&mut rx, deadline)?;
        }
    }

    /// Reads ciphertext into the inbox. Its end is an error unless the peer's end message
    /// came first (and then the inbox has ended).
    fn fill(&self, rx: &mut Inbox, deadline: Option<Instant>) -> io::Result<()> {
        let n = self.inner.read(rx.spare(), deadline)?;
        if n == 0 {
            rx.check_end().map_err(carry)?;
        }
        rx.filled(n);
        Ok(())
    }

    /// Reads the rest of the inbox's next message (`len` bytes of ciphertext and tag) into the
    /// spare capacity of `v` with what follows it, and opens it there, then every further
    /// whole message of at most `max` bytes of plaintext in all, moving each plaintext down
    /// over the headers and tags before it; returns the plaintext length, by which `v` grew.
    /// The rest goes to the inbox; so does what arrived when a read fails.
    fn read_direct(
        &self,
        rx: &mut Inbox,
        v: &mut Vec<u8>,
        len: usize,
        max: usize,
        deadline: Option<Instant>,
    ) -> io::Result<usize> {
        let spare = v.spare_capacity_mut();
        // No more than the inbox can take back.
        let want = spare.len().min(rx.capacity());
        let spare = &mut spare[..want];
        let mut got = rx.take_start(spare);
        while got < len {
            match self.inner.read_uninit(&mut spare[got..], deadline) {
                Ok(n) if n > 0 => got += n,
                r => {
                    // SAFETY: `take_start` and the reads initialised the first `got` bytes.
                    let arrived = unsafe { std::slice::from_raw_parts(spare.as_ptr().cast::<u8>(), got) };
                    rx.put_back(len, arrived);
                    return Err(match r {
                        Err(e) => e,
                        // The end of the stream inside a message.
                        Ok(_) => carry(rx.check_end().err().unwrap_or_else(integrity_error)),
                    });
                }
            }
        }
        // SAFETY: as above, the first `got` bytes are initialised.
        let bytes = unsafe { std::slice::from_raw_parts_mut(spare.as_mut_ptr().cast::<u8>(), got) };
        let mut session = lock(&self.session);
        let mut plain = rx.open_direct(&mut session, &mut bytes[..len], 0).map_err(carry)?;
        let mut pos = len;
        while let Ok(Some(h)) = decode_header(&bytes[pos..], MAX_MESSAGE as u64) {
            let (start, n) = (pos + h.header_len, h.payload_len as usize);
            // The end message, one not all here, or one past `max`: the inbox's.
            if n <= TAG_LEN || start + n > got || plain + n - TAG_LEN > max {
                break;
            }
            match rx.open_direct(&mut session, &mut bytes[plain..start + n], start - plain) {
                Ok(m) => {
                    plain += m;
                    pos = start + n;
                }
                // The inbox is broken: the next read reports it.
                Err(_) => break,
            }
        }
        rx.push(&bytes[pos..]);
        // SAFETY: the opened plaintext is the first `plain` bytes of the spare capacity.
        unsafe { v.set_len(v.len() + plain) };
        Ok(plain)
    }

    /// Seals up to [`WRITE_LIMIT`] bytes of `bufs` and writes them; returns the plaintext
    /// bytes taken. A write that stops early keeps the sealed rest for the next write.
    pub(crate) fn write_vectored(
        &self,
        bufs: &[IoSlice<'_>],
        deadline: Option<Instant>,
    ) -> io::Result<usize> {
        let mut tx = lock(&self.tx);
        if self.ended.load(Ordering::Relaxed) {
            // The peer stops reading at the end message.
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "this encrypted stream was closed"));
        }
        self.write_out(&mut tx, deadline)?;
        let taken = lock(&self.session).seal_vectored(bufs, WRITE_LIMIT, &mut tx).map_err(carry)?;
        match self.write_out(&mut tx, deadline) {
            // The plaintext is sealed (its nonces used): it counts as written.
            Err(e) if e.kind() == io::ErrorKind::TimedOut && taken > 0 => Ok(taken),
            r => r.map(|()| taken),
        }
    }

    /// Seals the end message (close-notify), once, and writes it after anything left
    /// unwritten, giving up at `deadline` (the peer then sees the stream cut).
    pub(crate) fn send_end(&self, deadline: Instant) {
        let mut tx = lock(&self.tx);
        if self.ended.swap(true, Ordering::Relaxed) || !self.inner.can_write() {
            return;
        }
        if lock(&self.session).seal_end(&mut tx).is_ok() {
            let _ = self.write_out(&mut tx, Some(deadline));
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
/// gets the end of the stream without it reports a cut. A drop sends the end message only if
/// the inner stream takes it at once (with anything unwritten before it): it never waits for
/// a peer that does not read.
impl Drop for Sealed {
    fn drop(&mut self) {
        self.send_end(Instant::now());
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
