//! `poll(2)` with a deadline.

use std::io;
use std::os::fd::RawFd;
use std::time::Instant;

/// Waits until `fd` is ready for `events` or `deadline` passes (then `TimedOut`).
pub(crate) fn wait_fd(fd: RawFd, events: libc::c_short, deadline: Option<Instant>) -> io::Result<()> {
    let mut p = [libc::pollfd { fd, events, revents: 0 }];
    if poll(&mut p, deadline)? == 0 {
        return Err(io::ErrorKind::TimedOut.into());
    }
    Ok(())
}

/// poll(2) with a deadline, restarted on EINTR; returns the number of ready descriptors.
pub(crate) fn poll(fds: &mut [libc::pollfd], deadline: Option<Instant>) -> io::Result<usize> {
    loop {
        let timeout_ms = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                // Round up so that a sub-millisecond remainder still waits instead of spinning.
                left.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int
            }
        };
        // SAFETY: fds is a valid, exclusively borrowed array of pollfd for the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
