//! [`Session`]: sealing and opening transport messages; [`Inbox`]: the receiving buffer.

use std::fmt;
use std::mem::MaybeUninit;

use super::cipher::Cipher;
use super::{MAX_MESSAGE, MAX_PLAINTEXT, TAG_LEN};
use crate::codec::{FrameBuf, Peek, SHORT_HEADER_LEN};
use crate::{Error, Result};

/// The transport keys of a finished handshake, both directions (sans-IO).
///
/// [`seal`](Session::seal) turns plaintext into frames of transport messages;
/// [`open`](Session::open) turns one message back. Each direction counts its messages, and
/// rekeys after [`REKEY_AFTER`](super::REKEY_AFTER) of them, so both sides rotate at the same
/// message.
pub struct Session {
    send: Cipher,
    recv: Cipher,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

/// The error of a message that does not open: what a receiver reports, once and for good.
pub(crate) fn integrity_error() -> Error {
    Error::Integrity(
        "an encrypted message failed its integrity check: it was altered, replayed, reordered \
         or dropped on the way; the connection cannot be used any more"
            .into(),
    )
}

impl Session {
    /// The session of the Noise split `(k1, k2)`: the initiator (client) sends with `k1`, the
    /// responder (listener) with `k2`.
    pub(super) fn from_split(initiator: bool, (k1, k2): ([u8; 32], [u8; 32])) -> Session {
        let (send, recv) = if initiator { (k1, k2) } else { (k2, k1) };
        Session { send: Cipher::new(&send), recv: Cipher::new(&recv) }
    }

    /// Appends `plain` to `out` as transport messages of at most [`MAX_PLAINTEXT`] bytes, each
    /// in a frame with a 4-byte header, sealed where they land in `out`. Nothing is appended
    /// for an empty `plain`.
    pub fn seal(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<()> {
        out.reserve(plain.len() + plain.len().div_ceil(MAX_PLAINTEXT) * (SHORT_HEADER_LEN + TAG_LEN));
        for chunk in plain.chunks(MAX_PLAINTEXT) {
            self.seal_one(chunk, out)?;
        }
        Ok(())
    }

    /// Appends the end message (close-notify): a transport message with no plaintext, which
    /// tells the peer that the stream ends here and was not cut.
    pub fn seal_end(&mut self, out: &mut Vec<u8>) -> Result<()> {
        self.seal_one(&[], out)
    }

    fn seal_one(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let start = out.len();
        out.extend_from_slice(&((chunk.len() + TAG_LEN) as u32).to_be_bytes());
        out.extend_from_slice(chunk);
        match self.send.seal(&mut out[start + SHORT_HEADER_LEN..]) {
            Ok(tag) => {
                out.extend_from_slice(tag.as_ref());
                Ok(())
            }
            Err(e) => {
                out.truncate(start);
                Err(e)
            }
        }
    }

    /// Seals at most `limit` bytes from the front of `bufs` (in order, as one stream) into
    /// `out`, as [`seal`](Session::seal) does; returns how many plaintext bytes it took.
    pub fn seal_vectored(
        &mut self,
        bufs: &[std::io::IoSlice<'_>],
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Result<usize> {
        let mut taken = 0;
        for b in bufs {
            let n = b.len().min(limit - taken);
            self.seal(&b[..n], out)?;
            taken += n;
            if taken == limit {
                break;
            }
        }
        Ok(taken)
    }

    /// Opens one transport message (a frame's payload) into `out`, which must have room for
    /// `message.len() - TAG_LEN` bytes; returns the plaintext length. A message that does not
    /// open is an [`Error::Integrity`], and `out` then holds no plaintext.
    pub fn open(&mut self, message: &[u8], out: &mut [u8]) -> Result<usize> {
        if message.len() < TAG_LEN || message.len() > MAX_MESSAGE || out.len() < message.len() - TAG_LEN {
            return Err(integrity_error());
        }
        let mut in_out = message.to_vec();
        let n = self.open_in_place(&mut in_out)?;
        out[..n].copy_from_slice(&in_out[..n]);
        Ok(n)
    }

    /// Opens one transport message (a frame's payload) where it lies: on success the plaintext
    /// is the first returned-length bytes of `message`. A message that does not open is an
    /// [`Error::Integrity`], and none of `message` is plaintext.
    pub fn open_in_place(&mut self, message: &mut [u8]) -> Result<usize> {
        self.open_within(message, 0)
    }

    /// Opens the transport message at `in_out[src..]` and writes its plaintext at the front of
    /// `in_out` (over what lies before the message), as [`open_in_place`](Session::open_in_place).
    pub(crate) fn open_within(&mut self, in_out: &mut [u8], src: usize) -> Result<usize> {
        let len = in_out.len().checked_sub(src).ok_or_else(integrity_error)?;
        if !(TAG_LEN..=MAX_MESSAGE).contains(&len) {
            return Err(integrity_error());
        }
        self.recv.open(in_out, src).ok_or_else(integrity_error)
    }
}

/// Received ciphertext not yet opened and plaintext not yet taken (sans-IO): the receiving
/// side of an encrypted stream. Its owner fills it from the transport
/// ([`spare`](Inbox::spare), [`filled`](Inbox::filled)) and takes plaintext with
/// [`read`](Inbox::read) or [`read_to_vec`](Inbox::read_to_vec). Messages are opened in the
/// buffer they arrived in. The first message that does not open breaks it for good.
pub struct Inbox {
    frames: FrameBuf,
    /// Plaintext bytes of an opened message at the front of `frames`, its tag after them.
    opened: usize,
    broken: bool,
    /// The end message arrived: nothing follows.
    ended: bool,
}

impl fmt::Debug for Inbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbox")
            .field("buffered", &self.frames.buffered().len())
            .field("plaintext", &self.opened)
            .field("broken", &self.broken)
            .field("ended", &self.ended)
            .finish()
    }
}

impl Default for Inbox {
    fn default() -> Self {
        Inbox::new()
    }
}

impl Inbox {
    /// An empty inbox, room for several messages.
    pub fn new() -> Inbox {
        Inbox {
            frames: FrameBuf::new(4 * (MAX_MESSAGE + SHORT_HEADER_LEN), MAX_MESSAGE as u64),
            opened: 0,
            broken: false,
            ended: false,
        }
    }

    /// Room for bytes from the transport.
    pub fn spare(&mut self) -> &mut [u8] {
        self.frames.spare()
    }

    /// Records that `n` bytes were written at the start of [`spare`](Inbox::spare).
    pub fn filled(&mut self, n: usize) {
        self.frames.filled(n);
    }

    /// Adds received bytes (for callers that have them in a slice).
    pub fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let spare = self.frames.spare();
            let n = spare.len().min(bytes.len());
            assert!(n > 0, "Inbox::push: more than the buffer holds before reading");
            spare[..n].copy_from_slice(&bytes[..n]);
            self.frames.filled(n);
            bytes = &bytes[n..];
        }
    }

    /// Whether plaintext, the end, or a whole message to open is waiting: a read needs no
    /// transport.
    pub fn is_ready(&self) -> bool {
        self.opened > 0
            || self.broken
            || self.ended
            || matches!(self.frames.peek(), Ok(Peek::Complete(_)) | Err(_))
    }

    /// Whether received bytes wait that are not a whole message (the stream ends inside one).
    pub fn has_partial(&self) -> bool {
        self.opened == 0 && !self.ended && !self.frames.is_empty()
    }

    /// Whether the peer's end message (close-notify) arrived.
    pub fn has_ended(&self) -> bool {
        self.ended
    }

    /// What the end of the transport's bytes means: nothing after the peer's end message, and
    /// otherwise an [`Error::Integrity`], inside a message or between two (the stream was cut,
    /// or the peer died without closing it).
    pub fn check_end(&self) -> Result<()> {
        if self.ended {
            Ok(())
        } else if self.has_partial() {
            Err(Error::Integrity("the stream ended inside an encrypted message".into()))
        } else {
            Err(Error::Integrity(
                "the stream ended without the peer's end message (close-notify): someone cut the \
                 connection, or the peer died without closing it"
                    .into(),
            ))
        }
    }

    /// Copies plaintext into `buf`, opening the next buffered message if none is waiting.
    /// `Ok(None)`: more ciphertext is needed; `Ok(Some(0))` for a non-empty `buf`: the end
    /// message arrived, and nothing follows it. A message that does not open breaks the inbox:
    /// this and every later read is an [`Error::Integrity`].
    pub fn read(&mut self, session: &mut Session, buf: &mut [u8]) -> Result<Option<usize>> {
        if buf.is_empty() {
            return Ok(Some(0));
        }
        let Some(plain) = self.plaintext(session)? else { return Ok(None) };
        let n = buf.len().min(plain.len());
        buf[..n].copy_from_slice(&plain[..n]);
        self.take(n);
        Ok(Some(n))
    }

    /// As [`read`](Inbox::read), appending at most `max` bytes to `out` (no zeroing first).
    pub fn read_to_vec(
        &mut self,
        session: &mut Session,
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<Option<usize>> {
        if max == 0 {
            return Ok(Some(0));
        }
        let Some(plain) = self.plaintext(session)? else { return Ok(None) };
        let n = max.min(plain.len());
        out.extend_from_slice(&plain[..n]);
        self.take(n);
        Ok(Some(n))
    }

    /// The plaintext waiting at the front, opening the next whole message if there is none;
    /// empty after the end message, `None` when more ciphertext is needed.
    fn plaintext(&mut self, session: &mut Session) -> Result<Option<&[u8]>> {
        while self.opened == 0 && !self.ended {
            if self.broken {
                return Err(integrity_error());
            }
            let h = match self.frames.peek() {
                Ok(Peek::Complete(h)) => h,
                Ok(Peek::NeedHeader | Peek::Partial(_)) => return Ok(None),
                Err(_) => {
                    self.broken = true;
                    continue;
                }
            };
            let len = h.payload_len as usize;
            let opened =
                session.open_in_place(&mut self.frames.buffered_mut()[h.header_len..h.header_len + len]);
            match opened {
                Ok(n) => {
                    self.frames.consume(h.header_len);
                    self.opened = n;
                    if n == 0 {
                        self.frames.consume(TAG_LEN);
                        self.ended = true;
                    }
                }
                // What the failed open left in the buffer is not plaintext: none of it goes out.
                Err(_) => {
                    self.frames.consume(h.header_len + len);
                    self.broken = true;
                }
            }
        }
        Ok(Some(&self.frames.buffered()[..self.opened]))
    }

    /// Drops `n` bytes of the waiting plaintext, and the tag after the last of them.
    fn take(&mut self, n: usize) {
        self.frames.consume(n);
        self.opened -= n;
        if n > 0 && self.opened == 0 {
            self.frames.consume(TAG_LEN);
        }
    }

    /// The ciphertext length (tag included) of the next message, when it may be read and
    /// opened in the caller's memory instead of here: no plaintext waiting, only the start of
    /// that message buffered (its header at least), and a message that carries plaintext (not
    /// the end message), at most `max` bytes of it, and fits in `room` bytes.
    pub(crate) fn direct_len(&self, max: usize, room: usize) -> Option<usize> {
        if self.opened > 0 || self.broken || self.ended {
            return None;
        }
        let Ok(Peek::Partial(h)) = self.frames.peek() else { return None };
        let len = h.payload_len as usize;
        (len > TAG_LEN && len - TAG_LEN <= max && len <= room).then_some(len)
    }

    /// Moves the ciphertext of the message of [`direct_len`](Inbox::direct_len) buffered so
    /// far to the front of `dest` (which has room for the whole message) and forgets its header;
    /// returns how many bytes it moved. The rest of the message goes after them, then
    /// [`open_direct`](Inbox::open_direct) opens it there, or [`put_back`](Inbox::put_back)
    /// returns what arrived of it.
    pub(crate) fn take_start(&mut self, dest: &mut [MaybeUninit<u8>]) -> usize {
        let Ok(Peek::Partial(h)) = self.frames.peek() else { return 0 };
        self.frames.consume(h.header_len);
        let got = self.frames.buffered().len();
        for (d, s) in dest[..got].iter_mut().zip(self.frames.buffered()) {
            d.write(*s);
        }
        self.frames.consume(got);
        got
    }

    /// Returns the start of a message taken by [`take_start`](Inbox::take_start) whose rest did
    /// not arrive (a read that timed out): `len` its ciphertext length, `got` what arrived.
    pub(crate) fn put_back(&mut self, len: usize, got: &[u8]) {
        self.push(&(len as u32).to_be_bytes());
        self.push(got);
    }

    /// Opens a message taken by [`take_start`](Inbox::take_start) or one after it, read
    /// with it: the message at `in_out[src..]`, its plaintext written at the front of
    /// `in_out`; returns the plaintext length. As in [`read`](Inbox::read), a message that does
    /// not open is an [`Error::Integrity`], none of `in_out` is plaintext, and the inbox is
    /// broken for good.
    pub(crate) fn open_direct(
        &mut self,
        session: &mut Session,
        in_out: &mut [u8],
        src: usize,
    ) -> Result<usize> {
        session.open_within(in_out, src).inspect_err(|_| self.broken = true)
    }

    /// How many bytes the inbox holds at most.
    pub(crate) fn capacity(&self) -> usize {
        self.frames.capacity()
    }

    /// Like [`read`](Inbox::read), then takes the plaintext of every further whole message
    /// already buffered, as far as `buf` has room: one transport read serves them all.
    pub fn read_many(&mut self, session: &mut Session, buf: &mut [u8]) -> Result<Option<usize>> {
        let Some(mut n) = self.read(session, buf)? else {
            return Ok(None);
        };
        while n < buf.len() {
            match self.read(session, &mut buf[n..]) {
                Ok(Some(m)) if m > 0 => n += m,
                // A later message that does not open is reported by the next read.
                _ => break,
            }
        }
        Ok(Some(n))
    }

    /// Opens every whole message buffered and appends the plaintext to `out`.
    pub fn open_all(&mut self, session: &mut Session, out: &mut Vec<u8>) -> Result<()> {
        while let Some(n) = self.read_to_vec(session, out, usize::MAX)? {
            if n == 0 {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::AuthKey;
    use crate::auth::Role;
    use crate::secure::{Handshake, REKEY_AFTER};

    /// A client's and a listener's finished handshake with fixed randomness.
    pub(crate) fn finished() -> (Handshake, Handshake) {
        let key = AuthKey::new(b"key".to_vec());
        let mut l = Handshake::new(Role::Listener, &key, [5; 64]);
        let mut c = Handshake::new(Role::Client, &key, [6; 64]);
        let m1 = c.on_message(&l.start().unwrap()).unwrap().unwrap();
        let m2 = l.on_message(&m1).unwrap().unwrap();
        c.on_message(&m2).unwrap();
        (c, l)
    }

    /// A client's and a listener's session of one handshake with fixed randomness.
    pub(crate) fn sessions() -> (Session, Session) {
        let (c, l) = finished();
        (c.into_session().unwrap(), l.into_session().unwrap())
    }

    fn roundtrip(c: &mut Session, l: &mut Session, plain: &[u8]) -> Result<Vec<u8>> {
        let mut wire = Vec::new();
        c.seal(plain, &mut wire)?;
        let mut inbox = Inbox::new();
        let mut out = Vec::new();
        for piece in wire.chunks(100_000) {
            inbox.push(piece);
            inbox.open_all(l, &mut out)?;
        }
        assert!(!inbox.has_partial());
        Ok(out)
    }

    #[test]
    fn large_plaintext_is_carried_by_several_messages() {
        let (mut c, mut l) = sessions();
        let plain: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let mut wire = Vec::new();
        c.seal(&plain, &mut wire).unwrap();
        assert_eq!(wire.len(), plain.len() + 4 * (SHORT_HEADER_LEN + TAG_LEN));
        let mut out = Vec::new();
        let mut inbox = Inbox::new();
        inbox.push(&wire);
        inbox.open_all(&mut l, &mut out).unwrap();
        assert_eq!(out, plain);
    }

    #[test]
    fn a_flipped_bit_is_an_integrity_error_for_good() {
        let (mut c, mut l) = sessions();
        let mut wire = Vec::new();
        c.seal(b"hello", &mut wire).unwrap();
        c.seal(b"world", &mut wire).unwrap();
        wire[6] ^= 1;
        let mut inbox = Inbox::new();
        inbox.push(&wire);
        let mut buf = [0u8; 64];
        assert!(matches!(inbox.read(&mut l, &mut buf), Err(Error::Integrity(_))));
        assert!(matches!(inbox.read(&mut l, &mut buf), Err(Error::Integrity(_))));
    }

    /// Opened through the inbox's own buffer (a read buffer smaller than the message): a
    /// message that does not open gives no byte either (found by the fuzz target).
    #[test]
    fn a_flipped_bit_gives_no_byte_to_a_small_read_buffer() {
        let (mut c, mut l) = sessions();
        let mut wire = Vec::new();
        c.seal(b"hello, world", &mut wire).unwrap();
        wire[12] ^= 1;
        let mut inbox = Inbox::new();
        inbox.push(&wire);
        let mut buf = [0u8; 4];
        assert!(matches!(inbox.read(&mut l, &mut buf), Err(Error::Integrity(_))));
        assert!(matches!(inbox.read(&mut l, &mut buf), Err(Error::Integrity(_))));
    }

    #[test]
    fn the_end_message_ends_the_stream_after_the_plaintext_before_it() {
        let (mut c, mut l) = sessions();
        let mut wire = Vec::new();
        c.seal(b"last words", &mut wire).unwrap();
        c.seal_end(&mut wire).unwrap();
        assert_eq!(wire.len(), 2 * (SHORT_HEADER_LEN + TAG_LEN) + 10, "the end message is 16 bytes");
        let mut inbox = Inbox::new();
        inbox.push(&wire[..wire.len() - 1]);
        let mut buf = [0u8; 4];
        let mut got = Vec::new();
        while let Some(n) = inbox.read(&mut l, &mut buf).unwrap() {
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"last words");
        assert!(!inbox.has_ended() && inbox.has_partial());
        inbox.push(&wire[wire.len() - 1..]);
        assert!(inbox.is_ready());
        assert_eq!(inbox.read(&mut l, &mut buf).unwrap(), Some(0));
        assert!(inbox.has_ended() && !inbox.has_partial());
        assert_eq!(inbox.read(&mut l, &mut buf).unwrap(), Some(0), "and stays ended");
    }

    #[test]
    fn an_end_message_of_another_position_does_not_open() {
        let (mut c, mut l) = sessions();
        let (mut end, mut more) = (Vec::new(), Vec::new());
        c.seal_end(&mut end).unwrap();
        c.seal(b"more", &mut more).unwrap();
        // A relay that drops the end message and forwards what followed, or forges one.
        let mut inbox = Inbox::new();
        inbox.push(&more);
        assert!(matches!(inbox.read(&mut l, &mut [0u8; 8]), Err(Error::Integrity(_))));
        let (_, mut l) = sessions();
        let mut forged = end.clone();
        forged[4] ^= 1;
        let mut inbox = Inbox::new();
        inbox.push(&forged);
        assert!(matches!(inbox.read(&mut l, &mut [0u8; 8]), Err(Error::Integrity(_))));
    }

    #[test]
    fn a_replayed_or_reordered_message_does_not_open() {
        let (mut c, mut l) = sessions();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        c.seal(b"one", &mut a).unwrap();
        c.seal(b"two", &mut b).unwrap();
        let mut buf = [0u8; 16];
        assert!(l.open(&b[4..], &mut buf).is_err(), "reordered");
        let (mut c, mut l) = sessions();
        let mut a = Vec::new();
        c.seal(b"one", &mut a).unwrap();
        assert_eq!(l.open(&a[4..], &mut buf).unwrap(), 3);
        assert!(l.open(&a[4..], &mut buf).is_err(), "replayed");
    }

    #[test]
    fn both_sides_rekey_at_the_same_message() {
        let (mut c, mut l) = sessions();
        let mut buf = [0u8; 8];
        for i in 0..REKEY_AFTER + 3 {
            let mut wire = Vec::new();
            c.seal(&i.to_be_bytes(), &mut wire).unwrap();
            assert_eq!(l.open(&wire[4..], &mut buf).unwrap(), 8);
            assert_eq!(u64::from_be_bytes(buf), i);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        #[test]
        fn sizes_around_one_message_roundtrip(extra in -40i64..40, messages in 1usize..3) {
            let len = (MAX_PLAINTEXT as i64 * messages as i64 + extra).max(0) as usize;
            let plain: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let (mut c, mut l) = sessions();
            proptest::prop_assert_eq!(roundtrip(&mut c, &mut l, &plain).unwrap(), plain);
        }
    }
}
