//! The decoder of encrypted connections (feature `encrypt`) fed arbitrary bytes: an `Inbox`
//! opened with a real session must never panic, never return plaintext for bytes that were not
//! sealed with its key, and once a message fails, fail for good. A genuine message changed by
//! the input opens to exactly what was sealed, or not at all. Input: 1 option byte (the read
//! size), then the bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use procwire::AuthKey;
use procwire::auth::Role;
use procwire::secure::{Handshake, Inbox, Session};

/// A client and a listener session of one handshake with fixed randomness.
fn sessions() -> (Session, Session) {
    let key = AuthKey::new(b"fuzz".to_vec());
    let mut l = Handshake::new(Role::Listener, &key, [1; 64]);
    let mut c = Handshake::new(Role::Client, &key, [2; 64]);
    let m1 = c.on_message(&l.start().unwrap()).unwrap().unwrap();
    let m2 = l.on_message(&m1).unwrap().unwrap();
    c.on_message(&m2).unwrap();
    (c.into_session().unwrap(), l.into_session().unwrap())
}

/// Feeds `wire` in pieces of `step` bytes and takes everything that opens, up to an end message.
fn open(session: &mut Session, wire: &[u8], step: usize) -> (Vec<u8>, bool) {
    let mut inbox = Inbox::new();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 + step * 3];
    for piece in wire.chunks(step) {
        inbox.push(piece);
        loop {
            match inbox.read(session, &mut buf) {
                Ok(Some(0)) => return (out, false),
                Ok(Some(n)) => out.extend_from_slice(&buf[..n]),
                Ok(None) => break,
                Err(_) => {
                    assert!(inbox.read(session, &mut buf).is_err(), "an inbox recovered after a failure");
                    return (out, true);
                }
            }
        }
    }
    (out, false)
}

fuzz_target!(|data: &[u8]| {
    let Some((&opt, rest)) = data.split_first() else { return };
    let step = 1 + usize::from(opt) * 97;
    // Arbitrary bytes never open: nothing comes out.
    let (_, mut listener) = sessions();
    let (out, _) = open(&mut listener, rest, step);
    assert!(out.is_empty(), "plaintext from bytes nobody sealed");
    // A genuine stream (the input sealed twice, then the end message), changed by XOR with the input: what opens is
    // the plaintext of whole messages, in order, unchanged.
    let (mut client, mut listener) = sessions();
    let mut wire = Vec::new();
    client.seal(rest, &mut wire).unwrap();
    client.seal(rest, &mut wire).unwrap();
    client.seal_end(&mut wire).unwrap();
    let (flips, len) = (rest.len().min(wire.len()), wire.len());
    for (i, b) in rest[..flips].iter().enumerate() {
        wire[(i * 131) % len] ^= b & (opt | 1);
    }
    // (A changed length can leave the last message waiting for bytes that never come.)
    let (out, _) = open(&mut listener, &wire, step);
    assert!([rest, rest].concat().starts_with(&out), "changed plaintext");
});
