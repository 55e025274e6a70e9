//! Windows OS calls: processes (not supported yet), barriers, memory.

mod barrier;
mod process;
#[cfg(not(miri))]
pub(crate) mod shm;

pub(crate) use barrier::process_barrier;
pub(crate) use process::{
    Sentinel, fork, keep_sentinel, parent_id, prepare_child, reap, signal, spawn, watch_parent,
};
