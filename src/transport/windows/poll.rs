//! Readiness: `WSAPoll` for sockets, and for named pipes (which offer nothing to wait on
//! together) a loop that looks at everything and naps.

use std::io;
use std::os::windows::io::AsRawSocket;
use std::time::{Duration, Instant};

use socket2::Socket;
use windows_sys::Win32::Foundation::HANDLE;
use windows_sys::Win32::Networking::WinSock::{POLLRDNORM, SOCKET, WSAGetLastError, WSAPOLLFD, WSAPoll};

use super::listener::ListenerInner;
use super::{RawListener, Stream};
use crate::sys::{MAX_WAIT_HANDLES, Sentinel, is_signalled, wait_handles};

/// Longest pause between two looks in the polling loop of [`wait_any`] (about one tick of the
/// default Windows timer, so shorter pauses would not be shorter in practice).
const MAX_NAP: Duration = Duration::from_millis(15);

pub(super) fn pollfd(s: &Socket, events: i16) -> WSAPOLLFD {
    WSAPOLLFD { fd: s.as_raw_socket() as SOCKET, events, revents: 0 }
}

/// WSAPoll with a deadline; returns the number of ready sockets (0: the deadline passed).
pub(super) fn poll_sockets(fds: &mut [WSAPOLLFD], deadline: Option<Instant>) -> io::Result<usize> {
    loop {
        let timeout_ms = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                // Round up so that a sub-millisecond remainder still waits instead of spinning.
                left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
            }
        };
        // SAFETY: fds is a valid, exclusively borrowed array of WSAPOLLFD for the call; the
        // sockets were made by socket2, which has started Winsock.
        let n = unsafe { WSAPoll(fds.as_mut_ptr(), fds.len() as u32, timeout_ms) };
        if n > 0 {
            return Ok(n as usize);
        }
        if n == 0 {
            if deadline.is_some_and(|d| Instant::now() < d) {
                continue;
            }
            return Ok(0);
        }
        // SAFETY: no preconditions.
        let e = io::Error::from_raw_os_error(unsafe { WSAGetLastError() });
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Waits until `s` is ready for `events` or `deadline` passes (then `TimedOut`).
fn wait_socket(s: &Socket, events: i16, deadline: Option<Instant>) -> io::Result<()> {
    if poll_sockets(&mut [pollfd(s, events)], deadline)? == 0 {
        return Err(io::ErrorKind::TimedOut.into());
    }
    Ok(())
}

/// Runs `op` on the nonblocking socket `s` until it neither would block (then it waits for
/// `events`) nor was interrupted; `TimedOut` when `deadline` passes first.
pub(super) fn retry_socket<T>(
    s: &Socket,
    events: i16,
    deadline: Option<Instant>,
    mut op: impl FnMut(&Socket) -> io::Result<T>,
) -> io::Result<T> {
    loop {
        match op(s) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_socket(s, events, deadline)?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

/// Waits until the listener has a connection queued or one of `streams` is readable, or
/// `deadline` passes. Returns whether the listener is ready and the indices of ready streams.
///
/// A TCP listener and its streams wait in one `WSAPoll`. Named pipes offer nothing to wait on
/// together: interprocess accepts synchronously, and a pipe shows a message (an empty one
/// included) only to a read. So for pipes this looks at everything, then sleeps a little
/// (1 ms, doubling up to about 15 ms) and looks again: readiness is noticed up to that late,
/// and an idle listener wakes about 60 times a second.
///
/// Without a listener (it rests, or enough handshakes are under way) only the streams count.
pub(crate) fn wait_any(
    listener: Option<&RawListener>,
    streams: &[&Stream],
    deadline: Option<Instant>,
) -> io::Result<(bool, Vec<usize>)> {
    if let Some(listener) = listener
        && let ListenerInner::Tcp(sock) = &listener.inner
        && let Some(socks) = streams.iter().map(|s| s.socket()).collect::<Option<Vec<_>>>()
    {
        let mut fds: Vec<WSAPOLLFD> =
            std::iter::once(sock).chain(socks).map(|s| pollfd(s, POLLRDNORM)).collect();
        if poll_sockets(&mut fds, deadline)? == 0 {
            return Ok((false, Vec::new()));
        }
        let ready = fds[1..].iter().enumerate().filter(|(_, p)| p.revents != 0).map(|(i, _)| i).collect();
        return Ok((fds[0].revents != 0, ready));
    }
    let mut nap = Duration::from_millis(1);
    loop {
        let listener_ready = match listener {
            Some(l) => l.probe()?,
            None => false,
        };
        let ready: Vec<usize> =
            streams.iter().enumerate().filter(|(_, s)| s.probe()).map(|(i, _)| i).collect();
        if listener_ready || !ready.is_empty() {
            return Ok((listener_ready, ready));
        }
        let now = Instant::now();
        let pause = match deadline {
            Some(d) if d <= now => return Ok((false, Vec::new())),
            Some(d) => nap.min(d - now),
            None => nap,
        };
        std::thread::sleep(pause);
        nap = (nap * 2).min(MAX_NAP);
    }
}

/// Something `wait_ready_with` can watch: a stream, or a listener.
pub(crate) enum Pollable<'a> {
    Stream(&'a Stream),
    Listener(&'a RawListener),
}

/// Waits until at least one of `items` is readable (a listener: has a client to accept) or
/// one of the children behind `sentinels` has exited, or `deadline` passes; returns the indices
/// of the ready ones (sentinels after `items`; empty after the deadline).
///
/// Named pipes offer nothing to wait on together (see [`wait_any`]), so this looks at every
/// item, naps a little (1 ms, doubling up to about 15 ms) and looks again. Process handles are
/// waited on, not polled: alone in one `WaitForMultipleObjects`, and beside pipes during the
/// naps.
pub(crate) fn wait_ready_with(
    items: &[Pollable<'_>],
    sentinels: &[&Sentinel],
    deadline: Option<Instant>,
) -> io::Result<Vec<usize>> {
    let handles: Vec<HANDLE> = sentinels.iter().map(|s| s.raw()).collect();
    let mut nap = Duration::from_millis(1);
    loop {
        let mut ready = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let is_ready = match item {
                Pollable::Stream(s) => s.probe(),
                Pollable::Listener(l) => l.probe()?,
            };
            if is_ready {
                ready.push(i);
            }
        }
        for (j, &h) in handles.iter().enumerate() {
            if is_signalled(h)? {
                ready.push(items.len() + j);
            }
        }
        if !ready.is_empty() {
            return Ok(ready);
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| d <= now) {
            return Ok(Vec::new());
        }
        // Only process handles: one wait until one exits. Beside pipes (or past what one wait
        // takes), a nap, spent waiting on the first handles if there are any.
        let until = match deadline {
            _ if items.is_empty() && !handles.is_empty() && handles.len() <= MAX_WAIT_HANDLES => deadline,
            Some(d) => Some(d.min(now + nap)),
            None => Some(now + nap),
        };
        if handles.is_empty() {
            std::thread::sleep(until.map_or(nap, |u| u.saturating_duration_since(now)));
        } else {
            wait_handles(&handles[..handles.len().min(MAX_WAIT_HANDLES)], until)?;
        }
        nap = (nap * 2).min(MAX_NAP);
    }
}
