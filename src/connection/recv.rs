//! Receiving: the read buffer, frames taken out of it or read into their own allocation, CBOR.

use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::append;
use crate::codec::{FrameBuf, Peek, SHORT_HEADER_LEN};
use crate::transport::{SHM_HELLO, SHM_OFFER, SHM_REFUSED, Stream};
use crate::{Error, Result};

/// Messages up to this size get their whole buffer at once; a larger announced length only
/// gets this much up front and grows as its bytes actually arrive, so a lying length prefix
/// (within a generous max) cannot make us reserve more than this.
const EAGER_ALLOC: usize = 64 << 20;
/// Messages from this size up that are not all in the buffer yet are read into their own
/// allocation: copying them out of the buffer would cost more than the read it saves.
const DIRECT_MIN: usize = 32 << 10;

fn no_memory(len: usize) -> Error {
    Error::Io(io::Error::new(
        io::ErrorKind::OutOfMemory,
        format!("cannot allocate {len} bytes for a message"),
    ))
}

/// The receiving state of a connection.
pub(super) struct Reader {
    pub(super) fb: FrameBuf,
    /// A large frame that timed out half-way: the payload so far, its full length, and the
    /// length of its header (for error reports).
    pub(super) partial: Option<(Vec<u8>, usize, usize)>,
    pub(super) timeout: Option<Duration>,
    /// Set after a framing error: the stream position is lost, receiving is over.
    pub(super) broken: Option<String>,
    /// Keyless clients: a first message that is a challenge means the listener wants a key,
    /// one that is a shared-memory offer that it is an `shm:` listener.
    pub(super) refuse_challenge: bool,
    /// A keyless plain listener's connections: a first message that is a shared-memory
    /// client's hello means the client connected with the wrong address form.
    pub(super) refuse_shm_hello: bool,
    /// Such a first message arrived; the connection owes the peer this answer.
    pub(super) owed: Option<&'static [u8]>,
    /// The capacity the buffer grows to before its next read: a connection that never reads
    /// after its handshake never allocates (and zeroes) the full buffer.
    pub(super) capacity: usize,
    /// The last frame was large and read into its own allocation: the next read into an empty
    /// buffer takes only a header (a run of large messages goes without copies).
    direct: bool,
}

// Counts and state only: never the bytes received.
impl fmt::Debug for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Reader");
        d.field("buffered", &self.fb.buffered().len());
        if let Some((got, len, _)) = &self.partial {
            d.field("partial", &format_args!("{} of {len} bytes", got.len()));
        }
        d.field("max_message_size", &self.fb.max()).field("read_timeout", &self.timeout);
        if let Some(why) = &self.broken {
            d.field("broken", why);
        }
        d.finish()
    }
}

/// Where [`Reader::next`] left the frame.
enum Got {
    /// In the frame buffer at `start..start+len`; consume `start+len` when done.
    Buffered { start: usize, len: usize },
    /// In the caller's vector.
    InVec,
}

impl Reader {
    pub(super) fn new(capacity: usize, max: u64) -> Reader {
        Reader {
            fb: FrameBuf::new(capacity, max),
            partial: None,
            timeout: None,
            broken: None,
            refuse_challenge: false,
            refuse_shm_hello: false,
            owed: None,
            capacity,
            direct: false,
        }
    }

    pub(super) fn has_data(&self) -> bool {
        !self.fb.is_empty() || self.partial.is_some()
    }

    pub(super) fn fail(&mut self, e: Error) -> Error {
        self.broken = Some(e.to_string());
        e
    }

    /// Reads the next frame; small ones stay in the buffer, large ones go into `out`.
    fn next(&mut self, stream: &Stream, out: &mut Vec<u8>, deadline: Option<Instant>) -> Result<Got> {
        if let Some(why) = &self.broken {
            return Err(Error::Protocol(format!("connection unusable after an earlier error ({why})")));
        }
        if !stream.can_read() {
            return Err(Error::Io(io::Error::new(
                io::ErrorKind::Unsupported,
                "this end of a one-way pipe only sends",
            )));
        }
        let got = self.next_frame(stream, out, deadline)?;
        if self.refuse_challenge || self.refuse_shm_hello {
            let (client, listener) =
                (std::mem::take(&mut self.refuse_challenge), std::mem::take(&mut self.refuse_shm_hello));
            let first: &[u8] = match got {
                Got::Buffered { start, len } => &self.fb.buffered()[start..start + len],
                Got::InVec => out,
            };
            if client && first.starts_with(crate::auth::CHALLENGE) {
                self.owed = Some(crate::auth::NO_KEY);
                return Err(self.fail(Error::AuthenticationFailed(
                    "the listener sent an authentication challenge, but this client has no authkey".into(),
                )));
            }
            if client && first == SHM_OFFER {
                self.owed = Some(SHM_REFUSED);
                return Err(self.fail(Error::Protocol(
                    "the listener serves shared memory: connect to it with the shm: form of its address"
                        .into(),
                )));
            }
            if listener && first == SHM_HELLO {
                self.owed = Some(SHM_REFUSED);
                return Err(self.fail(Error::Protocol(format!(
                    "a shared-memory client connected to this listener, which does not serve shared \
                         memory: clients must connect to its {}: address",
                    crate::transport::shm::PLAIN
                ))));
            }
        }
        Ok(got)
    }

    fn next_frame(&mut self, stream: &Stream, out: &mut Vec<u8>, deadline: Option<Instant>) -> Result<Got> {
        if let Some((data, len, header_len)) = self.partial.take() {
            *out = data;
            return self.finish_large(stream, out, len, header_len, deadline);
        }
        if self.fb.capacity() < self.capacity {
            self.fb.grow_to(self.capacity);
        }
        loop {
            let h = match self.fb.peek() {
                Err(e) => return Err(self.fail(e.into())),
                Ok(Peek::Complete(h)) => {
                    self.direct = false;
                    return Ok(Got::Buffered { start: h.header_len, len: h.payload_len as usize });
                }
                // Larger than the buffer, or large and not all here yet: straight into `out`.
                Ok(Peek::Partial(h)) if !self.fb.fits(h) || h.payload_len >= DIRECT_MIN as u64 => h,
                Ok(Peek::Partial(_) | Peek::NeedHeader) => {
                    // In a run of large messages, an empty buffer takes only the next header,
                    // so that the payload is read into its own allocation instead of copied.
                    let header_only = self.direct && self.fb.is_empty();
                    let spare = self.fb.spare();
                    let want = if header_only { SHORT_HEADER_LEN.min(spare.len()) } else { spare.len() };
                    let n = match stream.read(&mut spare[..want], deadline) {
                        Ok(n) => n,
                        Err(e) => {
                            return Err(Error::from_io_waiting(e, || "waiting for a message".into()));
                        }
                    };
                    if n == 0 {
                        return Err(self.end_of_stream());
                    }
                    self.fb.filled(n);
                    continue;
                }
            };
            // Larger than the buffer: one allocation of exactly the payload size, then read
            // the rest straight into it. The length was checked against the max already.
            let len = usize::try_from(h.payload_len).map_err(|_| {
                self.fail(Error::MessageTooLarge { len: h.payload_len, max: usize::MAX as u64 })
            })?;
            out.clear();
            if out.try_reserve_exact(len.min(EAGER_ALLOC)).is_err() {
                return Err(self.fail(no_memory(len)));
            }
            append(out, &self.fb.buffered()[h.header_len..]);
            let all = self.fb.buffered().len();
            self.fb.consume(all);
            self.direct = true;
            return self.finish_large(stream, out, len, h.header_len, deadline);
        }
    }

    fn finish_large(
        &mut self,
        stream: &Stream,
        out: &mut Vec<u8>,
        len: usize,
        header_len: usize,
        deadline: Option<Instant>,
    ) -> Result<Got> {
        while out.len() < len {
            if out.len() == out.capacity() {
                // Only past EAGER_ALLOC: double what arrived, never beyond the announced length.
                let more = out.len().min(len - out.len());
                if out.try_reserve_exact(more).is_err() {
                    return Err(self.fail(no_memory(len)));
                }
            }
            match stream.read_spare(out, len - out.len(), deadline) {
                Ok(0) => {
                    // A length near u64::MAX (no maximum set) must not overflow the sum.
                    let received = (header_len + out.len()) as u64;
                    let expected = (header_len as u64).saturating_add(len as u64);
                    return Err(self.fail(Error::Truncated { received, expected }));
                }
                Ok(_) => {}
                Err(e) => {
                    // Keep what arrived: the next receive carries on where this one stopped.
                    self.partial = Some((std::mem::take(out), len, header_len));
                    return Err(Error::from_io_waiting(e, || "in the middle of a large message".into()));
                }
            }
        }
        Ok(Got::InVec)
    }

    fn end_of_stream(&mut self) -> Error {
        if self.fb.is_empty() {
            return Error::Closed;
        }
        let buffered = self.fb.buffered();
        let received = buffered.len() as u64;
        let expected = match self.fb.peek() {
            Ok(Peek::Partial(h)) => (h.header_len as u64).saturating_add(h.payload_len),
            // Cut inside the header: at least the header was due.
            _ if buffered.starts_with(&[0xff; 4]) => crate::codec::LONG_HEADER_LEN as u64,
            _ => crate::codec::SHORT_HEADER_LEN as u64,
        };
        self.fail(Error::Truncated { received, expected })
    }

    /// Receives one message and hands its bytes to `f` without copying them when they are
    /// already in the buffer.
    pub(super) fn recv_with<R>(
        &mut self,
        stream: &Stream,
        scratch: &mut Vec<u8>,
        deadline: Option<Instant>,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        match self.next(stream, scratch, deadline)? {
            Got::Buffered { start, len } => {
                let r = f(&self.fb.buffered()[start..start + len]);
                self.fb.consume(start + len);
                Ok(r)
            }
            Got::InVec => Ok(f(scratch)),
        }
    }

    /// The next frame, if it is complete in the buffer and nothing unusual is pending (a
    /// partial large frame, an earlier error, a keyless client's first message): the common
    /// case of a stream of small messages, without the general path's checks and moves.
    #[inline]
    pub(super) fn take_buffered(&mut self) -> Option<&[u8]> {
        if self.partial.is_some() || self.broken.is_some() || self.refuse_challenge || self.refuse_shm_hello {
            return None;
        }
        self.fb.take_complete_short()
    }

    pub(super) fn recv_into(
        &mut self,
        stream: &Stream,
        out: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> Result<usize> {
        if let Some(payload) = self.take_buffered() {
            out.clear();
            append(out, payload);
            return Ok(out.len());
        }
        match self.next(stream, out, deadline)? {
            Got::Buffered { start, len } => {
                out.clear();
                append(out, &self.fb.buffered()[start..start + len]);
                self.fb.consume(start + len);
            }
            Got::InVec => {}
        }
        Ok(out.len())
    }

    pub(super) fn poll(&self, stream: &Stream, timeout: Option<Duration>) -> Result<bool> {
        if self.has_data() || self.broken.is_some() {
            return Ok(true);
        }
        Ok(stream.wait_readable(timeout)?)
    }
}

/// Decodes one message as `T` (SPEC.md §7.2), first with a small scratch buffer: ciborium's
/// default one is 4 KiB, zeroed for every message, which costs more than the rest of a small
/// message. Anything that fails that way (a long string read by reference, say) is decoded
/// again the standard way, so the results and errors are the same.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let mut scratch = [0u8; 256];
    let mut rest = bytes;
    if let Ok(v) = ciborium::from_reader_with_buffer(&mut rest, &mut scratch)
        && rest.is_empty()
    {
        return Ok(v);
    }
    let mut bytes = bytes;
    let v = ciborium::from_reader(&mut bytes).map_err(|e| crate::error::decode_error::<T, _>(&e))?;
    if !bytes.is_empty() {
        return Err(Error::Decode(format!("{} bytes left over after the CBOR value", bytes.len())));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use std::io::IoSlice;

    use super::*;
    use crate::connection::{READ_BUFFER, pipe};
    use crate::{Address, Client, Family, Listener};

    #[test]
    fn the_receive_buffer_grows_to_full_size_at_the_first_read_after_the_handshake() {
        let listener =
            Listener::builder().authkey("k").bind(Address::fresh(Family::default()).unwrap()).unwrap();
        let addr = listener.address().clone();
        let t = std::thread::spawn(move || Client::builder().authkey("k").connect(&addr));
        let mut server = listener.accept().unwrap();
        let mut client = t.join().unwrap().unwrap();
        // Connected and authenticated: neither side has allocated its full buffer yet.
        assert!(server.rx.reader.fb.capacity() < READ_BUFFER);
        assert!(client.rx.reader.fb.capacity() < READ_BUFFER);
        // Frames bigger than the handshake buffer still travel through the full one.
        let msg = vec![7u8; 4 << 10];
        for _ in 0..3 {
            client.send_bytes(&msg).unwrap();
        }
        assert_eq!(server.recv_bytes().unwrap(), msg);
        assert_eq!(server.rx.reader.fb.capacity(), READ_BUFFER);
        // One read took all three from the Unix socket (a Windows pipe gives one per read).
        #[cfg(unix)]
        assert_eq!(server.rx.reader.fb.buffered().len(), 2 * (4 + msg.len()));
    }

    #[test]
    fn runs_of_large_and_small_messages_arrive_whole_and_in_order() {
        // Large ones read straight into their own allocation, with a header-only read between
        // them, mixed with small ones taken from the buffer.
        let sizes = [70_000, 40_000, 5, 0, 33_000, 1 << 20, 16, DIRECT_MIN, DIRECT_MIN - 1, 65_532, 3];
        let (mut a, mut b) = pipe(true).unwrap();
        let t = std::thread::spawn(move || {
            for (i, &n) in sizes.iter().enumerate() {
                a.send_bytes(&vec![i as u8; n]).unwrap();
            }
            a
        });
        for (i, &n) in sizes.iter().enumerate() {
            let m = b.recv_bytes().unwrap();
            assert_eq!(m.len(), n, "message {i}");
            assert!(m.iter().all(|&x| x == i as u8), "message {i}");
        }
        drop(t.join().unwrap());
        assert!(matches!(b.recv_bytes(), Err(Error::Closed)));
    }

    #[test]
    fn a_large_message_whose_payload_comes_late_survives_a_read_timeout() {
        let (a, mut b) = pipe(true).unwrap();
        let write = |bytes: &[u8]| {
            let mut done = 0;
            while done < bytes.len() {
                done += a.stream().write_vectored(&[IoSlice::new(&bytes[done..])], None).unwrap();
            }
        };
        let big = vec![1u8; 100_000];
        let mut frame = (big.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&big);
        let got = std::thread::scope(|s| {
            s.spawn(|| write(&frame));
            b.recv_bytes().unwrap()
        });
        assert_eq!(got, big);
        // The next message: its header alone, then nothing for longer than the read timeout.
        let late = vec![2u8; DIRECT_MIN + 10];
        write(&(late.len() as u32).to_be_bytes());
        b.set_read_timeout(Some(Duration::from_millis(50)));
        assert!(matches!(b.recv_bytes(), Err(Error::Timeout(_))));
        write(&late[..1000]);
        assert!(matches!(b.recv_bytes(), Err(Error::Timeout(_))));
        write(&late[1000..]);
        assert_eq!(b.recv_bytes().unwrap(), late);
        write(&[0, 0, 0, 1, 9]);
        assert_eq!(b.recv_bytes().unwrap(), [9]);
    }

    #[test]
    fn decode_reads_long_strings_and_names_past_its_small_scratch_buffer() {
        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        enum Long {
            #[serde(rename = "a variant whose name is longer than the scratch buffer of 256 bytes, \
                              which ciborium reads names into, so the first try fails and the second \
                              one with the standard buffer reads it; padding padding padding padding \
                              padding padding padding padding padding padding padding padding")]
            Named(String),
        }
        let cbor = |v: &Long| {
            let mut b = Vec::new();
            ciborium::into_writer(v, &mut b).unwrap();
            b
        };
        let v = Long::Named("x".repeat(5000));
        assert_eq!(decode::<Long>(&cbor(&v)).unwrap(), v);
        assert_eq!(decode::<(u8, String)>(&[0x82, 1, 0x61, b'a']).unwrap(), (1, "a".into()));
        assert!(matches!(decode::<u8>(&[1, 2]), Err(Error::Decode(_))), "bytes left over");
        assert!(matches!(decode::<String>(&[1]), Err(Error::Decode(_))));
    }
}
