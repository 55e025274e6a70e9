//! [`Queue`] and [`JoinableQueue`] between threads: the [`queue`](crate::queue) API over a
//! `Mutex` and `Condvar`s, like `queue.Queue` (which `multiprocessing.dummy` uses).
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
//! - Items stay in memory as they are: `T` needs no serde. [`put`](Queue::put) takes `&T`
//!   as in the process version, so it stores a clone (`T: Clone`); items need `Send` to
//!   reach other threads.
//! - A queue is shared by cloning its handle (and moving the clone to a thread or a
//!   [`Process`](super::process::Process)): it has no address or key, no `connect`, and its
//!   handles do not serialize.
//! - Nothing is prefetched and nothing is encoded: [`Queue::set_prefetch`],
//!   [`QueueBuilder::prefetch`] and [`QueueBuilder::max_item_size`] are accepted and have no
//!   effect, and a put never fails with [`Error::MessageTooLarge`].
//! - The same errors otherwise: [`Error::Closed`] for a put after [`close`](Queue::close),
//!   [`Error::Remote`] of kind `value` for a `task_done` too many.

use std::collections::VecDeque;
use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub use crate::queue::DEFAULT_PREFETCH;

use crate::RemoteKind;
use crate::util::deadline_of;
use crate::util::{lock, wait_until};
use crate::{Error, Result};

/// Options for a new queue: maxsize (and, for the process version's signature, prefetch and
/// largest item, which have no effect on threads).
///
/// ```
/// use procwire::dummy::queue::{Queue, QueueBuilder};
///
/// let q: Queue<u64> = QueueBuilder::new().maxsize(100).prefetch(8).build()?;
/// assert_eq!(q.maxsize(), Some(100));
/// # Ok::<(), procwire::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct QueueBuilder {
    maxsize: Option<usize>,
}

impl QueueBuilder {
    /// The default options: unbounded.
    pub fn new() -> Self {
        QueueBuilder::default()
    }

    /// Bounds the queue: a put waits while `n` items are in it (`n` of 0 is taken as 1).
    pub fn maxsize(mut self, n: usize) -> Self {
        self.maxsize = Some(n.max(1));
        self
    }

    /// No effect: threads take items directly, nothing is fetched ahead.
    pub fn prefetch(self, n: u64) -> Self {
        let _ = n;
        self
    }

    /// No effect: items are not encoded, so there is no size to limit.
    pub fn max_item_size(self, n: u64) -> Self {
        let _ = n;
        self
    }

    /// Creates the queue.
    pub fn build<T: Clone>(self) -> Result<Queue<T>> {
        Ok(Queue::from_inner(Inner::new(self.maxsize, false)))
    }

    /// Creates a [`JoinableQueue`].
    pub fn build_joinable<T: Clone>(self) -> Result<JoinableQueue<T>> {
        Ok(JoinableQueue { q: Queue::from_inner(Inner::new(self.maxsize, true)) })
    }
}

struct State<T> {
    items: VecDeque<T>,
    /// Items put and not yet marked done (joinable queues).
    unfinished: u64,
}

struct Inner<T> {
    st: Mutex<State<T>>,
    maxsize: Option<usize>,
    joinable: bool,
    /// Items arrived (getters wait here).
    not_empty: Condvar,
    /// Room was made (putters wait here).
    not_full: Condvar,
    /// Every task is done (joiners wait here).
    all_done: Condvar,
}

impl<T> Inner<T> {
    fn new(maxsize: Option<usize>, joinable: bool) -> Arc<Inner<T>> {
        Arc::new(Inner {
            st: Mutex::new(State { items: VecDeque::new(), unfinished: 0 }),
            maxsize,
            joinable,
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            all_done: Condvar::new(),
        })
    }

    fn has_room(&self, st: &State<T>) -> bool {
        self.maxsize.is_none_or(|m| st.items.len() < m)
    }
}

/// A FIFO queue of `T`s shared between threads (see the [module docs](self) for how it
/// differs from the process version).
///
/// Every method takes `&self`; clones share the queue, and a `Queue` may be used from many
/// threads at once.
///
/// ```
/// use procwire::dummy::queue::Queue;
/// use std::time::Duration;
///
/// let q: Queue<u32> = Queue::with_maxsize(2)?;
/// assert!(q.try_put(&1)?);
/// assert!(q.try_put(&2)?);
/// assert!(!q.put_timeout(&3, Duration::from_millis(10))?, "full");
/// assert_eq!(q.qsize()?, 2);
/// assert_eq!(q.get()?, 1);
/// assert_eq!(q.get_timeout(Duration::from_millis(10))?, Some(2));
/// assert_eq!(q.get_timeout(Duration::from_millis(10))?, None);
/// # Ok::<(), procwire::Error>(())
/// ```
pub struct Queue<T> {
    inner: Arc<Inner<T>>,
    /// This handle's own: see [`Queue::close`].
    closed: AtomicBool,
}

impl<T> Clone for Queue<T> {
    /// Another handle of the same queue, closed if this one is (see [`Queue::close`]).
    fn clone(&self) -> Self {
        Queue { inner: self.inner.clone(), closed: AtomicBool::new(self.closed.load(Ordering::SeqCst)) }
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("maxsize", &self.inner.maxsize)
            .field("qsize", &lock(&self.inner.st).items.len())
            .field("joinable", &self.inner.joinable)
            .finish()
    }
}

impl<T: Clone> Queue<T> {
    /// An unbounded queue.
    pub fn new() -> Result<Self> {
        QueueBuilder::default().build()
    }

    /// A queue of at most `maxsize` items (0 is taken as 1).
    pub fn with_maxsize(maxsize: usize) -> Result<Self> {
        QueueBuilder::default().maxsize(maxsize).build()
    }

    fn from_inner(inner: Arc<Inner<T>>) -> Self {
        Queue { inner, closed: AtomicBool::new(false) }
    }

    /// Puts a clone of `item` at the end, waiting while the queue is full.
    pub fn put(&self, item: &T) -> Result<()> {
        self.put_until(item, None).map(drop)
    }

    /// Puts a clone of `item`, waiting at most `timeout` for room; `false` if there was none.
    pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<bool> {
        self.put_until(item, deadline_of(Some(timeout)))
    }

    /// Puts a clone of `item` only if there is room now; `false` if the queue is full.
    pub fn try_put(&self, item: &T) -> Result<bool> {
        self.put_until(item, Some(Instant::now()))
    }

    fn put_until(&self, item: &T, deadline: Option<Instant>) -> Result<bool> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        let q = &*self.inner;
        let mut st = lock(&q.st);
        while !q.has_room(&st) {
            st = match wait_until(&q.not_full, st, deadline) {
                Some(g) => g,
                None => return Ok(false),
            };
        }
        st.items.push_back(item.clone());
        st.unfinished += 1;
        q.not_empty.notify_one();
        Ok(true)
    }

    /// Takes the item at the front, waiting for one.
    pub fn get(&self) -> Result<T> {
        match self.get_until(None)? {
            Some(v) => Ok(v),
            None => Err(Error::Timeout("a get without a timeout timed out".into())),
        }
    }

    /// Takes the item at the front, waiting at most `timeout`; `None` if none came.
    pub fn get_timeout(&self, timeout: Duration) -> Result<Option<T>> {
        self.get_until(deadline_of(Some(timeout)))
    }

    /// Takes the item at the front if there is one now.
    pub fn try_get(&self) -> Result<Option<T>> {
        self.get_until(Some(Instant::now()))
    }

    fn get_until(&self, deadline: Option<Instant>) -> Result<Option<T>> {
        let q = &*self.inner;
        let mut st = lock(&q.st);
        loop {
            if let Some(item) = st.items.pop_front() {
                q.not_full.notify_one();
                return Ok(Some(item));
            }
            st = match wait_until(&q.not_empty, st, deadline) {
                Some(g) => g,
                None => return Ok(None),
            };
        }
    }

    /// The number of items in the queue. Other threads may change it at any moment.
    pub fn qsize(&self) -> Result<usize> {
        Ok(lock(&self.inner.st).items.len())
    }

    /// Whether [`qsize`](Queue::qsize) is 0.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.qsize()? == 0)
    }

    /// Whether [`qsize`](Queue::qsize) reached the maxsize (never, without one).
    pub fn is_full(&self) -> Result<bool> {
        match self.inner.maxsize {
            None => Ok(false),
            Some(m) => Ok(self.qsize()? >= m),
        }
    }

    /// This handle will put no more items: later puts through it (and through clones made
    /// from it afterwards) fail with [`Error::Closed`]. Gets still work.
    ///
    /// Differences: items put are in the queue at once, so there is nothing to write out.
    /// In the process version a handle's clones in the same process close with it, and a
    /// copy sent to another process does not; a thread's handle is a clone, so here each
    /// clone closes on its own (a producer thread that closes its handle does not close the
    /// others').
    pub fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::SeqCst);
        Ok(())
    }
}

impl<T> Queue<T> {
    /// The maxsize, if the queue has one.
    pub fn maxsize(&self) -> Option<usize> {
        self.inner.maxsize
    }

    /// No effect: threads take items directly (kept for the process version's signature).
    pub fn set_prefetch(&self, n: u64) {
        let _ = n;
    }
}

/// A [`Queue`] that counts unfinished tasks, like `queue.Queue`'s `task_done` and `join`:
/// every put adds one, [`task_done`](JoinableQueue::task_done) removes one, and
/// [`join`](JoinableQueue::join) waits until none is left. Everything else is the
/// [`Queue`]'s, through `Deref`.
///
/// ```
/// use procwire::dummy::queue::JoinableQueue;
///
/// let q: JoinableQueue<String> = JoinableQueue::new()?;
/// q.put(&"task".to_string())?;
/// let worker = { let q = q.clone(); std::thread::spawn(move || -> procwire::Result<()> {
///     let _task = q.get()?;
///     q.task_done()
/// }) };
/// q.join()?;
/// worker.join().unwrap()?;
/// # Ok::<(), procwire::Error>(())
/// ```
pub struct JoinableQueue<T> {
    q: Queue<T>,
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue { q: self.q.clone() }
    }
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("JoinableQueue").field(&self.q).finish()
    }
}

impl<T> Deref for JoinableQueue<T> {
    type Target = Queue<T>;
    fn deref(&self) -> &Queue<T> {
        &self.q
    }
}

impl<T: Clone> JoinableQueue<T> {
    /// An unbounded joinable queue.
    pub fn new() -> Result<Self> {
        QueueBuilder::default().build_joinable()
    }

    /// A joinable queue of at most `maxsize` items.
    pub fn with_maxsize(maxsize: usize) -> Result<Self> {
        QueueBuilder::default().maxsize(maxsize).build_joinable()
    }

    /// Marks one task (an item someone got) as done. More calls than puts is an
    /// [`Error::Remote`] of kind `value`, as CPython's `ValueError` (and the process version).
    pub fn task_done(&self) -> Result<()> {
        let q = &*self.q.inner;
        let mut st = lock(&q.st);
        if st.unfinished == 0 {
            return Err(Error::Remote {
                kind: RemoteKind::Value,
                message: "task_done() called too many times".into(),
            });
        }
        st.unfinished -= 1;
        if st.unfinished == 0 {
            q.all_done.notify_all();
        }
        Ok(())
    }

    /// Waits until every item put so far was marked done.
    pub fn join(&self) -> Result<()> {
        self.join_until(None).map(drop)
    }

    /// As [`join`](JoinableQueue::join), waiting at most `timeout`; `false` if tasks remain.
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool> {
        self.join_until(deadline_of(Some(timeout)))
    }

    fn join_until(&self, deadline: Option<Instant>) -> Result<bool> {
        let q = &*self.q.inner;
        let mut st = lock(&q.st);
        while st.unfinished > 0 {
            st = match wait_until(&q.all_done, st, deadline) {
                Some(g) => g,
                None => return Ok(false),
            };
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiting_put_gets_room_from_a_get() {
        let q: Queue<u32> = Queue::with_maxsize(1).unwrap();
        q.put(&1).unwrap();
        let q2 = q.clone();
        let t = std::thread::spawn(move || q2.put_timeout(&2, Duration::from_secs(30)).unwrap());
        assert_eq!(q.get().unwrap(), 1);
        assert!(t.join().unwrap());
        assert_eq!(q.get().unwrap(), 2);
    }

    #[test]
    fn close_refuses_puts_of_this_handle_only() {
        let q: Queue<u32> = Queue::new().unwrap();
        let producer = q.clone();
        q.put(&1).unwrap();
        q.close().unwrap();
        assert!(matches!(q.put(&2), Err(Error::Closed)));
        assert!(matches!(q.clone().put(&2), Err(Error::Closed)));
        producer.put(&3).unwrap();
        assert_eq!(q.get().unwrap(), 1);
        assert_eq!(q.get().unwrap(), 3);
    }

    #[test]
    fn items_need_not_be_serde() {
        #[derive(Clone, Debug, PartialEq)]
        struct NotSerde(std::rc::Rc<()>);
        // Rc is not Send: a queue of it still works on one thread.
        let q: Queue<NotSerde> = Queue::new().unwrap();
        let item = NotSerde(std::rc::Rc::new(()));
        q.put(&item).unwrap();
        assert_eq!(q.get().unwrap(), item);
    }

    #[test]
    fn task_done_too_many_is_a_value_error() {
        let q: JoinableQueue<u8> = JoinableQueue::new().unwrap();
        q.put(&1).unwrap();
        assert_eq!(q.get().unwrap(), 1);
        q.task_done().unwrap();
        assert!(matches!(q.task_done(), Err(Error::Remote { kind: RemoteKind::Value, .. })));
        assert!(q.join_timeout(Duration::ZERO).unwrap());
    }
}
