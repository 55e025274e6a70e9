//! Child processes on Windows: not supported yet. Every call that would make or manage one
//! fails with `Unsupported` (the Windows process issue replaces these), and no [`Sentinel`]
//! can exist.

use std::io;
use std::process::Command;
use std::time::Instant;

/// A child process's exit, for `wait`. Child processes (`procwire::process`) need connections
/// passed to children, which Windows does not support yet, so no sentinel is ever made here.
#[derive(Debug)]
pub(crate) enum Sentinel {}

impl Sentinel {
    /// Whether the child has exited (never called: there are no sentinels on Windows).
    pub(crate) fn wait(&self, _deadline: Option<Instant>) -> io::Result<bool> {
        match *self {}
    }
}

/// The Windows error for everything about child processes.
fn process_unsupported() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "procwire child processes are not supported on Windows yet (connections cannot be passed to a child)",
    )
}

/// Child processes are not supported on Windows: always an `Unsupported` error.
pub(crate) fn prepare_child(_cmd: &mut Command, _var: &str, _daemon: bool) -> io::Result<Sentinel> {
    Err(process_unsupported())
}

/// Nothing to keep on Windows.
pub(crate) fn keep_sentinel(_var: &str) {}

/// Nothing to watch on Windows.
pub(crate) fn watch_parent() {}

/// Child processes are not supported on Windows: always an `Unsupported` error.
pub(crate) fn spawn(_cmd: Command, _daemon: bool) -> io::Result<u32> {
    Err(process_unsupported())
}

/// Child processes are not supported on Windows: always an `Unsupported` error.
pub(crate) fn reap(_pid: u32, _block: bool) -> io::Result<Option<i32>> {
    Err(process_unsupported())
}

/// Child processes are not supported on Windows: always an `Unsupported` error.
pub(crate) fn signal(_pid: u32, _kill: bool) -> io::Result<()> {
    Err(process_unsupported())
}

/// Unknown on Windows (0, which is no process's parent id here).
pub(crate) fn parent_id() -> u32 {
    0
}

/// There is no fork on Windows: always an `Unsupported` error.
///
/// # Safety
///
/// None needed; `unsafe` only to match the Unix version.
pub(crate) unsafe fn fork() -> io::Result<Option<(u32, Sentinel)>> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "fork does not exist on Windows"))
}
