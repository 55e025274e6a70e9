//! [`FastPath`]: a future whose first step is compiled into the caller's code. Taking a small
//! message already buffered, or queueing one for batching, costs nanoseconds; through the
//! general future (its state machine out of line, behind the timeout's) it cost several
//! times that. The general future is made, boxed, only when the first step has to wait.

use std::pin::Pin;
use std::task::{Context, Poll};

use crate::Result;

/// The general future of an operation that has to wait.
pub(super) type Slow<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// What the first step did: finished, or handed over to the general future.
pub(super) enum Step<'a, T> {
    Done(Result<T>),
    Wait(Slow<'a, T>),
}

/// Runs `first` on the first poll (nothing happens before, as with an `async fn`), then the
/// general future it handed over, if any.
pub(super) struct FastPath<'a, T, F> {
    first: Option<F>,
    slow: Option<Slow<'a, T>>,
}

impl<'a, T, F: FnOnce() -> Step<'a, T> + Unpin> FastPath<'a, T, F> {
    #[inline]
    pub(super) fn new(first: F) -> Self {
        FastPath { first: Some(first), slow: None }
    }
}

impl<'a, T, F: FnOnce() -> Step<'a, T> + Unpin> Future for FastPath<'a, T, F> {
    type Output = Result<T>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let this = self.get_mut();
        if let Some(first) = this.first.take() {
            match first() {
                Step::Done(r) => return Poll::Ready(r),
                Step::Wait(slow) => this.slow = Some(slow),
            }
        }
        match &mut this.slow {
            Some(slow) => slow.as_mut().poll(cx),
            None => panic!("a procwire future polled after it completed"),
        }
    }
}
