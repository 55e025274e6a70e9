//! Child processes on Windows: spawn, reap, terminate, and the process handle, which is
//! signalled when the process exits, as the sentinel. Daemon children are put in a job object
//! that ends them when this process ends.

use std::collections::HashMap;
use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use windows_sys::Win32::Foundation::HANDLE;
use windows_sys::Win32::System::Threading::{GetExitCodeProcess, TerminateProcess};

use super::wait::{is_signalled, wait_handles};

/// The exit code `terminate` gives (as CPython's `TERMINATE`); reported as minus SIGTERM.
const TERMINATED: u32 = 0x10000;
/// The exit code `kill` gives; reported as minus SIGKILL, as on Unix.
const KILLED: u32 = 0x10009;
const SIGTERM: i32 = 15;
const SIGKILL: i32 = 9;
/// `STATUS_STACK_BUFFER_OVERRUN`, the code of `__fastfail`, which `std::process::abort` uses;
/// reported as minus SIGABRT.
const FAST_FAIL: u32 = 0xC000_0409;
const SIGABRT: i32 = 6;
/// `STATUS_ACCESS_VIOLATION`; reported as minus SIGSEGV.
const ACCESS_VIOLATION: u32 = 0xC000_0005;
const SIGSEGV: i32 = 11;

/// A child process's exit: its process handle, signalled when it exits.
#[derive(Debug)]
pub(crate) struct Sentinel {
    process: OwnedHandle,
}

impl Sentinel {
    /// Whether the child has exited, waiting until `deadline` (`None`: forever).
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> io::Result<bool> {
        Ok(wait_handles(&[self.raw()], deadline)?.is_some())
    }

    /// The process handle, for one wait over several objects.
    pub(crate) fn raw(&self) -> HANDLE {
        self.process.as_raw_handle()
    }
}

/// What [`spawn`] needs from [`prepare_child`].
#[derive(Debug)]
pub(crate) struct Prepared {
    daemon: bool,
}

/// Nothing goes into the child's environment for its exit (its process handle is the
/// sentinel); notes whether it is a daemon.
pub(crate) fn prepare_child(_cmd: &mut Command, _var: &str, daemon: bool) -> io::Result<Prepared> {
    Ok(Prepared { daemon })
}

/// Nothing to keep: the parent waits on the child's process handle.
pub(crate) fn keep_sentinel(_var: &str) {}

/// Nothing to watch: the job object of the parent ends daemons.
pub(crate) fn watch_parent() {}

/// Process handles of the children not reaped yet, by pid: held until reaped, so a pid is
/// never reused while the parent may still signal it.
static CHILDREN: Mutex<Option<HashMap<u32, OwnedHandle>>> = Mutex::new(None);

fn child_handle(pid: u32) -> io::Result<OwnedHandle> {
    let children = CHILDREN.lock().unwrap_or_else(|p| p.into_inner());
    match children.as_ref().and_then(|c| c.get(&pid)) {
        Some(h) => h.try_clone(),
        None => {
            Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{pid} is not a child of this process")))
        }
    }
}

/// Spawns `cmd`; returns the child's pid and sentinel. A daemon joins the job that ends it
/// with this process just after it starts (it is killed if it cannot join): it starts no child
/// of its own before its parent's start message, which comes after that, but a parent that
/// dies in between leaves it outside the job, to give up at its start timeout.
pub(crate) fn spawn(mut cmd: Command, prepared: Prepared) -> io::Result<(u32, Sentinel)> {
    let child = match spawn_retrying(&mut cmd) {
        Ok(child) => child,
        Err(e) => {
            super::reclaim(&cmd);
            return Err(e);
        }
    };
    let pid = child.id();
    let process = OwnedHandle::from(child);
    if prepared.daemon
        && let Err(e) = daemon_job().and_then(|job| assign(job, &process))
    {
        // SAFETY: a process handle we own, with the terminate right CreateProcess gives.
        unsafe { TerminateProcess(process.as_raw_handle(), KILLED) };
        return Err(e);
    }
    let sentinel = Sentinel { process: process.try_clone()? };
    CHILDREN.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_default().insert(pid, process);
    Ok((pid, sentinel))
}

/// `cmd.spawn()`, tried up to three times while it fails with `ERROR_INTERNAL_ERROR`: that code
/// names no fault of the request, and a failed start leaves no process behind (Wine on a loaded
/// machine has returned it for one start among hundreds).
fn spawn_retrying(cmd: &mut Command) -> io::Result<std::process::Child> {
    use windows_sys::Win32::Foundation::ERROR_INTERNAL_ERROR;
    let mut tries = 1;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(ERROR_INTERNAL_ERROR as i32) && tries < 3 => tries += 1,
            done => return done,
        }
    }
}

/// The job every daemon child joins: made once and never closed, so the system closes it
/// when this process ends, however it ends, and `KILL_ON_JOB_CLOSE` then ends its members.
/// Children of the members do not join it (`SILENT_BREAKAWAY_OK`): a daemon's own non-daemon
/// children outlive it, as on Unix.
fn daemon_job() -> io::Result<HANDLE> {
    use windows_sys::Win32::System::JobObjects::{
        CreateJobObjectW, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE, JOB_OBJECT_LIMIT_SILENT_BREAKAWAY_OK,
        JOBOBJECT_EXTENDED_LIMIT_INFORMATION, JobObjectExtendedLimitInformation, SetInformationJobObject,
    };
    static JOB: OnceLock<usize> = OnceLock::new();
    if let Some(&job) = JOB.get() {
        return Ok(job as HANDLE);
    }
    // SAFETY: no security attributes (not inheritable), no name.
    let job = unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) };
    if job.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new handle we own.
    let job = unsafe { OwnedHandle::from_raw_handle(job) };
    // SAFETY: plain data; zero is "no limit" for every field.
    let mut info: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = unsafe { std::mem::zeroed() };
    info.BasicLimitInformation.LimitFlags =
        JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE | JOB_OBJECT_LIMIT_SILENT_BREAKAWAY_OK;
    // SAFETY: a job handle we own and a pointer to a structure of the size given.
    let ok = unsafe {
        SetInformationJobObject(
            job.as_raw_handle(),
            JobObjectExtendedLimitInformation,
            (&raw const info).cast(),
            size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    // Two threads may get here at once: the loser's job is closed unused.
    let raw = job.as_raw_handle() as usize;
    if JOB.set(raw).is_ok() {
        std::mem::forget(job);
    }
    Ok(*JOB.get().unwrap_or(&raw) as HANDLE)
}

fn assign(job: HANDLE, process: &OwnedHandle) -> io::Result<()> {
    use windows_sys::Win32::System::JobObjects::AssignProcessToJobObject;
    // SAFETY: the job lives as long as this process; a process handle we own.
    if unsafe { AssignProcessToJobObject(job, process.as_raw_handle()) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The exit code as the Unix side reports it: minus the signal number for the codes
/// [`signal`] gives and for an abort or an access violation, the process's own code
/// otherwise (other exception codes, above `i32::MAX`, come out negative).
fn exit_code(raw: u32) -> i32 {
    match raw {
        TERMINATED => -SIGTERM,
        KILLED => -SIGKILL,
        FAST_FAIL => -SIGABRT,
        ACCESS_VIOLATION => -SIGSEGV,
        c => c as i32,
    }
}

/// Reaps child `pid` if it has exited (`block`: waiting for it to) and returns its exit code.
pub(crate) fn reap(pid: u32, block: bool) -> io::Result<Option<i32>> {
    let process = child_handle(pid)?;
    let exited = if block {
        wait_handles(&[process.as_raw_handle()], None)?.is_some()
    } else {
        is_signalled(process.as_raw_handle())?
    };
    if !exited {
        return Ok(None);
    }
    let mut code = 0u32;
    // SAFETY: a process handle we own (with the query right), a valid out pointer.
    if unsafe { GetExitCodeProcess(process.as_raw_handle(), &mut code) } == 0 {
        return Err(io::Error::last_os_error());
    }
    if let Some(children) = CHILDREN.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
        children.remove(&pid);
    }
    Ok(Some(exit_code(code)))
}

/// Ends child `pid` with `TerminateProcess`, with the exit code that reports as SIGKILL
/// (`kill`) or SIGTERM. Windows has no signal a child could catch: both end it at once.
pub(crate) fn signal(pid: u32, kill: bool) -> io::Result<()> {
    let process = child_handle(pid)?;
    // SAFETY: a process handle we own, with the terminate right CreateProcess gives.
    if unsafe { TerminateProcess(process.as_raw_handle(), if kill { KILLED } else { TERMINATED }) } == 0 {
        let e = io::Error::last_os_error();
        // It exited on its own meanwhile (access is denied to a process that is ending).
        if is_signalled(process.as_raw_handle())? {
            return Ok(());
        }
        return Err(e);
    }
    Ok(())
}

/// The parent's process id, from a snapshot of the process list (Windows keeps it for every
/// process, though that parent may have exited since).
pub(crate) fn parent_id() -> u32 {
    use windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE;
    use windows_sys::Win32::System::Diagnostics::ToolHelp::{
        CreateToolhelp32Snapshot, PROCESSENTRY32W, Process32FirstW, Process32NextW, TH32CS_SNAPPROCESS,
    };
    static PARENT: OnceLock<u32> = OnceLock::new();
    *PARENT.get_or_init(|| {
        let me = std::process::id();
        // SAFETY: no preconditions; the snapshot handle is ours.
        let snap = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0) };
        if snap == INVALID_HANDLE_VALUE {
            return 0;
        }
        // SAFETY: a new handle we own.
        let snap = unsafe { OwnedHandle::from_raw_handle(snap) };
        let mut entry = PROCESSENTRY32W { dwSize: size_of::<PROCESSENTRY32W>() as u32, ..Default::default() };
        // SAFETY: a snapshot handle and an entry whose dwSize is set.
        let mut more = unsafe { Process32FirstW(snap.as_raw_handle(), &mut entry) } != 0;
        while more {
            if entry.th32ProcessID == me {
                return entry.th32ParentProcessID;
            }
            // SAFETY: as above.
            more = unsafe { Process32NextW(snap.as_raw_handle(), &mut entry) } != 0;
        }
        0
    })
}
