//! HMAC challenge-response authentication, byte-compatible with CPython's
//! `multiprocessing.connection` (`deliver_challenge` / `answer_challenge`).
//!
//! This module is sans-IO: [`Handshake`] is a state machine that takes the peer's handshake
//! messages (frame payloads) and says what to send back. The connection layer moves the
//! messages. The exchange, for each direction, is:
//!
//! ```text
//! challenger -> answerer   b"#CHALLENGE#" + b"{sha256}" + 40 random bytes
//! answerer   -> challenger b"{sha256}" + HMAC-SHA256(key, b"{sha256}" + random)
//! challenger -> answerer   b"#WELCOME#"  or  b"#FAILURE#"
//! ```
//!
//! The listener challenges first, then the client challenges the listener. With the
//! `legacy-md5` feature and the builder option, the HMAC-MD5 scheme of CPython 3.11 and older
//! is also accepted (a 20-byte challenge answered by a raw 16-byte MD5 HMAC).
//!
//! ```
//! use procwire::auth::{AuthKey, Handshake, Role, Status};
//! let key = AuthKey::new(b"secret".to_vec());
//! let mut listener = Handshake::new(Role::Listener, key.clone());
//! let mut client = Handshake::new(Role::Client, key);
//! let mut to_client = listener.start().unwrap().expect("the listener speaks first");
//! // Pump messages back and forth until both sides are done.
//! loop {
//!     let out = client.on_message(&to_client).unwrap();
//!     let Some(to_listener) = out.send else { break };
//!     let back = listener.on_message(&to_listener).unwrap();
//!     match back.send { Some(m) => to_client = m, None => break }
//! }
//! assert_eq!(client.status(), Status::Done);
//! assert_eq!(listener.status(), Status::Done);
//! ```

use std::fmt;
use std::path::Path;

use hmac::{KeyInit, Mac};

use crate::error::io_context;
use crate::util::fill_random;
use crate::{Error, Result};

/// Prefix of a challenge message.
pub const CHALLENGE: &[u8] = b"#CHALLENGE#";
/// Sent by the challenger when the answer was right.
pub const WELCOME: &[u8] = b"#WELCOME#";
/// Sent by the challenger when the answer was wrong.
pub const FAILURE: &[u8] = b"#FAILURE#";
/// Sent by a client without a key that received a challenge, so the listener can say why the
/// handshake failed instead of waiting for its timeout. Not part of CPython's protocol: a
/// CPython listener rejects it as a malformed answer, which is the right outcome too.
pub const NO_KEY: &[u8] = b"#NOKEY#";
/// Random bytes in a modern challenge (CPython's `MESSAGE_LENGTH`).
pub const CHALLENGE_RANDOM_LEN: usize = 40;
/// Length of a legacy (CPython <= 3.11) challenge body.
pub const LEGACY_CHALLENGE_LEN: usize = 20;
/// Length of a legacy raw HMAC-MD5 answer.
pub const LEGACY_ANSWER_LEN: usize = 16;
/// The most bytes any handshake message may have (CPython reads at most 256).
pub const MAX_HANDSHAKE_MESSAGE: u64 = 256;

/// A shared secret key. Its `Debug` output never shows the key.
///
/// ```
/// use procwire::AuthKey;
/// let k = AuthKey::new(b"secret".to_vec());
/// assert_eq!(k.as_bytes(), b"secret");
/// assert_eq!(format!("{k:?}"), "AuthKey(6 bytes)");
/// assert_eq!(AuthKey::random().unwrap().as_bytes().len(), 32);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct AuthKey(Vec<u8>);

impl AuthKey {
    /// A key from raw bytes (CPython's `authkey=b"..."`).
    pub fn new(bytes: impl Into<Vec<u8>>) -> AuthKey {
        AuthKey(bytes.into())
    }

    /// 32 fresh random bytes from the operating system.
    pub fn random() -> Result<AuthKey> {
        let mut k = vec![0u8; 32];
        fill_random(&mut k)?;
        Ok(AuthKey(k))
    }

    /// The whole content of a file, byte for byte (no trimming: a trailing newline is part of
    /// the key). An empty file is an error, as it is almost always a mistake.
    pub fn from_file(path: impl AsRef<Path>) -> Result<AuthKey> {
        let path = path.as_ref();
        let bytes = std::fs::read(path)
            .map_err(|e| Error::Io(io_context(e, format_args!("reading authkey file {}", path.display()))))?;
        if bytes.is_empty() {
            return Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("authkey file {} is empty", path.display()),
            )));
        }
        Ok(AuthKey(bytes))
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthKey({} bytes)", self.0.len())
    }
}

impl From<&[u8]> for AuthKey {
    fn from(b: &[u8]) -> Self {
        AuthKey(b.to_vec())
    }
}

impl From<Vec<u8>> for AuthKey {
    fn from(b: Vec<u8>) -> Self {
        AuthKey(b)
    }
}

impl From<&str> for AuthKey {
    fn from(s: &str) -> Self {
        AuthKey(s.as_bytes().to_vec())
    }
}

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

/// Which side of the connection a [`Handshake`] runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The accepting side: challenges first.
    Listener,
    /// The connecting side: answers first, then challenges.
    Client,
}

/// Where a [`Handshake`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Waiting for the peer's next message.
    InProgress,
    /// Both directions verified.
    Done,
    /// Failed; the handshake must not continue.
    Failed,
}

/// What the handshake wants sent after a step.
#[derive(Debug, Default)]
pub struct Output {
    /// A message to send to the peer, if any.
    pub send: Option<Vec<u8>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    // Listener
    AwaitAnswer,
    AwaitPeerChallenge,
    AwaitWelcome,
    // Client
    AwaitChallenge,
    AwaitOurWelcome,
    AwaitPeerAnswer,
    Done,
    Failed,
}

/// The handshake state machine for one side of one connection (sans-IO).
///
/// Feed it every message the peer sends with [`on_message`](Handshake::on_message) and send
/// what it returns. On a failure it still returns what must be sent (CPython's `#FAILURE#`)
/// inside the error path: call [`failure_message`](Handshake::failure_message).
pub struct Handshake {
    key: AuthKey,
    legacy: bool,
    state: State,
    /// The challenge body we sent (digest prefix + random), kept to verify the answer.
    sent: Vec<u8>,
    pending_failure: bool,
    /// A client that sent its challenge with its answer ([`Handshake::challenge_early`]).
    early: bool,
}

impl fmt::Debug for Handshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handshake").field("state", &self.state).field("legacy", &self.legacy).finish()
    }
}

impl Handshake {
    /// A handshake for `role` with `key`; legacy MD5 refused.
    pub fn new(role: Role, key: AuthKey) -> Handshake {
        let state = match role {
            Role::Listener => State::AwaitAnswer,
            Role::Client => State::AwaitChallenge,
        };
        Handshake { key, legacy: false, state, sent: Vec::new(), pending_failure: false, early: false }
    }

    /// Allows the legacy HMAC-MD5 scheme (it still needs the `legacy-md5` feature).
    pub fn allow_legacy_md5(mut self, allow: bool) -> Handshake {
        self.legacy = allow;
        self
    }

    /// The opening message: the listener's challenge; `None` for a client, which waits.
    pub fn start(&mut self) -> Result<Option<Vec<u8>>> {
        match self.state {
            State::AwaitAnswer => Ok(Some(self.make_challenge()?)),
            _ => Ok(None),
        }
    }

    /// A client's own challenge (step 4), to send right behind its answer (step 2) instead of
    /// after the listener's `#WELCOME#`: the handshake then takes two round trips instead of
    /// three. `Some` once, right after a client answered; `None` otherwise. The listener still
    /// reads it only after it accepted the answer (a procwire listener takes buffered frames in
    /// order, CPython's reads one frame at a time), and the client's next messages are then the
    /// welcome followed by the listener's answer.
    ///
    /// ```
    /// use procwire::auth::{AuthKey, Handshake, Role, Status};
    /// let key = AuthKey::new(b"secret".to_vec());
    /// let mut listener = Handshake::new(Role::Listener, key.clone());
    /// let mut client = Handshake::new(Role::Client, key);
    /// let challenge = listener.start().unwrap().unwrap();
    /// let answer = client.on_message(&challenge).unwrap().send.unwrap();
    /// let early = client.challenge_early().unwrap().expect("right after answering");
    /// let welcome = listener.on_message(&answer).unwrap().send.unwrap();
    /// let reply = listener.on_message(&early).unwrap().send.unwrap();
    /// assert!(client.on_message(&welcome).unwrap().send.is_none());
    /// let last = client.on_message(&reply).unwrap().send.unwrap();
    /// assert!(listener.on_message(&last).unwrap().send.is_none());
    /// assert_eq!((client.status(), listener.status()), (Status::Done, Status::Done));
    /// ```
    pub fn challenge_early(&mut self) -> Result<Option<Vec<u8>>> {
        if self.state != State::AwaitOurWelcome || self.early {
            return Ok(None);
        }
        let msg = self.make_challenge()?;
        self.early = true;
        Ok(Some(msg))
    }

    /// Where the handshake is.
    pub fn status(&self) -> Status {
        match self.state {
            State::Done => Status::Done,
            State::Failed => Status::Failed,
            _ => Status::InProgress,
        }
    }

    /// What the handshake is waiting for, in words, for timeout messages.
    pub fn waiting_for(&self) -> &'static str {
        match self.state {
            State::AwaitAnswer => {
                "waiting for the client's answer to our challenge (does the client have an authkey? \
                 a client without one never answers)"
            }
            State::AwaitPeerChallenge => "waiting for the client's challenge",
            State::AwaitWelcome => "waiting for the client to accept our answer",
            State::AwaitChallenge => {
                "waiting for the listener's challenge (does the listener have an authkey? a \
                 listener without one sends nothing; or it is not calling accept)"
            }
            State::AwaitOurWelcome => "waiting for the listener to accept our answer",
            State::AwaitPeerAnswer => "waiting for the listener's answer to our challenge",
            State::Done | State::Failed => "nothing",
        }
    }

    /// `#FAILURE#` if the last failed step owes the peer one (CPython sends it when an answer
    /// to its challenge is wrong), else `None`. Taking it clears it.
    pub fn failure_message(&mut self) -> Option<Vec<u8>> {
        std::mem::take(&mut self.pending_failure).then(|| FAILURE.to_vec())
    }

    fn make_challenge(&mut self) -> Result<Vec<u8>> {
        let mut body = b"{sha256}".to_vec();
        let mut random = [0u8; CHALLENGE_RANDOM_LEN];
        fill_random(&mut random)?;
        body.extend_from_slice(&random);
        let mut msg = CHALLENGE.to_vec();
        msg.extend_from_slice(&body);
        self.sent = body;
        Ok(msg)
    }

    /// Takes one message from the peer and returns what to send back.
    pub fn on_message(&mut self, msg: &[u8]) -> Result<Output> {
        let r = self.step(msg);
        if r.is_err() {
            self.state = State::Failed;
        }
        r
    }

    fn step(&mut self, msg: &[u8]) -> Result<Output> {
        match self.state {
            State::AwaitAnswer | State::AwaitPeerAnswer => {
                if msg == NO_KEY && self.state == State::AwaitAnswer {
                    self.pending_failure = true;
                    return Err(Error::AuthenticationFailed(
                        "the client has no authkey (it received our challenge and refused it)".into(),
                    ));
                }
                if let Err(e) = verify(self.key.as_bytes(), &self.sent, msg, self.legacy) {
                    self.pending_failure = true;
                    return Err(e);
                }
                self.state =
                    if self.state == State::AwaitAnswer { State::AwaitPeerChallenge } else { State::Done };
                Ok(Output { send: Some(WELCOME.to_vec()) })
            }
            State::AwaitChallenge | State::AwaitPeerChallenge => {
                let Some(body) = msg.strip_prefix(CHALLENGE) else {
                    return Err(Error::AuthenticationFailed(format!(
                        "protocol error: expected a challenge, got {}",
                        show(msg)
                    )));
                };
                let reply = answer(self.key.as_bytes(), body, self.legacy)?;
                self.state = if self.state == State::AwaitChallenge {
                    State::AwaitOurWelcome
                } else {
                    State::AwaitWelcome
                };
                Ok(Output { send: Some(reply) })
            }
            State::AwaitOurWelcome | State::AwaitWelcome => {
                if msg != WELCOME {
                    let who = if self.state == State::AwaitOurWelcome { "listener" } else { "client" };
                    return Err(Error::AuthenticationFailed(if msg == FAILURE {
                        format!("the {who} rejected our answer: the two sides have different authkeys")
                    } else {
                        format!("expected #WELCOME# from the {who}, got {}", show(msg))
                    }));
                }
                if self.state == State::AwaitOurWelcome {
                    self.state = State::AwaitPeerAnswer;
                    let send = if self.early { None } else { Some(self.make_challenge()?) };
                    Ok(Output { send })
                } else {
                    self.state = State::Done;
                    Ok(Output { send: None })
                }
            }
            State::Done => Err(Error::Protocol("handshake message after the handshake finished".into())),
            State::Failed => Err(Error::AuthenticationFailed("handshake already failed".into())),
        }
    }
}

/// A short printable form of a peer's message for error texts.
fn show(msg: &[u8]) -> String {
    let head = &msg[..msg.len().min(24)];
    let more = if msg.len() > 24 { "..." } else { "" };
    format!("{:?}{more} ({} bytes)", String::from_utf8_lossy(head), msg.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    // Vectors computed with CPython's hmac module:
    //   key = b"procwire-test-key"
    //   body = b"{sha256}" + bytes(range(40))
    //   b"{sha256}" + hmac.new(key, body, "sha256").digest()
    const KEY: &[u8] = b"procwire-test-key";

    fn body() -> Vec<u8> {
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

    const SHA256_VECTOR: &str = "bfee40bc782c99b66baf58885fb6c5f330dfc17b7b4371165cdbb90b32c4890c";

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

    fn pump(l: &mut Handshake, c: &mut Handshake) -> (Result<()>, Result<()>) {
        let mut to_client = l.start().unwrap();
        assert!(c.start().unwrap().is_none());
        loop {
            let Some(m) = to_client.take() else {
                return (Ok(()), Ok(()));
            };
            let to_listener = match c.on_message(&m) {
                Ok(o) => o.send,
                Err(e) => return (Ok(()), Err(e)),
            };
            let Some(m) = to_listener else {
                return (Ok(()), Ok(()));
            };
            match l.on_message(&m) {
                Ok(o) => to_client = o.send,
                Err(e) => {
                    let fail = l.failure_message().expect("listener owes #FAILURE#");
                    let ce = c.on_message(&fail).unwrap_err();
                    return (Err(e), Err(ce));
                }
            }
        }
    }

    #[test]
    fn full_handshake_same_key() {
        let k = AuthKey::new(KEY.to_vec());
        let mut l = Handshake::new(Role::Listener, k.clone());
        let mut c = Handshake::new(Role::Client, k);
        let (a, b) = pump(&mut l, &mut c);
        a.unwrap();
        b.unwrap();
        assert_eq!(l.status(), Status::Done);
        assert_eq!(c.status(), Status::Done);
    }

    #[test]
    fn full_handshake_wrong_key_fails_on_both_sides() {
        let mut l = Handshake::new(Role::Listener, AuthKey::new(b"a".to_vec()));
        let mut c = Handshake::new(Role::Client, AuthKey::new(b"b".to_vec()));
        let (a, b) = pump(&mut l, &mut c);
        assert!(matches!(a, Err(Error::AuthenticationFailed(_))));
        let e = b.unwrap_err().to_string();
        assert!(e.contains("rejected our answer"), "{e}");
        assert_eq!(l.status(), Status::Failed);
        assert_eq!(c.status(), Status::Failed);
    }

    #[test]
    fn an_early_challenge_is_offered_once_and_only_right_after_answering() {
        let k = AuthKey::new(KEY.to_vec());
        let mut l = Handshake::new(Role::Listener, k.clone());
        let mut c = Handshake::new(Role::Client, k);
        assert!(c.challenge_early().unwrap().is_none());
        let challenge = l.start().unwrap().unwrap();
        assert!(l.challenge_early().unwrap().is_none());
        c.on_message(&challenge).unwrap();
        let early = c.challenge_early().unwrap().unwrap();
        assert!(early.starts_with(CHALLENGE));
        assert!(c.challenge_early().unwrap().is_none());
    }

    #[test]
    fn a_wrong_key_fails_on_both_sides_with_an_early_challenge() {
        let mut l = Handshake::new(Role::Listener, AuthKey::new(b"a".to_vec()));
        let mut c = Handshake::new(Role::Client, AuthKey::new(b"b".to_vec()));
        let answer = c.on_message(&l.start().unwrap().unwrap()).unwrap().send.unwrap();
        c.challenge_early().unwrap().unwrap();
        assert!(matches!(l.on_message(&answer), Err(Error::AuthenticationFailed(_))));
        let e = c.on_message(&l.failure_message().unwrap()).unwrap_err().to_string();
        assert!(e.contains("rejected our answer"), "{e}");
    }

    #[test]
    fn garbage_instead_of_challenge_is_an_auth_error() {
        let mut c = Handshake::new(Role::Client, AuthKey::new(b"k".to_vec()));
        let e = c.on_message(b"hello").unwrap_err().to_string();
        assert!(e.contains("expected a challenge"), "{e}");
    }
}
