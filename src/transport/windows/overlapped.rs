//! Overlapped I/O on pipe handles: one operation at a time per event, waited for until a
//! deadline and cancelled after it.

use std::cell::UnsafeCell;
use std::io;
use std::mem;
use std::os::windows::io::{FromRawHandle, OwnedHandle};
use std::ptr;
use std::time::Instant;

use windows_sys::Win32::Foundation::{
    ERROR_IO_PENDING, ERROR_MORE_DATA, ERROR_OPERATION_ABORTED, GetLastError, HANDLE, WAIT_OBJECT_0,
    WAIT_TIMEOUT,
};
use windows_sys::Win32::System::IO::{CancelIoEx, GetOverlappedResult, OVERLAPPED};
use windows_sys::Win32::System::Threading::{CreateEventW, INFINITE, WaitForSingleObject};
use windows_sys::core::BOOL;

pub(super) fn new_event() -> io::Result<OwnedHandle> {
    // Manual reset, as overlapped I/O wants; ReadFile and WriteFile reset it when they start.
    // SAFETY: no pointers are passed; the result is checked.
    let h = unsafe { CreateEventW(ptr::null(), 1, 0, ptr::null()) };
    if h.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new handle that nothing else owns.
    Ok(unsafe { OwnedHandle::from_raw_handle(h) })
}

pub(super) fn overlapped(event: HANDLE) -> OVERLAPPED {
    // SAFETY: OVERLAPPED is plain old data; all-zero is its documented initial state.
    let mut ov: OVERLAPPED = unsafe { mem::zeroed() };
    ov.hEvent = event;
    ov
}

/// `None` when an overlapped ReadFile/WriteFile that returned `ok` is under way or done (its
/// result then comes from [`finish`]), else the error it failed with before starting.
pub(super) fn started(ok: BOOL) -> Option<u32> {
    if ok != 0 {
        return None;
    }
    // SAFETY: no preconditions.
    match unsafe { GetLastError() } {
        ERROR_IO_PENDING | ERROR_MORE_DATA => None,
        e => Some(e),
    }
}

/// Waits for `event` until `deadline`: `Ok(true)` when it is set, `Ok(false)` when the deadline
/// passed first.
pub(super) fn wait_event(event: HANDLE, deadline: Option<Instant>) -> io::Result<bool> {
    loop {
        let ms = match deadline {
            None => INFINITE,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                // Rounded up, so that a sub-millisecond remainder waits instead of spinning.
                left.as_micros().div_ceil(1000).min(u128::from(INFINITE - 1)) as u32
            }
        };
        // SAFETY: event is a valid event handle the caller keeps open.
        match unsafe { WaitForSingleObject(event, ms) } {
            WAIT_OBJECT_0 => return Ok(true),
            WAIT_TIMEOUT if deadline.is_some_and(|d| Instant::now() < d) => {}
            WAIT_TIMEOUT => return Ok(false),
            _ => return Err(io::Error::last_os_error()),
        }
    }
}

/// Waits until the operation `ov` on `h` has finished, then gives its byte count and status
/// (0 for success, else a Win32 error code). Its buffer and `ov` are free afterwards.
pub(super) fn finish(h: HANDLE, ov: *mut OVERLAPPED) -> (usize, u32) {
    let mut n = 0u32;
    // SAFETY: ov belongs to an operation started on h; with bWait set the call returns only
    // once that operation has finished.
    let ok = unsafe { GetOverlappedResult(h, ov, &mut n, 1) };
    // SAFETY: no preconditions.
    let status = if ok != 0 { 0 } else { unsafe { GetLastError() } };
    (n as usize, status)
}

pub(super) fn cancel(h: HANDLE, ov: *mut OVERLAPPED) {
    // SAFETY: cancelling touches only the operation `ov` on h. It fails harmlessly
    // (ERROR_NOT_FOUND) when that operation has already finished.
    unsafe { CancelIoEx(h, ov) };
}

/// Runs one overlapped operation (`start` issues it with the OVERLAPPED it is given) and waits
/// for it until `deadline`, then cancels it. A cancelled operation may still have finished first:
/// its real result is reported then, and `TimedOut` only when the cancel took effect. Returns
/// only once the operation is over, so the caller's buffer is free again.
pub(super) fn run_io(
    h: HANDLE,
    event: HANDLE,
    deadline: Option<Instant>,
    start: impl FnOnce(*mut OVERLAPPED) -> BOOL,
) -> io::Result<(usize, u32)> {
    let ov = UnsafeCell::new(overlapped(event));
    if let Some(e) = started(start(ov.get())) {
        return Ok((0, e));
    }
    let waited = wait_event(event, deadline);
    let cancelled = !matches!(waited, Ok(true));
    if cancelled {
        cancel(h, ov.get());
    }
    let (n, status) = finish(h, ov.get());
    if cancelled && status == ERROR_OPERATION_ABORTED {
        return Err(waited.err().unwrap_or_else(|| io::ErrorKind::TimedOut.into()));
    }
    Ok((n, status))
}
