//! # procwire
//!
//! Fast, authenticated messaging between processes: a [`Listener`] and a [`Client`] that
//! exchange whole messages over Unix domain sockets, TCP, or Windows named pipes, protected by
//! a shared key, wire-compatible with CPython's `multiprocessing.connection`.
//!
//! ```
//! use procwire::{Address, AuthKey, Client, Family, Listener};
//!
//! let key = AuthKey::new(b"secret".to_vec());
//! let listener = Listener::builder().authkey(key.clone()).bind(&Address::fresh(Family::Tcp)?)?;
//! let addr = listener.address().clone();
//! let server = std::thread::spawn(move || -> procwire::Result<()> {
//!     let mut conn = listener.accept()?;
//!     let msg = conn.recv_bytes()?;
//!     conn.send_bytes(&msg)
//! });
//! let mut conn = Client::builder().authkey(key).connect(&addr)?;
//! conn.send_bytes(b"hello")?;
//! assert_eq!(conn.recv_bytes()?, b"hello");
//! server.join().unwrap()?;
//! # Ok::<(), procwire::Error>(())
//! ```
//!
//! The wire protocol is written down in `SPEC.md`. Layers: [`codec`] (framing, no I/O),
//! [`auth`] (the handshake, no I/O), [`Connection`] (messages over a stream), [`Listener`] and
//! [`Client`] (endpoints), and a transport per platform underneath. On top: [`wait()`] over many
//! of them, [`process`] (child processes that run a Rust function, made runnable there by
//! `#[procwire::function]`), [`queue`] (queues shared between processes), [`manager`] (a server
//! process of shared objects used through proxies),
//! [`pool`] (a pool of worker processes with `map`, `imap` and `apply_async`), and [`shared`]
//! (values and arrays in shared memory). [`dummy`] has the same API over threads: a program
//! switches from processes to threads by changing `use procwire as pw` to
//! `use procwire::dummy as pw`.
//!
//! The [`guide`] has a chapter per use (connections, talking to Python, security, processes,
//! queues, pools, managers, shared memory, threads, platforms) with the rules and limits.

#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// The derives of `Serialize` and `Deserialize` for the crate's own messages, taken from
// serde_derive itself so that serde's `derive` feature stays the user's choice.
#[macro_use]
extern crate serde_derive;

// The code `#[procwire::function]` generates names `::procwire`; the crate's own tests use it.
#[cfg(test)]
extern crate self as procwire;

mod address;
pub mod auth;
pub mod codec;
pub mod connection;
pub mod dummy;
mod error;
pub mod guide;
#[cfg(any(unix, windows))]
pub mod handles;
mod listener;
pub mod manager;
pub mod pool;
pub mod process;
pub mod queue;
#[cfg(feature = "encrypt")]
#[cfg_attr(docsrs, doc(cfg(feature = "encrypt")))]
pub mod secure;
mod sentinel;
pub mod shared;
mod sys;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod tokio;
mod trace;
mod transport;
mod util;
pub mod wait;

pub use address::{Address, Family, ToAddress};
pub use auth::AuthKey;
pub use connection::{Connection, PeerCredentials, PipeKind, Receiver, Sender, pipe, pipe_with};
pub use error::{Error, RemoteKind, Result};
pub use listener::{Client, ClientBuilder, Incoming, Listener, ListenerBuilder};
pub use wait::{Waitable, wait, wait_timeout};

#[cfg(feature = "macros")]
pub use procwire_macros::{function, main};

/// What the code `#[procwire::function]` generates names; not an API.
#[doc(hidden)]
pub mod __private {
    pub use crate::process::registered::Registration;
    pub use inventory;
}

/// The child entries the crate provides itself, which [`process::init`] finds without the
/// program listing them. The crate root wires them in, so that the process layer reaches the
/// layers above it (the pool's worker, the manager's server) only through this table and never
/// names them.
static BUILTIN_ENTRIES: &[&dyn process::Entry] = &[&pool::WORKER, &manager::SERVE];
