//! Windows OS calls: processes (not supported yet), barriers, memory.

use std::io;
use std::path::PathBuf;

mod barrier;
mod process;
#[cfg(not(miri))]
pub(crate) mod shm;

pub(crate) use barrier::process_barrier;
pub(crate) use process::{
    Sentinel, fork, keep_sentinel, parent_id, prepare_child, reap, signal, spawn, watch_parent,
};

/// A new directory for the user. `%TEMP%` on Windows is already private to its user, and a new
/// directory inherits that ACL.
pub(crate) fn private_tempdir() -> io::Result<PathBuf> {
    Ok(tempfile::Builder::new().prefix("procwire-").tempdir()?.keep())
}
