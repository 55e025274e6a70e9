//! Joining a caller's poll loop: the listener's descriptor and nonblocking `accept`.
//!
//! Accepting is more than the listening socket: handshakes under way wait for their clients'
//! replies on sockets of their own. On Unix the descriptor a poll loop watches is therefore a
//! set (epoll on Linux and Android, kqueue elsewhere) holding the listening socket and every
//! pending handshake's socket: it is readable while any of them is, so the loop wakes both for
//! new clients and for replies, and a nonblocking `accept` then moves whatever is readable.

// The link to `AsFd` (Unix only) resolves where it exists; elsewhere it is text.
#![cfg_attr(not(unix), allow(rustdoc::broken_intra_doc_links))]

use std::io;
use std::sync::atomic::Ordering;

use super::Listener;
#[cfg(doc)]
use crate::Error;
use crate::connection::Connection;

impl Listener {
    /// Whether [`accept`](Listener::accept) returns at once when nothing is ready (see
    /// [`set_nonblocking`](Listener::set_nonblocking)).
    pub fn is_nonblocking(&self) -> bool {
        self.nonblocking.load(Ordering::Relaxed)
    }

    /// In nonblocking mode, [`accept`](Listener::accept) never waits: it moves the handshakes
    /// whose clients have written, takes the connections the OS has queued, and returns a
    /// finished connection, a per-client error, or [`Error::Io`] of kind
    /// [`io::ErrorKind::WouldBlock`] when nothing is ready (also while another thread is
    /// inside `accept`). A silent client never makes it wait; its handshake times out at the
    /// first `accept` after [`handshake_timeout`](super::ListenerBuilder::handshake_timeout).
    ///
    /// For a poll loop (Unix): watch the listener's descriptor ([`AsFd`](std::os::fd::AsFd))
    /// for readability and, when it is readable, call `accept` until it returns `WouldBlock`
    /// (one readiness may finish several handshakes). Give the poll a timeout, or call
    /// `accept` now and then, so that handshakes of silent clients are dropped in time, and
    /// so that a listener whose socket rests after the OS refused an accept (out of
    /// descriptors: an error from `accept`, then 100 ms in which the socket is out of the set)
    /// takes new clients again.
    ///
    /// ```
    /// use procwire::{Address, Error, Family, Listener};
    /// let listener = Listener::builder().authkey("key").bind(&Address::fresh(Family::default())?)?;
    /// listener.set_nonblocking(true);
    /// match listener.accept() {
    ///     Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
    ///     other => panic!("nobody connected, yet {other:?}"),
    /// }
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn set_nonblocking(&self, nonblocking: bool) {
        self.nonblocking.store(nonblocking, Ordering::Relaxed);
    }

    /// Whether this is an in-process listener (`inproc:`), which has no descriptor.
    pub fn is_in_process(&self) -> bool {
        matches!(self.raw, crate::transport::RawListener::Mem(_))
    }

    /// Adds a pending handshake's socket to the poll set.
    pub(super) fn watch(&self, conn: &Connection) -> io::Result<()> {
        #[cfg(unix)]
        if let Some(set) = &self.poll_set {
            return set.add(std::os::fd::AsFd::as_fd(conn));
        }
        let _ = conn;
        Ok(())
    }

    /// Takes the listening socket out of the poll set while it rests after the OS refused an
    /// accept (its queue stays readable, and a poll loop would spin on it), or puts it back.
    pub(super) fn watch_listening(&self, watch: bool) {
        #[cfg(unix)]
        if let (Some(set), Some(fd)) = (&self.poll_set, self.raw.os_fd()) {
            // Adding back what was in the set before, or removing what is in it, cannot fail
            // for a reason we could act on; at worst a poll wakes once for nothing.
            let _ = if watch { set.add(fd) } else { set.remove(fd) };
        }
        let _ = watch;
    }

    /// Takes a pending handshake's socket out of the poll set: finished, refused or expired.
    pub(super) fn unwatch(&self, conn: &Connection) {
        #[cfg(unix)]
        if let Some(set) = &self.poll_set {
            // Removing a descriptor that is in the set cannot fail for a reason we could act on.
            let _ = set.remove(std::os::fd::AsFd::as_fd(conn));
        }
        let _ = conn;
    }
}

/// The error of a nonblocking `accept` with nothing ready.
pub(super) fn would_block() -> crate::Error {
    crate::Error::Io(io::Error::new(io::ErrorKind::WouldBlock, "no connection is ready to accept"))
}

/// The descriptor a poll loop watches: readable while a client waits to be accepted or a
/// pending handshake has data, so that a nonblocking [`accept`](Listener::accept) has work.
/// It is not the listening socket itself (accepting on it directly is not possible).
///
/// # Panics
///
/// An in-process listener (`inproc:`) has no descriptor: asking for one panics.
/// [`Listener::is_in_process`] tells.
#[cfg(unix)]
impl std::os::fd::AsFd for Listener {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match &self.poll_set {
            Some(set) => set.as_fd(),
            None => panic!("an in-process listener has no file descriptor"),
        }
    }
}

/// As [`AsFd`](std::os::fd::AsFd) for [`Listener`]: panics for an in-process listener.
#[cfg(unix)]
impl std::os::fd::AsRawFd for Listener {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(self))
    }
}

#[cfg(test)]
mod tests {
    use crate::{Address, Family, Listener};

    #[test]
    fn nonblocking_accept_with_nobody_waiting_would_block() {
        let l = Listener::builder().authkey("k").bind(Address::fresh(Family::default()).unwrap()).unwrap();
        assert!(!l.is_nonblocking());
        l.set_nonblocking(true);
        assert!(l.is_nonblocking());
        assert_would_block(l.accept());
    }

    fn assert_would_block(r: crate::Result<crate::Connection>) {
        match r {
            Err(crate::Error::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn in_process_listeners_say_so() {
        let l = Listener::bind("inproc:listener-poll-unit").unwrap();
        assert!(l.is_in_process());
        l.set_nonblocking(true);
        assert_would_block(l.accept());
        let os = Listener::bind(Address::fresh(Family::default()).unwrap()).unwrap();
        assert!(!os.is_in_process());
    }
}
