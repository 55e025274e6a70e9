//! The MACs of the handshake, as CPython computes and checks them: the digest prefix of a
//! message, [`answer`] to a challenge, and [`verify`] an answer in constant time.

use hmac::{KeyInit, Mac};

use super::{LEGACY_ANSWER_LEN, LEGACY_CHALLENGE_LEN};
use crate::{Error, Result};

/// A MAC digest the handshake can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Digest {
    /// HMAC-SHA256, CPython 3.12+'s default.
    Sha256,
    /// HMAC-SHA384.
    Sha384,
    /// HMAC-MD5 (legacy; only with the `legacy-md5` feature and option).
    Md5,
}

impl Digest {
    fn from_name(name: &[u8]) -> Option<Digest> {
        match name {
            b"sha256" => Some(Digest::Sha256),
            b"sha384" => Some(Digest::Sha384),
            b"md5" => Some(Digest::Md5),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Digest::Sha256 => "sha256",
            Digest::Sha384 => "sha384",
            Digest::Md5 => "md5",
        }
    }

    fn mac(self, key: &[u8], message: &[u8], legacy: bool) -> Result<Vec<u8>> {
        fn run<M: Mac + KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
            // HMAC takes keys of any length; new_from_slice cannot fail for it.
            let mut m = <M as KeyInit>::new_from_slice(key).expect("HMAC accepts any key length");
            m.update(message);
            m.finalize().into_bytes().to_vec()
        }
        match self {
            Digest::Sha256 => Ok(run::<hmac::Hmac<sha2::Sha256>>(key, message)),
            Digest::Sha384 => Ok(run::<hmac::Hmac<sha2::Sha384>>(key, message)),
            Digest::Md5 => md5_mac(key, message, legacy),
        }
    }
}

#[cfg(feature = "legacy-md5")]
fn md5_mac(key: &[u8], message: &[u8], legacy: bool) -> Result<Vec<u8>> {
    if !legacy {
        return Err(legacy_refused());
    }
    let mut m = <hmac::Hmac<md5::Md5> as KeyInit>::new_from_slice(key).expect("HMAC accepts any key length");
    m.update(message);
    Ok(m.finalize().into_bytes().to_vec())
}

#[cfg(not(feature = "legacy-md5"))]
fn md5_mac(_key: &[u8], _message: &[u8], _legacy: bool) -> Result<Vec<u8>> {
    Err(legacy_refused())
}

fn legacy_refused() -> Error {
    Error::AuthenticationFailed(
        "the peer uses the legacy HMAC-MD5 handshake (CPython 3.11 or older) or an explicit {md5} \
         digest; enable it with the `legacy-md5` cargo feature and `legacy_md5(true)` on the \
         builder, or upgrade the peer"
            .into(),
    )
}

/// Splits a message into its digest and MAC the way CPython's
/// `_get_digest_name_and_payload` does: 16 or 20 bytes mean legacy MD5 without prefix.
fn split_digest(message: &[u8]) -> Result<(Digest, &[u8], bool)> {
    if message.len() == LEGACY_ANSWER_LEN || message.len() == LEGACY_CHALLENGE_LEN {
        return Ok((Digest::Md5, message, false));
    }
    if let Some(rest) = message.strip_prefix(b"{") {
        // CPython looks for '}' within the longest allowed digest name (8 bytes).
        if let Some(close) = rest.iter().take(9).position(|&b| b == b'}') {
            if let Some(d) = Digest::from_name(&rest[..close]) {
                return Ok((d, &rest[close + 1..], true));
            }
            return Err(Error::AuthenticationFailed(format!(
                "unsupported digest {:?} (supported: sha256, sha384)",
                String::from_utf8_lossy(&rest[..close])
            )));
        }
    }
    Err(Error::AuthenticationFailed(format!(
        "unsupported message length ({} bytes) or missing digest prefix",
        message.len()
    )))
}

/// Computes the answer to a challenge body (the bytes after `#CHALLENGE#`), as CPython's
/// `_create_response` does: a prefixed challenge gets `{digest}` + HMAC over the whole body,
/// a legacy 20-byte one gets a raw HMAC-MD5 (only when `legacy` is allowed).
///
/// ```
/// use procwire::auth::answer;
/// let a = answer(b"key", b"{sha256}0123456789012345678901234567890123456789", false).unwrap();
/// assert!(a.starts_with(b"{sha256}"));
/// assert_eq!(a.len(), 8 + 32);
/// ```
pub fn answer(key: &[u8], challenge_body: &[u8], legacy: bool) -> Result<Vec<u8>> {
    if challenge_body.len() < LEGACY_CHALLENGE_LEN {
        return Err(Error::AuthenticationFailed(format!(
            "challenge too short: {} bytes",
            challenge_body.len()
        )));
    }
    let (digest, _, prefixed) = split_digest(challenge_body)?;
    let mac = digest.mac(key, challenge_body, legacy)?;
    if !prefixed {
        return Ok(mac);
    }
    let mut out = Vec::with_capacity(digest.name().len() + 2 + mac.len());
    out.extend_from_slice(b"{");
    out.extend_from_slice(digest.name().as_bytes());
    out.extend_from_slice(b"}");
    out.extend_from_slice(&mac);
    Ok(out)
}

/// Verifies `response` to the challenge body we sent, in constant time (CPython's
/// `_verify_challenge`). An unprefixed 16-byte response is legacy HMAC-MD5 and is accepted only
/// when `legacy` is allowed.
pub fn verify(key: &[u8], challenge_body: &[u8], response: &[u8], legacy: bool) -> Result<()> {
    let (digest, mac, _) = split_digest(response)?;
    let ok = match digest {
        Digest::Sha256 => hmac::Hmac::<sha2::Sha256>::new_from_slice(key)
            .expect("HMAC accepts any key length")
            .chain_update(challenge_body)
            .verify_slice(mac)
            .is_ok(),
        Digest::Sha384 => hmac::Hmac::<sha2::Sha384>::new_from_slice(key)
            .expect("HMAC accepts any key length")
            .chain_update(challenge_body)
            .verify_slice(mac)
            .is_ok(),
        Digest::Md5 => verify_md5(key, challenge_body, mac, legacy)?,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::AuthenticationFailed(
            "the peer's answer to our challenge is wrong: the two sides have different authkeys".into(),
        ))
    }
}

#[cfg(feature = "legacy-md5")]
fn verify_md5(key: &[u8], body: &[u8], mac: &[u8], legacy: bool) -> Result<bool> {
    if !legacy {
        return Err(legacy_refused());
    }
    Ok(hmac::Hmac::<md5::Md5>::new_from_slice(key)
        .expect("HMAC accepts any key length")
        .chain_update(body)
        .verify_slice(mac)
        .is_ok())
}

#[cfg(not(feature = "legacy-md5"))]
fn verify_md5(_key: &[u8], _body: &[u8], _mac: &[u8], _legacy: bool) -> Result<bool> {
    Err(legacy_refused())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    // Vectors computed with CPython's hmac module:
    //   key = b"procwire-test-key"
    //   body = b"{sha256}" + bytes(range(40))
    //   b"{sha256}" + hmac.new(key, body, "sha256").digest()
    pub(crate) const KEY: &[u8] = b"procwire-test-key";

    pub(crate) fn body() -> Vec<u8> {
        let mut b = b"{sha256}".to_vec();
        b.extend(0u8..40);
        b
    }

    #[test]
    fn sha256_answer_matches_cpython_vector() {
        let a = answer(KEY, &body(), false).unwrap();
        let mut want = b"{sha256}".to_vec();
        want.extend(hex(SHA256_VECTOR));
        assert_eq!(a, want);
        verify(KEY, &body(), &a, false).unwrap();
        assert!(matches!(verify(b"other", &body(), &a, false), Err(Error::AuthenticationFailed(_))));
    }

    pub(crate) const SHA256_VECTOR: &str = "bfee40bc782c99b66baf58885fb6c5f330dfc17b7b4371165cdbb90b32c4890c";

    #[test]
    fn short_challenge_is_refused() {
        assert!(matches!(answer(KEY, b"{sha256}abc", false), Err(Error::AuthenticationFailed(_))));
    }

    #[test]
    fn unknown_digest_is_refused() {
        let mut b = b"{sha999}".to_vec();
        b.extend(0u8..40);
        let e = answer(KEY, &b, false).unwrap_err().to_string();
        assert!(e.contains("unsupported digest"), "{e}");
    }

    #[test]
    fn legacy_is_refused_unless_allowed() {
        let legacy_challenge = [7u8; 20];
        let e = answer(KEY, &legacy_challenge, false).unwrap_err().to_string();
        assert!(e.contains("legacy HMAC-MD5"), "{e}");
        let e = verify(KEY, &body(), &[0u8; 16], false).unwrap_err().to_string();
        assert!(e.contains("legacy HMAC-MD5"), "{e}");
    }

    #[cfg(feature = "legacy-md5")]
    #[test]
    fn md5_answer_matches_cpython_vector() {
        //   hmac.new(key, bytes(range(20)), "md5").digest()
        let challenge: Vec<u8> = (0u8..20).collect();
        let a = answer(KEY, &challenge, true).unwrap();
        assert_eq!(a, hex(MD5_VECTOR));
        verify(KEY, &challenge, &a, true).unwrap();
        //   a 3.11 peer answers a modern challenge with a raw MD5 over the whole body
        let raw = hex(MD5_OVER_MODERN_VECTOR);
        verify(KEY, &body(), &raw, true).unwrap();
        assert!(verify(KEY, &body(), &raw, false).is_err());
    }

    #[cfg(feature = "legacy-md5")]
    const MD5_VECTOR: &str = "31a0b8b0ba88df32cdbda4f0a5477fc8";
    #[cfg(feature = "legacy-md5")]
    const MD5_OVER_MODERN_VECTOR: &str = "59b63ec2e816cf2a3ce58fe74ca498c1";
}
