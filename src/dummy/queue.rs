//! [`Queue`] and [`JoinableQueue`] between threads: the [`queue`](crate::queue) API over
//! items in memory ([`generic::Threads`]), like `queue.Queue` (which `multiprocessing.dummy`
//! uses). The methods are the process version's, written once in [`generic`].
//!
//! ```
//! use procwire::dummy::queue::Queue;
//!
//! let q: Queue<(u32, String)> = Queue::new()?;
//! q.put(&(1, "one".to_string()))?;
//! assert_eq!(q.get()?, (1, "one".to_string()));
//! assert_eq!(q.try_get()?, None);
//! # Ok::<(), procwire::Error>(())
//! ```
//!
//! # Differences from the process version
//!
//! - Items stay in memory as they are: `T` needs no serde. [`put`](generic::Queue::put) takes
//!   `&T` as in the process version, so it stores a clone (`T: Clone`); items need `Send` to
//!   reach other threads.
//! - A queue is shared by cloning its handle (and moving the clone to a thread or a
//!   [`Process`](super::process::Process)): it has no address or key, no `connect`, and its
//!   handles do not serialize.
//! - Nothing is prefetched and nothing is encoded: [`set_prefetch`](generic::Queue::set_prefetch),
//!   [`QueueBuilder::prefetch`](generic::QueueBuilder::prefetch) and
//!   [`QueueBuilder::max_item_size`](generic::QueueBuilder::max_item_size) are accepted and
//!   have no effect, and a put never fails with [`Error::MessageTooLarge`](crate::Error::MessageTooLarge).
//! - [`close`](generic::Queue::close) closes one handle: each clone closes on its own.
//! - The same errors otherwise: [`Error::Closed`](crate::Error::Closed) for a put after
//!   `close`, [`Error::Remote`](crate::Error::Remote) of kind `value` for a `task_done` too many.

pub use crate::queue::DEFAULT_PREFETCH;
pub use crate::queue::generic;

/// Options for a new queue: maxsize (and, for the process version's signature, prefetch and
/// largest item, which have no effect on threads); see [`generic::QueueBuilder`].
///
/// ```
/// use procwire::dummy::queue::{Queue, QueueBuilder};
///
/// let q: Queue<u64> = QueueBuilder::new().maxsize(100).prefetch(8).build()?;
/// assert_eq!(q.maxsize(), Some(100));
/// # Ok::<(), procwire::Error>(())
/// ```
pub type QueueBuilder = generic::QueueBuilder<generic::Threads>;

/// A FIFO queue of `T`s shared between threads (see the [module docs](self) for how it
/// differs from the process version, and [`generic::Queue`], which has its methods).
pub type Queue<T> = generic::Queue<T, generic::Threads>;

/// A [`Queue`] that counts unfinished tasks, like `queue.Queue`'s `task_done` and `join`; see
/// [`generic::JoinableQueue`].
pub type JoinableQueue<T> = generic::JoinableQueue<T, generic::Threads>;
