//! Unix transports: Unix domain sockets (path and Linux abstract names), TCP through socket2,
//! and OS pipes for one-way `pipe()`.

mod addr;
mod cred;
mod fd_pass;
mod listener;
mod poll;
mod poll_set;
pub(crate) mod shm_region;
mod stream;

pub(crate) use listener::{BindOptions, RawListener};
pub(crate) use poll::{Pollable, wait_any, wait_ready_with};
pub(crate) use poll_set::PollSet;
pub(crate) use stream::{Stream, connect, pipe};
