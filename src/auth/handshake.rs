//! [`Handshake`]: the state machine of one side of the handshake, with no I/O.

use std::fmt;

use super::{
    AuthKey, CHALLENGE, CHALLENGE_RANDOM_LEN, FAILURE, NO_KEY, NOISE_HELLO, WELCOME, answer, verify,
};
use crate::util::fill_random;
use crate::{Error, Result};

/// What a side that answered `#FAILURE#` to our digest tells us, after "the listener" or
/// "the client".
const REJECTED: &str = "rejected our answer: the two sides have different authkeys";

/// Whether `e` is a listener's plain refusal of our key (its `#FAILURE#`), as opposed to a
/// handshake that broke off or a listener that failed to prove its own key.
pub(crate) fn refused_by_listener(e: &Error) -> bool {
    matches!(e, Error::AuthenticationFailed(m) if m.strip_prefix("the listener ").is_some_and(|r| r.starts_with(REJECTED)))
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
    /// The random bytes of our challenge (each side sends one); `None`: drawn from the OS
    /// when needed ([`Handshake::new`]).
    random: Option<[u8; CHALLENGE_RANDOM_LEN]>,
}

impl fmt::Debug for Handshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handshake").field("state", &self.state).field("legacy", &self.legacy).finish()
    }
}

impl Handshake {
    /// A handshake for `role` with `key`; legacy MD5 refused. The random bytes of its
    /// challenge are drawn from the operating system when it makes it (an error from the OS
    /// comes out of the step that makes it); [`with_challenge`](Handshake::with_challenge)
    /// takes them instead.
    pub fn new(role: Role, key: AuthKey) -> Handshake {
        let state = match role {
            Role::Listener => State::AwaitAnswer,
            Role::Client => State::AwaitChallenge,
        };
        Handshake {
            key,
            legacy: false,
            state,
            sent: Vec::new(),
            pending_failure: false,
            early: false,
            random: None,
        }
    }

    /// As [`new`](Handshake::new), with the random bytes of the one challenge this side
    /// sends: the handshake then does no I/O of any kind, and its messages are a function of
    /// its inputs. `random` must come from a cryptographically secure source (it is what
    /// makes a recorded answer useless to an eavesdropper), fresh for every handshake.
    ///
    /// ```
    /// use procwire::auth::{AuthKey, CHALLENGE, Handshake, Role};
    /// let mut listener = Handshake::with_challenge(Role::Listener, AuthKey::new(b"k".to_vec()), [7; 40]);
    /// let challenge = listener.start().unwrap().unwrap();
    /// assert_eq!(challenge, [CHALLENGE, b"{sha256}".as_slice(), &[7; 40]].concat());
    /// ```
    pub fn with_challenge(role: Role, key: AuthKey, random: [u8; CHALLENGE_RANDOM_LEN]) -> Handshake {
        Handshake { random: Some(random), ..Handshake::new(role, key) }
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
    /// to its challenge is wrong; a client sends it on meeting an encrypting listener), else
    /// `None`. Taking it clears it.
    pub fn failure_message(&mut self) -> Option<Vec<u8>> {
        std::mem::take(&mut self.pending_failure).then(|| FAILURE.to_vec())
    }

    fn make_challenge(&mut self) -> Result<Vec<u8>> {
        let mut body = b"{sha256}".to_vec();
        let random = match self.random {
            Some(random) => random,
            None => {
                let mut random = [0u8; CHALLENGE_RANDOM_LEN];
                fill_random(&mut random)?;
                random
            }
        };
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
                if msg == NOISE_HELLO && self.state == State::AwaitAnswer {
                    self.pending_failure = true;
                    return Err(Error::AuthenticationFailed(
                        "the client asks for an encrypted connection and this listener does not \
                         encrypt: set encrypt(true) on both sides or on neither"
                            .into(),
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
                    if msg.starts_with(NOISE_HELLO) {
                        // `#FAILURE#` tells the listener at once why this client gives up.
                        self.pending_failure = true;
                        return Err(Error::AuthenticationFailed(
                            "the listener encrypts its connections and this client does not: set \
                             encrypt(true) on both sides or on neither"
                                .into(),
                        ));
                    }
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
                        format!("the {who} {REJECTED}")
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
    use crate::auth::digest::tests::{KEY, SHA256_VECTOR, body, hex};

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

    /// Every message of a handshake whose challenges are given: the same inputs give the same
    /// bytes, and the listener's challenge is the CPython vector's.
    fn transcript(client_random: [u8; CHALLENGE_RANDOM_LEN]) -> Vec<Vec<u8>> {
        let listener_random: [u8; CHALLENGE_RANDOM_LEN] = std::array::from_fn(|i| i as u8);
        let mut l = Handshake::with_challenge(Role::Listener, AuthKey::new(KEY), listener_random);
        let mut c = Handshake::with_challenge(Role::Client, AuthKey::new(KEY), client_random);
        let mut sent = vec![l.start().unwrap().unwrap()];
        loop {
            let to = if sent.len() % 2 == 1 { &mut c } else { &mut l };
            match to.on_message(sent.last().unwrap()).unwrap().send {
                Some(m) => sent.push(m),
                None => break,
            }
        }
        assert_eq!((l.status(), c.status()), (Status::Done, Status::Done));
        sent
    }

    #[test]
    fn a_handshake_with_given_challenges_is_byte_for_byte_deterministic() {
        let ours = [0xab; CHALLENGE_RANDOM_LEN];
        let client_body = [b"{sha256}".as_slice(), &ours].concat();
        let want = vec![
            [CHALLENGE, &body()].concat(),
            [b"{sha256}".to_vec(), hex(SHA256_VECTOR)].concat(),
            WELCOME.to_vec(),
            [CHALLENGE, &client_body].concat(),
            answer(KEY, &client_body, false).unwrap(),
            WELCOME.to_vec(),
        ];
        assert_eq!(transcript(ours), want);
        assert_eq!(transcript(ours), want, "the same inputs, the same bytes");
        assert_ne!(transcript([0xcd; CHALLENGE_RANDOM_LEN])[3], want[3]);
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
