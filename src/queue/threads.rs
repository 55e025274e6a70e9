//! The [`Threads`] backend: the queue's front over items in this process's memory, one
//! `Mutex` and a `Condvar` per kind of waiter, like `queue.Queue` (which
//! `multiprocessing.dummy` uses).

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use super::generic::Threads;
use super::generic::sealed::{self, Settings};
use crate::util::{lock, wait_until};
use crate::{Error, RemoteKind, Result};

struct State<T> {
    items: VecDeque<T>,
    /// Items put and not yet marked done (joinable queues).
    unfinished: u64,
    /// [`Queue::finish`](super::generic::Queue::finish) was called: a get of an empty queue
    /// ends instead of waiting.
    finished: bool,
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

/// A handle: the shared queue, and whether this handle was closed.
pub struct Handle<T> {
    inner: Arc<Inner<T>>,
    /// This handle's own (a clone starts with its source's).
    closed: AtomicBool,
}

impl<T> Clone for Handle<T> {
    fn clone(&self) -> Self {
        Handle { inner: self.inner.clone(), closed: AtomicBool::new(self.closed.load(Ordering::SeqCst)) }
    }
}

impl<T> fmt::Debug for Handle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("maxsize", &self.inner.maxsize)
            .field("qsize", &lock(&self.inner.st).items.len())
            .field("joinable", &self.inner.joinable)
            .finish()
    }
}

impl sealed::Backend for Threads {
    type Options = ();
    type Handle<T> = Handle<T>;

    fn maxsize<T>(h: &Handle<T>) -> Option<usize> {
        h.inner.maxsize
    }

    fn qsize<T>(h: &Handle<T>) -> Result<usize> {
        Ok(lock(&h.inner.st).items.len())
    }

    fn set_prefetch<T>(_: &Handle<T>, _: u64) {}

    fn close<T>(h: &Handle<T>) -> Result<()> {
        h.closed.store(true, Ordering::SeqCst);
        Ok(())
    }

    fn finish<T>(h: &Handle<T>) -> Result<()> {
        let q = &*h.inner;
        lock(&q.st).finished = true;
        q.not_empty.notify_all();
        Ok(())
    }

    fn task_done<T>(h: &Handle<T>) -> Result<()> {
        let q = &*h.inner;
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

    fn join<T>(h: &Handle<T>, deadline: Option<Instant>) -> Result<bool> {
        let q = &*h.inner;
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

impl<T: Clone> sealed::Carries<T> for Threads {
    fn build(settings: Settings<()>, joinable: bool) -> Result<Handle<T>> {
        let inner = Arc::new(Inner {
            st: Mutex::new(State { items: VecDeque::new(), unfinished: 0, finished: false }),
            maxsize: settings.maxsize,
            joinable,
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            all_done: Condvar::new(),
        });
        Ok(Handle { inner, closed: AtomicBool::new(false) })
    }

    fn put(h: &Handle<T>, item: &T, deadline: Option<Instant>) -> Result<bool> {
        if h.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        let q = &*h.inner;
        let mut st = lock(&q.st);
        while q.maxsize.is_some_and(|m| st.items.len() >= m) {
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

    fn get(h: &Handle<T>, deadline: Option<Instant>) -> Result<Option<T>> {
        let q = &*h.inner;
        let mut st = lock(&q.st);
        loop {
            if let Some(item) = st.items.pop_front() {
                q.not_full.notify_one();
                return Ok(Some(item));
            }
            if st.finished {
                return Err(Error::Finished);
            }
            st = match wait_until(&q.not_empty, st, deadline) {
                Some(g) => g,
                None => return Ok(None),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::generic::{JoinableQueue, Queue};
    use super::*;

    #[test]
    fn a_waiting_put_gets_room_from_a_get() {
        let q: Queue<u32, Threads> = Queue::with_maxsize(1).unwrap();
        q.put(&1).unwrap();
        let q2 = q.clone();
        let t = std::thread::spawn(move || q2.put_timeout(&2, Duration::from_secs(30)).unwrap());
        assert_eq!(q.get().unwrap(), 1);
        assert!(t.join().unwrap());
        assert_eq!(q.get().unwrap(), 2);
    }

    #[test]
    fn close_refuses_puts_of_this_handle_only() {
        let q: Queue<u32, Threads> = Queue::new().unwrap();
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
        let q: Queue<NotSerde, Threads> = Queue::new().unwrap();
        let item = NotSerde(std::rc::Rc::new(()));
        q.put(&item).unwrap();
        assert_eq!(q.get().unwrap(), item);
    }

    #[test]
    fn task_done_too_many_is_a_value_error() {
        let q: JoinableQueue<u8, Threads> = JoinableQueue::new().unwrap();
        q.put(&1).unwrap();
        assert_eq!(q.get().unwrap(), 1);
        q.task_done().unwrap();
        assert!(matches!(q.task_done(), Err(Error::Remote { kind: RemoteKind::Value, .. })));
        assert!(q.join_timeout(Duration::ZERO).unwrap());
    }
}
