//! The two halves of a split connection: [`Sender`] and [`Receiver`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

#[cfg(doc)]
use super::Connection;
use super::{Reader, Writer, decode};
use crate::Result;
use crate::transport::Stream;
use crate::util::deadline_of;

/// The sending half of a [`Connection`], from [`Connection::split`].
pub struct Sender {
    pub(super) stream: Arc<Stream>,
    pub(super) writer: Writer,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").field("stream", &*self.stream).field("tx", &self.writer).finish()
    }
}

impl Sender {
    /// As [`Connection::send_bytes`].
    pub fn send_bytes(&mut self, payload: &[u8]) -> Result<()> {
        self.writer.send(&self.stream, payload)
    }

    /// As [`Connection::send`].
    pub fn send<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.writer.send_value(&self.stream, value)
    }

    /// As [`Connection::send_with`].
    pub fn send_with<R>(&mut self, len: usize, fill: impl FnOnce(&mut [u8]) -> R) -> Result<R> {
        self.writer.send_with(&self.stream, len, fill)
    }

    /// As [`Connection::flush`].
    pub fn flush(&mut self) -> Result<()> {
        self.writer.flush(&self.stream)
    }

    /// As [`Connection::set_batching`] (a receive on the other half does not flush this one).
    pub fn set_batching(&mut self, limit: Option<usize>) {
        self.writer.batch = limit;
    }

    /// As [`Connection::set_write_timeout`].
    pub fn set_write_timeout(&mut self, timeout: Option<Duration>) {
        self.writer.timeout = timeout;
    }

    /// Writes `frames`, bytes that are already whole frames (headers included), after anything
    /// queued. What a timeout leaves unwritten stays queued, as for a send.
    pub(crate) fn write_frames(&mut self, frames: &[u8], deadline: Option<Instant>) -> Result<()> {
        Writer::check(&self.stream)?;
        let queued = std::mem::take(&mut self.writer.buf);
        let r = self.writer.write_all(&self.stream, &[&queued, frames], deadline);
        self.writer.recycle(queued);
        r
    }

    /// Writes what is queued, waiting until `deadline` at most.
    pub(crate) fn flush_until(&mut self, deadline: Option<Instant>) -> Result<()> {
        self.writer.flush_until(&self.stream, deadline)
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.writer.flush_on_drop(&self.stream);
    }
}

/// The receiving half of a [`Connection`], from [`Connection::split`].
pub struct Receiver {
    pub(super) stream: Arc<Stream>,
    pub(super) reader: Reader,
    pub(super) scratch: Vec<u8>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver").field("stream", &*self.stream).field("rx", &self.reader).finish()
    }
}

impl Receiver {
    pub(crate) fn stream(&self) -> &Stream {
        &self.stream
    }

    pub(crate) fn has_buffered(&self) -> bool {
        self.reader.has_data() || self.reader.broken.is_some()
    }
    /// As [`Connection::recv_bytes`].
    pub fn recv_bytes(&mut self) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        self.recv_bytes_into(&mut v)?;
        Ok(v)
    }

    /// As [`Connection::recv_bytes_into`].
    pub fn recv_bytes_into(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        let deadline = deadline_of(self.reader.timeout);
        self.reader.recv_into(&self.stream, buf, deadline)
    }

    /// As [`Connection::recv_with`].
    pub fn recv_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        let deadline = deadline_of(self.reader.timeout);
        self.reader.recv_with(&self.stream, &mut self.scratch, deadline, f)
    }

    /// As [`Connection::recv`].
    pub fn recv<T: DeserializeOwned>(&mut self) -> Result<T> {
        let deadline = deadline_of(self.reader.timeout);
        self.reader.recv_with(&self.stream, &mut self.scratch, deadline, decode)?
    }

    /// As [`Connection::poll`].
    pub fn poll(&mut self) -> Result<bool> {
        self.reader.poll(&self.stream, Some(Duration::ZERO))
    }

    /// As [`Connection::poll_timeout`].
    pub fn poll_timeout(&mut self, timeout: Duration) -> Result<bool> {
        // A timeout too long to represent is the same as none.
        let left = deadline_of(Some(timeout)).map(|d| d.saturating_duration_since(Instant::now()));
        self.reader.poll(&self.stream, left)
    }

    /// As [`Connection::set_read_timeout`].
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.reader.timeout = timeout;
    }

    /// As [`Connection::set_max_message_size`].
    pub fn set_max_message_size(&mut self, max: u64) {
        self.reader.fb.set_max(max);
    }

    /// Receives one message, waiting until `deadline`, then every further message already
    /// complete in the buffer, handing each to `f` in order (without copying buffered ones).
    /// Stops at the first error of `f`.
    pub(crate) fn recv_batch(
        &mut self,
        deadline: Option<Instant>,
        f: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        self.reader.recv_with(&self.stream, &mut self.scratch, deadline, &mut *f)??;
        while let Some(frame) = self.reader.take_buffered() {
            f(frame)?;
        }
        Ok(())
    }
}
