//! [`Cipher`]: one direction's key and message counter, the `CipherState` of the Noise
//! specification (section 5.1) for AESGCM, sealing and opening in place with ring.
//!
//! snow agrees the keys; it is not used after the handshake because its transport API copies
//! every message into a second buffer (and then copies ring's tag out of it), which costs as
//! much per byte as the encryption. The nonce, the rekey rule and the counter limit are those
//! of the Noise specification, checked against snow byte for byte by the tests of
//! `session.rs`.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};

use super::REKEY_AFTER;
use crate::{Error, Result};

/// A direction's AES-256-GCM key and the number of messages sealed (or opened) with it.
pub(super) struct Cipher {
    key: LessSafeKey,
    n: u64,
}

/// Noise's AESGCM nonce: 32 bits of zeros, then the counter as 64-bit big-endian.
fn nonce(n: u64) -> Nonce {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&n.to_be_bytes());
    Nonce::assume_unique_for_key(bytes)
}

fn aes_key(bytes: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).expect("32 bytes is an AES-256 key"))
}

impl Cipher {
    /// A key from the handshake's split, counter at 0.
    pub(super) fn new(key: &[u8; 32]) -> Cipher {
        Cipher { key: aes_key(key), n: 0 }
    }

    /// The counter of the next message, if it may be used: Noise reserves 2^64 - 1 for `REKEY`.
    fn next(&self) -> Result<u64> {
        if self.n == u64::MAX {
            return Err(Error::Protocol("noise: this connection used up its nonces".into()));
        }
        Ok(self.n)
    }

    /// Counts a message sealed or opened, and rotates the key before every
    /// [`REKEY_AFTER`]th one (both sides count the same messages).
    fn advance(&mut self) {
        self.n += 1;
        if self.n.is_multiple_of(REKEY_AFTER) {
            self.rekey();
        }
    }

    /// Noise `REKEY`: the new key is the first 32 bytes of `ENCRYPT(k, 2^64 - 1, empty ad, 32
    /// zero bytes)`, that is the ciphertext without its tag.
    fn rekey(&mut self) {
        let mut key = [0u8; 32];
        // The tag is not part of the new key.
        let _ = self
            .key
            .seal_in_place_separate_tag(nonce(u64::MAX), Aad::empty(), &mut key)
            .expect("32 bytes are within AES-GCM's limit");
        self.key = aes_key(&key);
    }

    /// Encrypts `in_out` in place (empty associated data, as Noise's transport messages) and
    /// returns the tag that follows it on the wire.
    pub(super) fn seal(&mut self, in_out: &mut [u8]) -> Result<Tag> {
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce(self.next()?), Aad::empty(), in_out)
            .map_err(|_| Error::Protocol("a message too large for AES-GCM".into()))?;
        self.advance();
        Ok(tag)
    }

    /// Decrypts the message (ciphertext, then the tag) at `in_out[src..]` and writes its
    /// plaintext at the front of `in_out`; returns the plaintext length. `None` when it does
    /// not open, and then the counter stays and the bytes of `in_out` are not plaintext.
    pub(super) fn open(&mut self, in_out: &mut [u8], src: usize) -> Option<usize> {
        let n = self.next().ok()?;
        let len = self.key.open_within(nonce(n), Aad::empty(), in_out, src..).ok()?.len();
        self.advance();
        Some(len)
    }
}
