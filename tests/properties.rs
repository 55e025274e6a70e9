//! Property tests of the sans-IO layers: frames round-trip through the receive buffer whatever
//! the split points; any byte stream ends in frames or an error, never a panic or a payload
//! above the maximum; the handshake survives any peer bytes without panicking.

use proptest::prelude::*;

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
