//! Private directories for fresh Unix socket addresses, removed again with their listener.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::util::lock;

/// Private directories made by `Address::fresh(Family::Unix)`, removed with their listener.
static FRESH_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Makes a private directory for a fresh socket address and remembers it.
pub(crate) fn fresh_dir() -> std::io::Result<PathBuf> {
    let dir = super::os::private_tempdir()?;
    lock(&FRESH_DIRS).push(dir.clone());
    Ok(dir)
}

/// Removes `dir` if `Address::fresh` made it (and it is empty by now).
pub(crate) fn remove_fresh_dir(dir: &Path) {
    let mut dirs = lock(&FRESH_DIRS);
    if let Some(i) = dirs.iter().position(|d| d == dir) {
        dirs.swap_remove(i);
        let _ = std::fs::remove_dir(dir);
    }
}
