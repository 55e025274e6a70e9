//! Waiting on kernel objects (process handles) with a deadline: `WaitForMultipleObjects`.

use std::io;
use std::time::Instant;

use windows_sys::Win32::Foundation::{HANDLE, WAIT_FAILED, WAIT_OBJECT_0, WAIT_TIMEOUT};
use windows_sys::Win32::System::Threading::{INFINITE, WaitForMultipleObjects};

/// `WaitForMultipleObjects` takes at most this many handles.
pub(crate) const MAX_WAIT_HANDLES: usize = 64;

/// Waits until one of `handles` (at most [`MAX_WAIT_HANDLES`], at least one) is signalled or
/// `deadline` passes; the index of a signalled one, or `None` after the deadline.
pub(crate) fn wait_handles(handles: &[HANDLE], deadline: Option<Instant>) -> io::Result<Option<usize>> {
    debug_assert!(!handles.is_empty() && handles.len() <= MAX_WAIT_HANDLES);
    // WaitForMultipleObjects refuses an array that names a handle twice (one sentinel passed
    // twice): wait on each once, and report the first place it was given.
    if let Some(first) = handles.iter().enumerate().position(|(i, h)| handles[..i].contains(h)) {
        let mut unique = handles[..first].to_vec();
        for &h in &handles[first..] {
            if !unique.contains(&h) {
                unique.push(h);
            }
        }
        let ready = wait_handles(&unique, deadline)?;
        return Ok(ready.and_then(|i| handles.iter().position(|&h| h == unique[i])));
    }
    loop {
        let ms = match deadline {
            None => INFINITE,
            // Rounded up so that a sub-millisecond remainder still waits instead of spinning;
            // INFINITE - 1 at most, which is not INFINITE.
            Some(d) => d
                .saturating_duration_since(Instant::now())
                .as_micros()
                .div_ceil(1000)
                .min(u128::from(INFINITE - 1)) as u32,
        };
        // SAFETY: `handles` is a valid array of open handles (the callers borrow their owners)
        // of at most MAXIMUM_WAIT_OBJECTS entries.
        let r = unsafe { WaitForMultipleObjects(handles.len() as u32, handles.as_ptr(), 0, ms) };
        match r {
            WAIT_FAILED => return Err(io::Error::last_os_error()),
            WAIT_TIMEOUT => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Ok(None);
                }
            }
            // WAIT_OBJECT_0 + i; abandoned mutexes (WAIT_ABANDONED_0 + i) are not waited on here.
            r if ((r - WAIT_OBJECT_0) as usize) < handles.len() => {
                return Ok(Some((r - WAIT_OBJECT_0) as usize));
            }
            r => return Err(io::Error::other(format!("WaitForMultipleObjects returned {r:#x}"))),
        }
    }
}

/// Whether `handle` is signalled now (a process handle: the process has exited).
pub(crate) fn is_signalled(handle: HANDLE) -> io::Result<bool> {
    Ok(wait_handles(&[handle], Some(Instant::now()))?.is_some())
}
