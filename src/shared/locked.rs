//! [`Value`] and [`Array`]: data behind a process-shared lock, reached only through a
//! [`Guard`] (or copies made under it).

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use super::guard::{Guard, lock, unpoisoned};
use super::segment::{Kind, Segment};
use super::{Pod, out_of_range};
#[cfg(doc)]
use crate::Error;
use crate::Result;

/// One `T` in shared memory behind a lock (see the [module docs](super)).
///
/// ```
/// # #[cfg(any(target_os = "linux", windows))] {
/// use std::time::Duration;
/// use procwire::shared::Value;
///
/// let v = Value::new(1u8)?;
/// let mut g = v.lock()?;
/// *g += 1;
/// match v.lock() {
///     Err(procwire::Error::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::Deadlock),
///     _ => panic!("a second guard on the same thread"),
/// }
/// let other = v.clone();
/// let waited = std::thread::spawn(move || other.lock_timeout(Duration::from_millis(20)).map(|_| ()));
/// assert!(waited.join().unwrap().unwrap_err().is_timeout(), "this thread holds it");
/// drop(g);
/// assert_eq!(v.get()?, 2);
/// # }
/// # Ok::<(), procwire::Error>(())
/// ```
pub struct Value<T: Pod> {
    pub(super) seg: Arc<Segment>,
    pub(super) _t: PhantomData<T>,
}

impl<T: Pod> Clone for Value<T> {
    fn clone(&self) -> Self {
        Value { seg: self.seg.clone(), _t: PhantomData }
    }
}

impl<T: Pod> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value").field("type", &std::any::type_name::<T>()).finish_non_exhaustive()
    }
}

impl<T: Pod> Value<T> {
    /// A new value, with its lock.
    pub fn new(value: T) -> Result<Self> {
        let seg = Segment::create::<T>(1, Kind::Locked)?;
        // SAFETY: the data area holds one T, aligned (DATA_AT is a multiple of 64); nobody else
        // has the memory yet.
        unsafe { seg.data().cast::<T>().write(value) };
        Ok(Value { seg: Arc::new(seg), _t: PhantomData })
    }

    fn ptr(&self) -> *mut T {
        self.seg.data().cast()
    }

    /// Locks the value (waiting for other threads and processes) and gives access to it. A
    /// thread that holds the lock already gets a `Deadlock` error. Poisoned data is given too,
    /// with [`Guard::previous_owner_died`] set.
    pub fn lock(&self) -> Result<Guard<'_, T>> {
        lock(&self.seg, self.ptr(), None, "Value")
    }

    /// As [`lock`](Value::lock), waiting at most `timeout`: [`Error::Timeout`] when another
    /// holder keeps the lock that long.
    pub fn lock_timeout(&self, timeout: Duration) -> Result<Guard<'_, T>> {
        lock(&self.seg, self.ptr(), Some(timeout), "Value")
    }

    /// Runs `f` on the value under its lock; [`Error::PreviousOwnerDied`] while poisoned.
    pub fn with_lock<R>(&self, f: impl FnOnce(&mut T) -> R) -> Result<R> {
        let mut g = unpoisoned(self.lock()?)?;
        Ok(f(&mut g))
    }

    /// A copy of the value, under the lock; [`Error::PreviousOwnerDied`] while poisoned.
    pub fn get(&self) -> Result<T> {
        self.with_lock(|v| *v)
    }

    /// Replaces the value, under the lock; [`Error::PreviousOwnerDied`] while poisoned.
    pub fn set(&self, value: T) -> Result<()> {
        self.with_lock(|v| *v = value)
    }
}

/// `len` values of `T` in shared memory behind one lock (see the [module docs](super)).
///
/// ```
/// # #[cfg(any(target_os = "linux", windows))] {
/// use procwire::shared::Array;
///
/// let a = Array::from_slice(&[1.5f64, 2.5, 3.0])?;
/// a.set(0, 0.5)?;
/// assert_eq!(a.to_vec()?, [0.5, 2.5, 3.0]);
/// assert_eq!(a.with_lock(|s| s.iter().sum::<f64>())?, 6.0);
/// assert!(a.set(3, 1.0).is_err(), "out of range");
/// # }
/// # Ok::<(), procwire::Error>(())
/// ```
pub struct Array<T: Pod> {
    pub(super) seg: Arc<Segment>,
    pub(super) len: usize,
    pub(super) _t: PhantomData<T>,
}

impl<T: Pod> Clone for Array<T> {
    fn clone(&self) -> Self {
        Array { seg: self.seg.clone(), len: self.len, _t: PhantomData }
    }
}

impl<T: Pod> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Array")
            .field("type", &std::any::type_name::<T>())
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<T: Pod> Array<T> {
    /// `len` zeroed elements, with a lock.
    pub fn new(len: usize) -> Result<Self> {
        let seg = Segment::create::<T>(len, Kind::Locked)?;
        Ok(Array { seg: Arc::new(seg), len, _t: PhantomData })
    }

    /// A copy of `items`, with a lock.
    pub fn from_slice(items: &[T]) -> Result<Self> {
        let a = Array::new(items.len())?;
        // SAFETY: the new array has room for exactly items.len() elements; nobody else has it.
        unsafe { std::ptr::copy_nonoverlapping(items.as_ptr(), a.ptr(), items.len()) };
        Ok(a)
    }

    fn ptr(&self) -> *mut T {
        self.seg.data().cast()
    }

    fn slice(&self) -> *mut [T] {
        std::ptr::slice_from_raw_parts_mut(self.ptr(), self.len)
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Locks the array and gives access to all of it as a slice (see [`Value::lock`]).
    pub fn lock(&self) -> Result<Guard<'_, [T]>> {
        lock(&self.seg, self.slice(), None, "Array")
    }

    /// As [`lock`](Array::lock), waiting at most `timeout`: [`Error::Timeout`] when another
    /// holder keeps the lock that long.
    pub fn lock_timeout(&self, timeout: Duration) -> Result<Guard<'_, [T]>> {
        lock(&self.seg, self.slice(), Some(timeout), "Array")
    }

    /// Runs `f` on the elements under the lock; [`Error::PreviousOwnerDied`] while poisoned.
    pub fn with_lock<R>(&self, f: impl FnOnce(&mut [T]) -> R) -> Result<R> {
        let mut g = unpoisoned(self.lock()?)?;
        Ok(f(&mut g))
    }

    /// A copy of element `i`, under the lock; [`Error::PreviousOwnerDied`] while poisoned.
    pub fn get(&self, i: usize) -> Result<T> {
        if i >= self.len {
            return Err(out_of_range(i, self.len));
        }
        self.with_lock(|s| s[i])
    }

    /// Replaces element `i`, under the lock; [`Error::PreviousOwnerDied`] while poisoned.
    pub fn set(&self, i: usize, value: T) -> Result<()> {
        if i >= self.len {
            return Err(out_of_range(i, self.len));
        }
        self.with_lock(|s| s[i] = value)
    }

    /// A copy of all elements, under the lock; [`Error::PreviousOwnerDied`] while poisoned.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.with_lock(|s| s.to_vec())
    }
}

/// Threads in one process, on the real memory and lock (and under Miri on its model).
#[cfg(all(test, any(target_os = "linux", windows)))]
mod tests {
    use super::*;
    use crate::Error;
    use crate::shared::handle::reopen;
    use std::io;

    /// A thread that ends holding the lock (as a killed process) poisons the memory: copies are
    /// refused until a holder clears it.
    #[test]
    fn a_holder_that_ended_holding_the_lock_poisons_it_until_cleared() {
        let v = Value::new(7u32).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut g = v.lock().unwrap();
                *g = 8;
                // Never unlocked: the thread ends holding it.
                std::mem::forget(g);
            });
        });
        assert!(matches!(v.get(), Err(Error::PreviousOwnerDied)), "{:?}", v.get());
        assert!(matches!(v.set(1), Err(Error::PreviousOwnerDied)));
        assert!(matches!(v.with_lock(|_| ()), Err(Error::PreviousOwnerDied)));
        let mut g = v.lock().unwrap();
        assert!(g.previous_owner_died(), "the guard says so, every time until cleared");
        assert_eq!(*g, 8);
        g.clear_poison();
        assert!(!g.previous_owner_died());
        drop(g);
        assert_eq!(v.get().unwrap(), 8);
        v.set(9).unwrap();
        assert!(!v.lock().unwrap().previous_owner_died());
    }

    #[test]
    fn a_panic_holding_a_guard_poisons_the_memory() {
        let a = Array::<i64>::from_slice(&[1, 2]).unwrap();
        let r = std::thread::scope(|s| {
            s.spawn(|| {
                a.with_lock(|s| {
                    s[0] = -1;
                    panic!("in the middle of an update");
                })
            })
            .join()
        });
        assert!(r.is_err());
        assert!(matches!(a.to_vec(), Err(Error::PreviousOwnerDied)));
        assert!(matches!(a.get(1), Err(Error::PreviousOwnerDied)));
        let mut g = a.lock().unwrap();
        assert_eq!(*g, [-1, 2]);
        g[0] = 1;
        g.clear_poison();
        drop(g);
        assert_eq!(a.to_vec().unwrap(), [1, 2]);
    }

    #[test]
    fn a_timed_lock_gives_up_while_another_thread_holds_it() {
        let v = Value::new(0u8).unwrap();
        let a = Array::<u8>::new(2).unwrap();
        let (v2, a2) = (v.clone(), a.clone());
        let (locked, go) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
        let holder = std::thread::spawn(move || {
            let (_g, _h) = (v2.lock().unwrap(), a2.lock().unwrap());
            locked.0.send(()).unwrap();
            let _ = go.1.recv();
        });
        locked.1.recv().unwrap();
        let t = std::time::Instant::now();
        let err = v.lock_timeout(Duration::from_millis(100)).unwrap_err();
        assert!(err.is_timeout() && err.to_string().contains("shared Value"), "{err}");
        // Some slack: a Windows wait may end up to a timer tick (15.6 ms) early.
        assert!(t.elapsed() >= Duration::from_millis(80), "gave up after {:?}", t.elapsed());
        let err = a.lock_timeout(Duration::ZERO).unwrap_err();
        assert!(err.is_timeout() && err.to_string().contains("shared Array"), "{err}");
        go.0.send(()).unwrap();
        holder.join().unwrap();
        *v.lock_timeout(Duration::from_secs(10)).unwrap() = 3;
        assert_eq!(v.get().unwrap(), 3);
        assert!(a.lock_timeout(Duration::ZERO).is_ok(), "a free lock is taken at once");
    }

    #[test]
    fn locking_again_on_the_holding_thread_is_an_error() {
        let v = Value::new(0i32).unwrap();
        let again: Value<i32> = reopen(&v).unwrap();
        let _g = v.lock().unwrap();
        for r in
            [again.lock().map(drop), v.lock_timeout(Duration::from_millis(1)).map(drop), v.get().map(drop)]
        {
            match r {
                Err(Error::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::Deadlock),
                other => panic!("{other:?}"),
            }
        }
    }
}
