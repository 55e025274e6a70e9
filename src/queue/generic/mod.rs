//! The queue written once over its [`Backend`]: [`queue::Queue`](crate::queue::Queue) is
//! `Queue<T, Processes>` and [`dummy::queue::Queue`](crate::dummy::queue::Queue) is
//! `Queue<T, Threads>`. The builder and every method are here; a backend only stores items
//! and waits for them. Code that should work with either takes a `Queue<T, B>` with
//! `B: Carries<T>`.
//!
//! Each backend's module says what differs between them; the items here say it where they
//! behave differently.

mod backend;
mod iter;

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::time::{Duration, Instant};

pub(crate) use backend::sealed;
pub use backend::{Backend, Carries, Processes, Threads};
pub use iter::Iter;

use self::sealed::Settings;
use crate::Result;
use crate::connection::DEFAULT_MAX_MESSAGE_SIZE;
use crate::util::deadline_of;

/// The most items a consumer in another process asks for ahead of its gets, by default.
pub const DEFAULT_PREFETCH: u64 = 64;

/// Options for a new queue: maxsize, prefetch, largest item, and with [`Processes`] its
/// address and key (`address` and `authkey` on `QueueBuilder<Processes>`).
///
/// ```
/// # use procwire::dummy as pw; // the same with `use procwire as pw`
/// use pw::queue::{Queue, QueueBuilder};
///
/// let q: Queue<u64> = QueueBuilder::new().maxsize(100).prefetch(8).build()?;
/// assert_eq!(q.maxsize(), Some(100));
/// # Ok::<(), procwire::Error>(())
/// ```
pub struct QueueBuilder<B: Backend> {
    pub(in crate::queue) settings: Settings<B::Options>,
}

impl<B: Backend> Clone for QueueBuilder<B> {
    fn clone(&self) -> Self {
        QueueBuilder { settings: self.settings.clone() }
    }
}

impl<B: Backend> fmt::Debug for QueueBuilder<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("QueueBuilder").field(&self.settings).finish()
    }
}

impl<B: Backend> Default for QueueBuilder<B> {
    fn default() -> Self {
        QueueBuilder {
            settings: Settings {
                maxsize: None,
                prefetch: DEFAULT_PREFETCH,
                max_item_size: DEFAULT_MAX_MESSAGE_SIZE - 1,
                options: B::Options::default(),
            },
        }
    }
}

impl<B: Backend> QueueBuilder<B> {
    /// The default options: unbounded (with [`Processes`]: a fresh address, a random key).
    pub fn new() -> Self {
        QueueBuilder::default()
    }

    /// Bounds the queue: a put waits while `n` items are in it (`n` of 0 is taken as 1).
    /// With [`Processes`], items prefetched by consumers count until they are taken, and
    /// slots handed to a producer in another process count until it fills them or gives them
    /// back (it does after 5 ms without a put).
    pub fn maxsize(mut self, n: usize) -> Self {
        self.settings.maxsize = Some(n.max(1));
        self
    }

    /// The prefetch limit of this handle and of handles made from it (see the
    /// [`queue` module docs](crate::queue)). No effect with [`Threads`], which take items
    /// directly.
    pub fn prefetch(mut self, n: u64) -> Self {
        self.settings.prefetch = n;
        self
    }

    /// The largest encoded item (default: just under 64 MiB). A larger one is refused by put
    /// with [`Error::MessageTooLarge`](crate::Error::MessageTooLarge). No effect with
    /// [`Threads`]: items are not encoded, so there is no size to limit.
    pub fn max_item_size(mut self, n: u64) -> Self {
        self.settings.max_item_size = n.max(1);
        self
    }

    /// Creates the queue (with [`Processes`], served by this process).
    pub fn build<T>(self) -> Result<Queue<T, B>>
    where
        B: Carries<T>,
    {
        Ok(Queue::from_handle(B::build(self.settings, false)?))
    }

    /// Creates a [`JoinableQueue`].
    pub fn build_joinable<T>(self) -> Result<JoinableQueue<T, B>>
    where
        B: Carries<T>,
    {
        Ok(JoinableQueue { q: Queue::from_handle(B::build(self.settings, true)?) })
    }
}

/// A multi-producer, multi-consumer FIFO queue of `T`s; see the [`queue`](crate::queue)
/// module for the process version (who serves it, the delivery rules) and
/// [`dummy::queue`](crate::dummy::queue) for how the thread version differs.
///
/// Every method takes `&self`; clones share the queue, and a `Queue` may be used from many
/// threads at once. With [`Processes`], items travel as CBOR, and a handle sent to another
/// process (as a [`Process`](crate::process::Process) argument, or any serde channel)
/// serializes as the queue's address, key and settings: send it only over a channel you
/// trust, as it lets the receiver in.
///
/// ```
/// # use procwire::dummy as pw; // the same with `use procwire as pw`
/// use pw::queue::Queue;
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
pub struct Queue<T, B: Backend> {
    pub(in crate::queue) h: B::Handle<T>,
    _item: PhantomData<fn(T) -> T>,
}

impl<T, B: Backend> Clone for Queue<T, B> {
    /// Another handle of the same queue. With [`Threads`], closed if this one is (see
    /// [`close`](Queue::close)).
    fn clone(&self) -> Self {
        Queue::from_handle(self.h.clone())
    }
}

impl<T, B: Backend> fmt::Debug for Queue<T, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.h.fmt(f)
    }
}

impl<T, B: Backend> Queue<T, B> {
    pub(in crate::queue) fn from_handle(h: B::Handle<T>) -> Self {
        Queue { h, _item: PhantomData }
    }

    /// The maxsize, if the queue has one.
    pub fn maxsize(&self) -> Option<usize> {
        B::maxsize(&self.h)
    }

    /// Sets how many items this handle may ask for ahead of its gets (see the
    /// [`queue` module docs](crate::queue)); 0: none, each get fetches its item. Handles made
    /// from this one (clones, and copies sent to other processes) start with this value too.
    /// No effect on the creator's own handles, nor with [`Threads`]: they take items directly.
    pub fn set_prefetch(&self, n: u64) {
        B::set_prefetch(&self.h, n);
    }

    /// The number of items in the queue (with [`Processes`], counting those prefetched by
    /// consumers and not yet taken). Other threads and processes may change it at any moment.
    pub fn qsize(&self) -> Result<usize> {
        B::qsize(&self.h)
    }

    /// Whether [`qsize`](Queue::qsize) is 0.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.qsize()? == 0)
    }

    /// Whether [`qsize`](Queue::qsize) reached the maxsize (never, without one).
    pub fn is_full(&self) -> Result<bool> {
        match self.maxsize() {
            None => Ok(false),
            Some(m) => Ok(self.qsize()? >= m),
        }
    }

    /// This handle will put no more items: later puts through it fail with
    /// [`Error::Closed`](crate::Error::Closed). Gets still work.
    ///
    /// With [`Processes`], the handle's clones in this process close with it (a copy sent to
    /// another process does not); from another process than the creator, close writes every
    /// put made so far and waits until the queue has them, reporting a failure. Dropping the
    /// last handle does the same silently. With [`Threads`], items put are in the queue at
    /// once, so there is nothing to write out; a thread's handle is a clone, so each clone
    /// closes on its own (a producer thread that closes its handle does not close the
    /// others'), and clones made from a closed handle are closed.
    pub fn close(&self) -> Result<()> {
        B::close(&self.h)
    }
}

impl<T, B: Carries<T>> Queue<T, B> {
    /// An unbounded queue (with [`Processes`], served by this process, at a fresh address with
    /// a random key).
    pub fn new() -> Result<Self> {
        QueueBuilder::new().build()
    }

    /// A queue of at most `maxsize` items (see [`QueueBuilder::maxsize`]).
    pub fn with_maxsize(maxsize: usize) -> Result<Self> {
        QueueBuilder::new().maxsize(maxsize).build()
    }

    /// Puts `item` at the end, waiting while the queue is full.
    ///
    /// With [`Processes`], from another process than the queue's creator, put returns once
    /// the item is queued for this handle's writer thread; an error of that thread (the queue
    /// went away) is returned by a later put or by [`close`](Queue::close). With
    /// [`Threads`], the queue stores a clone of `item`.
    pub fn put(&self, item: &T) -> Result<()> {
        B::put(&self.h, item, None).map(drop)
    }

    /// Puts `item`, waiting at most `timeout` for room; `false` if there was none.
    pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<bool> {
        B::put(&self.h, item, deadline_of(Some(timeout)))
    }

    /// Puts `item` only if there is room now; `false` if the queue is full.
    pub fn try_put(&self, item: &T) -> Result<bool> {
        B::put(&self.h, item, Some(Instant::now()))
    }

    /// Takes the item at the front, waiting for one. With [`Processes`], an item that does
    /// not decode as `T` is an [`Error::Decode`](crate::Error::Decode) (and is gone from the
    /// queue).
    ///
    /// After [`finish`](Queue::finish), a get that finds the queue empty fails with
    /// [`Error::Finished`](crate::Error::Finished) instead of waiting (so do
    /// [`get_timeout`](Queue::get_timeout) and [`try_get`](Queue::try_get)).
    pub fn get(&self) -> Result<T> {
        match B::get(&self.h, None)? {
            Some(v) => Ok(v),
            None => Err(crate::Error::Timeout("a get without a timeout timed out".into())),
        }
    }

    /// Takes the item at the front, waiting at most `timeout`; `None` if none came.
    pub fn get_timeout(&self, timeout: Duration) -> Result<Option<T>> {
        B::get(&self.h, deadline_of(Some(timeout)))
    }

    /// Takes the item at the front if there is one now. With [`Processes`], from another
    /// process this asks the server (a round trip).
    pub fn try_get(&self) -> Result<Option<T>> {
        B::get(&self.h, Some(Instant::now()))
    }

    /// Says that no more items will come, from any handle in any process: once the items in
    /// the queue are taken, gets fail with [`Error::Finished`](crate::Error::Finished) instead
    /// of waiting, and every consumer's [`iter`](Queue::iter) ends. Call it when the producers
    /// are done (joined, or their handles [closed](Queue::close)); consumers then need no
    /// sentinel items.
    ///
    /// It does not stop puts: an item put after it (by a producer that was not done after
    /// all) is still in the queue for a later get, but consumers already told of the end do
    /// not wait for it. With [`Processes`], the server has the mark when this returns, and
    /// every item this handle put before it is ahead of it; an item a consumer in another
    /// process prefetched and then gave back (its process ended before taking it) stays in
    /// the queue after the end was announced.
    ///
    /// ```
    /// # use procwire::dummy as pw; // the same with `use procwire as pw`
    /// use pw::queue::Queue;
    ///
    /// let q: Queue<u32> = Queue::new()?;
    /// let consumer = { let q = q.clone(); std::thread::spawn(move || q.iter().sum::<procwire::Result<u32>>()) };
    /// for x in 1..=100 {
    ///     q.put(&x)?;
    /// }
    /// q.finish()?;
    /// assert_eq!(consumer.join().unwrap()?, 5050);
    /// assert!(matches!(q.get(), Err(procwire::Error::Finished)));
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn finish(&self) -> Result<()> {
        B::finish(&self.h)
    }

    /// The items as they come, taken one by one, until the queue is
    /// [finished](Queue::finish) and empty: a consumer's loop, with no sentinel. Each is a
    /// `Result`: after an error the iteration ends. `for item in &queue` does the same.
    pub fn iter(&self) -> Iter<'_, T, B> {
        Iter::new(self, iter::Wait::Forever)
    }

    /// The items in the queue now, taken one by one (as [`try_get`](Queue::try_get) until it
    /// finds none). Each is a `Result`: after an error the iteration ends.
    ///
    /// ```
    /// # use procwire::dummy as pw; // the same with `use procwire as pw`
    /// use pw::queue::Queue;
    ///
    /// let q: Queue<u32> = Queue::new()?;
    /// for x in 1..=3 {
    ///     q.put(&x)?;
    /// }
    /// let items: Vec<u32> = q.try_iter().collect::<procwire::Result<_>>()?;
    /// assert_eq!(items, [1, 2, 3]);
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn try_iter(&self) -> Iter<'_, T, B> {
        Iter::new(self, iter::Wait::Not)
    }

    /// The items as they come, taken one by one, until none comes for `idle` (as
    /// [`get_timeout`](Queue::get_timeout) until it finds none) or the queue is
    /// [finished](Queue::finish) and empty. After an error the iteration ends.
    pub fn iter_timeout(&self, idle: Duration) -> Iter<'_, T, B> {
        Iter::new(self, iter::Wait::For(idle))
    }
}

impl<'a, T, B: Carries<T>> IntoIterator for &'a Queue<T, B> {
    type Item = Result<T>;
    type IntoIter = Iter<'a, T, B>;

    /// [`Queue::iter`].
    fn into_iter(self) -> Iter<'a, T, B> {
        self.iter()
    }
}

/// A [`Queue`] that counts unfinished tasks, like `multiprocessing.JoinableQueue` (and
/// `queue.Queue`'s `task_done` and `join`): every put adds one,
/// [`task_done`](JoinableQueue::task_done) removes one, and [`join`](JoinableQueue::join)
/// waits until none is left. Everything else is the [`Queue`]'s, through `Deref`.
///
/// With [`Processes`], a put counts once it reaches the server: join writes this handle's
/// own puts first, but a put another process has not written yet (see [`Queue::put`]) is not
/// waited for.
///
/// ```
/// # use procwire::dummy as pw; // the same with `use procwire as pw`
/// use pw::queue::JoinableQueue;
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
pub struct JoinableQueue<T, B: Backend> {
    pub(in crate::queue) q: Queue<T, B>,
}

impl<T, B: Backend> Clone for JoinableQueue<T, B> {
    fn clone(&self) -> Self {
        JoinableQueue { q: self.q.clone() }
    }
}

impl<T, B: Backend> fmt::Debug for JoinableQueue<T, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("JoinableQueue").field(&self.q).finish()
    }
}

impl<T, B: Backend> Deref for JoinableQueue<T, B> {
    type Target = Queue<T, B>;
    fn deref(&self) -> &Queue<T, B> {
        &self.q
    }
}

impl<T, B: Carries<T>> JoinableQueue<T, B> {
    /// An unbounded joinable queue (with [`Processes`], served by this process).
    pub fn new() -> Result<Self> {
        QueueBuilder::new().build_joinable()
    }

    /// A joinable queue of at most `maxsize` items.
    pub fn with_maxsize(maxsize: usize) -> Result<Self> {
        QueueBuilder::new().maxsize(maxsize).build_joinable()
    }
}

impl<T, B: Backend> JoinableQueue<T, B> {
    /// Marks one task (an item someone got) as done. More calls than puts is an
    /// [`Error::Remote`](crate::Error::Remote) of kind `value`, as CPython's `ValueError`.
    pub fn task_done(&self) -> Result<()> {
        B::task_done(&self.q.h)
    }

    /// Waits until every item put so far was marked done.
    pub fn join(&self) -> Result<()> {
        B::join(&self.q.h, None).map(drop)
    }

    /// As [`join`](JoinableQueue::join), waiting at most `timeout`; `false` if tasks remain.
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool> {
        B::join(&self.q.h, deadline_of(Some(timeout)))
    }
}
