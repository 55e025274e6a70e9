//! [`FastPath`]: a future whose first step is compiled into the caller's code. Taking a small
//! message already buffered, or queueing one for batching, costs nanoseconds; through the
//! general future (its state machine out of line, behind the timeout's) it cost several
//! times that. The general future is made, boxed, only when the first step has to wait.

use std::pin::Pin;
use std::task::{Context, Poll};

use crate::Result;

/// The general future of an operation that has to wait.
pub(super) type Slow<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// What the first step did: finished, or handed over to the general future (an error, too:
/// errors are rare, and a first step that carries only a success comes back in registers,
/// where a `Result` with an [`Error`](crate::Error) in it comes back through memory).
pub(super) enum Step<'a, T> {
    Done(T),
    Wait(Slow<'a, T>),
}

/// The arguments of an operation, and its first step. A trait method rather than a closure:
/// a closure (or a function item called as one) used at several places is not reliably
/// inlined, and its result would then come back through memory.
pub(super) trait First<'a>: Unpin {
    type Output;
    /// Takes the operation as far as it goes without waiting; implementations are
    /// `#[inline(always)]` and keep their slow paths out of line.
    fn first(self) -> Step<'a, Self::Output>;
}

/// Runs `first` on the first poll (nothing happens before, as with an `async fn`), then the
/// general future it handed over, if any.
pub(super) struct FastPath<'a, A: First<'a>> {
    first: Option<A>,
    slow: Option<Slow<'a, A::Output>>,
}

impl<'a, A: First<'a>> FastPath<'a, A> {
    #[inline]
    pub(super) fn new(args: A) -> Self {
        FastPath { first: Some(args), slow: None }
    }
}

impl<'a, A: First<'a>> Future for FastPath<'a, A> {
    type Output = Result<A::Output>;

    // Inlined into the caller's state machine, so that a first step that finishes hands its
    // result over in registers; a call would return it through memory, and the caller's wide
    // read of it right after the callee's narrow writes stalls (store forwarding fails).
    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<A::Output>> {
        let this = self.get_mut();
        if let Some(args) = this.first.take() {
            match args.first() {
                Step::Done(v) => return Poll::Ready(Ok(v)),
                Step::Wait(slow) => this.slow = Some(slow),
            }
        }
        poll_slow(&mut this.slow, cx)
    }
}

/// Polls the general future: out of line, to keep the inlined first step small.
#[inline(never)]
fn poll_slow<T>(slow: &mut Option<Slow<'_, T>>, cx: &mut Context<'_>) -> Poll<Result<T>> {
    match slow {
        Some(slow) => slow.as_mut().poll(cx),
        None => panic!("a procwire future polled after it completed"),
    }
}
