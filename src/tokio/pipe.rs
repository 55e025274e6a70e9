//! Windows named pipes (`pipe:` addresses) under the async face: the blocking transport's
//! message pipe, driven by one thread per direction and bridged to the runtime.
//!
//! A pipe message carries a frame with no length prefix (as CPython's `AF_PIPE`), so whoever
//! reads must see where each message ends. tokio's named pipes (mio underneath) do not: they
//! take `ERROR_MORE_DATA` as an ordinary read and cut messages at their own read sizes, and an
//! empty message never shows. The blocking transport keeps the boundaries (overlapped reads
//! that keep `ERROR_MORE_DATA`, `PeekNamedPipe` for the rest of a message) and hands up a
//! stream of frames, each message behind a header made from its length; it cuts written frames
//! back into one message each. Rather than a second overlapped reader woken through a
//! thread-pool wait, the async face runs that tested code on threads of its own, as
//! `tokio::fs` and tokio's stdin do: every byte above is the same stream of frames as on a
//! socket, so framing, limits, the handshake and cancel safety are the ones of the other
//! transports.
//!
//! Each direction has a bridge: a buffer of at most [`LIMIT`] bytes under a lock, the task's
//! waker and a condition variable for the thread. The reader thread reads while the buffer
//! has room; the receiving half takes bytes out of it as a socket read would, so a receive
//! dropped half-way loses nothing (what it took is in the [`Receiver`](super::Receiver)). The
//! sending half puts bytes in while there is room and its flush waits until the thread has
//! written them all; a frame left unfinished by a dropped send is never written (the pipe
//! sends whole messages only), and the next send finishes it first, as on a socket.
//!
//! The threads end with the connection: the writer once its half is dropped or shut down and
//! what it holds is written (for at most [`LINGER`] if the peer does not read), the reader
//! within [`SLICE`] of its half being dropped (its reads wait in slices of that length, as a
//! pending pipe read cannot be woken otherwise). The pipe handle closes, and the peer sees the
//! end, when both are gone. A pipe has no half-close: shutting the sending half down stops
//! sending, and the peer sees the end when the receiving half is dropped as well.

use std::fmt;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker, ready};
use std::time::{Duration, Instant};

use ::tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use ::tokio::time::Sleep;

use crate::transport::{RawListener, Stream};
use crate::util::lock;
use crate::{Address, Error, Result};

/// The most bytes a bridge holds: the reader thread waits for room beyond it, a send for the
/// writer thread.
const LIMIT: usize = 256 << 10;
/// How much one read of the reader thread takes.
const CHUNK: usize = 64 << 10;
/// How long one read or write of a thread waits before it looks whether its half is gone.
const SLICE: Duration = Duration::from_millis(100);
/// How long the writer thread keeps trying to write what a dropped half left it (the time the
/// blocking transport gives a send in progress when it is dropped).
const LINGER: Duration = Duration::from_secs(10);
/// The longest nap between two looks for a client at a pipe listener (as the blocking
/// listener's wait on pipes, which offer nothing to wait on).
const MAX_NAP: Duration = Duration::from_millis(15);

/// One direction between a thread and a task.
struct Bridge {
    state: Mutex<State>,
    /// Wakes the thread: room to read into, bytes to write, or the half gone.
    thread: Condvar,
}

#[derive(Default)]
struct State {
    /// Reading: bytes read from the pipe, not yet taken, from `start`. Writing: bytes given,
    /// not yet taken by the thread.
    bytes: Vec<u8>,
    start: usize,
    /// Writing: the thread is writing bytes it took.
    busy: bool,
    /// The task waiting on this direction.
    waker: Option<Waker>,
    /// Reading: the pipe's end was reached.
    end: bool,
    /// What stopped the thread, until the task takes it.
    error: Option<io::Error>,
    /// The thread stopped after an error (already reported).
    failed: bool,
    /// The half was dropped (or, writing, shut down): the thread ends.
    gone: bool,
}

impl Bridge {
    fn new() -> Arc<Bridge> {
        Arc::new(Bridge { state: Mutex::new(State::default()), thread: Condvar::new() })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Waits for the task's next move (room, bytes, or its half gone).
    fn wait<'a>(&self, st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.thread.wait(st).unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks the half gone and tells the thread.
    fn leave(&self) {
        self.lock().gone = true;
        self.thread.notify_one();
    }
}

/// Wakes the task, outside the lock.
fn wake(mut st: MutexGuard<'_, State>) {
    let waker = st.waker.take();
    drop(st);
    if let Some(w) = waker {
        w.wake();
    }
}

/// Keeps `cx`'s waker for the thread to wake.
fn park(st: &mut State, cx: &Context<'_>) {
    match &st.waker {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => st.waker = Some(cx.waker().clone()),
    }
}

/// The error after an error already reported: the direction stopped with it.
fn stopped(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, format!("{what} on this pipe stopped after an earlier error"))
}

/// The receiving half of a pipe connection.
pub(super) struct PipeReader {
    bridge: Arc<Bridge>,
}

/// The sending half of a pipe connection.
pub(super) struct PipeWriter {
    bridge: Arc<Bridge>,
}

impl fmt::Debug for PipeReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.bridge.lock();
        f.debug_struct("PipeReader")
            .field("buffered", &(st.bytes.len() - st.start))
            .field("end", &st.end)
            .finish()
    }
}

impl fmt::Debug for PipeWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.bridge.lock();
        f.debug_struct("PipeWriter").field("unwritten", &st.bytes.len()).field("busy", &st.busy).finish()
    }
}

/// Starts the threads of a connected pipe stream and gives its two halves.
pub(super) fn bridge(stream: Stream) -> io::Result<(PipeReader, PipeWriter)> {
    let stream = Arc::new(stream);
    let (rx, tx) = (Bridge::new(), Bridge::new());
    let (s, b) = (Arc::clone(&stream), Arc::clone(&rx));
    std::thread::Builder::new().name("procwire-pipe-recv".into()).spawn(move || read_loop(&s, &b))?;
    let b = Arc::clone(&tx);
    if let Err(e) =
        std::thread::Builder::new().name("procwire-pipe-send".into()).spawn(move || write_loop(&stream, &b))
    {
        rx.leave();
        return Err(e);
    }
    Ok((PipeReader { bridge: rx }, PipeWriter { bridge: tx }))
}

/// The reader thread: messages (as frames) from the pipe into the bridge while it has room.
fn read_loop(stream: &Stream, b: &Bridge) {
    let mut fill = Vec::with_capacity(CHUNK);
    loop {
        let mut st = b.lock();
        while st.bytes.len() - st.start >= LIMIT && !st.gone {
            st = b.wait(st);
        }
        if st.gone {
            return;
        }
        drop(st);
        fill.clear();
        // A vector swapped in from the bridge may have no room at all: a read into none
        // would look like the end.
        fill.reserve(CHUNK);
        let r = stream.read_spare(&mut fill, CHUNK, Some(Instant::now() + SLICE));
        let mut st = b.lock();
        match r {
            Ok(0) => st.end = true,
            Ok(_) if st.start == st.bytes.len() => {
                st.bytes.clear();
                st.start = 0;
                std::mem::swap(&mut st.bytes, &mut fill);
            }
            Ok(_) => {
                let start = std::mem::take(&mut st.start);
                st.bytes.drain(..start);
                st.bytes.extend_from_slice(&fill);
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => continue,
            Err(e) => st.error = Some(e),
        }
        let over = st.end || st.error.is_some();
        wake(st);
        if over {
            return;
        }
    }
}

/// The writer thread: what the bridge holds to the pipe, which cuts it into messages.
fn write_loop(stream: &Stream, b: &Bridge) {
    let mut out = Vec::new();
    loop {
        let mut st = b.lock();
        while st.bytes.is_empty() && !st.gone {
            st = b.wait(st);
        }
        if st.bytes.is_empty() {
            return;
        }
        std::mem::swap(&mut out, &mut st.bytes);
        st.busy = true;
        // Room again for a send that waits.
        wake(st);
        let r = write_all(stream, b, &out);
        out.clear();
        let mut st = b.lock();
        st.busy = false;
        let failed = r.is_err();
        st.error = r.err();
        wake(st);
        if failed {
            return;
        }
    }
}

/// Writes `out` whole, giving up [`LINGER`] after the half is gone.
fn write_all(stream: &Stream, b: &Bridge, out: &[u8]) -> io::Result<()> {
    let mut done = 0;
    let mut give_up = None;
    while done < out.len() {
        match stream.write_vectored(&[IoSlice::new(&out[done..])], Some(Instant::now() + SLICE)) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                if b.lock().gone {
                    let at = *give_up.get_or_insert_with(|| Instant::now() + LINGER);
                    if Instant::now() >= at {
                        return Err(e);
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Drop for PipeReader {
    fn drop(&mut self) {
        self.bridge.leave();
    }
}

impl Drop for PipeWriter {
    fn drop(&mut self) {
        self.bridge.leave();
    }
}

impl AsyncRead for PipeReader {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let b = &self.bridge;
        let mut st = b.lock();
        let have = st.bytes.len() - st.start;
        if have > 0 {
            let n = have.min(buf.remaining());
            buf.put_slice(&st.bytes[st.start..st.start + n]);
            st.start += n;
            if have >= LIMIT {
                b.thread.notify_one();
            }
            return Poll::Ready(Ok(()));
        }
        if let Some(e) = st.error.take() {
            st.failed = true;
            return Poll::Ready(Err(e));
        }
        if st.failed {
            return Poll::Ready(Err(stopped("receiving")));
        }
        if st.end {
            return Poll::Ready(Ok(()));
        }
        park(&mut st, cx);
        Poll::Pending
    }
}

impl PipeWriter {
    /// Puts what fits of `bufs` in the bridge: `None` when it is full.
    fn put(&self, bufs: &[IoSlice<'_>]) -> io::Result<Option<usize>> {
        let mut st = self.bridge.lock();
        if let Some(e) = st.error.take() {
            st.failed = true;
            return Err(e);
        }
        if st.failed {
            return Err(stopped("sending"));
        }
        if st.gone {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "the pipe's sending half was shut down"));
        }
        let room = LIMIT.saturating_sub(st.bytes.len());
        if room == 0 {
            return Ok(None);
        }
        let mut n = 0;
        for b in bufs {
            let k = b.len().min(room - n);
            st.bytes.extend_from_slice(&b[..k]);
            n += k;
        }
        drop(st);
        self.bridge.thread.notify_one();
        Ok(Some(n))
    }

    /// Writes what fits now, without waiting (`WouldBlock` if nothing).
    #[cfg(feature = "encrypt")]
    pub(super) fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        self.put(&[IoSlice::new(buf)])?.ok_or_else(|| io::ErrorKind::WouldBlock.into())
    }
}

impl AsyncWrite for PipeWriter {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.put(bufs)? {
            Some(n) => Poll::Ready(Ok(n)),
            None => {
                let mut st = self.bridge.lock();
                // The thread may have taken the bytes since.
                if st.bytes.len() < LIMIT {
                    drop(st);
                    return self.poll_write_vectored(cx, bufs);
                }
                park(&mut st, cx);
                Poll::Pending
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// Waits until the thread has written everything to the pipe.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut st = self.bridge.lock();
        if let Some(e) = st.error.take() {
            st.failed = true;
            return Poll::Ready(Err(e));
        }
        if st.failed {
            return Poll::Ready(Err(stopped("sending")));
        }
        if st.bytes.is_empty() && !st.busy {
            return Poll::Ready(Ok(()));
        }
        park(&mut st, cx);
        Poll::Pending
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        self.bridge.leave();
        Poll::Ready(Ok(()))
    }
}

/// Connects to the pipe `addr`, waiting up to `timeout` for a free instance, on a blocking
/// thread (the wait for an instance cannot be woken).
pub(super) async fn connect(addr: &Address, timeout: Duration) -> Result<(PipeReader, PipeWriter)> {
    let to = addr.clone();
    let deadline = Instant::now() + timeout;
    let stream = ::tokio::task::spawn_blocking(move || crate::transport::connect(&to, Some(deadline)))
        .await
        .map_err(|e| Error::Io(io::Error::other(e)))??;
    Ok(bridge(stream)?)
}

/// A pipe listener: the blocking transport's, which accepts without waiting, looked at again
/// after a nap (1 ms, doubling up to [`MAX_NAP`]) while no client comes.
#[derive(Debug)]
pub(super) struct PipeAcceptor {
    listener: RawListener,
    nap: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl PipeAcceptor {
    pub(super) fn bind(
        addr: &Address,
        opts: &crate::transport::BindOptions,
    ) -> Result<(PipeAcceptor, Address)> {
        let listener = RawListener::bind(addr, opts)?;
        let local = listener.local_addr().unwrap_or_else(|_| addr.clone());
        Ok((PipeAcceptor { listener, nap: Duration::from_millis(1), sleep: None }, local))
    }

    /// The next client, with the threads of its connection started.
    pub(super) fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<(PipeReader, PipeWriter)>> {
        loop {
            if let Some(sleep) = &mut self.sleep {
                ready!(sleep.as_mut().poll(cx));
                self.sleep = None;
            }
            if let Some((stream, _)) = self.listener.try_accept()? {
                self.nap = Duration::from_millis(1);
                return Poll::Ready(bridge(stream));
            }
            self.sleep = Some(Box::pin(::tokio::time::sleep(self.nap)));
            self.nap = (self.nap * 2).min(MAX_NAP);
        }
    }
}
