//! Transports: one [`Stream`] type and one [`RawListener`] type over Unix domain sockets, TCP
//! and Windows named pipes. Platform code lives in `unix.rs` and `windows.rs` only; the rest of
//! the crate sees the types re-exported here.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as sys;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as sys;

#[cfg(unix)]
#[path = "shm_unix.rs"]
pub(crate) mod shm;
#[cfg(windows)]
#[path = "shm_windows.rs"]
pub(crate) mod shm;

pub(crate) use sys::{
    BindOptions, Pollable, RawListener, Sentinel, Stream, connect, fork, keep_sentinel, parent_id, pipe,
    prepare_child, reap, signal, spawn, wait_any, wait_ready, wait_ready_with, watch_parent,
};

/// The socket addresses a TCP host name or literal stands for.
pub(crate) fn resolve(
    addr: &crate::Address,
    host: &str,
    port: u16,
) -> crate::Result<Vec<std::net::SocketAddr>> {
    use std::net::ToSocketAddrs;
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| addr.invalid(format!("cannot resolve host: {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(addr.invalid("host resolves to no address"));
    }
    Ok(addrs)
}

/// The platform's default family.
pub(crate) const DEFAULT_FAMILY: crate::Family = sys::DEFAULT_FAMILY;

/// Private directories made by `Address::fresh(Family::Unix)`, removed with their listener.
static FRESH_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Makes a private directory for a fresh socket address and remembers it.
pub(crate) fn fresh_dir() -> std::io::Result<PathBuf> {
    let dir = sys::private_tempdir()?;
    FRESH_DIRS.lock().unwrap_or_else(|p| p.into_inner()).push(dir.clone());
    Ok(dir)
}

/// Removes `dir` if `Address::fresh` made it (and it is empty by now).
pub(crate) fn remove_fresh_dir(dir: &Path) {
    let mut dirs = FRESH_DIRS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(i) = dirs.iter().position(|d| d == dir) {
        dirs.swap_remove(i);
        let _ = std::fs::remove_dir(dir);
    }
}
