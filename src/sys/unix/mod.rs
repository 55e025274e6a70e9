//! Unix OS calls: processes, descriptors inherited by children, `poll(2)`, barriers, memory.

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
