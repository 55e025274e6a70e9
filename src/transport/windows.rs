//! Windows transports: named pipes in message mode, as CPython's `AF_PIPE`, and TCP through
//! socket2.
//!
//! The rest of the crate reads and writes a byte stream of length-prefixed frames. A named pipe
//! carries one frame per pipe message and no length prefix, so that a Windows CPython peer can be
//! on the other end. [`Stream`] adapts: written bytes are cut into frames and each payload goes
//! out as one message; each message received is handed up as a frame header followed by the
//! payload, the header made from the message's length.
//!
//! Pipe I/O is overlapped (interprocess opens every pipe handle that way) with an event per
//! direction, so a receive on one thread and a send on another do not wait for each other, and
//! deadlines are kept by waiting on the event and cancelling the operation. TCP sockets stay
//! nonblocking and wait with `WSAPoll`.
//!
//! Limitations: readiness of named pipes in [`wait_any`] is polled (see there); passing a
//! connection to a child process is not supported yet; the `mode` of [`BindOptions`] does not
//! apply (pipes get the default security descriptor, as CPython's do).

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSlice};
use std::mem::{self, MaybeUninit};
use std::os::windows::io::{
    AsHandle, AsRawHandle, AsRawSocket, AsSocket, BorrowedHandle, BorrowedSocket, FromRawHandle,
    FromRawSocket, OwnedHandle, OwnedSocket,
};
use std::path::PathBuf;
use std::process::Command;
use std::ptr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use interprocess::ConnectWaitMode;
use interprocess::os::windows::named_pipe::{
    DuplexPipeStream, PipeListener, PipeListenerOptions, PipeMode, SendPipeStream, pipe_mode,
};
use socket2::{Domain, SockAddr, Socket, Type};
use windows_sys::Win32::Foundation::{
    ERROR_BROKEN_PIPE, ERROR_IO_PENDING, ERROR_MORE_DATA, ERROR_NO_DATA, ERROR_OPERATION_ABORTED,
    ERROR_PIPE_NOT_CONNECTED, GetLastError, HANDLE, WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::Networking::WinSock::{
    POLLRDNORM, POLLWRNORM, SOCKET, WSAGetLastError, WSAPOLLFD, WSAPoll,
};
use windows_sys::Win32::Storage::FileSystem::{ReadFile, WriteFile};
use windows_sys::Win32::System::IO::{CancelIoEx, GetOverlappedResult, OVERLAPPED};
use windows_sys::Win32::System::Pipes::PeekNamedPipe;
use windows_sys::Win32::System::Threading::{CreateEventW, INFINITE, WaitForSingleObject};
use windows_sys::core::BOOL;

use crate::codec::{FrameError, LONG_HEADER_LEN, decode_header, encode_header};
use crate::{Address, Error, Family, Result};

pub(crate) const DEFAULT_FAMILY: Family = Family::Pipe;

/// Pipe buffer size asked for each direction. CPython asks for 8 KiB; more lets a sender queue
/// more small messages before it has to wait for the reader.
const PIPE_BUFFER: u32 = 64 << 10;
/// Room left in front of received data for the longest frame header.
const HEAD: usize = LONG_HEADER_LEN;
/// How much of a message one read takes into the stream's own buffer; the rest of a longer
/// message is read straight into the caller's buffer.
const CHUNK: usize = 64 << 10;
/// A send buffer (for sends with a deadline) larger than this is not kept for the next send.
const KEEP_SEND_BUFFER: usize = 1 << 20;
/// Longest pause between two looks in the polling loop of [`wait_any`] (about one tick of the
/// default Windows timer, so shorter pauses would not be shorter in practice).
const MAX_NAP: Duration = Duration::from_millis(15);
/// How long dropping a pipe stream lets a send that is still in progress finish before
/// cancelling it (the time a connection's drop gives to flushing, too).
const DROP_WAIT: Duration = Duration::from_secs(10);

const UNIX_ONLY: &str = "Unix domain socket addresses exist only on Unix";
const CHILD_UNSUPPORTED: &str = "passing connections to children on Windows is not supported yet";

/// A new directory for the user. `%TEMP%` on Windows is already private to its user, and a new
/// directory inherits that ACL.
pub(crate) fn private_tempdir() -> io::Result<PathBuf> {
    Ok(tempfile::Builder::new().prefix("procwire-").tempdir()?.keep())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A connected stream: a TCP socket, or a named pipe adapted to a stream of frames.
#[derive(Debug)]
pub(crate) struct Stream {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Tcp(Socket),
    Pipe(MsgPipe),
}

impl Stream {
    fn tcp(s: Socket) -> io::Result<Stream> {
        // Nonblocking for good: the receiving and the sending half share the socket, and each
        // waits with WSAPoll on its own terms (a per-call flag like MSG_DONTWAIT does not exist).
        s.set_nonblocking(true)?;
        s.set_tcp_nodelay(true)?;
        Ok(Stream { inner: Inner::Tcp(s) })
    }

    fn pipe(handle: OwnedHandle, dir: Dir) -> io::Result<Stream> {
        Ok(Stream { inner: Inner::Pipe(MsgPipe::new(handle, dir)?) })
    }

    fn socket(&self) -> Option<&Socket> {
        match &self.inner {
            Inner::Tcp(s) => Some(s),
            Inner::Pipe(_) => None,
        }
    }

    pub(crate) fn can_read(&self) -> bool {
        match &self.inner {
            Inner::Tcp(_) => true,
            Inner::Pipe(p) => p.rx.is_some(),
        }
    }

    pub(crate) fn can_write(&self) -> bool {
        match &self.inner {
            Inner::Tcp(_) => true,
            Inner::Pipe(p) => p.tx.is_some(),
        }
    }

    /// Reads into `buf`; 0 means end of stream; `TimedOut` when `deadline` passes first.
    pub(crate) fn read(&self, buf: &mut [u8], deadline: Option<Instant>) -> io::Result<usize> {
        self.read_uninit(uninit_view(buf), deadline)
    }

    /// Reads into `buf` without zeroing it; the first `n` bytes are initialised when it
    /// returns `Ok(n)`.
    pub(crate) fn read_uninit(
        &self,
        buf: &mut [MaybeUninit<u8>],
        deadline: Option<Instant>,
    ) -> io::Result<usize> {
        match &self.inner {
            Inner::Tcp(s) => loop {
                match s.recv(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_socket(s, POLLRDNORM, deadline)?,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    r => return r,
                }
            },
            Inner::Pipe(p) => p.read(buf, deadline),
        }
    }

    /// Writes some of `bufs`; `TimedOut` when `deadline` passes first. On a pipe, the bytes must
    /// be frames: each payload becomes one message.
    pub(crate) fn write_vectored(
        &self,
        bufs: &[IoSlice<'_>],
        deadline: Option<Instant>,
    ) -> io::Result<usize> {
        match &self.inner {
            Inner::Tcp(s) => loop {
                match s.send_vectored(bufs) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_socket(s, POLLWRNORM, deadline)?,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    r => return r,
                }
            },
            Inner::Pipe(p) => p.write_frames(bufs, deadline),
        }
    }

    /// Whether data (or end of stream) can be read now, waiting up to `timeout` (`None`: forever).
    pub(crate) fn wait_readable(&self, timeout: Option<Duration>) -> io::Result<bool> {
        // A timeout too long to add is as good as none.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        match &self.inner {
            Inner::Tcp(s) => Ok(poll_sockets(&mut [pollfd(s, POLLRDNORM)], deadline)? > 0),
            Inner::Pipe(p) => p.wait_readable(deadline),
        }
    }

    /// Readable now, for the polling loop of [`wait_any`]. An error counts as ready: the read
    /// that follows reports it for this stream alone.
    fn probe(&self) -> bool {
        !matches!(self.wait_readable(Some(Duration::ZERO)), Ok(false))
    }

    pub(crate) fn local_addr(&self) -> Option<Address> {
        self.socket().and_then(|s| s.local_addr().ok()).and_then(to_address)
    }

    pub(crate) fn peer_addr(&self) -> Option<Address> {
        self.socket().and_then(|s| s.peer_addr().ok()).and_then(to_address)
    }

    /// Windows has no uid and gid to report; see `Connection::peer_credentials`.
    pub(crate) fn peer_credentials(&self) -> Option<crate::connection::PeerCredentials> {
        None
    }

    /// Enables TCP keepalive probes after `idle` (sockets only; a no-op for pipes).
    pub(crate) fn set_keepalive(&self, idle: Option<Duration>) -> io::Result<()> {
        let Some(s) = self.socket() else {
            return Ok(());
        };
        match idle {
            None => s.set_keepalive(false),
            Some(t) => s.set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(t).with_interval(t)),
        }
    }

    /// Not supported on Windows yet: always an `Unsupported` error.
    pub(crate) fn pass_to_child(&self, _cmd: &mut Command, _var: &str) -> io::Result<()> {
        Err(io::Error::new(io::ErrorKind::Unsupported, CHILD_UNSUPPORTED))
    }

    /// Not supported on Windows yet: always an `Unsupported` error.
    pub(crate) fn from_env(var: &str) -> Result<Stream> {
        Err(Error::Io(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("cannot adopt the connection named by {var}: {CHILD_UNSUPPORTED}"),
        )))
    }
}

/// `buf` seen as possibly uninitialised memory, so that one read path serves both initialised
/// buffers and spare capacity.
fn uninit_view(buf: &mut [u8]) -> &mut [MaybeUninit<u8>] {
    // SAFETY: same layout; everything written through the view is initialised bytes (from the
    // kernel or copied), so `buf` stays initialised.
    unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) }
}

fn to_address(sa: SockAddr) -> Option<Address> {
    sa.as_socket().map(Address::tcp)
}

fn pollfd(s: &Socket, events: i16) -> WSAPOLLFD {
    WSAPOLLFD { fd: s.as_raw_socket() as SOCKET, events, revents: 0 }
}

/// WSAPoll with a deadline; returns the number of ready sockets (0: the deadline passed).
fn poll_sockets(fds: &mut [WSAPOLLFD], deadline: Option<Instant>) -> io::Result<usize> {
    loop {
        let timeout_ms = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                // Round up so that a sub-millisecond remainder still waits instead of spinning.
                left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
            }
        };
        // SAFETY: fds is a valid, exclusively borrowed array of WSAPOLLFD for the call; the
        // sockets were made by socket2, which has started Winsock.
        let n = unsafe { WSAPoll(fds.as_mut_ptr(), fds.len() as u32, timeout_ms) };
        if n > 0 {
            return Ok(n as usize);
        }
        if n == 0 {
            if deadline.is_some_and(|d| Instant::now() < d) {
                continue;
            }
            return Ok(0);
        }
        // SAFETY: no preconditions.
        let e = io::Error::from_raw_os_error(unsafe { WSAGetLastError() });
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Waits until `s` is ready for `events` or `deadline` passes (then `TimedOut`).
fn wait_socket(s: &Socket, events: i16, deadline: Option<Instant>) -> io::Result<()> {
    if poll_sockets(&mut [pollfd(s, events)], deadline)? == 0 {
        return Err(io::ErrorKind::TimedOut.into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Overlapped I/O on pipe handles

fn new_event() -> io::Result<OwnedHandle> {
    // Manual reset, as overlapped I/O wants; ReadFile and WriteFile reset it when they start.
    // SAFETY: no pointers are passed; the result is checked.
    let h = unsafe { CreateEventW(ptr::null(), 1, 0, ptr::null()) };
    if h.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new handle that nothing else owns.
    Ok(unsafe { OwnedHandle::from_raw_handle(h) })
}

fn overlapped(event: HANDLE) -> OVERLAPPED {
    // SAFETY: OVERLAPPED is plain old data; all-zero is its documented initial state.
    let mut ov: OVERLAPPED = unsafe { mem::zeroed() };
    ov.hEvent = event;
    ov
}

/// `None` when an overlapped ReadFile/WriteFile that returned `ok` is under way or done (its
/// result then comes from [`finish`]), else the error it failed with before starting.
fn started(ok: BOOL) -> Option<u32> {
    if ok != 0 {
        return None;
    }
    // SAFETY: no preconditions.
    match unsafe { GetLastError() } {
        ERROR_IO_PENDING | ERROR_MORE_DATA => None,
        e => Some(e),
    }
}

/// Waits for `event` until `deadline`: `Ok(true)` when it is set, `Ok(false)` when the deadline
/// passed first.
fn wait_event(event: HANDLE, deadline: Option<Instant>) -> io::Result<bool> {
    loop {
        let ms = match deadline {
            None => INFINITE,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                // Rounded up, so that a sub-millisecond remainder waits instead of spinning.
                left.as_micros().div_ceil(1000).min(u128::from(INFINITE - 1)) as u32
            }
        };
        // SAFETY: event is a valid event handle the caller keeps open.
        match unsafe { WaitForSingleObject(event, ms) } {
            WAIT_OBJECT_0 => return Ok(true),
            WAIT_TIMEOUT if deadline.is_some_and(|d| Instant::now() < d) => {}
            WAIT_TIMEOUT => return Ok(false),
            _ => return Err(io::Error::last_os_error()),
        }
    }
}

/// Waits until the operation `ov` on `h` has finished, then gives its byte count and status
/// (0 for success, else a Win32 error code). Its buffer and `ov` are free afterwards.
fn finish(h: HANDLE, ov: *mut OVERLAPPED) -> (usize, u32) {
    let mut n = 0u32;
    // SAFETY: ov belongs to an operation started on h; with bWait set the call returns only
    // once that operation has finished.
    let ok = unsafe { GetOverlappedResult(h, ov, &mut n, 1) };
    // SAFETY: no preconditions.
    let status = if ok != 0 { 0 } else { unsafe { GetLastError() } };
    (n as usize, status)
}

fn cancel(h: HANDLE, ov: *mut OVERLAPPED) {
    // SAFETY: cancelling touches only the operation `ov` on h. It fails harmlessly
    // (ERROR_NOT_FOUND) when that operation has already finished.
    unsafe { CancelIoEx(h, ov) };
}

/// Runs one overlapped operation (`start` issues it with the OVERLAPPED it is given) and waits
/// for it until `deadline`, then cancels it. A cancelled operation may still have finished first:
/// its real result is reported then, and `TimedOut` only when the cancel took effect. Returns
/// only once the operation is over, so the caller's buffer is free again.
fn run_io(
    h: HANDLE,
    event: HANDLE,
    deadline: Option<Instant>,
    start: impl FnOnce(*mut OVERLAPPED) -> BOOL,
) -> io::Result<(usize, u32)> {
    let ov = UnsafeCell::new(overlapped(event));
    if let Some(e) = started(start(ov.get())) {
        return Ok((0, e));
    }
    let waited = wait_event(event, deadline);
    let cancelled = !matches!(waited, Ok(true));
    if cancelled {
        cancel(h, ov.get());
    }
    let (n, status) = finish(h, ov.get());
    if cancelled && status == ERROR_OPERATION_ABORTED {
        return Err(waited.err().unwrap_or_else(|| io::ErrorKind::TimedOut.into()));
    }
    Ok((n, status))
}

// ---------------------------------------------------------------------------------------------
// Message pipes seen as a stream of frames

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    Duplex,
    RecvOnly,
    SendOnly,
}

/// A connected message-mode pipe handle (overlapped) with the state of each direction it has.
struct MsgPipe {
    handle: OwnedHandle,
    rx: Option<Mutex<RxState>>,
    tx: Option<Mutex<TxState>>,
}

/// What a read of one message found.
enum Got {
    /// The message ended after this many bytes.
    End(usize),
    /// This many bytes filled the buffer and the message goes on.
    More(usize),
    /// The peer closed the pipe.
    Eof,
}

struct RxState {
    event: OwnedHandle,
    /// `HEAD` bytes of room for a header, then the first `CHUNK` bytes of a message; allocated
    /// on the first receive.
    buf: Vec<u8>,
    /// Bytes owed to the reader before anything else: `buf[start..end]`, a header and the
    /// start of its payload.
    start: usize,
    end: usize,
    /// Payload bytes of the current message still in the pipe; its header was handed out.
    rest: u64,
    eof: bool,
    /// Set when the position in the message stream was lost; receiving is over.
    failed: bool,
}

struct TxState {
    event: OwnedHandle,
    /// A frame header that arrived in pieces (`head[..head_len]`).
    head: [u8; HEAD],
    head_len: usize,
    /// The payload length of the frame being collected, once its header is complete.
    want: Option<usize>,
    /// Its payload so far, when it did not arrive in one piece.
    body: Vec<u8>,
    /// A send that was still in progress at its deadline (see [`InFlight`]).
    in_flight: Option<Box<InFlight>>,
    /// A buffer kept for the next send with a deadline.
    spare: Vec<u8>,
    /// Set when a message went out only in part: the peer's message stream is corrupt.
    broken: bool,
}

/// A message write that outlived the call that started it. A message-mode write cannot be
/// cancelled safely once the reader may have taken part of it (the reader would get a truncated
/// message), so a send that reaches its deadline stays in progress, like bytes left in a socket's
/// kernel buffer; the next send waits for it first. It owns a copy of the message for that.
struct InFlight {
    ov: UnsafeCell<OVERLAPPED>,
    data: Vec<u8>,
}

// SAFETY: the OVERLAPPED holds our event handle and the kernel's bookkeeping for the write;
// nothing in it is tied to the thread that started the write, and it is only used under the
// TxState mutex.
unsafe impl Send for InFlight {}

impl fmt::Debug for MsgPipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MsgPipe")
            .field("handle", &self.handle)
            .field("can_read", &self.rx.is_some())
            .field("can_write", &self.tx.is_some())
            .finish()
    }
}

fn inconsistent() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "a pipe message did not have the length announced for it")
}

fn frame_error(e: FrameError) -> io::Error {
    match e {
        FrameError::TooLarge { len, max } => io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a message of {len} bytes does not fit in one pipe message (at most {max} bytes)"),
        ),
        FrameError::NegativeLength(n) => io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bytes written to a pipe must be frames (found length {n})"),
        ),
    }
}

/// A cursor over the slices given to one write.
struct Input<'a, 'b> {
    bufs: &'a [IoSlice<'b>],
    idx: usize,
    off: usize,
    /// Bytes taken so far.
    pos: usize,
}

impl<'a> Input<'a, '_> {
    fn skip_empty(&mut self) {
        while self.bufs.get(self.idx).is_some_and(|b| self.off == b.len()) {
            self.idx += 1;
            self.off = 0;
        }
    }

    /// Bytes left in the current slice.
    fn contiguous(&mut self) -> usize {
        self.skip_empty();
        self.bufs.get(self.idx).map_or(0, |b| b.len() - self.off)
    }

    /// Up to `n` bytes from the current slice; empty when everything was taken.
    fn take(&mut self, n: usize) -> &'a [u8] {
        self.skip_empty();
        let Some(b) = self.bufs.get(self.idx) else {
            return &[];
        };
        let k = n.min(b.len() - self.off);
        let s = &b[self.off..self.off + k];
        self.off += k;
        self.pos += k;
        s
    }
}

impl MsgPipe {
    fn new(handle: OwnedHandle, dir: Dir) -> io::Result<MsgPipe> {
        let rx = match dir {
            Dir::SendOnly => None,
            Dir::Duplex | Dir::RecvOnly => Some(Mutex::new(RxState {
                event: new_event()?,
                buf: Vec::new(),
                start: 0,
                end: 0,
                rest: 0,
                eof: false,
                failed: false,
            })),
        };
        let tx = match dir {
            Dir::RecvOnly => None,
            Dir::Duplex | Dir::SendOnly => Some(Mutex::new(TxState {
                event: new_event()?,
                head: [0; HEAD],
                head_len: 0,
                want: None,
                body: Vec::new(),
                in_flight: None,
                spare: Vec::new(),
                broken: false,
            })),
        };
        Ok(MsgPipe { handle, rx, tx })
    }

    fn raw(&self) -> HANDLE {
        self.handle.as_raw_handle()
    }

    // --- receiving ---

    fn read(&self, buf: &mut [MaybeUninit<u8>], deadline: Option<Instant>) -> io::Result<usize> {
        let Some(rx) = &self.rx else {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "this end of a one-way pipe only sends"));
        };
        let mut guard = lock(rx);
        let st = &mut *guard;
        loop {
            if st.failed {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "receiving on this pipe stopped after an earlier error",
                ));
            }
            if st.start < st.end {
                let n = (st.end - st.start).min(buf.len());
                for (d, s) in buf.iter_mut().zip(&st.buf[st.start..st.start + n]) {
                    d.write(*s);
                }
                st.start += n;
                return Ok(n);
            }
            if buf.is_empty() {
                return Ok(0);
            }
            if st.rest > 0 {
                return self.read_rest(st, buf, deadline);
            }
            if st.eof {
                return Ok(0);
            }
            self.fetch(st, deadline)?;
        }
    }

    /// Reads more of the current message straight into `buf`.
    fn read_rest(
        &self,
        st: &mut RxState,
        buf: &mut [MaybeUninit<u8>],
        deadline: Option<Instant>,
    ) -> io::Result<usize> {
        let want = usize::try_from(st.rest).unwrap_or(usize::MAX).min(buf.len());
        match self.read_msg(&st.event, &mut buf[..want], deadline)? {
            Got::Eof => {
                // Mid-message: the reader above sees a truncated frame.
                st.rest = 0;
                st.eof = true;
                Ok(0)
            }
            Got::End(n) if n as u64 == st.rest => {
                st.rest = 0;
                Ok(n)
            }
            Got::More(n) if (n as u64) < st.rest => {
                st.rest -= n as u64;
                Ok(n)
            }
            Got::End(_) | Got::More(_) => {
                st.failed = true;
                Err(inconsistent())
            }
        }
    }

    /// Receives the next message (or its first `CHUNK` bytes) into the stream's buffer, behind
    /// the frame header made from its length.
    fn fetch(&self, st: &mut RxState, deadline: Option<Instant>) -> io::Result<()> {
        if st.buf.is_empty() {
            st.buf = vec![0; HEAD + CHUNK];
        }
        let got = self.read_msg(&st.event, uninit_view(&mut st.buf[HEAD..]), deadline)?;
        let (n, total) = match got {
            Got::Eof => {
                st.eof = true;
                return Ok(());
            }
            Got::End(n) => (n, n as u64),
            Got::More(n) => match self.bytes_left() {
                // As CPython does: after a partial read, the pipe tells how much of the message
                // is left, so the header goes out before the rest is read.
                Ok(left) => (n, n as u64 + u64::from(left)),
                Err(e) => {
                    st.failed = true;
                    return Err(e);
                }
            },
        };
        let header = encode_header(total);
        let h = header.as_bytes();
        st.buf[HEAD - h.len()..HEAD].copy_from_slice(h);
        st.start = HEAD - h.len();
        st.end = HEAD + n;
        st.rest = total - n as u64;
        Ok(())
    }

    /// One ReadFile of (part of) a message into `buf`, with a deadline.
    fn read_msg(
        &self,
        event: &OwnedHandle,
        buf: &mut [MaybeUninit<u8>],
        deadline: Option<Instant>,
    ) -> io::Result<Got> {
        let h = self.raw();
        let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        let ptr = buf.as_mut_ptr().cast::<u8>();
        // SAFETY: buf is valid for len bytes and stays borrowed until run_io returns, which is
        // after the read has finished.
        let (n, status) = run_io(h, event.as_raw_handle(), deadline, |ov| unsafe {
            ReadFile(h, ptr, len, ptr::null_mut(), ov)
        })?;
        match status {
            0 => Ok(Got::End(n)),
            ERROR_MORE_DATA => Ok(Got::More(n)),
            ERROR_BROKEN_PIPE | ERROR_PIPE_NOT_CONNECTED | ERROR_NO_DATA => Ok(Got::Eof),
            e => Err(io::Error::from_raw_os_error(e as i32)),
        }
    }

    /// Bytes left in the message at the head of the pipe.
    fn bytes_left(&self) -> io::Result<u32> {
        let mut left = 0u32;
        // SAFETY: no buffer is passed; the out pointer is valid for the call.
        let ok = unsafe {
            PeekNamedPipe(self.raw(), ptr::null_mut(), 0, ptr::null_mut(), ptr::null_mut(), &mut left)
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(left)
    }

    fn wait_readable(&self, deadline: Option<Instant>) -> io::Result<bool> {
        // A receive on a send-only end fails at once, so it does not wait.
        let Some(rx) = &self.rx else {
            return Ok(true);
        };
        let mut guard = lock(rx);
        let st = &mut *guard;
        if st.start < st.end || st.rest > 0 || st.eof || st.failed {
            return Ok(true);
        }
        // Reading ahead is the only way to see an empty message (a peek shows nothing), and
        // what it reads stays for the next read.
        match self.fetch(st, deadline) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => Ok(false),
            Err(e) => Err(e),
        }
    }

    // --- sending ---

    /// Takes frames out of `bufs` and sends each payload as one message. Returns how many bytes
    /// of `bufs` are done with: sent, or kept here as the start of an unfinished frame. When a
    /// send fails, the bytes of that frame from this call are given back (not counted), so the
    /// caller offers them again.
    fn write_frames(&self, bufs: &[IoSlice<'_>], deadline: Option<Instant>) -> io::Result<usize> {
        let Some(tx) = &self.tx else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this end of a one-way pipe only receives",
            ));
        };
        let mut guard = lock(tx);
        let st = &mut *guard;
        if st.broken {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "a message on this pipe went out only in part earlier; sending is over",
            ));
        }
        let mut input = Input { bufs, idx: 0, off: 0, pos: 0 };
        let mut done = 0;
        loop {
            let saved = (st.head_len, st.want, st.body.len());
            let restore = |st: &mut TxState| {
                st.head_len = saved.0;
                st.want = saved.1;
                st.body.truncate(saved.2);
            };
            let want = match st.want {
                Some(w) => w,
                None => loop {
                    match decode_header(&st.head[..st.head_len], u64::from(u32::MAX)) {
                        Ok(Some(h)) => {
                            st.head_len = 0;
                            // At most u32::MAX: the maximum passed to decode_header.
                            let w = h.payload_len as usize;
                            st.want = Some(w);
                            break w;
                        }
                        Ok(None) => {
                            let need = if st.head_len < 4 { 4 - st.head_len } else { HEAD - st.head_len };
                            let got = input.take(need);
                            if got.is_empty() {
                                return Ok(input.pos);
                            }
                            st.head[st.head_len..st.head_len + got.len()].copy_from_slice(got);
                            st.head_len += got.len();
                        }
                        Err(e) => {
                            restore(st);
                            return if done > 0 { Ok(done) } else { Err(frame_error(e)) };
                        }
                    }
                },
            };
            let sent = if st.body.is_empty() && input.contiguous() >= want {
                // The whole payload is in one slice: send it from there.
                let payload = input.take(want);
                self.send_msg(st, payload, deadline)
            } else {
                while st.body.len() < want {
                    let got = input.take(want - st.body.len());
                    if got.is_empty() {
                        return Ok(input.pos);
                    }
                    st.body.extend_from_slice(got);
                }
                let body = mem::take(&mut st.body);
                let r = self.send_msg(st, &body, deadline);
                st.body = body;
                r
            };
            match sent {
                Ok(()) => {
                    done = input.pos;
                    st.want = None;
                    st.body.clear();
                }
                Err(e) => {
                    restore(st);
                    return if done > 0 { Ok(done) } else { Err(e) };
                }
            }
            if input.contiguous() == 0 {
                return Ok(done);
            }
        }
    }

    /// Sends `payload` as one message. Without a deadline it goes out from `payload` and the
    /// call waits for it; with one it goes out from a copy that may outlive the call
    /// ([`InFlight`]).
    fn send_msg(&self, st: &mut TxState, payload: &[u8], deadline: Option<Instant>) -> io::Result<()> {
        self.settle(st, deadline)?;
        let len = u32::try_from(payload.len()).map_err(|_| {
            frame_error(FrameError::TooLarge { len: payload.len() as u64, max: u64::from(u32::MAX) })
        })?;
        let h = self.raw();
        let event = st.event.as_raw_handle();
        if deadline.is_none() {
            // SAFETY: payload is valid for len bytes and outlives run_io, which returns after
            // the write has finished (it never cancels without a deadline).
            let (n, status) = run_io(h, event, None, |ov| unsafe {
                WriteFile(h, payload.as_ptr(), len, ptr::null_mut(), ov)
            })?;
            return written(st, n, status, payload.len());
        }
        let mut data = mem::take(&mut st.spare);
        data.clear();
        data.extend_from_slice(payload);
        let fl = Box::new(InFlight { ov: UnsafeCell::new(overlapped(event)), data });
        // SAFETY: fl (the OVERLAPPED and the data, both on the heap) stays alive until the
        // write has finished: below, in settle, or in Drop.
        if let Some(e) = started(unsafe { WriteFile(h, fl.data.as_ptr(), len, ptr::null_mut(), fl.ov.get()) })
        {
            st.spare = fl.data;
            return Err(io::Error::from_raw_os_error(e as i32));
        }
        let waited = wait_event(event, deadline);
        if matches!(waited, Ok(false)) {
            st.in_flight = Some(fl);
            return Ok(());
        }
        if waited.is_err() {
            cancel(h, fl.ov.get());
        }
        let (n, status) = finish(h, fl.ov.get());
        recycle(st, fl.data);
        match waited {
            Err(e) if status == ERROR_OPERATION_ABORTED && n == 0 => Err(e),
            _ => written(st, n, status, payload.len()),
        }
    }

    /// Waits for a send still in progress, so that messages keep their order.
    fn settle(&self, st: &mut TxState, deadline: Option<Instant>) -> io::Result<()> {
        let Some(ov) = st.in_flight.as_ref().map(|fl| fl.ov.get()) else {
            return Ok(());
        };
        if !wait_event(st.event.as_raw_handle(), deadline)? {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "the previous message is still being sent"));
        }
        let (n, status) = finish(self.raw(), ov);
        let Some(fl) = st.in_flight.take() else {
            return Ok(());
        };
        let len = fl.data.len();
        recycle(st, fl.data);
        written(st, n, status, len)
    }
}

fn recycle(st: &mut TxState, data: Vec<u8>) {
    if data.capacity() <= KEEP_SEND_BUFFER {
        st.spare = data;
    }
}

/// The outcome of a finished message write of `len` bytes.
fn written(st: &mut TxState, n: usize, status: u32, len: usize) -> io::Result<()> {
    match (status, n) {
        (0, n) if n == len => Ok(()),
        (0, _) => {
            st.broken = true;
            Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("a pipe message went out with {n} of {len} bytes"),
            ))
        }
        (e, 0) => Err(io::Error::from_raw_os_error(e as i32)),
        (e, _) => {
            st.broken = true;
            Err(io::Error::from_raw_os_error(e as i32))
        }
    }
}

impl Drop for MsgPipe {
    fn drop(&mut self) {
        let h = self.handle.as_raw_handle();
        let Some(tx) = self.tx.as_mut() else {
            return;
        };
        let st = tx.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(fl) = st.in_flight.take() {
            // Give the reader a while to take the last message, as a socket's kernel buffer
            // would, then give up on it.
            let deadline = Instant::now() + DROP_WAIT;
            if !matches!(wait_event(st.event.as_raw_handle(), Some(deadline)), Ok(true)) {
                cancel(h, fl.ov.get());
            }
            // The kernel may use fl until the write has finished.
            finish(h, fl.ov.get());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Connecting, pairs and listeners

type MsgListener = PipeListener<pipe_mode::Messages, pipe_mode::Messages>;

/// `\\.\pipe\NAME`, after checking that Windows accepts NAME.
fn pipe_path(addr: &Address, name: &str) -> Result<String> {
    if name.is_empty() || name.contains(['\\', '\0']) {
        return Err(addr.invalid("pipe names are non-empty and have no backslash or NUL"));
    }
    let path = format!(r"\\.\pipe\{name}");
    if path.encode_utf16().count() > 256 {
        return Err(addr.invalid(r"a pipe name is limited to 256 characters with its \\.\pipe\ prefix"));
    }
    Ok(path)
}

/// Options for a message-mode pipe listener on `path` (checked by [`pipe_path`]: interprocess
/// panics on a NUL inside).
fn pipe_options(path: &str) -> PipeListenerOptions<'_> {
    PipeListenerOptions::new()
        .path(path)
        .mode(PipeMode::Messages)
        .input_buffer_size_hint(PIPE_BUFFER)
        .output_buffer_size_hint(PIPE_BUFFER)
}

fn shared_stream<T>(_: T) -> io::Error {
    io::Error::other("interprocess returned a pipe stream whose handle is shared")
}

/// One accept on a nonblocking pipe listener: `Ok(None)` when no client waits.
fn accept_pipe(listener: &MsgListener) -> io::Result<Option<Stream>> {
    match listener.accept() {
        Ok(s) => {
            // Instances of a nonblocking listener are in PIPE_NOWAIT mode, where an empty pipe
            // reads as closed; back to waiting mode (deadlines are kept here, not by the pipe).
            s.set_nonblocking(false)?;
            let h = OwnedHandle::try_from(s).map_err(shared_stream)?;
            Ok(Some(Stream::pipe(h, Dir::Duplex)?))
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

/// Connects to `addr`, giving up at `deadline`.
pub(crate) fn connect(addr: &Address, deadline: Option<Instant>) -> Result<Stream> {
    let left = |d: Instant| d.saturating_duration_since(Instant::now());
    match addr {
        Address::Pipe(name) => {
            let path = pipe_path(addr, name)?;
            let wait = match deadline {
                None => ConnectWaitMode::Unbounded,
                Some(d) => ConnectWaitMode::Timeout(left(d)),
            };
            let c =
                DuplexPipeStream::<pipe_mode::Messages>::connect_by_path_with_wait_mode(path.as_str(), wait)?;
            let h = OwnedHandle::try_from(c).map_err(shared_stream)?;
            Ok(Stream::pipe(h, Dir::Duplex)?)
        }
        Address::Tcp { host, port } => {
            let mut last = None;
            for sa in super::resolve(addr, host, *port)? {
                let s = Socket::new(Domain::for_address(sa), Type::STREAM, Some(socket2::Protocol::TCP))?;
                let r = match deadline {
                    None => s.connect(&sa.into()),
                    Some(d) => s.connect_timeout(&sa.into(), left(d).max(Duration::from_millis(1))),
                };
                match r {
                    Ok(()) => return Ok(Stream::tcp(s)?),
                    Err(e) => last = Some(e),
                }
            }
            Err(Error::Io(last.unwrap_or_else(|| io::ErrorKind::NotFound.into())))
        }
        Address::Unix(_) | Address::UnixAbstract(_) => Err(addr.invalid(UNIX_ONLY)),
        Address::InProc(_) => Err(addr.invalid("in-process addresses have no OS pipe or socket")),
    }
}

fn fresh_pipe_path() -> io::Result<String> {
    let mut b = [0u8; 8];
    crate::auth::fill_random(&mut b).map_err(|e| match e {
        Error::Io(e) => e,
        e => io::Error::other(e.to_string()),
    })?;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(r"\\.\pipe\procwire-pair-{}-{hex}", std::process::id()))
}

/// A connected pair of message pipe ends: (server end, client end) for `duplex`, else (a
/// receive-only server end, a send-only client end), as CPython's `Pipe()` makes them.
pub(crate) fn pipe(duplex: bool) -> io::Result<(Stream, Stream)> {
    let path = fresh_pipe_path()?;
    let path = path.as_str();
    // A blocking listener: the accept below returns at once because our client is connected
    // by then, and the accepted instance needs no switch out of PIPE_NOWAIT (which a
    // receive-only server handle has no right to make).
    let opts = pipe_options(path);
    // A single attempt: a busy pipe means someone else holds the one free instance.
    let once = ConnectWaitMode::Timeout(Duration::ZERO);
    if duplex {
        let listener = opts.create_duplex::<pipe_mode::Messages>()?;
        let c = DuplexPipeStream::<pipe_mode::Messages>::connect_by_path_with_wait_mode(path, once)
            .map_err(stranger_first)?;
        // Before accepting: connected to someone else's listener, ours would wait forever.
        ours(c.server_process_id())?;
        let client = OwnedHandle::try_from(c).map_err(shared_stream)?;
        let s = listener.accept()?;
        ours(s.client_process_id())?;
        let server = OwnedHandle::try_from(s).map_err(shared_stream)?;
        Ok((Stream::pipe(server, Dir::Duplex)?, Stream::pipe(client, Dir::Duplex)?))
    } else {
        let listener = opts.create_recv_only::<pipe_mode::Messages>()?;
        let c = SendPipeStream::<pipe_mode::Messages>::connect_by_path_with_wait_mode(path, once)
            .map_err(stranger_first)?;
        // Before accepting: connected to someone else's listener, ours would wait forever.
        ours(c.server_process_id())?;
        let client = OwnedHandle::try_from(c).map_err(shared_stream)?;
        let s = listener.accept()?;
        ours(s.client_process_id())?;
        let server = OwnedHandle::try_from(s).map_err(shared_stream)?;
        Ok((Stream::pipe(server, Dir::RecvOnly)?, Stream::pipe(client, Dir::SendOnly)?))
    }
}

/// The default security descriptor of a pipe lets any local user open it for reading, so
/// another process may get to the fresh name of a `pipe()` between its creation and our
/// connect. That pair is refused rather than shared.
fn stranger_first(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::TimedOut {
        io::Error::new(io::ErrorKind::AddrInUse, "another process connected to a fresh private pipe first")
    } else {
        e
    }
}

/// Both ends of a `pipe()` must be this process. The server end is checked because the name
/// may not be exclusive to our listener (Wine does not enforce that).
fn ours(peer: io::Result<u32>) -> io::Result<()> {
    if peer.ok() != Some(std::process::id()) {
        return Err(io::Error::new(io::ErrorKind::AddrInUse, "another process is on a fresh private pipe"));
    }
    Ok(())
}

/// A bound, listening TCP socket or named pipe.
#[derive(Debug)]
pub(crate) struct RawListener {
    inner: ListenerInner,
}

#[derive(Debug)]
enum ListenerInner {
    Tcp(Socket),
    Pipe {
        /// Nonblocking: accept returns at once when no client waits.
        listener: MsgListener,
        name: String,
        /// Connections that [`wait_any`] accepted to find out whether one was waiting.
        accepted: Mutex<VecDeque<Stream>>,
    },
}

/// Options that matter when binding.
pub(crate) struct BindOptions {
    pub(crate) backlog: i32,
    /// Permission bits of a Unix socket file. Named pipes keep the default security
    /// descriptor, as CPython's do.
    #[allow(dead_code, reason = "no Unix socket files on Windows")]
    pub(crate) mode: u32,
}

fn bind_error(addr: &Address, e: io::Error) -> Error {
    Error::Io(io::Error::new(e.kind(), format!("cannot bind {addr}: {e}")))
}

impl RawListener {
    pub(crate) fn bind(addr: &Address, opts: &BindOptions) -> Result<RawListener> {
        match addr {
            Address::Pipe(name) => {
                let path = pipe_path(addr, name)?;
                let listener = pipe_options(&path)
                    .nonblocking(true)
                    .create_duplex::<pipe_mode::Messages>()
                    .map_err(|e| {
                    if e.kind() == io::ErrorKind::PermissionDenied {
                        // The first instance of a name is exclusive: someone else has it.
                        Error::Io(io::Error::new(
                            io::ErrorKind::AddrInUse,
                            format!("cannot bind {addr}: the pipe name is taken (or access to it is denied)"),
                        ))
                    } else {
                        bind_error(addr, e)
                    }
                })?;
                let accepted = Mutex::new(VecDeque::new());
                Ok(RawListener { inner: ListenerInner::Pipe { listener, name: name.clone(), accepted } })
            }
            Address::Tcp { host, port } => {
                let mut last = None;
                for sa in super::resolve(addr, host, *port)? {
                    let sock =
                        Socket::new(Domain::for_address(sa), Type::STREAM, Some(socket2::Protocol::TCP))?;
                    // No SO_REUSEADDR: on Windows it would let another socket take over a bound
                    // port (CPython sets it on POSIX only).
                    if sa.is_ipv6() {
                        sock.set_only_v6(true)?;
                    }
                    match sock.bind(&sa.into()) {
                        Ok(()) => {
                            sock.listen(opts.backlog)?;
                            sock.set_nonblocking(true)?;
                            return Ok(RawListener { inner: ListenerInner::Tcp(sock) });
                        }
                        Err(e) => last = Some(bind_error(addr, e)),
                    }
                }
                Err(last.unwrap_or_else(|| addr.invalid("no address to bind")))
            }
            Address::Unix(path) => {
                // No listener will own the private directory of `Address::fresh(Family::Unix)`
                // and remove it on drop, so it goes now.
                if let Some(dir) = path.parent() {
                    super::remove_fresh_dir(dir);
                }
                Err(addr.invalid(UNIX_ONLY))
            }
            Address::UnixAbstract(_) => Err(addr.invalid(UNIX_ONLY)),
            Address::InProc(_) => Err(addr.invalid("in-process addresses have no OS pipe or socket")),
        }
    }

    /// The bound address (the real port after binding port 0).
    pub(crate) fn local_addr(&self) -> io::Result<Address> {
        match &self.inner {
            ListenerInner::Tcp(sock) => {
                to_address(sock.local_addr()?).ok_or_else(|| io::Error::other("listener has no address"))
            }
            ListenerInner::Pipe { name, .. } => Ok(Address::Pipe(name.clone())),
        }
    }

    /// One accept attempt without waiting: `Ok(None)` when no connection is queued.
    pub(crate) fn try_accept(&self) -> io::Result<Option<(Stream, Option<Address>)>> {
        match &self.inner {
            ListenerInner::Tcp(sock) => loop {
                match sock.accept() {
                    Ok((s, sa)) => return Ok(Some((Stream::tcp(s)?, to_address(sa)))),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                    // A client that gave up before we got to it: not our error.
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::Interrupted
                                | io::ErrorKind::ConnectionAborted
                                | io::ErrorKind::ConnectionReset
                        ) => {}
                    Err(e) => return Err(e),
                }
            },
            ListenerInner::Pipe { listener, accepted, .. } => {
                if let Some(s) = lock(accepted).pop_front() {
                    return Ok(Some((s, None)));
                }
                Ok(accept_pipe(listener)?.map(|s| (s, None)))
            }
        }
    }

    /// Whether a connection waits now; a pipe connection found so is kept for `try_accept`.
    fn probe(&self) -> io::Result<bool> {
        match &self.inner {
            ListenerInner::Tcp(sock) => {
                Ok(poll_sockets(&mut [pollfd(sock, POLLRDNORM)], Some(Instant::now()))? > 0)
            }
            ListenerInner::Pipe { listener, accepted, .. } => {
                let mut accepted = lock(accepted);
                if !accepted.is_empty() {
                    return Ok(true);
                }
                match accept_pipe(listener)? {
                    Some(s) => {
                        accepted.push_back(s);
                        Ok(true)
                    }
                    None => Ok(false),
                }
            }
        }
    }
}

/// Waits until the listener has a connection queued or one of `streams` is readable, or
/// `deadline` passes. Returns whether the listener is ready and the indices of ready streams.
///
/// A TCP listener and its streams wait in one `WSAPoll`. Named pipes offer nothing to wait on
/// together: interprocess accepts synchronously, and a pipe shows a message (an empty one
/// included) only to a read. So for pipes this looks at everything, then sleeps a little
/// (1 ms, doubling up to about 15 ms) and looks again: readiness is noticed up to that late,
/// and an idle listener wakes about 60 times a second.
///
/// Without a listener (it rests, or enough handshakes are under way) only the streams count.
pub(crate) fn wait_any(
    listener: Option<&RawListener>,
    streams: &[&Stream],
    deadline: Option<Instant>,
) -> io::Result<(bool, Vec<usize>)> {
    if let Some(listener) = listener
        && let ListenerInner::Tcp(sock) = &listener.inner
        && let Some(socks) = streams.iter().map(|s| s.socket()).collect::<Option<Vec<_>>>()
    {
        let mut fds: Vec<WSAPOLLFD> =
            std::iter::once(sock).chain(socks).map(|s| pollfd(s, POLLRDNORM)).collect();
        if poll_sockets(&mut fds, deadline)? == 0 {
            return Ok((false, Vec::new()));
        }
        let ready = fds[1..].iter().enumerate().filter(|(_, p)| p.revents != 0).map(|(i, _)| i).collect();
        return Ok((fds[0].revents != 0, ready));
    }
    let mut nap = Duration::from_millis(1);
    loop {
        let listener_ready = match listener {
            Some(l) => l.probe()?,
            None => false,
        };
        let ready: Vec<usize> =
            streams.iter().enumerate().filter(|(_, s)| s.probe()).map(|(i, _)| i).collect();
        if listener_ready || !ready.is_empty() {
            return Ok((listener_ready, ready));
        }
        let now = Instant::now();
        let pause = match deadline {
            Some(d) if d <= now => return Ok((false, Vec::new())),
            Some(d) => nap.min(d - now),
            None => nap,
        };
        std::thread::sleep(pause);
        nap = (nap * 2).min(MAX_NAP);
    }
}

/// Something `wait_ready` can watch: a stream, or a listener.
pub(crate) enum Pollable<'a> {
    Stream(&'a Stream),
    Listener(&'a RawListener),
}

/// Waits until at least one of `items` is readable (a listener: has a client to accept) or
/// `deadline` passes; returns the indices of the ready ones (empty after the deadline).
///
/// Named pipes offer nothing to wait on together (see [`wait_any`]), so this looks at every
/// item, sleeps a little (1 ms, doubling up to about 15 ms) and looks again.
pub(crate) fn wait_ready(items: &[Pollable<'_>], deadline: Option<Instant>) -> io::Result<Vec<usize>> {
    let mut nap = Duration::from_millis(1);
    loop {
        let mut ready = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let is_ready = match item {
                Pollable::Stream(s) => s.probe(),
                Pollable::Listener(l) => l.probe()?,
            };
            if is_ready {
                ready.push(i);
            }
        }
        if !ready.is_empty() {
            return Ok(ready);
        }
        let now = Instant::now();
        let pause = match deadline {
            Some(d) if d <= now => return Ok(Vec::new()),
            Some(d) => nap.min(d - now),
            None => nap,
        };
        std::thread::sleep(pause);
        nap = (nap * 2).min(MAX_NAP);
    }
}

/// A child process's exit, for `wait`. Child processes (`procwire::process`) need connections
/// passed to children, which Windows does not support yet, so no sentinel is ever made here.
#[derive(Debug)]
pub(crate) enum Sentinel {}

impl Sentinel {
    /// Whether the child has exited (never called: there are no sentinels on Windows).
    pub(crate) fn wait(&self, _deadline: Option<Instant>) -> io::Result<bool> {
        match *self {}
    }
}

/// The Windows error for everything about child processes.
fn process_unsupported() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "procwire child processes are not supported on Windows yet (connections cannot be passed to a child)",
    )
}

/// As [`wait_ready`]; `sentinels` is always empty on Windows.
pub(crate) fn wait_ready_with(
    items: &[Pollable<'_>],
    sentinels: &[&Sentinel],
    deadline: Option<Instant>,
) -> io::Result<Vec<usize>> {
    if let Some(s) = sentinels.first() {
        match **s {}
    }
    wait_ready(items, deadline)
}

/// Child processes are not supported on Windows: always an `Unsupported` error.
pub(crate) fn prepare_child(_cmd: &mut Command, _var: &str, _daemon: bool) -> io::Result<Sentinel> {
    Err(process_unsupported())
}

/// Nothing to keep on Windows.
pub(crate) fn keep_sentinel(_var: &str) {}

/// Nothing to watch on Windows.
pub(crate) fn watch_parent() {}

/// Child processes are not supported on Windows: always an `Unsupported` error.
pub(crate) fn spawn(_cmd: Command, _daemon: bool) -> io::Result<u32> {
    Err(process_unsupported())
}

/// Child processes are not supported on Windows: always an `Unsupported` error.
pub(crate) fn reap(_pid: u32, _block: bool) -> io::Result<Option<i32>> {
    Err(process_unsupported())
}

/// Child processes are not supported on Windows: always an `Unsupported` error.
pub(crate) fn signal(_pid: u32, _kill: bool) -> io::Result<()> {
    Err(process_unsupported())
}

/// Makes every running thread of this process execute a full memory barrier
/// (`FlushProcessWriteBuffers`), so that the other side of a store-then-load handshake can do
/// with a compiler fence. Always available.
pub(crate) fn process_barrier() -> bool {
    // SAFETY: no arguments, no memory of ours.
    unsafe { windows_sys::Win32::System::Threading::FlushProcessWriteBuffers() };
    true
}

/// Unknown on Windows (0, which is no process's parent id here).
pub(crate) fn parent_id() -> u32 {
    0
}

/// There is no fork on Windows: always an `Unsupported` error.
///
/// # Safety
///
/// None needed; `unsafe` only to match the Unix version.
pub(crate) unsafe fn fork() -> io::Result<Option<(u32, Sentinel)>> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "fork does not exist on Windows"))
}

// ---------------------------------------------------------------------------------------------
// Handing handles and sockets to the process at the other end of a pipe (see handles.rs)

/// Tags of the streams that can be handed over.
const TAG_PIPE: &str = "pipe";
const TAG_PIPE_RECV: &str = "pipe-r";
const TAG_PIPE_SEND: &str = "pipe-w";
const TAG_TCP: &str = "tcp";

fn no_peer_process() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "on Windows, handles can only be passed over a named-pipe connection (the process at the \
         other end of a TCP connection is not known)",
    )
}

/// Winsock must be started in a process before a socket is made from shared socket
/// information; std and socket2 start it only when they make a socket themselves.
fn winsock_started() -> io::Result<()> {
    use windows_sys::Win32::Networking::WinSock::{WSADATA, WSAStartup};
    static STARTED: std::sync::OnceLock<i32> = std::sync::OnceLock::new();
    let r = *STARTED.get_or_init(|| {
        // SAFETY: WSADATA is plain data that WSAStartup fills. The start is never undone (as
        // std's is not): sockets may live until the process exits.
        let mut data: WSADATA = unsafe { mem::zeroed() };
        // SAFETY: a valid out pointer; version 2.2.
        unsafe { WSAStartup(0x0202, &mut data) }
    });
    if r == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(r)) }
}

/// What one process shares with another: both pids (checked by the taker), then `payload`.
fn addressed(to: u32, payload: &[u8]) -> Vec<u8> {
    [&std::process::id().to_le_bytes()[..], &to.to_le_bytes(), payload].concat()
}

/// The payload of what `from` shared, after checking that it was shared by `from` and for us.
///
/// Windows records a pipe's client and server process when the pipe is made and never
/// updates them: over a pipe end that was itself handed to another process, one side may name
/// the wrong process. Both sides' view is checked, so that such a pipe fails clearly instead of
/// taking from (or sharing with) a third process.
fn unaddressed(from: u32, shared: &[u8]) -> io::Result<&[u8]> {
    let me = std::process::id();
    let (Some(by), Some(to)) = (shared.get(..4), shared.get(4..8)) else {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "shared handle information too short"));
    };
    let by = u32::from_le_bytes(by.try_into().unwrap_or_default());
    let to = u32::from_le_bytes(to.try_into().unwrap_or_default());
    if by != from || to != me {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "process {by} shared a handle for process {to}, and this is process {me} whose pipe names \
                 process {from} at the other end: a pipe end that was handed to another process cannot \
                 carry handles (Windows keeps naming the processes it was made by)"
            ),
        ));
    }
    Ok(&shared[8..])
}

impl Stream {
    /// The process at the other end of this named pipe as Windows recorded it when the pipe
    /// was made (this process for a `pipe()` pair); an `Unsupported` error for TCP, whose peer
    /// process cannot be known.
    pub(crate) fn peer_process(&self) -> io::Result<u32> {
        use windows_sys::Win32::System::Pipes::{
            GetNamedPipeClientProcessId, GetNamedPipeInfo, GetNamedPipeServerProcessId, PIPE_SERVER_END,
        };
        let Inner::Pipe(p) = &self.inner else {
            return Err(no_peer_process());
        };
        let mut flags = 0u32;
        // SAFETY: a pipe handle we own; the out pointers are valid or null.
        if unsafe { GetNamedPipeInfo(p.raw(), &mut flags, ptr::null_mut(), ptr::null_mut(), ptr::null_mut()) }
            == 0
        {
            return Err(io::Error::last_os_error());
        }
        let mut pid = 0u32;
        // SAFETY: as above.
        let ok = unsafe {
            if flags & PIPE_SERVER_END != 0 {
                GetNamedPipeClientProcessId(p.raw(), &mut pid)
            } else {
                GetNamedPipeServerProcessId(p.raw(), &mut pid)
            }
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(pid)
    }

    /// What the peer needs to take `h` with [`take_handle`](Stream::take_handle): its value in
    /// this process, which the caller keeps open until the peer has answered.
    pub(crate) fn share_handle(&self, h: BorrowedHandle<'_>) -> io::Result<Vec<u8>> {
        Ok(addressed(self.peer_process()?, &(h.as_raw_handle() as u64).to_le_bytes()))
    }

    /// A handle of this process duplicated from the one the peer shared with
    /// [`share_handle`](Stream::share_handle).
    pub(crate) fn take_handle(&self, shared: &[u8]) -> io::Result<OwnedHandle> {
        use windows_sys::Win32::Foundation::{DUPLICATE_SAME_ACCESS, DuplicateHandle};
        use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcess, PROCESS_DUP_HANDLE};
        let pid = self.peer_process()?;
        let value: [u8; 8] = unaddressed(pid, shared)?
            .try_into()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "a shared handle is 8 bytes"))?;
        // SAFETY: asks for a handle with the right to duplicate handles out of that process.
        let process = unsafe { OpenProcess(PROCESS_DUP_HANDLE, 0, pid) };
        if process.is_null() {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("cannot open process {pid} to take its handle: {e}"),
            ));
        }
        // SAFETY: a new handle we own.
        let process = unsafe { OwnedHandle::from_raw_handle(process) };
        let mut out: HANDLE = ptr::null_mut();
        // SAFETY: valid process handles and out pointer. Whatever number the peer sent, the
        // result is a new handle of ours, or an error: never one of our existing handles.
        let ok = unsafe {
            DuplicateHandle(
                process.as_raw_handle(),
                u64::from_le_bytes(value) as HANDLE,
                GetCurrentProcess(),
                &mut out,
                0,
                0,
                DUPLICATE_SAME_ACCESS,
            )
        };
        if ok == 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("cannot take the handle of process {pid}: {e}")));
        }
        // SAFETY: DuplicateHandle made this handle for us.
        Ok(unsafe { OwnedHandle::from_raw_handle(out) })
    }

    /// What the peer needs to make its own copy of socket `s` with
    /// [`take_socket`](Stream::take_socket) (`WSADuplicateSocketW` for the peer's pid).
    pub(crate) fn share_socket(&self, s: BorrowedSocket<'_>) -> io::Result<Vec<u8>> {
        use windows_sys::Win32::Networking::WinSock::{WSADuplicateSocketW, WSAPROTOCOL_INFOW};
        let pid = self.peer_process()?;
        // SAFETY: plain data, filled by the call below.
        let mut info: WSAPROTOCOL_INFOW = unsafe { mem::zeroed() };
        // SAFETY: a socket the caller keeps open, a valid out pointer.
        if unsafe { WSADuplicateSocketW(s.as_raw_socket() as SOCKET, pid, &mut info) } != 0 {
            // SAFETY: no preconditions.
            return Err(io::Error::from_raw_os_error(unsafe { WSAGetLastError() }));
        }
        // SAFETY: WSAPROTOCOL_INFOW is integers and arrays of them, read as its bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts(ptr::from_ref(&info).cast::<u8>(), size_of::<WSAPROTOCOL_INFOW>())
        };
        Ok(addressed(pid, bytes))
    }

    /// A socket of this process made from what the peer's [`share_socket`](Stream::share_socket)
    /// gave.
    pub(crate) fn take_socket(&self, shared: &[u8]) -> io::Result<OwnedSocket> {
        use windows_sys::Win32::Networking::WinSock::{
            FROM_PROTOCOL_INFO, INVALID_SOCKET, WSA_FLAG_NO_HANDLE_INHERIT, WSA_FLAG_OVERLAPPED,
            WSAPROTOCOL_INFOW, WSASocketW,
        };
        let shared = unaddressed(self.peer_process()?, shared)?;
        if shared.len() != size_of::<WSAPROTOCOL_INFOW>() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "shared socket information of the wrong size",
            ));
        }
        // SAFETY: any bytes are a valid WSAPROTOCOL_INFOW (integers only); read unaligned.
        let info = unsafe { shared.as_ptr().cast::<WSAPROTOCOL_INFOW>().read_unaligned() };
        winsock_started()?;
        // SAFETY: the information is checked by Winsock, which fails on what it does not know.
        let s = unsafe {
            WSASocketW(
                FROM_PROTOCOL_INFO,
                FROM_PROTOCOL_INFO,
                FROM_PROTOCOL_INFO,
                &info,
                0,
                WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT,
            )
        };
        if s == INVALID_SOCKET {
            // SAFETY: no preconditions.
            return Err(io::Error::from_raw_os_error(unsafe { WSAGetLastError() }));
        }
        // SAFETY: a new socket that nothing else owns.
        Ok(unsafe { OwnedSocket::from_raw_socket(s as _) })
    }

    /// Hands this stream over `carrier` to its peer: what the peer needs to take it, its kind's
    /// tag, and the bytes this stream took from the pipe and did not hand up yet (they go along,
    /// after the connection's own). Refused in the middle of a message either way.
    pub(crate) fn share_stream(&self, carrier: &Stream) -> io::Result<(Vec<u8>, &'static str, Vec<u8>)> {
        let mid = |what| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("this connection is in the middle of {what} a message; finish it first"),
            )
        };
        match &self.inner {
            Inner::Tcp(s) => Ok((carrier.share_socket(s.as_socket())?, TAG_TCP, Vec::new())),
            Inner::Pipe(p) => {
                let mut pending = Vec::new();
                if let Some(rx) = &p.rx {
                    let st = lock(rx);
                    if st.rest > 0 || st.failed {
                        return Err(mid("receiving"));
                    }
                    pending.extend_from_slice(&st.buf[st.start..st.end]);
                }
                if let Some(tx) = &p.tx {
                    let st = lock(tx);
                    if st.head_len > 0 || st.want.is_some() || st.broken {
                        return Err(mid("sending"));
                    }
                }
                let tag = match (p.rx.is_some(), p.tx.is_some()) {
                    (true, true) => TAG_PIPE,
                    (true, false) => TAG_PIPE_RECV,
                    _ => TAG_PIPE_SEND,
                };
                Ok((carrier.share_handle(p.handle.as_handle())?, tag, pending))
            }
        }
    }

    /// A stream taken from what the peer's [`share_stream`](Stream::share_stream) gave;
    /// `Ok(None)` when `tag` names no stream.
    pub(crate) fn take_stream(&self, shared: &[u8], tag: &str) -> io::Result<Option<Stream>> {
        let dir = match tag {
            TAG_TCP => return Stream::tcp(Socket::from(self.take_socket(shared)?)).map(Some),
            TAG_PIPE => Dir::Duplex,
            TAG_PIPE_RECV => Dir::RecvOnly,
            TAG_PIPE_SEND => Dir::SendOnly,
            _ => return Ok(None),
        };
        Stream::pipe(self.take_handle(shared)?, dir).map(Some)
    }
}
