//! The encrypted halves of the async face (feature `encrypt`): the sans-IO [`crate::secure`]
//! session driven over a socket's read and write halves, as the blocking transport's sealed
//! stream drives it over a blocking one. The halves above see a plain byte stream of frames,
//! so framing, batching, large messages and cancel safety work as on a plain socket.

use std::fmt;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use ::tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::stream::{ReadHalf, WriteHalf};
use crate::secure::{Inbox, Session};
use crate::transport::sealed::{READ_LIMIT, WRITE_LIMIT, carry, lock};

/// The receiving half: ciphertext from `inner` into the inbox, plaintext out of it. Everything
/// read stays in the inbox until it is handed out, so a read dropped while pending loses
/// nothing.
pub(super) struct SealedRead {
    inner: ReadHalf,
    inbox: Inbox,
    /// Shared with the sending half: one Noise state holds the keys of both directions; each
    /// half locks it only while it seals or opens, never across a wait.
    session: Arc<Mutex<Session>>,
}

/// The sending half: plaintext sealed into `out`, written to `inner`. A write reports its
/// plaintext taken once it is sealed (its nonces are spent); ciphertext the socket did not take
/// yet goes out first on the next write, flush or shutdown. Shutting it down sends the end
/// message (close-notify) before the socket's own shutdown; dropping it sends the end message
/// only if the socket takes it at once (a drop cannot wait).
pub(super) struct SealedWrite {
    inner: WriteHalf,
    out: Vec<u8>,
    written: usize,
    session: Arc<Mutex<Session>>,
    /// The end message is sealed: nothing may follow it.
    ended: bool,
}

// The halves, never the keys or the bytes.
impl fmt::Debug for SealedRead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedRead").field("inner", &self.inner).field("inbox", &self.inbox).finish()
    }
}

impl fmt::Debug for SealedWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedWrite")
            .field("inner", &self.inner)
            .field("unwritten", &(self.out.len() - self.written))
            .finish()
    }
}

/// Seals a connection's halves with the session of its finished handshake; `unread` is
/// ciphertext the handshake read past its last message.
pub(super) fn seal(r: ReadHalf, w: WriteHalf, session: Session, unread: &[u8]) -> (SealedRead, SealedWrite) {
    let session = Arc::new(Mutex::new(session));
    let mut inbox = Inbox::new();
    inbox.push(unread);
    let read = SealedRead { inner: r, inbox, session: Arc::clone(&session) };
    (read, SealedWrite { inner: w, out: Vec::new(), written: 0, session, ended: false })
}

impl AsyncRead for SealedRead {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // At most what the inbox holds, so that only that much of an uninitialized buffer is
        // zeroed for each read.
        let want = buf.remaining().min(READ_LIMIT);
        loop {
            let dst = buf.initialize_unfilled_to(want);
            if let Some(n) = this.inbox.read_many(&mut lock(&this.session), dst).map_err(carry)? {
                buf.advance(n);
                return Poll::Ready(Ok(()));
            }
            let mut spare = ReadBuf::new(this.inbox.spare());
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut spare))?;
            let n = spare.filled().len();
            if n == 0 {
                this.inbox.check_end().map_err(carry)?;
                return Poll::Ready(Ok(()));
            }
            this.inbox.filled(n);
        }
    }
}

impl SealedWrite {
    /// Seals the end message after anything unwritten, once.
    fn seal_end(&mut self) -> io::Result<()> {
        if !self.ended {
            self.ended = true;
            lock(&self.session).seal_end(&mut self.out).map_err(carry)?;
        }
        Ok(())
    }

    /// Writes out the ciphertext the socket has not taken yet.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.out.len() {
            match ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out[self.written..]))? {
                0 => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                n => self.written += n,
            }
        }
        self.out.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for SealedWrite {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.ended {
            // The peer stops reading at the end message: nothing may follow it.
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the sending direction of this encrypted connection was shut down",
            )));
        }
        ready!(this.poll_drain(cx))?;
        let taken = lock(&this.session).seal_vectored(bufs, WRITE_LIMIT, &mut this.out).map_err(carry)?;
        // The plaintext is taken whether or not the socket has room now: what it does not
        // take waits for the next write or the flush that ends every send.
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(taken))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.seal_end()?;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// Dropped without a shutdown: the end message goes out if the socket takes it (and whatever
/// was unwritten before it) without waiting; otherwise the peer sees the stream end without it,
/// an [`Error::Integrity`](crate::Error::Integrity), as for a cut.
impl Drop for SealedWrite {
    fn drop(&mut self) {
        if self.seal_end().is_ok() {
            while self.written < self.out.len() {
                match self.inner.try_write(&self.out[self.written..]) {
                    Ok(n) if n > 0 => self.written += n,
                    _ => break,
                }
            }
        }
    }
}
