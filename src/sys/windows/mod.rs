//! Windows OS calls: processes, handles handed to children, waiting on process handles,
//! barriers, memory.

use std::io;
use std::path::PathBuf;

mod barrier;
mod inherit;
mod process;
#[cfg(not(miri))]
pub(crate) mod shm;
mod wait;

pub(crate) use barrier::process_barrier;
use inherit::reclaim;
pub(crate) use inherit::{MEMORY, adopt_from_env, adopt_memory_from_env, duplicate_from, pass_to_child};
pub(crate) use process::{
    Sentinel, keep_sentinel, parent_id, prepare_child, reap, signal, spawn, watch_parent,
};
pub(crate) use wait::{MAX_WAIT_HANDLES, is_signalled, wait_handles};

/// A new directory for the user. `%TEMP%` on Windows is already private to its user, and a new
/// directory inherits that ACL.
pub(crate) fn private_tempdir() -> io::Result<PathBuf> {
    Ok(tempfile::Builder::new().prefix("procwire-").tempdir()?.keep())
}
