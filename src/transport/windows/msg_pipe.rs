//! Message-mode pipes seen as a stream of frames: each message received is handed up behind a
//! frame header made from its length, and each frame written goes out as one message.

use std::cell::UnsafeCell;
use std::fmt;
use std::io::{self, IoSlice};
use std::mem::{self, MaybeUninit};
use std::os::windows::io::{AsRawHandle, OwnedHandle};
use std::ptr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{
    ERROR_BROKEN_PIPE, ERROR_MORE_DATA, ERROR_NO_DATA, ERROR_OPERATION_ABORTED, ERROR_PIPE_NOT_CONNECTED,
    HANDLE,
};
use windows_sys::Win32::Storage::FileSystem::{ReadFile, WriteFile};
use windows_sys::Win32::System::IO::OVERLAPPED;
use windows_sys::Win32::System::Pipes::PeekNamedPipe;

use super::lock;
use super::overlapped::{cancel, finish, new_event, overlapped, run_io, started, wait_event};
use crate::codec::{FrameError, LONG_HEADER_LEN, decode_header, encode_header};

/// Room left in front of received data for the longest frame header.
const HEAD: usize = LONG_HEADER_LEN;
/// How much of a message one read takes into the stream's own buffer; the rest of a longer
/// message is read straight into the caller's buffer.
const CHUNK: usize = 64 << 10;
/// A send buffer (for sends with a deadline) larger than this is not kept for the next send.
const KEEP_SEND_BUFFER: usize = 1 << 20;
/// How long dropping a pipe stream lets a send that is still in progress finish before
/// cancelling it (the time a connection's drop gives to flushing, too).
const DROP_WAIT: Duration = Duration::from_secs(10);

/// `buf` seen as possibly uninitialised memory, so that one read path serves both initialised
/// buffers and spare capacity.
pub(super) fn uninit_view(buf: &mut [u8]) -> &mut [MaybeUninit<u8>] {
    // SAFETY: same layout; everything written through the view is initialised bytes (from the
    // kernel or copied), so `buf` stays initialised.
    unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Dir {
    Duplex,
    RecvOnly,
    SendOnly,
}

/// A connected message-mode pipe handle (overlapped) with the state of each direction it has.
pub(super) struct MsgPipe {
    pub(super) handle: OwnedHandle,
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
    pub(super) fn new(handle: OwnedHandle, dir: Dir) -> io::Result<MsgPipe> {
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

    pub(super) fn raw(&self) -> HANDLE {
        self.handle.as_raw_handle()
    }

    pub(super) fn can_read(&self) -> bool {
        self.rx.is_some()
    }

    pub(super) fn can_write(&self) -> bool {
        self.tx.is_some()
    }

    /// The directions this end has.
    pub(super) fn dir(&self) -> Dir {
        match (self.rx.is_some(), self.tx.is_some()) {
            (true, true) => Dir::Duplex,
            (true, false) => Dir::RecvOnly,
            _ => Dir::SendOnly,
        }
    }

    /// The bytes this end took from the pipe and did not hand up yet, for handing it to another
    /// process; refused in the middle of a message either way.
    pub(super) fn pending_for_handover(&self) -> io::Result<Vec<u8>> {
        let mid = |what| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("this connection is in the middle of {what} a message; finish it first"),
            )
        };
        let mut pending = Vec::new();
        if let Some(rx) = &self.rx {
            let st = lock(rx);
            if st.rest > 0 || st.failed {
                return Err(mid("receiving"));
            }
            pending.extend_from_slice(&st.buf[st.start..st.end]);
        }
        if let Some(tx) = &self.tx {
            let st = lock(tx);
            if st.head_len > 0 || st.want.is_some() || st.broken {
                return Err(mid("sending"));
            }
        }
        Ok(pending)
    }

    // --- receiving ---

    pub(super) fn read(&self, buf: &mut [MaybeUninit<u8>], deadline: Option<Instant>) -> io::Result<usize> {
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

    pub(super) fn wait_readable(&self, deadline: Option<Instant>) -> io::Result<bool> {
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
    pub(super) fn write_frames(&self, bufs: &[IoSlice<'_>], deadline: Option<Instant>) -> io::Result<usize> {
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
