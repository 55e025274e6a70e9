//! Property tests of the sans-IO layers: frames round-trip through the receive buffer whatever
//! the split points; any byte stream ends in frames or an error, never a panic or a payload
//! above the maximum; the handshake survives any peer bytes without panicking. Then the same
//! over a real socket pair and `Connection`, against a reference decoder, with the memory
//! reserved for lying length prefixes bounded; and the inputs the fuzzers found.

#![cfg(unix)]

use std::time::Duration;

use proptest::prelude::*;

use procwire::Error;
use procwire::auth::{AuthKey, Handshake, Role};
use procwire::codec::{FrameBuf, Peek, decode_header, encode_header};

/// Feeds `wire` to a FrameBuf in chunks of the given sizes; returns the frames and whether
/// decoding stopped at an error.
fn feed(wire: &[u8], chunks: &[usize], capacity: usize, max: u64) -> (Vec<Vec<u8>>, bool) {
    let mut fb = FrameBuf::new(capacity, max);
    let mut frames = Vec::new();
    let mut at = 0;
    let mut chunk = chunks.iter().cycle();
    while at < wire.len() {
        let spare = fb.spare();
        if spare.is_empty() {
            // A frame larger than the buffer: the connection reads those outside of it.
            match fb.peek() {
                Ok(Peek::Partial(h)) => assert!(!fb.fits(h)),
                other => panic!("full buffer with {other:?}"),
            }
            return (frames, false);
        }
        let n = (*chunk.next().unwrap()).clamp(1, spare.len()).min(wire.len() - at);
        spare[..n].copy_from_slice(&wire[at..at + n]);
        fb.filled(n);
        at += n;
        loop {
            match fb.next_frame() {
                Ok(Some(f)) => {
                    assert!(f.len() as u64 <= max);
                    frames.push(f);
                }
                Ok(None) => break,
                Err(_) => return (frames, true),
            }
        }
    }
    (frames, false)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn frames_round_trip_at_any_split(
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..20),
        chunks in prop::collection::vec(1usize..700, 1..10),
    ) {
        let mut wire = Vec::new();
        for p in &payloads {
            wire.extend_from_slice(encode_header(p.len() as u64).as_bytes());
            wire.extend_from_slice(p);
        }
        let (frames, failed) = feed(&wire, &chunks, 1024, 1 << 20);
        prop_assert!(!failed);
        prop_assert_eq!(frames, payloads);
    }

    #[test]
    fn any_bytes_end_in_frames_or_an_error(
        wire in prop::collection::vec(any::<u8>(), 0..2000),
        chunks in prop::collection::vec(1usize..300, 1..6),
        max in 0u64..600,
    ) {
        // No panic, and no frame above the maximum (asserted in feed).
        let _ = feed(&wire, &chunks, 512, max);
    }

    #[test]
    fn header_round_trips(len in any::<u64>()) {
        let h = encode_header(len);
        let d = decode_header(h.as_bytes(), u64::MAX).unwrap().unwrap();
        prop_assert_eq!(d.payload_len, len);
        prop_assert_eq!(d.header_len, h.as_bytes().len());
        prop_assert_eq!(h.as_bytes().len(), if len <= 0x7fff_ffff { 4 } else { 12 });
    }

    #[test]
    fn handshake_survives_any_peer_messages(
        msgs in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..6),
        listener in any::<bool>(),
        prefix_challenge in any::<bool>(),
    ) {
        let role = if listener { Role::Listener } else { Role::Client };
        let mut hs = Handshake::new(role, AuthKey::new(b"k".to_vec())).allow_legacy_md5(true);
        let _ = hs.start().unwrap();
        for (i, m) in msgs.iter().enumerate() {
            let mut m = m.clone();
            if prefix_challenge && i == 0 {
                m.splice(0..0, b"#CHALLENGE#".iter().copied());
            }
            if hs.on_message(&m).is_err() {
                // Failed for good: every later message is refused too.
                prop_assert!(hs.on_message(b"#WELCOME#").is_err());
                break;
            }
        }
    }
}

/// How a byte stream ends, by the plain reading of SPEC.md §2.3 and §2.4.
#[derive(Debug, PartialEq)]
enum End {
    Clean,
    Cut { received: u64, expected: u64 },
    Negative,
    TooLarge { len: u64, max: u64 },
}

/// A reference decoder over a whole stream, as plainly as the spec says it.
fn reference(mut rest: &[u8], max: u64) -> (Vec<Vec<u8>>, End) {
    let mut frames = Vec::new();
    loop {
        if rest.is_empty() {
            return (frames, End::Clean);
        }
        let Some(short) = rest.first_chunk::<4>() else {
            return (frames, End::Cut { received: rest.len() as u64, expected: 4 });
        };
        let (header_len, len) = match i32::from_be_bytes(*short) {
            n @ 0.. => (4, n as u64),
            -1 => match rest.get(4..12) {
                Some(b) => (12, u64::from_be_bytes(b.try_into().unwrap())),
                None => return (frames, End::Cut { received: rest.len() as u64, expected: 12 }),
            },
            _ => return (frames, End::Negative),
        };
        if len > max {
            return (frames, End::TooLarge { len, max });
        }
        if ((rest.len() - header_len) as u64) < len {
            let expected = (header_len as u64).saturating_add(len);
            return (frames, End::Cut { received: rest.len() as u64, expected });
        }
        frames.push(rest[header_len..header_len + len as usize].to_vec());
        rest = &rest[header_len + len as usize..];
    }
}

/// Writes `wire` raw into one end of a socket pair in pieces of the given sizes (from another
/// thread), closes it, and receives on the other end until an error.
fn through_connection(wire: Vec<u8>, pieces: Vec<usize>, max: u64) -> (Vec<Vec<u8>>, Error, usize) {
    use std::io::Write;
    use std::os::fd::AsFd;
    let (tx, mut rx) = procwire::pipe(true).unwrap();
    rx.set_max_message_size(max);
    rx.set_read_timeout(Some(Duration::from_secs(60)));
    let writer = std::thread::spawn(move || {
        let mut raw = std::fs::File::from(tx.as_fd().try_clone_to_owned().unwrap());
        drop(tx);
        let mut at = 0;
        for n in pieces.iter().cycle() {
            if at == wire.len() {
                break;
            }
            let n = (*n).clamp(1, wire.len() - at);
            // The reader may stop at an error and close: later writes may fail.
            if raw.write_all(&wire[at..at + n]).is_err() {
                break;
            }
            at += n;
        }
    });
    let mut got = Vec::new();
    let mut buf = Vec::new();
    let err = loop {
        match rx.recv_bytes_into(&mut buf) {
            Ok(n) => got.push(buf[..n].to_vec()),
            Err(e) => break e,
        }
    };
    drop(rx);
    writer.join().unwrap();
    (got, err, buf.capacity())
}

fn same_end(want: &End, got: &Error) -> bool {
    match (want, got) {
        (End::Clean, Error::Closed) | (End::Negative, Error::Protocol(_)) => true,
        (End::Cut { received, expected }, Error::Truncated { received: r, expected: x }) => {
            (received, expected) == (r, x)
        }
        (End::TooLarge { len, max }, Error::MessageTooLarge { len: l, max: m }) => (len, max) == (l, m),
        _ => false,
    }
}

/// Frames for `payloads`, each with the short header or (when `long` says so) the long one.
fn encode(payloads: &[Vec<u8>], long: &[bool]) -> Vec<u8> {
    let mut wire = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        if long.get(i).copied().unwrap_or(false) {
            wire.extend_from_slice(&[0xff; 4]);
            wire.extend_from_slice(&(p.len() as u64).to_be_bytes());
        } else {
            wire.extend_from_slice(encode_header(p.len() as u64).as_bytes());
        }
        wire.extend_from_slice(p);
    }
    wire
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Real socket pair: messages of any size (across the 64 KiB receive buffer), in either
    /// header form, written in pieces of any size, arrive whole and in order, then `Closed`.
    #[test]
    fn connection_round_trips_at_any_split(
        payloads in prop::collection::vec(
            prop_oneof![
                4 => prop::collection::vec(any::<u8>(), 0..200),
                1 => prop::collection::vec(any::<u8>(), 60_000..140_000),
            ],
            0..8,
        ),
        long in prop::collection::vec(any::<bool>(), 0..8),
        pieces in prop::collection::vec(prop_oneof![1usize..16, 16usize..5000, 5000usize..100_000], 1..8),
    ) {
        let wire = encode(&payloads, &long);
        let (got, err, _) = through_connection(wire, pieces, 1 << 20);
        prop_assert_eq!(got, payloads);
        prop_assert!(matches!(err, Error::Closed), "{:?}", err);
    }

    /// Real socket pair: any byte stream (valid frames with noise spliced in, or noise alone)
    /// gives exactly the reference's messages, then the reference's error; nothing over the
    /// maximum is delivered, and the receive buffer never grows past what arrived or the
    /// smaller of the max and 64 MiB.
    #[test]
    fn any_bytes_into_a_connection_end_in_messages_or_the_right_error(
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..6),
        noise in prop::collection::vec(any::<u8>(), 0..40),
        at in any::<prop::sample::Index>(),
        cut in any::<prop::sample::Index>(),
        pieces in prop::collection::vec(1usize..400, 1..6),
        max in prop_oneof![0u64..400, Just(u64::MAX)],
    ) {
        let mut wire = encode(&payloads, &[]);
        let i = at.index(wire.len() + 1);
        wire.splice(i..i, noise);
        wire.truncate(cut.index(wire.len() + 1).max(i));
        let (want, want_end) = reference(&wire, max);
        let total = wire.len();
        let (got, err, capacity) = through_connection(wire, pieces, max);
        prop_assert!(got.iter().all(|m| m.len() as u64 <= max));
        prop_assert_eq!(got, want);
        prop_assert!(same_end(&want_end, &err), "reference {:?}, connection {:?}", want_end, err);
        // Reserving ahead of the bytes is allowed up to the maximum, and never past 64 MiB.
        let bound = (total.max(64) as u64).max(max.min(64 << 20));
        prop_assert!(capacity as u64 <= bound, "receive buffer of {} for {} bytes", capacity, total);
    }

    /// A length prefix that lies (a large announced length, few bytes sent): refused before any
    /// allocation when over the maximum; otherwise at most min(length, 64 MiB) is reserved
    /// ahead of the bytes, and the end is `Truncated`.
    #[test]
    fn lying_lengths_reserve_at_most_the_smaller_of_the_length_max_and_64_mib(
        len in prop_oneof![65_537u64..(1 << 26), (1u64 << 26)..(1 << 62), Just(u64::MAX)],
        max in prop_oneof![Just(u64::MAX), 0u64..(1 << 40)],
        sent in prop::collection::vec(any::<u8>(), 0..2000),
    ) {
        let mut wire = vec![0xff; 4];
        wire.extend_from_slice(&len.to_be_bytes());
        wire.extend_from_slice(&sent);
        let (got, err, capacity) = through_connection(wire, vec![1 << 20], max);
        prop_assert!(got.is_empty());
        if len > max {
            prop_assert!(matches!(err, Error::MessageTooLarge { len: l, max: m } if l == len && m == max), "{:?}", err);
            prop_assert_eq!(capacity, 0);
        } else {
            let expected = len.saturating_add(12);
            let received = 12 + sent.len() as u64;
            prop_assert!(
                matches!(err, Error::Truncated { received: r, expected: x } if r == received && x == expected),
                "{:?}", err
            );
            prop_assert!(capacity as u64 <= len.min(64 << 20), "reserved {} for {}", capacity, len);
        }
    }
}

/// Inputs the fuzzer found (fuzz/fuzz_targets/frame_decoder.rs), replayed through the same
/// public calls. Each was a crash before its fix.
mod fuzz_regressions {
    use super::*;

    /// `frame_decoder`, options `10 01 ff ff` (maximum u64::MAX, through a connection): a long
    /// header announcing u64::MAX bytes, then the end of the stream. Computing `expected` for
    /// the `Truncated` error overflowed (a panic in debug builds, a wrong count in release).
    #[test]
    fn truncated_long_header_announcing_u64_max_with_no_maximum() {
        let wire = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0x00, 0xfc, 0xff,
        ];
        let (got, err, _) = through_connection(wire.to_vec(), vec![7, 3, 100], u64::MAX);
        assert!(got.is_empty());
        match err {
            Error::Truncated { received, expected } => assert_eq!((received, expected), (21, u64::MAX)),
            other => panic!("expected Truncated, got {other:?}"),
        }
    }
}
