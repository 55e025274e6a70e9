//! Handles handed to a child process, named in its environment as `HANDLE:KIND:PARENT_PID`
//! and taken there once.
//!
//! Nothing is inherited: the parent makes a duplicate that stays open in the parent (not
//! inheritable, so no other child gets it), and the child takes it with
//! `DuplicateHandle(DUPLICATE_CLOSE_SOURCE)` from the parent it names, which closes the
//! parent's copy in the same step (as CPython's spawn start method does).

use std::io;
use std::os::windows::io::{AsRawHandle, BorrowedHandle, FromRawHandle, OwnedHandle};
use std::process::Command;
use std::ptr;
use std::sync::Mutex;

use windows_sys::Win32::Foundation::{
    DUPLICATE_CLOSE_SOURCE, DUPLICATE_SAME_ACCESS, DuplicateHandle, HANDLE,
};
use windows_sys::Win32::Storage::FileSystem::{FILE_TYPE_PIPE, GetFileType};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcess, PROCESS_DUP_HANDLE};

use crate::error::io_context;

/// Makes a duplicate of `h` for the child that `cmd` spawns and names it in the child's
/// environment variable `var` as `HANDLE:KIND:PARENT_PID`.
///
/// The duplicate stays open in this process until the child takes it, which closes it here;
/// a child that never takes it leaves it open for as long as this process lives.
pub(crate) fn pass_to_child(
    h: BorrowedHandle<'_>,
    kind: &str,
    cmd: &mut Command,
    var: &str,
) -> io::Result<()> {
    let mut dup: HANDLE = ptr::null_mut();
    // SAFETY: a handle the caller keeps open, our own process on both sides, a valid out pointer;
    // the duplicate is not inheritable.
    let ok = unsafe {
        DuplicateHandle(
            GetCurrentProcess(),
            h.as_raw_handle(),
            GetCurrentProcess(),
            &mut dup,
            0,
            0,
            DUPLICATE_SAME_ACCESS,
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    cmd.env(var, format!("{}:{kind}:{}", dup as usize, std::process::id()));
    Ok(())
}

/// The kind a shared-memory section is passed with (a pipe end's kind names its directions).
pub(crate) const MEMORY: &str = "memory";

fn bad(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, why)
}

/// Takes a pipe handle passed with [`pass_to_child`]; returns it and its kind.
///
/// The value must name our parent (a grandchild that inherited the variable is refused, since
/// the number means nothing in its parent), each value is taken once, and what it names must
/// be a pipe.
pub(crate) fn adopt_from_env(var: &str) -> io::Result<(OwnedHandle, String)> {
    let (owned, h, kind) = take_from_env(var)?;
    // SAFETY: a handle we own.
    if unsafe { GetFileType(owned.as_raw_handle()) } != FILE_TYPE_PIPE {
        return Err(bad(format!("handle {h} from {var} is not a pipe")));
    }
    Ok((owned, kind))
}

/// Takes a shared-memory section passed with [`pass_to_child`] as kind [`MEMORY`], with the
/// checks of [`adopt_from_env`] but the last (mapping it is the check that it is a section).
pub(crate) fn adopt_memory_from_env(var: &str) -> io::Result<OwnedHandle> {
    let (owned, h, kind) = take_from_env(var)?;
    if kind != MEMORY {
        return Err(bad(format!("handle {h} from {var} is a {kind}, not shared memory")));
    }
    Ok(owned)
}

/// The handle named by `var`, its value in the parent, and its kind.
fn take_from_env(var: &str) -> io::Result<(OwnedHandle, usize, String)> {
    static ADOPTED: Mutex<Vec<usize>> = Mutex::new(Vec::new());
    let value = std::env::var(var).map_err(|_| bad(format!("environment variable {var} is not set")))?;
    let (h, kind, ppid) = parse(&value).map_err(|why| bad(format!("{var}={value:?}: {why}")))?;
    if ppid != super::parent_id() {
        return Err(bad(format!("{var}={value:?} was passed to another process (our parent is not {ppid})")));
    }
    let mut adopted = ADOPTED.lock().unwrap_or_else(|p| p.into_inner());
    if adopted.contains(&h) {
        return Err(bad(format!("handle {h} from {var} was already taken")));
    }
    let owned = duplicate_from(ppid, h, true).map_err(|e| io_context(e, format_args!("{var}")))?;
    adopted.push(h);
    Ok((owned, h, kind.to_string()))
}

/// The parts of a `HANDLE:KIND:PARENT_PID` value.
fn parse(value: &str) -> Result<(usize, &str, u32), &'static str> {
    let mut parts = value.split(':');
    let (Some(h), Some(kind), Some(ppid), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not HANDLE:KIND:PARENT_PID");
    };
    let h = h.parse().map_err(|_| "bad handle value")?;
    let ppid = ppid.parse().map_err(|_| "bad process id")?;
    Ok((h, kind, ppid))
}

/// Closes the duplicates [`pass_to_child`] made for `cmd`'s child, after its spawn failed:
/// no child exists to take them, so they would stay open in this process for good.
pub(crate) fn reclaim(cmd: &Command) {
    let me = std::process::id();
    for (var, value) in cmd.get_envs() {
        let (Some(var), Some(value)) = (var.to_str(), value.and_then(|v| v.to_str())) else {
            continue;
        };
        if !var.starts_with("PROCWIRE_") {
            continue;
        }
        if let Ok((h, _, ppid)) = parse(value)
            && ppid == me
        {
            // SAFETY: a duplicate pass_to_child made in this process for a child that was
            // never created: still open, and nothing else owns or uses it.
            drop(unsafe { OwnedHandle::from_raw_handle(h as HANDLE) });
        }
    }
}

/// A handle of this process duplicated from handle `value` of process `pid`, with the same
/// access; with `close_source`, the handle in `pid` is closed in the same step.
pub(crate) fn duplicate_from(pid: u32, value: usize, close_source: bool) -> io::Result<OwnedHandle> {
    // SAFETY: asks for the right to duplicate handles out of that process.
    let process = unsafe { OpenProcess(PROCESS_DUP_HANDLE, 0, pid) };
    if process.is_null() {
        let e = io::Error::last_os_error();
        return Err(io_context(e, format_args!("cannot open process {pid} to take its handle")));
    }
    // SAFETY: a new handle that we own.
    let process = unsafe { OwnedHandle::from_raw_handle(process) };
    let mut out: HANDLE = ptr::null_mut();
    let close = if close_source { DUPLICATE_CLOSE_SOURCE } else { 0 };
    // SAFETY: valid process handles and out pointer. Whatever the value, the result is a new
    // handle of ours or an error, never one of our existing handles.
    let ok = unsafe {
        DuplicateHandle(
            process.as_raw_handle(),
            value as HANDLE,
            GetCurrentProcess(),
            &mut out,
            0,
            0,
            DUPLICATE_SAME_ACCESS | close,
        )
    };
    if ok == 0 {
        let e = io::Error::last_os_error();
        return Err(io_context(e, format_args!("cannot take handle {value} of process {pid}")));
    }
    // SAFETY: DuplicateHandle made this handle for us.
    Ok(unsafe { OwnedHandle::from_raw_handle(out) })
}
