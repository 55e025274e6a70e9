//! OS calls by concern, one module per platform: child processes, process-wide barriers and
//! shared memory. The byte-stream transports live in `crate::transport`, above this.

mod dirs;
#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as os;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as os;

pub(crate) use dirs::{fresh_dir, remove_fresh_dir};
#[cfg(unix)]
pub(crate) use os::{FdKind, fork, poll, wait_fd};
#[cfg(windows)]
pub(crate) use os::{
    MAX_WAIT_HANDLES, MEMORY, adopt_memory_from_env, duplicate_from, is_signalled, wait_handles,
};
pub(crate) use os::{
    Sentinel, adopt_from_env, keep_sentinel, parent_id, pass_to_child, prepare_child, process_barrier, reap,
    signal, spawn, watch_parent,
};

#[cfg(not(miri))]
pub(crate) use os::shm;
/// Under Miri, a heap model of the mapping and the lock (Miri runs neither memfd nor mmap).
#[cfg(miri)]
pub(crate) mod shm_model;
#[cfg(miri)]
pub(crate) use shm_model as shm;
