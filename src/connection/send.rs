//! Sending: small frames copied into one write, large ones written vectored, and batching.

use std::io::{self, IoSlice};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{DEFAULT_BATCH, append};
use crate::codec::encode_header;
use crate::transport::Stream;
use crate::util::deadline_of;
use crate::{Error, Result};

/// Frames up to this size are copied next to their header and sent with one plain write.
const COPY_LIMIT: usize = 16 << 10;
/// The longest a drop waits to flush batched data when no write timeout is set.
const DROP_FLUSH_LIMIT: Duration = Duration::from_secs(10);

/// The sending state of a connection.
pub(super) struct Writer {
    /// Frames not yet written: queued by batching, or left over from a write that timed out.
    pub(super) buf: Vec<u8>,
    pub(super) batch: Option<usize>,
    pub(super) timeout: Option<Duration>,
}

// Counts only: never the bytes queued.
impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("queued", &self.buf.len())
            .field("batch", &self.batch)
            .field("write_timeout", &self.timeout)
            .finish()
    }
}

impl Writer {
    pub(super) fn new() -> Writer {
        Writer { buf: Vec::new(), batch: None, timeout: None }
    }

    pub(super) fn check(stream: &Stream) -> Result<()> {
        if stream.can_write() {
            Ok(())
        } else {
            Err(Error::Io(io::Error::new(
                io::ErrorKind::Unsupported,
                "this end of a one-way pipe only receives",
            )))
        }
    }

    fn should_flush(&self) -> bool {
        self.batch.is_none_or(|limit| self.buf.len() >= limit)
    }

    pub(super) fn send(&mut self, stream: &Stream, payload: &[u8]) -> Result<()> {
        Self::check(stream)?;
        // Into a ring, the copy is the write: header and payload go straight in, where a
        // socket takes them better copied together into one write.
        if stream.is_shared_memory() && self.buf.is_empty() && self.batch.is_none() {
            let header = encode_header(payload.len() as u64);
            return self.write_all(stream, &[header.as_bytes(), payload], deadline_of(self.timeout));
        }
        if 4 + payload.len() <= COPY_LIMIT {
            // Well under 2 GiB: the short header, copied in front of the payload.
            self.buf.reserve(4 + payload.len());
            self.buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            append(&mut self.buf, payload);
            return if self.should_flush() { self.flush(stream) } else { Ok(()) };
        }
        let header = encode_header(payload.len() as u64);
        let queued = std::mem::take(&mut self.buf);
        let r = self.write_all(stream, &[&queued, header.as_bytes(), payload], deadline_of(self.timeout));
        self.recycle(queued);
        r
    }

    /// Queues a frame of `len` payload bytes that `fill` writes in place in the send buffer
    /// (zeroed first), then sends it as [`send`](Writer::send) would. If `fill` panics, the
    /// frame is taken back out of the buffer.
    pub(super) fn send_with<R>(
        &mut self,
        stream: &Stream,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R> {
        Self::check(stream)?;
        let header = encode_header(len as u64);
        let start = self.buf.len();
        let total = header.as_bytes().len().checked_add(len);
        if total.is_none_or(|t| self.buf.try_reserve(t).is_err()) {
            return Err(Error::Io(io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!("cannot allocate {len} bytes for a message"),
            )));
        }
        self.buf.extend_from_slice(header.as_bytes());
        self.buf.resize(start + header.as_bytes().len() + len, 0);
        /// Takes an unfinished frame back out of the buffer when `fill` unwinds.
        struct Unfinished<'a> {
            buf: &'a mut Vec<u8>,
            start: usize,
        }
        impl Drop for Unfinished<'_> {
            fn drop(&mut self) {
                self.buf.truncate(self.start);
            }
        }
        let guard = Unfinished { buf: &mut self.buf, start };
        let r = fill(&mut guard.buf[start + header.as_bytes().len()..]);
        std::mem::forget(guard);
        if self.should_flush() || len > COPY_LIMIT {
            self.flush(stream)?;
        }
        Ok(r)
    }

    pub(super) fn send_value<T: Serialize + ?Sized>(&mut self, stream: &Stream, value: &T) -> Result<()> {
        Self::check(stream)?;
        // Encode straight after a placeholder header, then patch the header in.
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        if let Err(e) = ciborium::into_writer(value, &mut self.buf) {
            self.buf.truncate(start);
            return Err(crate::error::encode_error(&e));
        }
        let len = (self.buf.len() - start - 4) as u64;
        let header = encode_header(len);
        if header.as_bytes().len() == 4 {
            self.buf[start..start + 4].copy_from_slice(header.as_bytes());
        } else {
            // Over 2 GiB of CBOR: make room for the long header.
            self.buf.splice(start..start + 4, header.as_bytes().iter().copied());
        }
        if self.should_flush() || len as usize > COPY_LIMIT { self.flush(stream) } else { Ok(()) }
    }

    pub(super) fn flush(&mut self, stream: &Stream) -> Result<()> {
        self.flush_until(stream, deadline_of(self.timeout))
    }

    pub(super) fn flush_until(&mut self, stream: &Stream, deadline: Option<Instant>) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let queued = std::mem::take(&mut self.buf);
        let r = self.write_all(stream, &[&queued], deadline);
        self.recycle(queued);
        r
    }

    /// Gives a written-out queue's allocation back for the next frames (unless a write left
    /// something queued, or a huge message inflated it).
    pub(super) fn recycle(&mut self, mut written: Vec<u8>) {
        if self.buf.is_empty() && written.capacity() <= 4 * DEFAULT_BATCH {
            written.clear();
            self.buf = written;
        }
    }

    /// Writes all of `parts`. If it stops early (timeout, error), whatever was not written is
    /// kept in `self.buf` so the next send or flush completes the frame: the stream never
    /// carries half a frame followed by another frame.
    pub(super) fn write_all(
        &mut self,
        stream: &Stream,
        parts: &[&[u8]],
        deadline: Option<Instant>,
    ) -> Result<()> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let mut done = 0;
        while done < total {
            let mut slices = [IoSlice::new(&[]); 3];
            let mut n = 0;
            let mut skip = done;
            for p in parts {
                if skip >= p.len() {
                    skip -= p.len();
                    continue;
                }
                slices[n] = IoSlice::new(&p[skip..]);
                skip = 0;
                n += 1;
            }
            match stream.write_vectored(&slices[..n], deadline) {
                Ok(0) => {
                    self.keep_unwritten(parts, done);
                    return Err(Error::Io(io::ErrorKind::WriteZero.into()));
                }
                Ok(w) => done += w,
                Err(e) => {
                    self.keep_unwritten(parts, done);
                    return Err(Error::from_io_waiting(e, || {
                        "sending a message (the rest is queued; flush to retry)".into()
                    }));
                }
            }
        }
        Ok(())
    }

    fn keep_unwritten(&mut self, parts: &[&[u8]], mut done: usize) {
        let mut rest = Vec::new();
        for p in parts {
            let skip = done.min(p.len());
            done -= skip;
            rest.extend_from_slice(&p[skip..]);
        }
        rest.append(&mut self.buf);
        self.buf = rest;
    }

    pub(super) fn flush_on_drop(&mut self, stream: &Stream) {
        if !self.buf.is_empty() && stream.can_write() {
            self.timeout = Some(self.timeout.unwrap_or(DROP_FLUSH_LIMIT));
            let _ = self.flush(stream);
        }
    }
}
