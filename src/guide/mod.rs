//! The guide: how to use procwire, one chapter per use, with the rules and limits that the
//! reference documentation of each item states piece by piece. It holds no code.
//!
//! - [`connections`]: listeners, clients and connections; what they guarantee; errors; the
//!   `procwire` command's `echo` and `ping` for checking a deployment.
//! - [`python`]: talking to CPython's `multiprocessing.connection` with the same key.
//! - [`security`]: what the key protects and what it does not.
//! - [`processes`]: running a Rust function in a child process.
//! - [`queues`]: queues shared between processes.
//! - [`pool`]: a pool of worker processes.
//! - [`managers`]: a server process of shared objects used through proxies.
//! - [`shared_memory`]: values and arrays in shared memory, and passing open handles.
//! - [`threads`]: the same program on threads (`procwire::dummy`), and the in-process transport.
//! - [`platforms`]: what runs where, and how it is tested.
//! - [`contributing`]: setting up, testing, and how the source is laid out.
//!
//! Paths such as `examples/exchange.rs`, `tests/relay.rs` or `spec/queue.md` name files of the
//! [repository](https://github.com/procwire/procwire).
//!
//! The wire protocol is in [SPEC.md](https://github.com/procwire/procwire/blob/main/SPEC.md),
//! and measured speed in
//! [BENCHMARKS.md](https://github.com/procwire/procwire/blob/main/BENCHMARKS.md).

pub mod connections {
    #![doc = include_str!("connections.md")]
}

pub mod python {
    #![doc = include_str!("python.md")]
}

pub mod security {
    #![doc = include_str!("security.md")]
}

pub mod processes {
    #![doc = include_str!("processes.md")]
}

pub mod queues {
    #![doc = include_str!("queues.md")]
}

pub mod pool {
    #![doc = include_str!("pool.md")]
}

pub mod managers {
    #![doc = include_str!("managers.md")]
}

pub mod shared_memory {
    #![doc = include_str!("shared_memory.md")]
}

pub mod threads {
    #![doc = include_str!("threads.md")]
}

pub mod platforms {
    #![doc = include_str!("platforms.md")]
}

pub mod contributing {
    #![doc = include_str!("contributing.md")]
}

/// README.md's code blocks, compiled and run as doc tests so that the front page stays true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct Readme;
