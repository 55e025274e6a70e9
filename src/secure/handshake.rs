//! [`Handshake`]: one side of the Noise NNpsk0 handshake, with no I/O.

use std::fmt;

use snow::params::NoiseParams;
use snow::resolvers::{CryptoResolver, DefaultResolver, FallbackResolver, RingResolver};
use snow::types::{Cipher, Dh, Hash, Random};

use super::{HELLO, HELLO_RANDOM_LEN, PROTOCOL, Session, derive_psk};
use crate::auth::{AuthKey, CHALLENGE, FAILURE, Role};
use crate::{Error, Result};

/// Length of Noise messages 1 and 2: an ephemeral public key and the tag of an empty payload.
const MESSAGE_LEN: usize = 32 + super::TAG_LEN;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Listener: the hello is out, message 1 is due.
    AwaitMessage1,
    /// Client: waiting for the listener's hello.
    AwaitHello,
    /// Client: message 1 is out, message 2 is due.
    AwaitMessage2,
    Done,
    Failed,
}

/// The Noise handshake of one side of one connection (sans-IO), the encrypted counterpart of
/// [`crate::auth::Handshake`].
///
/// The listener speaks first ([`start`](Handshake::start)); then each side feeds the peer's
/// messages to [`on_message`](Handshake::on_message) and sends what it returns. After a failed
/// step, [`failure_message`](Handshake::failure_message) says what to tell the peer, so that it
/// fails at once with a clear error instead of waiting for its timeout.
pub struct Handshake {
    role: Role,
    state: State,
    psk: [u8; 32],
    /// The listener's hello (the Noise prologue); the client's is the one it received.
    hello: Vec<u8>,
    /// The random bytes of this side's ephemeral key.
    ephemeral: [u8; 32],
    noise: Option<snow::HandshakeState>,
    failure: Option<&'static [u8]>,
}

impl fmt::Debug for Handshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("secure::Handshake").field("role", &self.role).field("state", &self.state).finish()
    }
}

impl Handshake {
    /// A handshake for `role`, keyed by `key`, with 64 random bytes: the listener's hello takes
    /// the first 32, the ephemeral key the last 32. They must come from a cryptographically
    /// secure source, fresh for every handshake; the handshake then does no I/O of any kind.
    pub fn new(role: Role, key: &AuthKey, random: [u8; 64]) -> Handshake {
        let (hello_random, ephemeral) = random.split_at(HELLO_RANDOM_LEN);
        let state = match role {
            Role::Listener => State::AwaitMessage1,
            Role::Client => State::AwaitHello,
        };
        let hello = match role {
            Role::Listener => [HELLO, hello_random].concat(),
            Role::Client => Vec::new(),
        };
        Handshake {
            role,
            state,
            psk: derive_psk(key),
            hello,
            ephemeral: ephemeral.try_into().expect("32 bytes"),
            noise: None,
            failure: None,
        }
    }

    /// The opening message: the listener's hello; `None` for a client, which waits for it.
    pub fn start(&mut self) -> Option<Vec<u8>> {
        (self.role == Role::Listener && self.state == State::AwaitMessage1).then(|| self.hello.clone())
    }

    /// Takes one message from the peer and returns the one to send back, if any.
    pub fn on_message(&mut self, msg: &[u8]) -> Result<Option<Vec<u8>>> {
        let r = self.step(msg);
        if r.is_err() {
            self.state = State::Failed;
            self.noise = None;
        }
        r
    }

    fn step(&mut self, msg: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.state {
            State::AwaitMessage1 => {
                if msg == FAILURE {
                    return Err(Error::AuthenticationFailed(
                        "the client does not encrypt (it refused our encrypted hello): set \
                         encrypt(true) on both sides or on neither"
                            .into(),
                    ));
                }
                let mut noise = self.build(false)?;
                if msg.len() != MESSAGE_LEN || noise.read_message(msg, &mut []).is_err() {
                    self.failure = Some(FAILURE);
                    return Err(Error::AuthenticationFailed(format!(
                        "the client's encrypted handshake does not verify: the two sides have \
                         different authkeys, the client does not encrypt, or the message was \
                         replayed from another connection ({})",
                        show(msg)
                    )));
                }
                let reply = write(&mut noise)?;
                self.noise = Some(noise);
                self.state = State::Done;
                Ok(Some(reply))
            }
            State::AwaitHello => {
                if msg.starts_with(CHALLENGE) {
                    // Tells a plain listener why the answer it gets is not one.
                    self.failure = Some(HELLO);
                    return Err(Error::AuthenticationFailed(
                        "the listener does not encrypt (it sent the plain protocol's challenge); \
                         this client asks for encryption: set encrypt(true) on both sides or on neither"
                            .into(),
                    ));
                }
                if !msg.starts_with(HELLO) || msg.len() != HELLO.len() + HELLO_RANDOM_LEN {
                    return Err(Error::AuthenticationFailed(format!(
                        "expected the listener's encrypted hello, got {}",
                        show(msg)
                    )));
                }
                self.hello = msg.to_vec();
                let mut noise = self.build(true)?;
                let m1 = write(&mut noise)?;
                self.noise = Some(noise);
                self.state = State::AwaitMessage2;
                Ok(Some(m1))
            }
            State::AwaitMessage2 => {
                if msg == FAILURE {
                    return Err(Error::AuthenticationFailed(
                        "the listener rejected our encrypted handshake: the two sides have different authkeys"
                            .into(),
                    ));
                }
                let noise = self.noise.as_mut().expect("built with message 1");
                if msg.len() != MESSAGE_LEN || noise.read_message(msg, &mut []).is_err() {
                    return Err(Error::AuthenticationFailed(format!(
                        "the listener's encrypted handshake does not verify: different authkeys, \
                         or someone in the middle ({})",
                        show(msg)
                    )));
                }
                self.state = State::Done;
                Ok(None)
            }
            State::Done => Err(Error::Protocol("handshake message after the handshake finished".into())),
            State::Failed => Err(Error::AuthenticationFailed("handshake already failed".into())),
        }
    }

    fn build(&self, initiator: bool) -> Result<snow::HandshakeState> {
        let params: NoiseParams = PROTOCOL.parse().map_err(noise_error)?;
        // Our randomness; ring's AES-GCM and SHA-256; curve25519-dalek's X25519.
        let crypto = FallbackResolver::new(Box::new(RingResolver), Box::new(DefaultResolver));
        let resolver = FallbackResolver::new(Box::new(GivenRandom(self.ephemeral)), Box::new(crypto));
        let builder = snow::Builder::with_resolver(params, Box::new(resolver))
            .prologue(&self.hello)
            .and_then(|b| b.psk(0, &self.psk))
            .map_err(noise_error)?;
        if initiator { builder.build_initiator() } else { builder.build_responder() }.map_err(noise_error)
    }

    /// Whether both sides are authenticated and the keys agreed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// What the handshake is waiting for, in words, for timeout messages.
    pub fn waiting_for(&self) -> &'static str {
        match self.state {
            State::AwaitMessage1 => {
                "waiting for the client's encrypted handshake (does the client set encrypt(true)? \
                 a plain client refuses our hello)"
            }
            State::AwaitHello => {
                "waiting for the listener's encrypted hello (does the listener have an authkey? \
                 or it is not calling accept)"
            }
            State::AwaitMessage2 => "waiting for the listener's encrypted handshake reply",
            State::Done | State::Failed => "nothing",
        }
    }

    /// What to tell the peer after a failed step: `#FAILURE#` from a listener whose client has
    /// another key; the hello's prefix from a client that met a plain listener, which then
    /// reports a client that asks for encryption. Taking it clears it.
    pub fn failure_message(&mut self) -> Option<Vec<u8>> {
        self.failure.take().map(<[u8]>::to_vec)
    }

    /// The transport session of a finished handshake.
    pub fn into_session(self) -> Result<Session> {
        match (self.state, self.noise) {
            (State::Done, Some(mut noise)) => {
                Ok(Session::from_split(noise.is_initiator(), noise.dangerously_get_raw_split()))
            }
            _ => Err(Error::Protocol("the encrypted handshake is not finished".into())),
        }
    }
}

/// Writes the next handshake message (empty payload).
fn write(noise: &mut snow::HandshakeState) -> Result<Vec<u8>> {
    let mut out = vec![0u8; MESSAGE_LEN];
    let n = noise.write_message(&[], &mut out).map_err(noise_error)?;
    out.truncate(n);
    Ok(out)
}

fn noise_error(e: snow::Error) -> Error {
    Error::Protocol(format!("noise: {e}"))
}

/// A short printable form of a peer's message for error texts.
fn show(msg: &[u8]) -> String {
    let head = &msg[..msg.len().min(24)];
    let more = if msg.len() > 24 { "..." } else { "" };
    format!("got {:?}{more}, {} bytes", String::from_utf8_lossy(head), msg.len())
}

/// A resolver whose only randomness is the 32 bytes given: the ephemeral key.
struct GivenRandom([u8; 32]);

impl CryptoResolver for GivenRandom {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(Bytes(self.0.to_vec())))
    }
    fn resolve_dh(&self, _: &snow::params::DHChoice) -> Option<Box<dyn Dh>> {
        None
    }
    fn resolve_hash(&self, _: &snow::params::HashChoice) -> Option<Box<dyn Hash>> {
        None
    }
    fn resolve_cipher(&self, _: &snow::params::CipherChoice) -> Option<Box<dyn Cipher>> {
        None
    }
}

/// Hands out the bytes it holds, once.
struct Bytes(Vec<u8>);

impl Random for Bytes {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> std::result::Result<(), snow::Error> {
        if dest.len() > self.0.len() {
            return Err(snow::Error::Rng);
        }
        let rest = self.0.split_off(dest.len());
        dest.copy_from_slice(&self.0);
        self.0 = rest;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(lk: &[u8], ck: &[u8]) -> (Handshake, Handshake) {
        (
            Handshake::new(Role::Listener, &AuthKey::new(lk.to_vec()), [1; 64]),
            Handshake::new(Role::Client, &AuthKey::new(ck.to_vec()), [2; 64]),
        )
    }

    #[test]
    fn same_inputs_give_the_same_bytes() {
        let run = || {
            let (mut l, mut c) = pair(b"k", b"k");
            let hello = l.start().unwrap();
            let m1 = c.on_message(&hello).unwrap().unwrap();
            let m2 = l.on_message(&m1).unwrap().unwrap();
            assert!(c.on_message(&m2).unwrap().is_none());
            assert!(l.is_done() && c.is_done());
            (hello, m1, m2)
        };
        let (hello, m1, m2) = run();
        assert_eq!(hello, [HELLO, &[1; 32]].concat());
        assert_eq!((m1.len(), m2.len()), (MESSAGE_LEN, MESSAGE_LEN));
        assert_eq!(run(), (hello, m1, m2));
    }

    #[test]
    fn a_wrong_key_fails_at_message_1_and_the_client_hears_why() {
        let (mut l, mut c) = pair(b"k", b"other");
        let m1 = c.on_message(&l.start().unwrap()).unwrap().unwrap();
        let e = l.on_message(&m1).unwrap_err();
        assert!(e.to_string().contains("different authkeys"), "{e}");
        let fail = l.failure_message().unwrap();
        let e = c.on_message(&fail).unwrap_err();
        assert!(e.to_string().contains("rejected our encrypted handshake"), "{e}");
    }

    #[test]
    fn message_1_of_another_connection_is_refused() {
        let (mut l1, mut c1) = pair(b"k", b"k");
        let m1 = c1.on_message(&l1.start().unwrap()).unwrap().unwrap();
        // A second listener handshake: another hello (another prologue).
        let mut l2 = Handshake::new(Role::Listener, &AuthKey::new(b"k".to_vec()), [3; 64]);
        let _ = l2.start().unwrap();
        assert!(l2.on_message(&m1).is_err());
        assert!(l1.on_message(&m1).is_ok());
    }

    #[test]
    fn a_plain_challenge_is_recognised_and_answered_with_the_hello_prefix() {
        let (_, mut c) = pair(b"k", b"k");
        let e = c.on_message(b"#CHALLENGE#{sha256}0123456789012345678901234567890123456789").unwrap_err();
        assert!(e.to_string().contains("does not encrypt"), "{e}");
        assert_eq!(c.failure_message().unwrap(), HELLO);
    }
}

/// Sealing and opening in place with ring is Noise's transport as snow implements it: the same
/// keys, nonces and rekeys give the same bytes.
#[cfg(test)]
mod same_as_snow {
    use super::*;
    use crate::secure::{MAX_PLAINTEXT, REKEY_AFTER, Session, TAG_LEN};

    /// One side's session and snow's transport state of the same finished handshake.
    fn both(hs: &mut Handshake) -> (Session, snow::TransportState) {
        let mut noise = hs.noise.take().expect("a finished handshake");
        let session = Session::from_split(noise.is_initiator(), noise.dangerously_get_raw_split());
        (session, noise.into_transport_mode().unwrap())
    }

    /// Seals `plain` both ways, compares the bytes, and opens each with the other receiver.
    fn check(
        from: &mut (Session, snow::TransportState),
        to: &mut (Session, snow::TransportState),
        plain: &[u8],
        i: u64,
    ) {
        // snow leaves the rekey's timing to its user: as procwire's rule, before every
        // REKEY_AFTER-th message.
        if i > 0 && i.is_multiple_of(REKEY_AFTER) {
            from.1.rekey_outgoing();
            to.1.rekey_incoming();
        }
        let mut ours = Vec::new();
        if plain.is_empty() { from.0.seal_end(&mut ours) } else { from.0.seal(plain, &mut ours) }.unwrap();
        let mut theirs = vec![0u8; plain.len() + TAG_LEN];
        let n = from.1.write_message(plain, &mut theirs).unwrap();
        assert_eq!(&ours[4..], &theirs[..n], "message {i} of {} bytes", plain.len());
        assert_eq!(ours[..4], ((plain.len() + TAG_LEN) as u32).to_be_bytes());
        let mut out = vec![0u8; plain.len()];
        assert_eq!(to.1.read_message(&ours[4..], &mut out).unwrap(), plain.len());
        assert_eq!(out, plain, "snow opens ours, message {i}");
        let mut theirs = theirs[..n].to_vec();
        assert_eq!(to.0.open_in_place(&mut theirs).unwrap(), plain.len());
        assert_eq!(&theirs[..plain.len()], plain, "we open snow's, message {i}");
    }

    #[test]
    fn every_message_and_rekey_gives_snows_bytes_both_ways() {
        let (mut c, mut l) = crate::secure::session::tests::finished();
        let (mut c, mut l) = (both(&mut c), both(&mut l));
        let big: Vec<u8> = (0..MAX_PLAINTEXT).map(|i| (i * 13) as u8).collect();
        // Across two rekeys of each direction, with a full and an empty (end) message around each.
        for i in 0..2 * REKEY_AFTER + 3 {
            let plain: &[u8] = match i % REKEY_AFTER {
                0 | 2 => &big,
                1 => &[],
                r => &big[..(r % 40) as usize + 1],
            };
            check(&mut c, &mut l, plain, i);
            check(&mut l, &mut c, &plain[..plain.len() / 2], i);
        }
    }
}

/// The worked example of SPEC.md §13.7, byte for byte.
#[cfg(test)]
mod spec_example {
    use super::*;
    use crate::secure::Inbox;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn the_worked_example_of_the_spec() {
        let key = AuthKey::new(b"procwire-test-key".to_vec());
        let mut l = Handshake::new(Role::Listener, &key, std::array::from_fn(|i| i as u8));
        let mut c = Handshake::new(Role::Client, &key, std::array::from_fn(|i| 0x80 + i as u8));
        let hello = l.start().unwrap();
        let m1 = c.on_message(&hello).unwrap().unwrap();
        let m2 = l.on_message(&m1).unwrap().unwrap();
        assert!(c.on_message(&m2).unwrap().is_none());
        let (mut cs, mut ls) = (c.into_session().unwrap(), l.into_session().unwrap());
        let mut wire = Vec::new();
        cs.seal(&[0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o'], &mut wire).unwrap();
        let mut end = Vec::new();
        cs.seal_end(&mut end).unwrap();
        let got = [hex(&derive_psk(&key)), hex(&hello), hex(&m1), hex(&m2), hex(&wire), hex(&end)];
        let mut inbox = Inbox::new();
        inbox.push(&wire);
        let mut plain = Vec::new();
        inbox.open_all(&mut ls, &mut plain).unwrap();
        assert_eq!(plain, b"\0\0\0\x05hello");
        assert_eq!(got, EXPECTED);
    }

    const EXPECTED: [&str; 6] = [
        "2cab83119f7880b9db20de78a9bf402e347cc3115bccc1315385e1eb85b8b034",
        "234e4f49534523000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        "605a725d2a4adfeeb1a29e17edd621c1b7593ee8cdbc44ac6c4ab6e2f805d23c1bb011632b233b805af594dd7f94571c",
        "358072d6365880d1aeea329adf9121383851ed21a28e3b75e965d0d2cd16625493c999fc2811668d9b296750ed460029",
        "00000019befc9633997c117459d0d5f09e5b81cea1796a89e129e31a5c",
        "000000101bfc0dda25629dc84b21d8d791d492d2",
    ];
}
