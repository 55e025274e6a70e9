//! Small helpers every layer uses: locks that survive a panic, condition-variable waits with a
//! deadline, deadlines from timeouts, and the text of a panic.

use std::any::Any;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Locks `m`, taking over a lock whose holder panicked: the state behind procwire's own locks
/// stays consistent across a panic (no user code runs while one is held).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Waits on `cv` until notified or until `deadline` (`None`: no limit); `None` once the
/// deadline has passed.
pub(crate) fn wait_until<'a, T>(
    cv: &Condvar,
    guard: MutexGuard<'a, T>,
    deadline: Option<Instant>,
) -> Option<MutexGuard<'a, T>> {
    let (guard, waited) = wait_deadline(cv, guard, deadline);
    waited.then_some(guard)
}

/// As [`wait_until`], but keeps the guard when the deadline has passed (then `false`, without
/// waiting), for callers that still have work to do under the lock.
pub(crate) fn wait_deadline<'a, T>(
    cv: &Condvar,
    guard: MutexGuard<'a, T>,
    deadline: Option<Instant>,
) -> (MutexGuard<'a, T>, bool) {
    match deadline {
        None => (cv.wait(guard).unwrap_or_else(|p| p.into_inner()), true),
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return (guard, false);
            }
            (cv.wait_timeout(guard, left).unwrap_or_else(|p| p.into_inner()).0, true)
        }
    }
}

/// The deadline `t` from now; `None` (no deadline) for no timeout or one too far to represent.
pub(crate) fn deadline_of(t: Option<Duration>) -> Option<Instant> {
    t.and_then(|t| Instant::now().checked_add(t))
}

/// Large copies are made in pieces of this size: small enough that glibc's `memcpy` moves each
/// with vector instructions instead of `rep movsb` (used from a few KiB up), which some AMD CPUs
/// run far slower when the destination lies just past the source modulo 64 bytes.
pub(crate) const COPY_PIECE: usize = 2 << 10;

/// Copies `len` bytes in pieces of [`COPY_PIECE`] (see there why).
///
/// # Safety
/// `src..src+len` must be readable, `dst..dst+len` writable, and the two must not overlap.
pub(crate) unsafe fn copy_in_pieces(src: *const u8, dst: *mut u8, len: usize) {
    let mut done = 0;
    while done < len {
        let n = (len - done).min(COPY_PIECE);
        // SAFETY: within the ranges the caller vouches for.
        unsafe { std::ptr::copy_nonoverlapping(src.add(done), dst.add(done), n) };
        done += n;
    }
}

/// Fills `buf` with random bytes from the OS.
pub(crate) fn fill_random(buf: &mut [u8]) -> crate::Result<()> {
    getrandom::fill(buf).map_err(|e| {
        let what = "no randomness from the OS";
        crate::Error::Io(match e.raw_os_error() {
            Some(code) => crate::error::io_context(std::io::Error::from_raw_os_error(code), what),
            None => std::io::Error::other(format!("{what}: {e}")),
        })
    })
}

/// The message of a panic's payload (`panic!` with a string or a format).
pub(crate) fn panic_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a payload that is not a string".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_past_its_deadline_returns_none_and_a_poisoned_lock_is_taken_over() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            panic!("poison it");
        })
        .join();
        assert!(m.is_poisoned());
        let g = lock(&m);
        assert_eq!(*g, 1);
        let cv = Condvar::new();
        assert!(wait_until(&cv, g, Some(Instant::now())).is_none());
        assert!(deadline_of(Some(Duration::MAX)).is_none());
        assert_eq!(panic_message(&"text"), "text");
        assert_eq!(panic_message(&String::from("owned")), "owned");
        assert_eq!(panic_message(&7u8), "a panic with a payload that is not a string");
    }
}
