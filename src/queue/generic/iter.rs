//! Taking a queue's items in a `for` loop: what [`Queue::try_iter`] and
//! [`Queue::iter_timeout`] return.
//!
//! The iteration ends when no item comes in time, not when the producers are gone: a queue
//! does not know its producers ([`Queue::close`] closes one handle, and with [`Processes`](super::Processes)
//! a handle sent to another process is unknown to the server until it connects), so
//! "every producer closed" is not something a consumer can wait for yet.

use std::fmt;
use std::iter::FusedIterator;
use std::time::{Duration, Instant};

use super::{Backend, Carries, Queue};
use crate::Result;

/// The items of a [`Queue`], taken one by one, until none comes in time; after an error
/// (yielded as an item) it ends too. From [`Queue::try_iter`] and [`Queue::iter_timeout`].
pub struct Iter<'a, T, B: Backend> {
    q: &'a Queue<T, B>,
    /// How long to wait for each item; `None`: take only what is there now.
    idle: Option<Duration>,
    done: bool,
}

impl<'a, T, B: Backend> Iter<'a, T, B> {
    pub(super) fn new(q: &'a Queue<T, B>, idle: Option<Duration>) -> Self {
        Iter { q, idle, done: false }
    }
}

impl<T, B: Backend> fmt::Debug for Iter<'_, T, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter")
            .field("queue", self.q)
            .field("idle", &self.idle)
            .field("done", &self.done)
            .finish()
    }
}

impl<T, B: Carries<T>> Iterator for Iter<'_, T, B> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        if self.done {
            return None;
        }
        let now = Instant::now();
        // A wait too long for an Instant is no limit, as in `Queue::get_timeout`.
        let deadline = match self.idle {
            None => Some(now),
            Some(d) => now.checked_add(d),
        };
        let got = B::get(&self.q.h, deadline).transpose();
        // An error may repeat forever (the queue's server went away): yield it once and end.
        self.done = !matches!(got, Some(Ok(_)));
        got
    }
}

impl<T, B: Carries<T>> FusedIterator for Iter<'_, T, B> {}
