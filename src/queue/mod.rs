//! [`Queue`] and [`JoinableQueue`]: multi-producer, multi-consumer FIFO queues shared between
//! processes, like `multiprocessing.Queue` and `JoinableQueue`. Their methods are written once
//! in [`generic`], over the [`Processes`](generic::Processes) backend here and the
//! [`Threads`](generic::Threads) one of [`dummy::queue`](crate::dummy::queue).
//!
//! The process that creates a queue serves it: the items live in its memory, its own handles
//! use them directly, and a few threads of it serve the handles of other processes over
//! authenticated [`Connection`](crate::Connection)s (the messages are in spec/queue.md). A
//! handle is sent to a child as a [`Process`](crate::process::Process) argument (it serializes
//! as the queue's address and key), and an unrelated process opens one with
//! [`Queue::connect`]. The queue lives as long as its creator holds a handle: after that,
//! other processes' handles get [`Error::Closed`](crate::Error::Closed).
//!
//! # Delivery
//!
//! No item is lost or delivered twice while processes come and go:
//! - A put from another process is written by a background thread of that handle (puts in a
//!   burst leave in one write). Dropping the handle, or [`Queue::close`], writes every put
//!   made so far and waits until the server has them, so items a producer put before it
//!   finished are in the queue before anything another process puts once it learns that (the
//!   usual "stop" sentinels); a process that ends with `std::process::exit` or a signal skips
//!   that and loses its unwritten puts.
//! - A consumer in another process asks for items ahead of its gets (its *prefetch*, at most
//!   [`DEFAULT_PREFETCH`] by default, growing from 1 only while it finds its buffer empty), so
//!   a get rarely waits a round trip. Each get acknowledges its item with a write before it
//!   returns; items sent to a consumer and not acknowledged go back to the front of the queue
//!   when its connection ends (the process died, or dropped the handle). A get that times out
//!   withdraws its request, so nothing waits in a consumer that stopped asking. A consumer that
//!   stops calling get while it holds prefetched items keeps them until it gets again or
//!   drops its handle: set [`Queue::set_prefetch`] to 0 when each get should fetch exactly one
//!   item (a round trip each, as fair as it gets between slow consumers).
//! - [`Queue::finish`] says no more items will come: once the queue is empty, gets in every
//!   process fail with [`Error::Finished`](crate::Error::Finished) instead of waiting, and
//!   consumers' `for item in &q` loops end. Producers need not send one sentinel per consumer.
//!
//! ```
//! use procwire::queue::Queue;
//!
//! let q: Queue<(u32, String)> = Queue::new()?;
//! q.put(&(1, "one".to_string()))?;
//! assert_eq!(q.get()?, (1, "one".to_string()));
//! assert_eq!(q.try_get()?, None);
//! # Ok::<(), procwire::Error>(())
//! ```

pub mod generic;
mod processes;
mod remote;
mod server;
mod threads;
mod wire;

pub use generic::DEFAULT_PREFETCH;

/// Options for a new queue: maxsize, address, key, prefetch, largest item; see
/// [`generic::QueueBuilder`], which has its methods.
///
/// ```
/// use procwire::queue::{Queue, QueueBuilder};
///
/// let q: Queue<u64> = QueueBuilder::new().maxsize(100).prefetch(8).build()?;
/// assert_eq!(q.maxsize(), Some(100));
/// # Ok::<(), procwire::Error>(())
/// ```
pub type QueueBuilder = generic::QueueBuilder<generic::Processes>;

/// A FIFO queue of `T`s shared between processes (see the [module docs](self) for who serves
/// it and the delivery rules, and [`generic::Queue`], which has its methods).
pub type Queue<T> = generic::Queue<T, generic::Processes>;

/// A [`Queue`] that counts unfinished tasks, like `multiprocessing.JoinableQueue`; see
/// [`generic::JoinableQueue`].
pub type JoinableQueue<T> = generic::JoinableQueue<T, generic::Processes>;
