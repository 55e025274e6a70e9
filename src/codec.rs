//! Frame codec, sans-IO: CPython `multiprocessing.connection` framing over byte streams.
//!
//! A frame is a 4-byte big-endian *signed* length followed by the payload. A payload longer
//! than `0x7fff_ffff` bytes is announced by the length `-1` followed by an 8-byte big-endian
//! unsigned length. Any other negative length is a protocol error.
//!
//! Nothing here touches a socket: [`encode_header`] and [`decode_header`] are pure functions,
//! and [`FrameBuf`] is a receive buffer that the connection fills and this module parses.
//!
//! ```
//! use procwire::codec::{decode_header, encode_header, Header};
//! let h = encode_header(5);
//! assert_eq!(h.as_bytes(), &[0, 0, 0, 5]);
//! assert_eq!(decode_header(h.as_bytes(), 1024).unwrap(), Some(Header { header_len: 4, payload_len: 5 }));
//! ```

/// Length of the short header.
pub const SHORT_HEADER_LEN: usize = 4;
/// Length of the long header (`-1` then a `u64`).
pub const LONG_HEADER_LEN: usize = 12;
/// Largest payload announced with a short header.
pub const MAX_SHORT_PAYLOAD: u64 = 0x7fff_ffff;

/// An encoded header: 4 or 12 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncodedHeader {
    bytes: [u8; LONG_HEADER_LEN],
    len: u8,
}

impl EncodedHeader {
    /// The header bytes to put on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// Encodes the header for a payload of `payload_len` bytes.
pub fn encode_header(payload_len: u64) -> EncodedHeader {
    let mut bytes = [0u8; LONG_HEADER_LEN];
    if payload_len <= MAX_SHORT_PAYLOAD {
        bytes[..4].copy_from_slice(&(payload_len as u32).to_be_bytes());
        EncodedHeader { bytes, len: 4 }
    } else {
        bytes[..4].copy_from_slice(&(-1i32).to_be_bytes());
        bytes[4..].copy_from_slice(&payload_len.to_be_bytes());
        EncodedHeader { bytes, len: 12 }
    }
}

/// A decoded header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// How many bytes the header took (4 or 12).
    pub header_len: usize,
    /// The payload length it announced.
    pub payload_len: u64,
}

/// A framing violation found while decoding a header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// A negative length other than `-1`.
    NegativeLength(i32),
    /// The announced length exceeds the caller's maximum.
    TooLarge {
        /// Announced length.
        len: u64,
        /// Caller's maximum.
        max: u64,
    },
}

impl From<FrameError> for crate::Error {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::NegativeLength(n) => crate::Error::Protocol(format!(
                "negative frame length {n} (only -1, the long-header marker, is allowed)"
            )),
            FrameError::TooLarge { len, max } => crate::Error::MessageTooLarge { len, max },
        }
    }
}

/// Decodes a header at the start of `buf`.
///
/// Returns `Ok(None)` when `buf` holds too few bytes to know the length yet, and an error for a
/// negative length other than `-1` or a length above `max`: the check happens here, before
/// anyone allocates room for the payload.
pub fn decode_header(buf: &[u8], max: u64) -> Result<Option<Header>, FrameError> {
    let Some(short) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    let n = i32::from_be_bytes(*short);
    let header = match n {
        0.. => Header { header_len: SHORT_HEADER_LEN, payload_len: n as u64 },
        -1 => {
            let Some(long) = buf.get(4..LONG_HEADER_LEN) else {
                return Ok(None);
            };
            let mut b = [0u8; 8];
            b.copy_from_slice(long);
            Header { header_len: LONG_HEADER_LEN, payload_len: u64::from_be_bytes(b) }
        }
        _ => return Err(FrameError::NegativeLength(n)),
    };
    if header.payload_len > max {
        return Err(FrameError::TooLarge { len: header.payload_len, max });
    }
    Ok(Some(header))
}

/// What [`FrameBuf::peek`] found at the front of the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peek {
    /// Not even a whole header is buffered.
    NeedHeader,
    /// A whole frame is buffered: its payload is `buffered()[header.header_len..][..payload_len]`.
    Complete(Header),
    /// The header is buffered but only part of the payload.
    Partial(Header),
}

/// A receive buffer of fixed capacity that frames are parsed out of.
///
/// The I/O layer writes into [`spare`](FrameBuf::spare) and calls
/// [`filled`](FrameBuf::filled); the parser side calls [`peek`](FrameBuf::peek) and
/// [`consume`](FrameBuf::consume). Bytes beyond the current frame are kept for the next one,
/// so a reader can take many small frames out of a single read.
///
/// ```
/// use procwire::codec::{FrameBuf, Peek};
/// let mut fb = FrameBuf::new(64, 1024);
/// let wire = [0, 0, 0, 2, b'h', b'i', 0, 0];
/// fb.spare()[..wire.len()].copy_from_slice(&wire);
/// fb.filled(wire.len());
/// let Peek::Complete(h) = fb.peek().unwrap() else { panic!() };
/// assert_eq!(&fb.buffered()[h.header_len..][..2], b"hi");
/// fb.consume(h.header_len + 2);
/// assert_eq!(fb.peek().unwrap(), Peek::NeedHeader);
/// ```
pub struct FrameBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max: u64,
}

// Counts, not contents: the buffer is tens of KiB and may hold a peer's private data.
impl std::fmt::Debug for FrameBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameBuf")
            .field("buffered", &(self.end - self.start))
            .field("capacity", &self.buf.len())
            .field("max", &self.max)
            .finish()
    }
}

impl FrameBuf {
    /// A buffer of `capacity` bytes that refuses payloads over `max`.
    pub fn new(capacity: usize, max: u64) -> FrameBuf {
        FrameBuf { buf: vec![0; capacity.max(LONG_HEADER_LEN)], start: 0, end: 0, max }
    }

    /// The buffer's capacity.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Grows the capacity to at least `capacity` (never shrinks; keeps buffered bytes).
    pub fn grow_to(&mut self, capacity: usize) {
        if capacity > self.buf.len() {
            self.buf.resize(capacity, 0);
        }
    }

    /// The maximum payload accepted.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Sets the maximum payload accepted.
    pub fn set_max(&mut self, max: u64) {
        self.max = max;
    }

    /// Bytes received but not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Bytes received but not yet consumed, to work on in place (decrypting them).
    #[cfg(feature = "encrypt")]
    pub(crate) fn buffered_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.end]
    }

    /// True when no bytes are buffered.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Free room at the end, moving buffered bytes to the front first if that makes room.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start == self.end {
            // Start a large empty buffer where a payload after a short header lands on a
            // 64-byte boundary: copying a big payload out of a misaligned source is slower
            // on some CPUs (glibc's `rep movsb`).
            let aligned = if self.buf.len() >= 4096 {
                (64 - (self.buf.as_ptr() as usize + SHORT_HEADER_LEN) % 64) % 64
            } else {
                0
            };
            self.start = aligned;
            self.end = aligned;
        } else if self.start > 0 && self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    /// Records that `n` bytes were written at the start of [`spare`](FrameBuf::spare).
    pub fn filled(&mut self, n: usize) {
        assert!(n <= self.buf.len() - self.end, "filled more than the spare room");
        self.end += n;
    }

    /// Drops `n` buffered bytes from the front.
    pub fn consume(&mut self, n: usize) {
        assert!(n <= self.end - self.start, "consumed more than is buffered");
        self.start += n;
    }

    /// Looks at the frame at the front of the buffer without consuming it.
    pub fn peek(&self) -> Result<Peek, FrameError> {
        let buffered = self.buffered();
        Ok(match decode_header(buffered, self.max)? {
            None => Peek::NeedHeader,
            Some(h) if (buffered.len() - h.header_len) as u64 >= h.payload_len => Peek::Complete(h),
            Some(h) => Peek::Partial(h),
        })
    }

    /// Takes the payload of the frame at the front if it has a short header and is complete
    /// (and within the maximum); `None` leaves everything else, errors included, to
    /// [`peek`](FrameBuf::peek).
    #[inline]
    pub(crate) fn take_complete_short(&mut self) -> Option<&[u8]> {
        let buffered = &self.buf[self.start..self.end];
        let n = i32::from_be_bytes(*buffered.first_chunk::<4>()?);
        let len = usize::try_from(n).ok().filter(|&n| n as u64 <= self.max && n <= buffered.len() - 4)?;
        let at = self.start + 4;
        self.start = at + len;
        Some(&self.buf[at..at + len])
    }

    /// Whether a frame with this header can be completed inside the buffer (after compaction).
    pub fn fits(&self, h: Header) -> bool {
        (h.header_len as u64).saturating_add(h.payload_len) <= self.buf.len() as u64
    }

    /// Takes the next complete frame's payload, if one is buffered.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        match self.peek()? {
            Peek::Complete(h) => {
                let len = h.payload_len as usize;
                let payload = self.buffered()[h.header_len..][..len].to_vec();
                self.consume(h.header_len + len);
                Ok(Some(payload))
            }
            Peek::NeedHeader | Peek::Partial(_) => Ok(None),
        }
    }
}

/// Appends `n` as a CBOR unsigned integer in its shortest encoding (as ciborium writes it):
/// the consumers' frequent small messages are written without going through serde.
pub(crate) fn push_cbor_uint(out: &mut Vec<u8>, n: u64) {
    match n {
        0..=23 => out.push(n as u8),
        24..=0xff => out.extend_from_slice(&[0x18, n as u8]),
        0x100..=0xffff => {
            out.push(0x19);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(0x1a);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
        _ => {
            out.push(0x1b);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

/// Takes a CBOR unsigned integer (any of its encodings) off the front of `body`; `None`, with
/// `body` unchanged, if it does not start with one.
pub(crate) fn take_cbor_uint(body: &mut &[u8]) -> Option<u64> {
    let (n, len) = match *body {
        [b, ..] if *b <= 23 => (u64::from(*b), 1),
        [0x18, b, ..] => (u64::from(*b), 2),
        [0x19, a, b, ..] => (u64::from(u16::from_be_bytes([*a, *b])), 3),
        [0x1a, a, b, c, d, ..] => (u64::from(u32::from_be_bytes([*a, *b, *c, *d])), 5),
        [0x1b, rest @ ..] if rest.len() >= 8 => (u64::from_be_bytes(rest[..8].try_into().ok()?), 9),
        _ => return None,
    };
    *body = &body[len..];
    Some(n)
}

#[cfg(test)]
mod tests {
    #[test]
    fn uints_match_ciborium_both_ways() {
        for n in [0, 1, 23, 24, 255, 256, 65535, 65536, u32::MAX as u64, u32::MAX as u64 + 1, u64::MAX] {
            let mut ours = Vec::new();
            push_cbor_uint(&mut ours, n);
            let mut theirs = Vec::new();
            ciborium::into_writer(&n, &mut theirs).unwrap();
            assert_eq!(ours, theirs, "{n}");
            ours.push(0xff);
            let mut body = &ours[..];
            assert_eq!(take_cbor_uint(&mut body).unwrap(), n);
            assert_eq!(body, [0xff]);
        }
        // The fixed-width form a worker uses for fields it fills in afterwards.
        let mut body: &[u8] = &[0x1b, 0, 0, 0, 0, 0, 0, 1, 2];
        assert_eq!(take_cbor_uint(&mut body).unwrap(), 258);
        for bad in [&[][..], &[0x19, 1], &[0x1a, 0, 0, 0], &[0x20], &[0x60]] {
            assert!(take_cbor_uint(&mut &bad[..]).is_none(), "{bad:?}");
        }
    }

    use super::*;

    #[test]
    fn short_header_vectors() {
        assert_eq!(encode_header(0).as_bytes(), &[0, 0, 0, 0]);
        assert_eq!(encode_header(1).as_bytes(), &[0, 0, 0, 1]);
        assert_eq!(encode_header(65536).as_bytes(), &[0, 1, 0, 0]);
        assert_eq!(encode_header(0x7fff_ffff).as_bytes(), &[0x7f, 0xff, 0xff, 0xff]);
    }

    #[test]
    fn long_header_vector_over_2_gib() {
        let len = 0x8000_0000u64; // 2 GiB: one past the short form
        let h = encode_header(len);
        assert_eq!(h.as_bytes(), &[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0x80, 0, 0, 0]);
        // Decoding it only reads the header: nothing of that size is allocated.
        let d = decode_header(h.as_bytes(), u64::MAX).unwrap().unwrap();
        assert_eq!(d, Header { header_len: 12, payload_len: len });
        let huge = encode_header(5 << 40);
        assert_eq!(decode_header(huge.as_bytes(), u64::MAX).unwrap().unwrap().payload_len, 5 << 40);
    }

    #[test]
    fn truncated_headers_need_more() {
        for n in 0..4 {
            assert_eq!(decode_header(&[0, 0, 0, 9][..n], 100), Ok(None));
        }
        let long = encode_header(1 << 32);
        for n in 4..12 {
            assert_eq!(decode_header(&long.as_bytes()[..n], u64::MAX), Ok(None));
        }
    }

    #[test]
    fn negative_lengths_other_than_minus_one_are_errors() {
        assert_eq!(decode_header(&(-2i32).to_be_bytes(), 100), Err(FrameError::NegativeLength(-2)));
        assert_eq!(decode_header(&i32::MIN.to_be_bytes(), 100), Err(FrameError::NegativeLength(i32::MIN)));
    }

    #[test]
    fn max_is_enforced_for_both_forms() {
        assert_eq!(decode_header(&[0, 0, 1, 1], 256), Err(FrameError::TooLarge { len: 257, max: 256 }));
        assert_eq!(decode_header(&[0, 0, 1, 0], 256).unwrap().unwrap().payload_len, 256);
        let long = encode_header(u64::MAX);
        assert_eq!(
            decode_header(long.as_bytes(), 1 << 30),
            Err(FrameError::TooLarge { len: u64::MAX, max: 1 << 30 })
        );
        // A long header may legally carry a small length; the max still applies.
        let mut small_long = vec![0xff, 0xff, 0xff, 0xff];
        small_long.extend_from_slice(&3u64.to_be_bytes());
        assert_eq!(
            decode_header(&small_long, 10).unwrap().unwrap(),
            Header { header_len: 12, payload_len: 3 }
        );
    }

    #[test]
    fn framebuf_takes_many_frames_from_one_fill_and_keeps_the_rest() {
        let mut fb = FrameBuf::new(32, 100);
        let mut wire = Vec::new();
        for p in [&b"a"[..], b"", b"xyz"] {
            wire.extend_from_slice(encode_header(p.len() as u64).as_bytes());
            wire.extend_from_slice(p);
        }
        wire.extend_from_slice(&[0, 0, 0, 5, b'h']); // a partial fourth frame
        fb.spare()[..wire.len()].copy_from_slice(&wire);
        fb.filled(wire.len());
        assert_eq!(fb.next_frame().unwrap().unwrap(), b"a");
        assert_eq!(fb.next_frame().unwrap().unwrap(), b"");
        assert_eq!(fb.next_frame().unwrap().unwrap(), b"xyz");
        assert_eq!(fb.next_frame().unwrap(), None);
        assert!(matches!(fb.peek().unwrap(), Peek::Partial(h) if h.payload_len == 5));
        let rest = b"ello";
        fb.spare()[..4].copy_from_slice(rest);
        fb.filled(4);
        assert_eq!(fb.next_frame().unwrap().unwrap(), b"hello");
        assert!(fb.is_empty());
    }

    #[test]
    fn the_short_frame_fast_path_agrees_with_the_general_one() {
        let mut wire = Vec::new();
        for p in [&b"abc"[..], b"", &[7u8; 300][..]] {
            wire.extend_from_slice(encode_header(p.len() as u64).as_bytes());
            wire.extend_from_slice(p);
        }
        let mut fast = FrameBuf::new(8192, 1000);
        let mut slow = FrameBuf::new(8192, 1000);
        for fb in [&mut fast, &mut slow] {
            fb.spare()[..wire.len()].copy_from_slice(&wire);
            fb.filled(wire.len());
        }
        while let Some(f) = slow.next_frame().unwrap() {
            assert_eq!(fast.take_complete_short().unwrap(), &f[..]);
        }
        assert!(fast.take_complete_short().is_none());
        // Anything unusual is left to the general path: over the max, negative, long header.
        for bad in [&[0u8, 0, 4, 0][..], &[0xff, 0xff, 0xff, 0xfe], &[0xff, 0xff, 0xff, 0xff]] {
            let mut fb = FrameBuf::new(64, 1000);
            fb.spare()[..4].copy_from_slice(bad);
            fb.filled(4);
            assert!(fb.take_complete_short().is_none());
            assert_eq!(fb.buffered().len(), 4);
        }
    }

    #[test]
    fn framebuf_compacts_when_the_end_is_reached() {
        let mut fb = FrameBuf::new(16, 100);
        fb.spare()[..16].copy_from_slice(&[0, 0, 0, 2, 1, 2, 0, 0, 0, 6, 1, 2, 3, 4, 5, 6]);
        fb.filled(16);
        assert_eq!(fb.next_frame().unwrap().unwrap(), [1, 2]);
        assert_eq!(fb.next_frame().unwrap().unwrap(), [1, 2, 3, 4, 5, 6]);
        fb.spare()[..4].copy_from_slice(&[0, 0, 0, 9]);
        fb.filled(4);
        // Fill to the end, then a partial frame must be moved to the front to make room.
        let spare = fb.spare().len();
        fb.spare()[..spare].fill(7);
        fb.filled(spare);
        assert!(fb.spare().is_empty() || fb.buffered().len() < 16);
        assert!(matches!(fb.peek().unwrap(), Peek::Complete(_)));
    }
}
