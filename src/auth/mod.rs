//! HMAC challenge-response authentication, byte-compatible with CPython's
//! `multiprocessing.connection` (`deliver_challenge` / `answer_challenge`).
//!
//! This module is sans-IO: [`Handshake`] is a state machine that takes the peer's handshake
//! messages (frame payloads) and says what to send back. The connection layer moves the
//! messages, and draws the random bytes of our challenge
//! ([`Handshake::with_challenge`]), as quinn-proto's caller passes it time and randomness. The exchange, for each direction, is:
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

mod digest;
mod handshake;
mod key;

pub use self::digest::{Digest, answer, verify};
pub(crate) use self::handshake::refused_by_listener;
pub use self::handshake::{Handshake, Output, Role, Status};
pub use self::key::AuthKey;

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
/// The prefix of an encrypting listener's first message (see `secure`, feature `encrypt`). A
/// plain client that receives it says the listener encrypts; a plain listener that receives it
/// as an answer says the client asks for encryption (an encrypting client sends it on meeting a
/// plain listener's challenge).
pub const NOISE_HELLO: &[u8] = b"#NOISE#";
/// Random bytes in a modern challenge (CPython's `MESSAGE_LENGTH`).
pub const CHALLENGE_RANDOM_LEN: usize = 40;
/// Length of a legacy (CPython <= 3.11) challenge body.
pub const LEGACY_CHALLENGE_LEN: usize = 20;
/// Length of a legacy raw HMAC-MD5 answer.
pub const LEGACY_ANSWER_LEN: usize = 16;
/// The most bytes any handshake message may have (CPython reads at most 256).
pub const MAX_HANDSHAKE_MESSAGE: u64 = 256;
