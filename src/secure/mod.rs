//! Encrypted connections keyed by the authkey (feature `encrypt`), sans-IO.
//!
//! Two peers that hold the same [`AuthKey`](crate::AuthKey) run the Noise protocol
//! `Noise_NNpsk0_25519_AESGCM_SHA256` with a pre-shared key derived from the authkey
//! ([`derive_psk`]), then carry the byte stream of ordinary frames inside Noise transport
//! messages. That gives mutual authentication by the key, confidentiality, integrity, replay
//! protection and forward secrecy, bound to the connection: a party in the middle that relays the
//! handshake learns nothing and cannot inject or alter a byte.
//!
//! Every message, of the handshake and after it, travels as one frame of the plain protocol (see
//! [`crate::codec`]), so the same transports carry it, message-mode pipes included:
//!
//! ```text
//! listener -> client   b"#NOISE#" + 32 random bytes        the hello, also the Noise prologue
//! client   -> listener Noise message 1 (-> psk, e): 48 bytes
//! listener -> client   Noise message 2 (<- e, ee): 48 bytes, or b"#FAILURE#" (wrong key)
//! then, both ways      transport messages: AES-256-GCM over up to 65,519 plaintext bytes, 16-byte tag
//! at a clean close     the end message (close-notify): a transport message with no plaintext
//! ```
//!
//! The plaintext is the stream of ordinary frames (headers included), so a frame's length is
//! encrypted and authenticated with its payload, and a frame larger than one transport message
//! is carried by several. Each direction rekeys (Noise `REKEY`) after [`REKEY_AFTER`] messages.
//! snow runs the handshake and hands over the keys; transport messages are sealed and opened in
//! place with ring, as Noise defines them for AESGCM. A stream that ends without the end
//! message was cut: the receiver reports an [`Error::Integrity`](crate::Error::Integrity).
//!
//! This module does no I/O: [`Handshake`] turns the peer's messages into ours, and [`Session`]
//! seals and opens transport messages. Randomness is passed in, as in [`crate::auth`].
//!
//! ```
//! use procwire::AuthKey;
//! use procwire::auth::Role;
//! use procwire::secure::Handshake;
//! let key = AuthKey::new(b"secret".to_vec());
//! let mut listener = Handshake::new(Role::Listener, &key, [1; 64]);
//! let mut client = Handshake::new(Role::Client, &key, [2; 64]);
//! let hello = listener.start().expect("the listener speaks first");
//! let m1 = client.on_message(&hello)?.expect("message 1");
//! let m2 = listener.on_message(&m1)?.expect("message 2");
//! assert!(client.on_message(&m2)?.is_none());
//! let (mut l, mut c) = (listener.into_session()?, client.into_session()?);
//! let mut wire = Vec::new();
//! c.seal(b"hello", &mut wire)?;
//! let mut inbox = procwire::secure::Inbox::new();
//! inbox.push(&wire);
//! let mut plain = Vec::new();
//! inbox.open_all(&mut l, &mut plain)?;
//! assert_eq!(plain, b"hello");
//! # Ok::<(), procwire::Error>(())
//! ```

mod cipher;
mod handshake;
mod session;

pub use handshake::Handshake;
pub(crate) use session::integrity_error;
#[cfg(test)]
pub(crate) use session::tests::sessions as test_sessions;
pub use session::{Inbox, Session};

/// The Noise protocol name: pattern NNpsk0, X25519, AES-256-GCM, SHA-256.
pub const PROTOCOL: &str = "Noise_NNpsk0_25519_AESGCM_SHA256";
/// The prefix of the listener's first message, which marks an encrypting listener.
pub const HELLO: &[u8] = crate::auth::NOISE_HELLO;
/// Random bytes in the listener's hello.
pub const HELLO_RANDOM_LEN: usize = 32;
/// The largest Noise message.
pub const MAX_MESSAGE: usize = 65_535;
/// The authentication tag of every transport message.
pub const TAG_LEN: usize = 16;
/// The most plaintext one transport message carries.
pub const MAX_PLAINTEXT: usize = MAX_MESSAGE - TAG_LEN;
/// Each direction rotates its key after this many transport messages (at most 4 GiB of
/// plaintext under one key).
pub const REKEY_AFTER: u64 = 1 << 16;

/// Context string of the key derivation: a key derived here is used for nothing else.
const PSK_INFO: &[u8] = b"procwire noise psk v1";

/// The 32-byte Noise pre-shared key of an authkey: HKDF-SHA256 with no salt, the authkey as
/// input key material and `b"procwire noise psk v1"` as info.
///
/// ```
/// use procwire::{AuthKey, secure::derive_psk};
/// let a = derive_psk(&AuthKey::new(b"k".to_vec()));
/// assert_eq!(a, derive_psk(&AuthKey::new(b"k".to_vec())));
/// assert_ne!(a, derive_psk(&AuthKey::new(b"K".to_vec())));
/// ```
pub fn derive_psk(key: &crate::AuthKey) -> [u8; 32] {
    let mut psk = [0u8; 32];
    hkdf::Hkdf::<sha2::Sha256>::new(None, key.as_bytes())
        .expand(PSK_INFO, &mut psk)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    psk
}
