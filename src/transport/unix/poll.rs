//! Readiness of many streams, listeners and child exits at once: one `poll(2)` call.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Instant;

use super::{RawListener, Stream};
use crate::sys::{Sentinel, poll};

/// Waits until the listener has a connection queued or one of `streams` is readable, or
/// `deadline` passes. Returns whether the listener is ready and the indices of ready streams.
pub(crate) fn wait_any(
    listener: Option<&RawListener>,
    streams: &[&Stream],
    deadline: Option<Instant>,
) -> io::Result<(bool, Vec<usize>)> {
    let mut fds = Vec::with_capacity(streams.len() + 1);
    // A negative descriptor is ignored by poll(2): the listener sits this round out.
    let lfd = listener.map_or(-1, |l| l.sock.as_raw_fd());
    fds.push(libc::pollfd { fd: lfd, events: libc::POLLIN, revents: 0 });
    fds.extend(streams.iter().map(|s| libc::pollfd {
        fd: s.fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }));
    if poll(&mut fds, deadline)? == 0 {
        return Ok((false, Vec::new()));
    }
    let ready = fds[1..].iter().enumerate().filter(|(_, p)| p.revents != 0).map(|(i, _)| i).collect();
    Ok((fds[0].revents != 0, ready))
}

/// Something `wait_ready` can watch: a stream, or a listening socket.
pub(crate) enum Pollable<'a> {
    Stream(&'a Stream),
    Listener(&'a RawListener),
}

/// Waits until at least one of `items` is readable (a listener: has a connection queued), or a
/// child behind `sentinels` has exited, or `deadline` passes; returns the indices of the ready
/// ones (empty after the deadline), counting `items` first, then `sentinels`. One poll(2) call
/// over all of them, so there is no limit on their number.
pub(crate) fn wait_ready_with(
    items: &[Pollable<'_>],
    sentinels: &[&Sentinel],
    deadline: Option<Instant>,
) -> io::Result<Vec<usize>> {
    let mut fds: Vec<libc::pollfd> = items
        .iter()
        .map(|p| match p {
            Pollable::Stream(s) => s.fd.as_raw_fd(),
            Pollable::Listener(l) => l.sock.as_raw_fd(),
        })
        .chain(sentinels.iter().map(|s| s.as_fd().as_raw_fd()))
        .map(|fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 })
        .collect();
    if poll(&mut fds, deadline)? == 0 {
        return Ok(Vec::new());
    }
    Ok(fds.iter().enumerate().filter(|(_, p)| p.revents != 0).map(|(i, _)| i).collect())
}
