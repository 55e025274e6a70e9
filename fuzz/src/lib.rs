//! Harnesses shared by the fuzz targets in `fuzz_targets/` and the seed generator in
//! `examples/make_seeds.rs`. Each harness panics when procwire breaks a rule that SPEC.md
//! states; libFuzzer reports a panic as a crash.

use std::io::Write;
use std::os::fd::AsFd;
use std::time::Duration;

use procwire::Error;
use procwire::auth::{AuthKey, Handshake, MAX_HANDSHAKE_MESSAGE, Role, Status};
use procwire::codec::{FrameBuf, Peek, encode_header};

/// How a byte stream ends according to the reference decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// At a frame boundary.
    Clean,
    /// Inside a frame: `received` of `expected` bytes of it (header included) are there;
    /// `expected` is the header length while the header itself is incomplete.
    Cut { received: u64, expected: u64 },
    /// A negative length other than -1.
    Negative(i32),
    /// A length over the maximum.
    TooLarge { len: u64, max: u64 },
}

/// The reference decoder: SPEC.md §2.3 written as plainly as possible, over a whole stream.
pub fn reference_frames(wire: &[u8], max: u64) -> (Vec<&[u8]>, End) {
    let mut frames = Vec::new();
    let mut rest = wire;
    loop {
        if rest.is_empty() {
            return (frames, End::Clean);
        }
        if rest.len() < 4 {
            return (frames, End::Cut { received: rest.len() as u64, expected: 4 });
        }
        let n = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let (header_len, len) = if n >= 0 {
            (4usize, n as u64)
        } else if n == -1 {
            if rest.len() < 12 {
                return (frames, End::Cut { received: rest.len() as u64, expected: 12 });
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&rest[4..12]);
            (12, u64::from_be_bytes(b))
        } else {
            return (frames, End::Negative(n));
        };
        if len > max {
            return (frames, End::TooLarge { len, max });
        }
        let have = (rest.len() - header_len) as u64;
        if have < len {
            let expected = (header_len as u64).saturating_add(len);
            return (frames, End::Cut { received: rest.len() as u64, expected });
        }
        let len = len as usize;
        frames.push(&rest[header_len..header_len + len]);
        rest = &rest[header_len + len..];
    }
}

/// A tiny deterministic generator for chunk sizes, so that one input always splits the same way.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (any value).
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }

    /// The next value in `1..=hi` (`hi >= 1`).
    pub fn upto(&mut self, hi: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        1 + (self.0 % hi as u64) as usize
    }
}

/// Feeds `wire` to a [`FrameBuf`] of `capacity` in chunks picked by `rng`, as the connection
/// does: a frame that does not fit the buffer is completed outside it (from the stream
/// directly). Panics unless the frames and the way the stream ends are the reference's.
pub fn check_framebuf(wire: &[u8], capacity: usize, max: u64, rng: &mut Rng) {
    let (want, want_end) = reference_frames(wire, max);
    let mut fb = FrameBuf::new(capacity, max);
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut at = 0;
    let end = loop {
        match fb.peek() {
            Err(e) => {
                break match e {
                    procwire::codec::FrameError::NegativeLength(n) => End::Negative(n),
                    procwire::codec::FrameError::TooLarge { len, max } => End::TooLarge { len, max },
                };
            }
            Ok(Peek::Complete(h)) => {
                let len = usize::try_from(h.payload_len).expect("complete frame fits in memory");
                assert!(h.payload_len <= max, "frame of {} over the max {max}", h.payload_len);
                got.push(fb.buffered()[h.header_len..][..len].to_vec());
                fb.consume(h.header_len + len);
                continue;
            }
            Ok(Peek::Partial(h)) if !fb.fits(h) => {
                // The connection's large-message path: take what is buffered, then the rest of
                // the payload straight from the stream.
                assert!(h.payload_len <= max);
                let len = h.payload_len as usize;
                let mut payload = fb.buffered()[h.header_len..].to_vec();
                let all = fb.buffered().len();
                fb.consume(all);
                let need = len - payload.len();
                let take = need.min(wire.len() - at);
                payload.extend_from_slice(&wire[at..at + take]);
                at += take;
                if payload.len() < len {
                    break End::Cut {
                        received: (h.header_len + payload.len()) as u64,
                        expected: (h.header_len as u64).saturating_add(h.payload_len),
                    };
                }
                got.push(payload);
                continue;
            }
            Ok(Peek::Partial(_) | Peek::NeedHeader) => {}
        }
        if at == wire.len() {
            let buffered = fb.buffered();
            if buffered.is_empty() {
                break End::Clean;
            }
            let expected = match fb.peek() {
                Ok(Peek::Partial(h)) => (h.header_len as u64).saturating_add(h.payload_len),
                _ if buffered.len() >= 4 && buffered[..4] == [0xff; 4] => 12,
                _ => 4,
            };
            break End::Cut { received: buffered.len() as u64, expected };
        }
        let spare = fb.spare();
        assert!(!spare.is_empty(), "no room although the frame fits");
        let n = rng.upto(spare.len()).min(wire.len() - at);
        spare[..n].copy_from_slice(&wire[at..at + n]);
        fb.filled(n);
        at += n;
    };
    let want_owned: Vec<Vec<u8>> = want.iter().map(|f| f.to_vec()).collect();
    assert_eq!(got, want_owned, "frames differ from the reference");
    assert_eq!(end, want_end, "the stream ends differently from the reference");
}

/// Writes `wire` into one end of a socket pair from another thread, then closes it, and
/// receives on the other end with `recv_bytes_into` until an error. Panics unless the frames
/// and the final error are what the reference says (SPEC.md §2.3, §2.4).
pub fn check_connection(wire: &[u8], max: u64) {
    let (want, want_end) = reference_frames(wire, max);
    let (tx, mut rx) = procwire::pipe(true).expect("socket pair");
    rx.set_max_message_size(max);
    rx.set_read_timeout(Some(Duration::from_secs(60)));
    let bytes = wire.to_vec();
    let writer = std::thread::spawn(move || {
        let mut raw = std::fs::File::from(tx.as_fd().try_clone_to_owned().expect("dup"));
        drop(tx);
        // The reader may stop early (an error), so a failed write is fine.
        let _ = raw.write_all(&bytes);
    });
    let mut buf = Vec::new();
    let mut got = Vec::new();
    let err = loop {
        match rx.recv_bytes_into(&mut buf) {
            Ok(n) => {
                assert!(n as u64 <= max, "message of {n} bytes over the max {max}");
                assert_eq!(n, buf.len());
                got.push(buf.clone());
            }
            Err(e) => break e,
        }
    };
    drop(rx);
    writer.join().expect("writer thread");
    let want_owned: Vec<Vec<u8>> = want.iter().map(|f| f.to_vec()).collect();
    assert_eq!(got, want_owned, "messages differ from the reference");
    match (&want_end, &err) {
        (End::Clean, Error::Closed) => {}
        (End::Cut { received, expected }, Error::Truncated { received: r, expected: x }) => {
            assert_eq!(received, r, "truncated: bytes received");
            assert_eq!(expected, x, "truncated: bytes expected");
        }
        (End::Negative(_), Error::Protocol(_)) => {}
        (End::TooLarge { len, max }, Error::MessageTooLarge { len: l, max: m }) => {
            assert_eq!((len, max), (l, m));
        }
        _ => panic!("stream ends as {want_end:?} but the connection said {err:?}"),
    }
}

/// The key both honest sides use; a mismatched peer uses [`OTHER_KEY`].
pub const KEY: &[u8] = b"fuzz-key";
/// A different key.
pub const OTHER_KEY: &[u8] = b"fuzz-kez";

/// Drives a handshake of `role` against an honest peer (with the same key, or a different one)
/// whose messages are interleaved, as the input says, with arbitrary peer bytes.
///
/// Input: byte 0 holds options (bit 0: the peer has a different key; bit 1: legacy MD5 allowed
/// on our side; bit 2: an honest client sends its challenge right behind its answer, as
/// procwire's client does; bits 3-7 seed the read sizes). Then steps: a control byte; bit 0 set means
/// "deliver the honest peer's next message as a frame", clear means "deliver the next
/// `len` bytes as they are", with `len` the following byte (0 means the rest of the input).
///
/// Panics when the handshake reaches `Done` with a peer whose key differs, or without having
/// been given the honest answer to its own challenge; when it sends anything over the
/// handshake cap; or when it goes on after failing.
///
/// Returns where our side of the handshake ended.
pub fn check_handshake(role: Role, data: &[u8]) -> Status {
    let Some((&opts, mut rest)) = data.split_first() else { return Status::InProgress };
    let mismatch = opts & 1 != 0;
    let legacy = opts & 2 != 0;
    let early = opts & 4 != 0;
    let mut rng = Rng::new(u64::from(opts >> 3));
    let peer_role = match role {
        Role::Listener => Role::Client,
        Role::Client => Role::Listener,
    };
    let mut us = Handshake::new(role, AuthKey::new(KEY)).allow_legacy_md5(legacy);
    let mut peer = Handshake::new(peer_role, AuthKey::new(if mismatch { OTHER_KEY } else { KEY }))
        .allow_legacy_md5(legacy);
    // Messages each side has sent and the other has not taken yet.
    let mut to_peer: Vec<Vec<u8>> = Vec::new();
    let mut from_peer: Vec<Vec<u8>> = Vec::new();
    let sent = |m: &[u8]| assert!(m.len() as u64 <= MAX_HANDSHAKE_MESSAGE, "sent {} bytes", m.len());
    if let Some(m) = us.start().expect("start") {
        sent(&m);
        to_peer.push(m);
    }
    if let Some(m) = peer.start().expect("peer start") {
        from_peer.push(m);
    }
    // The honest peer answers whatever reached it, as long as it is still in the game.
    let pump_peer = |peer: &mut Handshake, to_peer: &mut Vec<Vec<u8>>, from_peer: &mut Vec<Vec<u8>>| {
        for m in to_peer.drain(..) {
            if peer.status() != Status::InProgress {
                break;
            }
            match peer.on_message(&m) {
                Ok(out) => {
                    from_peer.extend(out.send);
                    if early {
                        from_peer.extend(peer.challenge_early().expect("early challenge"));
                    }
                }
                Err(_) => from_peer.extend(peer.failure_message()),
            }
        }
    };
    let mut answer_seen = false;
    // The receive side of the handshake, as `Connection::for_handshake` sets it up.
    let mut fb = FrameBuf::new(512, MAX_HANDSHAKE_MESSAGE);
    let mut failed = false;
    while let Some((&ctl, tail)) = rest.split_first() {
        rest = tail;
        pump_peer(&mut peer, &mut to_peer, &mut from_peer);
        let bytes: Vec<u8> = if ctl & 1 == 1 {
            if from_peer.is_empty() {
                continue;
            }
            let m = from_peer.remove(0);
            if m.starts_with(b"{") {
                answer_seen = true;
            }
            let mut frame = encode_header(m.len() as u64).as_bytes().to_vec();
            frame.extend_from_slice(&m);
            frame
        } else {
            let Some((&n, tail)) = rest.split_first() else { break };
            rest = tail;
            let n = if n == 0 { rest.len() } else { usize::from(n).min(rest.len()) };
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            chunk.to_vec()
        };
        // Feed the bytes in reads of arbitrary sizes; every complete frame goes to the machine.
        let mut at = 0;
        while at < bytes.len() && !failed {
            let spare = fb.spare();
            assert!(!spare.is_empty(), "handshake buffer full below the cap");
            let n = rng.upto(spare.len()).min(bytes.len() - at);
            spare[..n].copy_from_slice(&bytes[at..at + n]);
            fb.filled(n);
            at += n;
            loop {
                let msg = match fb.next_frame() {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    Err(_) => {
                        // Over the cap or a negative length: the connection drops the peer.
                        failed = true;
                        break;
                    }
                };
                assert!(msg.len() as u64 <= MAX_HANDSHAKE_MESSAGE);
                let before = us.status();
                match us.on_message(&msg) {
                    Ok(out) => {
                        assert_eq!(before, Status::InProgress, "a message accepted after the end");
                        if let Some(m) = out.send {
                            sent(&m);
                            to_peer.push(m);
                        }
                    }
                    Err(e) => {
                        assert_eq!(
                            us.status(),
                            Status::Failed,
                            "an error that left the machine running: {e}"
                        );
                        if let Some(f) = us.failure_message() {
                            assert_eq!(f, procwire::auth::FAILURE);
                        }
                        assert!(us.failure_message().is_none(), "#FAILURE# owed twice");
                        assert!(us.on_message(procwire::auth::WELCOME).is_err(), "went on after failing");
                        failed = true;
                        break;
                    }
                }
                if us.status() == Status::Done {
                    assert!(!mismatch, "authenticated a peer with a different key");
                    assert!(answer_seen, "authenticated without the honest answer to our challenge");
                }
            }
        }
        if failed {
            break;
        }
    }
    us.status()
}

/// Mirrors of the process start protocol's messages (SPEC.md §12.3) with the same field
/// names and enum layouts, so that their CBOR decodes the same way.
pub mod process_messages {
    use serde::{Deserialize, Serialize};

    /// The first message, parent to child.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    pub struct Start {
        /// Protocol version.
        pub version: u32,
        /// Registered function name.
        pub function: String,
        /// Process name.
        pub name: String,
        /// Whether the function takes a channel.
        pub channel: bool,
        /// Whether the child is a daemon.
        pub daemon: bool,
    }

    /// The child's answer to [`Start`].
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    pub enum Reply {
        /// Started.
        Started {
            /// The child's pid.
            pid: u32,
        },
        /// Refused.
        Refused {
            /// Why.
            reason: String,
        },
    }

    /// The last message of a child.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    pub enum Outcome<R> {
        /// The function returned.
        Returned(R),
        /// It panicked.
        Panicked(String),
        /// Its result could not be sent.
        Unsendable(String),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_honest_peer_completes_the_handshake_and_a_wrong_key_does_not() {
        for role in [Role::Listener, Role::Client] {
            assert_eq!(check_handshake(role, &[0, 1, 1, 1, 1, 1, 1, 1, 1]), Status::Done, "{role:?}");
            assert_eq!(check_handshake(role, &[0xf8, 1, 1, 1, 1, 1, 1, 1, 1]), Status::Done, "{role:?}");
            assert_eq!(check_handshake(role, &[4, 1, 1, 1, 1, 1, 1, 1, 1]), Status::Done, "{role:?}");
            assert_eq!(check_handshake(role, &[1, 1, 1, 1, 1, 1, 1, 1, 1]), Status::Failed, "{role:?}");
        }
    }

    #[test]
    fn the_reference_decoder_follows_the_spec_examples() {
        let wire = [0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o'];
        assert_eq!(reference_frames(&wire, 5), (vec![&b"hello"[..]], End::Clean));
        assert_eq!(reference_frames(&wire, 4).1, End::TooLarge { len: 5, max: 4 });
        assert_eq!(reference_frames(&wire[..7], 5).1, End::Cut { received: 7, expected: 9 });
        assert_eq!(reference_frames(&[0xff, 0xff, 0xff, 0xfe], 5).1, End::Negative(-2));
        check_framebuf(&wire, 12, 5, &mut Rng::new(1));
        check_connection(&wire, 5);
    }
}
