//! Unix transports: Unix domain sockets (path and Linux abstract names), TCP through socket2,
//! and OS pipes for one-way `pipe()`.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use crate::Family;

mod addr;
mod cred;
mod fd_pass;
mod listener;
mod poll;
mod stream;

pub(crate) use listener::{BindOptions, RawListener};
pub(crate) use poll::{Pollable, wait_any, wait_ready_with};
pub(crate) use stream::{Stream, connect, pipe};

pub(crate) const DEFAULT_FAMILY: Family = Family::Unix;

/// A new directory only the owner can enter (mode 0700).
pub(crate) fn private_tempdir() -> io::Result<PathBuf> {
    Ok(tempfile::Builder::new()
        .prefix("procwire-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()?
        .keep())
}
