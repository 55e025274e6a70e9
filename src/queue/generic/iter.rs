//! Taking a queue's items in a `for` loop: what [`Queue::iter`], [`Queue::try_iter`] and
//! [`Queue::iter_timeout`] return.
//!
//! A queue does not know its producers ([`Queue::close`] closes one handle, and with
//! [`Processes`](super::Processes) a handle sent to another process is unknown to the server
//! until it connects), so the end of the items is said once, by whoever knows the producers
//! are done: [`Queue::finish`].

use std::fmt;
use std::iter::FusedIterator;
use std::time::{Duration, Instant};

use super::{Backend, Carries, Queue};
use crate::{Error, Result};

/// How long an iteration waits for each item.
#[derive(Clone, Copy, Debug)]
pub(super) enum Wait {
    /// Takes only what is there now.
    Not,
    /// Ends after this long without an item.
    For(Duration),
    /// Waits as long as it takes: until the queue is finished.
    Forever,
}

/// The items of a [`Queue`], taken one by one, until the queue is [finished](Queue::finish)
/// and empty, or (for [`Queue::try_iter`] and [`Queue::iter_timeout`]) none comes in time;
/// after an error (yielded as an item) it ends too.
pub struct Iter<'a, T, B: Backend> {
    q: &'a Queue<T, B>,
    wait: Wait,
    done: bool,
}

impl<'a, T, B: Backend> Iter<'a, T, B> {
    pub(super) fn new(q: &'a Queue<T, B>, wait: Wait) -> Self {
        Iter { q, wait, done: false }
    }
}

impl<T, B: Backend> fmt::Debug for Iter<'_, T, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter")
            .field("queue", self.q)
            .field("wait", &self.wait)
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
        let deadline = match self.wait {
            Wait::Not => Some(now),
            Wait::For(d) => now.checked_add(d),
            Wait::Forever => None,
        };
        let got = match B::get(&self.q.h, deadline) {
            Err(Error::Finished) => None,
            r => r.transpose(),
        };
        // An error may repeat forever (the queue's server went away): yield it once and end.
        self.done = !matches!(got, Some(Ok(_)));
        got
    }
}

impl<T, B: Carries<T>> FusedIterator for Iter<'_, T, B> {}
