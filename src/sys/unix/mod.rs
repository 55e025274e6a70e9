//! Unix OS calls: processes, descriptors inherited by children, `poll(2)`, barriers, memory.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

mod barrier;
mod inherit;
mod poll;
mod process;
#[cfg(not(miri))]
pub(crate) mod shm;

pub(crate) use barrier::process_barrier;
pub(crate) use inherit::{FdKind, adopt_from_env, pass_to_child};
pub(crate) use poll::{poll, wait_fd};
pub(crate) use process::{
    Sentinel, fork, keep_sentinel, parent_id, prepare_child, reap, signal, spawn, watch_parent,
};

/// A new directory only the owner can enter (mode 0700).
pub(crate) fn private_tempdir() -> io::Result<PathBuf> {
    Ok(tempfile::Builder::new()
        .prefix("procwire-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()?
        .keep())
}
