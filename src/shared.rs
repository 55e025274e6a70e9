//! Plain data in shared memory, like `multiprocessing.Value` and `Array`, for when a server
//! process is more than the data needs: [`Value`] and [`Array`] (behind a lock), and
//! [`AtomicValue`] and [`AtomicArray`] (integers used only through atomic operations).
//!
//! The memory is freed when the last process that maps or holds it closes it, however the
//! processes end: nothing is ever left behind.
//!
//! - Linux: an anonymous memory file (`memfd_create`, sealed at its size). It never has a name
//!   in `/dev/shm`. A handle travels to other processes (as a
//!   [`Process`](crate::process::Process) argument, or any serde channel) as the sending
//!   process's pid and descriptor number; the receiver opens the file through
//!   `/proc/PID/fd/FD`, so the sender (the creator, or another holder that sent the handle on)
//!   must still be alive when a receiver first uses it, and the receiver must be allowed to
//!   read that process's descriptors (the same user, as for `ptrace` reads).
//! - Windows: a file mapping backed by the paging file, named `Local\procwire-shm-PID-ID` (the
//!   creator's pid and 32 random bits). A handle carries those two numbers, and the receiver
//!   opens the mapping by name: any process may have the handle from any holder, as long as
//!   some process still has the memory open (when none has, the name is gone and opening
//!   fails with a `NotFound` error). The mapping gets the default security of the creator
//!   (its user, SYSTEM, administrators), and `Local\` names reach the processes of one logon
//!   session.
//! - macOS and other Unix systems: not supported (no memory file without a name, no robust
//!   mutex); creation fails with an `Unsupported` error.
//!
//! # Two kinds, so that safe code cannot race
//!
//! A [`Value`] or [`Array`] has a process-shared lock next to its data, and every access to
//! the data takes it: [`lock`](Value::lock) (a [`Guard`] that derefs to the data, as
//! `std::sync::Mutex`), [`lock_timeout`](Value::lock_timeout), [`with_lock`](Value::with_lock),
//! and `get`/`set` (copies in and out under the lock). There is no way to the data around the
//! lock, so a guard's `&mut T` is never aliased.
//!
//! An [`AtomicValue`] or [`AtomicArray`] has no lock: its integers are only ever used as their
//! atomic type ([`AtomicValue::atomic`], `load`, `store`), from any process, lock-free.
//!
//! The memory records its kind, and a handle opened as the other kind is refused (as is one
//! opened as another type, element size or length), with an `InvalidData` error. (These checks
//! catch mistakes; a process that can open the memory can write anything into it, as with any
//! memory shared with another process.)
//!
//! # The lock
//!
//! It is robust: if a process or thread dies holding it, the next locker gets it. On Linux it
//! is a robust process-shared pthread mutex in the memory (`EOWNERDEAD`); on Windows a named
//! mutex object (`Local\procwire-shm-PID-ID-lock`, `WAIT_ABANDONED`). Locking again on the
//! thread that holds the lock is a `Deadlock` error, not a wait.
//!
//! A holder that died (or a thread that panicked holding a guard) may have left the data
//! half-written, so the memory is then marked *poisoned*, for every process, as a
//! `std::sync::Mutex` is: `get`, `set`, `with_lock` and `to_vec` fail with
//! [`Error::PreviousOwnerDied`], while [`lock`](Value::lock) still gives the guard, with
//! [`Guard::previous_owner_died`] set, to look at or repair the data and then
//! [`clear_poison`](Guard::clear_poison).
//!
//! Types are plain data: [`bytemuck::Pod`] (integers, floats, arrays of them, and
//! `#[repr(C)]` structs that derive it); the atomic kinds take the integer types of
//! [`HasAtomic`].
//!
//! ```
//! # #[cfg(any(target_os = "linux", windows))] {
//! use std::sync::atomic::Ordering;
//! use procwire::shared::{AtomicValue, Value};
//!
//! let total = Value::new(0u64)?;
//! total.with_lock(|n| *n += 1)?;
//! assert_eq!(total.get()?, 1);
//!
//! let hits = AtomicValue::new(0u64)?;
//! hits.atomic().fetch_add(2, Ordering::Relaxed);
//! assert_eq!(hits.load(Ordering::Relaxed), 2);
//! # }
//! # Ok::<(), procwire::Error>(())
//! ```

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{
    AtomicI8, AtomicI16, AtomicI32, AtomicI64, AtomicIsize, AtomicU8, AtomicU16, AtomicU32, AtomicU64,
    AtomicUsize, Ordering,
};
use std::time::Duration;

pub use bytemuck::Pod;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::sys::shm::{self, Lock, Mapping};
use crate::{Error, Result};

/// The header's magic; its last byte is the layout's version (2: the kind and the poison word).
const MAGIC: u64 = u64::from_be_bytes(*b"PWSHM\0\0\x02");
/// The poison word, after the header: non-zero once a holder of the lock died holding it.
const POISON_AT: usize = 56;
/// Where the mutex starts, and where the data starts (room for any mutex and alignment).
const MUTEX_AT: usize = 64;
const DATA_AT: usize = MUTEX_AT + shm::MUTEX_SPACE;

/// The header at the start of the memory: what it holds, so that a handle of the wrong type,
/// size or kind is refused. Written once by the creator, before any handle exists.
#[repr(C)]
#[derive(Clone, Copy)]
struct Header {
    magic: u64,
    token: u64,
    elem_size: u64,
    len: u64,
    type_hash: u64,
    kind: u64,
}
const _: () = assert!(size_of::<Header>() <= POISON_AT && POISON_AT + 8 <= MUTEX_AT);

/// What the memory is for; recorded in the header.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// [`Value`] or [`Array`]: data behind the lock.
    Locked = 1,
    /// [`AtomicValue`] or [`AtomicArray`]: integers used only atomically, no lock.
    Atomic = 2,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Locked => "a Value or Array (behind a lock)",
            Kind::Atomic => "an AtomicValue or AtomicArray",
        }
    }
}

fn type_hash<T>() -> u64 {
    // FNV-1a of the type's name: both ends are normally the same program.
    std::any::type_name::<T>()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

fn invalid(why: String) -> Error {
    Error::Io(io::Error::new(io::ErrorKind::InvalidData, why))
}

/// The mapped memory of one value or array, and its lock (for [`Kind::Locked`]).
struct Segment {
    map: Mapping,
    header: Header,
    lock: Option<Lock>,
}

impl Segment {
    fn create<T: Pod>(len: usize, kind: Kind) -> Result<Segment> {
        check_align::<T>()?;
        let bytes = size_of::<T>()
            .checked_mul(len)
            .and_then(|b| b.checked_add(DATA_AT))
            .ok_or_else(|| invalid("shared memory size overflows".into()))?;
        let map = Mapping::create(bytes)?;
        let mut token = [0u8; 8];
        getrandom::fill(&mut token).map_err(|e| Error::Io(io::Error::other(e.to_string())))?;
        let header = Header {
            magic: MAGIC,
            token: u64::from_ne_bytes(token),
            elem_size: size_of::<T>() as u64,
            len: len as u64,
            type_hash: type_hash::<T>(),
            kind: kind as u64,
        };
        let lock = match kind {
            // SAFETY: the mutex space lies inside the new mapping, 64-byte aligned, unused.
            Kind::Locked => Some(unsafe { Lock::create(&map, MUTEX_AT)? }),
            Kind::Atomic => None,
        };
        // SAFETY: the header fits at the start of the mapping (page aligned); written last, so a
        // process that sees the magic sees an initialised mutex. The poison word is zero, as
        // all new memory.
        unsafe { map.ptr().cast::<Header>().write(header) };
        Ok(Segment { map, header, lock })
    }

    fn open<T: Pod>(r: &HandleRef, kind: Kind) -> Result<Segment> {
        check_align::<T>()?;
        let map = Mapping::open(r.pid, r.fd)?;
        if map.len() < DATA_AT {
            return Err(invalid("not a procwire shared memory file (too short)".into()));
        }
        // SAFETY: the mapping is at least DATA_AT bytes long and page aligned; the creator wrote
        // the header before any handle existed and nothing writes it again.
        let header = unsafe { map.ptr().cast::<Header>().read() };
        if header.magic != MAGIC || header.token != r.token {
            return Err(invalid(format!(
                "the shared memory found for this handle (process {}, number {}) is not the shared \
                 memory it names (was it freed, or made by another procwire version?)",
                r.pid, r.fd
            )));
        }
        if header.kind != kind as u64 {
            let made = [Kind::Locked, Kind::Atomic].into_iter().find(|k| *k as u64 == header.kind);
            return Err(invalid(format!(
                "this shared memory was made as {}; it cannot be opened as {}",
                made.map_or("something unknown", Kind::name),
                kind.name()
            )));
        }
        let want = (size_of::<T>() as u64, type_hash::<T>());
        if (header.elem_size, header.type_hash) != want || header.elem_size != r.elem_size {
            return Err(invalid(format!(
                "shared memory holds elements of {} bytes of another type; this handle is for {} ({} bytes)",
                header.elem_size,
                std::any::type_name::<T>(),
                size_of::<T>()
            )));
        }
        if header.len != r.len {
            return Err(invalid(format!(
                "shared memory holds {} elements, the handle says {}",
                header.len, r.len
            )));
        }
        let needed = (header.elem_size.checked_mul(header.len))
            .and_then(|b| b.checked_add(DATA_AT as u64))
            .filter(|&b| b <= map.len() as u64);
        if needed.is_none() {
            return Err(invalid("shared memory shorter than its header says".into()));
        }
        let lock = match kind {
            // SAFETY: the mutex space of a checked header, initialised by the creator.
            Kind::Locked => Some(unsafe { Lock::open(&map, MUTEX_AT)? }),
            Kind::Atomic => None,
        };
        Ok(Segment { map, header, lock })
    }

    fn data(&self) -> *mut u8 {
        // SAFETY: DATA_AT is inside the mapping (checked when created or opened).
        unsafe { self.map.ptr().add(DATA_AT) }
    }

    fn poison(&self) -> &AtomicU64 {
        // SAFETY: 8 bytes inside the mapping (which is at least DATA_AT long) at an offset that
        // is a multiple of 8 from a page-aligned start, only ever used as this atomic, and
        // mapped while `self` lives.
        unsafe { &*self.map.ptr().add(POISON_AT).cast::<AtomicU64>() }
    }

    fn handle(&self) -> HandleRef {
        let (pid, fd) = self.map.origin();
        HandleRef {
            pid,
            fd,
            token: self.header.token,
            elem_size: self.header.elem_size,
            len: self.header.len,
        }
    }
}

fn check_align<T>() -> Result<()> {
    if align_of::<T>() > MUTEX_AT {
        return Err(invalid(format!("{} needs an alignment over {MUTEX_AT}", std::any::type_name::<T>())));
    }
    Ok(())
}

/// What a handle serializes as. `pid` and `fd` are what the platform's [`Mapping::open`]
/// takes: a holder's pid and descriptor on Linux, the creator's pid and the mapping's ID on
/// Windows.
#[derive(Serialize, Deserialize)]
struct HandleRef {
    pid: u32,
    fd: i32,
    token: u64,
    elem_size: u64,
    len: u64,
}

/// Holds the lock of a [`Value`] or an [`Array`]; derefs to the data (`T` or `[T]`). The lock
/// is released when the guard is dropped.
pub struct Guard<'a, D: ?Sized> {
    seg: &'a Segment,
    lock: &'a Lock,
    /// Into the data of `seg`, which only a holder of the lock touches.
    data: *mut D,
    poisoned: bool,
    /// Whether this thread was panicking already when it locked (then its end does not poison).
    panicking: bool,
}

impl<D: ?Sized> Guard<'_, D> {
    /// Whether a holder of the lock died (or a thread panicked holding a guard) since the
    /// poison was last cleared: the data may be half-written. While this is so, `get`, `set`,
    /// `with_lock` and `to_vec` fail with [`Error::PreviousOwnerDied`] in every process.
    pub fn previous_owner_died(&self) -> bool {
        self.poisoned
    }

    /// Says the data is whole again (after looking at it or repairing it through this guard):
    /// clears the poison for every process.
    pub fn clear_poison(&mut self) {
        self.seg.poison().store(0, Ordering::Relaxed);
        self.poisoned = false;
    }
}

impl<D: ?Sized> Deref for Guard<'_, D> {
    type Target = D;
    fn deref(&self) -> &D {
        // SAFETY: the pointer is into the mapping, which the guard keeps borrowed, and this
        // guard holds the lock, which every access to the data of a locked segment takes (no
        // handle reaches it otherwise).
        unsafe { &*self.data }
    }
}

impl<D: ?Sized> DerefMut for Guard<'_, D> {
    fn deref_mut(&mut self) -> &mut D {
        // SAFETY: as deref; the `&mut self` borrow makes it the only reference from this guard.
        unsafe { &mut *self.data }
    }
}

impl<D: ?Sized> Drop for Guard<'_, D> {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.panicking {
            // A panic in the middle of an update: as a death, the data may be half-written.
            self.seg.poison().store(1, Ordering::Relaxed);
        }
        // SAFETY: this guard locked it, on this thread (a guard is not Send).
        unsafe { self.lock.unlock(&self.seg.map) };
    }
}

impl<D: ?Sized + fmt::Debug> fmt::Debug for Guard<'_, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard").field("data", &&**self).field("previous_owner_died", &self.poisoned).finish()
    }
}

/// Takes the lock of `seg` (at most `timeout`, when given); `what` names the data in a timeout.
fn lock<'a, D: ?Sized>(
    seg: &'a Segment,
    data: *mut D,
    timeout: Option<Duration>,
    what: &str,
) -> Result<Guard<'a, D>> {
    let Some(l) = &seg.lock else {
        return Err(invalid("shared memory without a lock".into()));
    };
    // SAFETY: the lock of the mapping that `seg` keeps alive.
    let died =
        unsafe { l.lock(&seg.map, timeout) }.map_err(|e| match (e.kind(), e.raw_os_error(), timeout) {
            (io::ErrorKind::TimedOut, None, Some(t)) => Error::Timeout(format!(
                "after {t:?} waiting for the lock of a shared {what}: another holder kept it"
            )),
            _ => Error::Io(e),
        })?;
    let poison = seg.poison();
    if died {
        // Under the lock, before anyone else can see the data: every later locker, in any
        // process, learns of the death (the OS tells only this one).
        poison.store(1, Ordering::Relaxed);
    }
    let poisoned = poison.load(Ordering::Relaxed) != 0;
    Ok(Guard { seg, lock: l, data, poisoned, panicking: std::thread::panicking() })
}

/// A guard for copying in or out: refused while the data is poisoned.
fn unpoisoned<D: ?Sized>(g: Guard<'_, D>) -> Result<Guard<'_, D>> {
    if g.poisoned { Err(Error::PreviousOwnerDied) } else { Ok(g) }
}

mod sealed {
    /// Keeps [`HasAtomic`](super::HasAtomic) to the integer types it is implemented for: the
    /// memory is used as `Atomic`, so that type must match the integer's layout.
    pub trait Sealed {}
}

/// Integer types with a lock-free atomic twin of the same size and alignment: the element
/// types of [`AtomicValue`] and [`AtomicArray`]. Implemented for the primitive integers only
/// (sealed).
pub trait HasAtomic: Pod + sealed::Sealed {
    /// The atomic type (`AtomicU64` for `u64`, ...).
    type Atomic: Send + Sync;
    /// `a.load(order)`.
    fn load(a: &Self::Atomic, order: Ordering) -> Self;
    /// `a.store(value, order)`.
    fn store(a: &Self::Atomic, value: Self, order: Ordering);
}

macro_rules! has_atomic {
    ($($t:ty => $a:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl HasAtomic for $t {
            type Atomic = $a;
            fn load(a: &$a, order: Ordering) -> $t {
                a.load(order)
            }
            fn store(a: &$a, value: $t, order: Ordering) {
                a.store(value, order)
            }
        }
        // Same size, and an alignment the atomic's (= its size) covers: the memory of a `T`
        // at a multiple of its size from a 64-byte boundary is a valid atomic.
        const _: () = assert!(size_of::<$t>() == size_of::<$a>() && align_of::<$a>() == size_of::<$a>());
    )*};
}
has_atomic!(u8 => AtomicU8, u16 => AtomicU16, u32 => AtomicU32, u64 => AtomicU64, usize => AtomicUsize,
    i8 => AtomicI8, i16 => AtomicI16, i32 => AtomicI32, i64 => AtomicI64, isize => AtomicIsize);

fn out_of_range(i: usize, len: usize) -> Error {
    Error::InvalidInput(format!("index {i} out of range for an array of {len}"))
}

/// One `T` in shared memory behind a lock (see the [module docs](self)).
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
    seg: Arc<Segment>,
    _t: PhantomData<T>,
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

/// `len` values of `T` in shared memory behind one lock (see the [module docs](self)).
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
    seg: Arc<Segment>,
    len: usize,
    _t: PhantomData<T>,
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

/// One integer in shared memory without a lock, only ever used atomically (see the
/// [module docs](self)). CPython's `Value(..., lock=False)`, made safe: its memory is never
/// read or written other than as `T::Atomic`, in any process.
///
/// ```
/// # #[cfg(any(target_os = "linux", windows))] {
/// use std::sync::atomic::Ordering;
/// use procwire::shared::AtomicValue;
///
/// let n = AtomicValue::new(5i32)?;
/// n.atomic().fetch_sub(7, Ordering::AcqRel);
/// n.store(n.load(Ordering::Acquire) * 2, Ordering::Release);
/// assert_eq!(n.load(Ordering::Acquire), -4);
/// # }
/// # Ok::<(), procwire::Error>(())
/// ```
pub struct AtomicValue<T: HasAtomic> {
    seg: Arc<Segment>,
    _t: PhantomData<T>,
}

impl<T: HasAtomic> Clone for AtomicValue<T> {
    fn clone(&self) -> Self {
        AtomicValue { seg: self.seg.clone(), _t: PhantomData }
    }
}

impl<T: HasAtomic> fmt::Debug for AtomicValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AtomicValue").field("type", &std::any::type_name::<T>()).finish_non_exhaustive()
    }
}

impl<T: HasAtomic> AtomicValue<T> {
    /// A new atomic value.
    pub fn new(value: T) -> Result<Self> {
        let seg = Segment::create::<T>(1, Kind::Atomic)?;
        // SAFETY: the data area holds one T, aligned; nobody else has the memory yet.
        unsafe { seg.data().cast::<T>().write(value) };
        Ok(AtomicValue { seg: Arc::new(seg), _t: PhantomData })
    }

    /// The value as its atomic type, for any atomic operation.
    pub fn atomic(&self) -> &T::Atomic {
        // SAFETY: same size, aligned (the data is 64-byte aligned; HasAtomic's assertion), the
        // memory of an atomic segment is only ever used as T::Atomic, and it is mapped while
        // `self` lives.
        unsafe { &*self.seg.data().cast::<T::Atomic>() }
    }

    /// `atomic().load(order)`.
    pub fn load(&self, order: Ordering) -> T {
        T::load(self.atomic(), order)
    }

    /// `atomic().store(value, order)`.
    pub fn store(&self, value: T, order: Ordering) {
        T::store(self.atomic(), value, order)
    }
}

/// `len` integers in shared memory without a lock, each only ever used atomically (see
/// [`AtomicValue`]).
///
/// ```
/// # #[cfg(any(target_os = "linux", windows))] {
/// use std::sync::atomic::Ordering;
/// use procwire::shared::AtomicArray;
///
/// let hist = AtomicArray::<u32>::new(4)?;
/// hist.atomic(2).expect("in range").fetch_add(3, Ordering::Relaxed);
/// hist.store(0, 1, Ordering::Relaxed)?;
/// assert_eq!(hist.to_vec(Ordering::Relaxed), [1, 0, 3, 0]);
/// assert!(hist.atomic(4).is_none() && hist.load(4, Ordering::Relaxed).is_err());
/// # }
/// # Ok::<(), procwire::Error>(())
/// ```
pub struct AtomicArray<T: HasAtomic> {
    seg: Arc<Segment>,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: HasAtomic> Clone for AtomicArray<T> {
    fn clone(&self) -> Self {
        AtomicArray { seg: self.seg.clone(), len: self.len, _t: PhantomData }
    }
}

impl<T: HasAtomic> fmt::Debug for AtomicArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AtomicArray")
            .field("type", &std::any::type_name::<T>())
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<T: HasAtomic> AtomicArray<T> {
    /// `len` zeroed elements.
    pub fn new(len: usize) -> Result<Self> {
        let seg = Segment::create::<T>(len, Kind::Atomic)?;
        Ok(AtomicArray { seg: Arc::new(seg), len, _t: PhantomData })
    }

    /// A copy of `items`.
    pub fn from_slice(items: &[T]) -> Result<Self> {
        let a = AtomicArray::new(items.len())?;
        // SAFETY: room for exactly items.len() elements; nobody else has the memory yet, so
        // these plain writes race with nothing.
        unsafe { std::ptr::copy_nonoverlapping(items.as_ptr(), a.seg.data().cast::<T>(), items.len()) };
        Ok(a)
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Element `i` as its atomic type, for any atomic operation; `None` out of range.
    pub fn atomic(&self, i: usize) -> Option<&T::Atomic> {
        // SAFETY: in range, same size, aligned (elements of a 64-byte aligned array of T, and
        // the atomic's alignment equals its size), only ever used as T::Atomic, mapped while
        // `self` lives.
        (i < self.len).then(|| unsafe { &*self.seg.data().cast::<T>().add(i).cast::<T::Atomic>() })
    }

    /// Loads element `i`; an [`Error::InvalidInput`] out of range.
    pub fn load(&self, i: usize, order: Ordering) -> Result<T> {
        self.atomic(i).map(|a| T::load(a, order)).ok_or_else(|| out_of_range(i, self.len))
    }

    /// Stores `value` in element `i`; an [`Error::InvalidInput`] out of range.
    pub fn store(&self, i: usize, value: T, order: Ordering) -> Result<()> {
        self.atomic(i).map(|a| T::store(a, value, order)).ok_or_else(|| out_of_range(i, self.len))
    }

    /// Every element, each loaded with `order` (one at a time: not a snapshot of the whole).
    pub fn to_vec(&self, order: Ordering) -> Vec<T> {
        (0..self.len).filter_map(|i| self.atomic(i)).map(|a| T::load(a, order)).collect()
    }
}

/// A handle serializes as its [`HandleRef`]; each kind deserializes by opening the memory as
/// itself (below).
macro_rules! handle_serialize {
    ($ty:ident, $bound:ident) => {
        impl<T: $bound> Serialize for $ty<T> {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                self.seg.handle().serialize(s)
            }
        }
    };
}
handle_serialize!(Value, Pod);
handle_serialize!(Array, Pod);
handle_serialize!(AtomicValue, HasAtomic);
handle_serialize!(AtomicArray, HasAtomic);

fn open_one<T: Pod>(r: HandleRef, kind: Kind) -> Result<Arc<Segment>, String> {
    if r.len != 1 {
        return Err("an array handle where a single value was expected".into());
    }
    Segment::open::<T>(&r, kind).map(Arc::new).map_err(|e| e.to_string())
}

fn open_many<T: Pod>(r: HandleRef, kind: Kind) -> Result<(Arc<Segment>, usize), String> {
    let len = usize::try_from(r.len).map_err(|e| e.to_string())?;
    Segment::open::<T>(&r, kind).map(|s| (Arc::new(s), len)).map_err(|e| e.to_string())
}

impl<'de, T: Pod> Deserialize<'de> for Value<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let seg =
            open_one::<T>(HandleRef::deserialize(d)?, Kind::Locked).map_err(serde::de::Error::custom)?;
        Ok(Value { seg, _t: PhantomData })
    }
}

impl<'de, T: Pod> Deserialize<'de> for Array<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (seg, len) =
            open_many::<T>(HandleRef::deserialize(d)?, Kind::Locked).map_err(serde::de::Error::custom)?;
        Ok(Array { seg, len, _t: PhantomData })
    }
}

impl<'de, T: HasAtomic> Deserialize<'de> for AtomicValue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let seg =
            open_one::<T>(HandleRef::deserialize(d)?, Kind::Atomic).map_err(serde::de::Error::custom)?;
        Ok(AtomicValue { seg, _t: PhantomData })
    }
}

impl<'de, T: HasAtomic> Deserialize<'de> for AtomicArray<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (seg, len) =
            open_many::<T>(HandleRef::deserialize(d)?, Kind::Atomic).map_err(serde::de::Error::custom)?;
        Ok(AtomicArray { seg, len, _t: PhantomData })
    }
}

/// Threads in one process, on the real memory and lock, and under Miri on the model of both
/// (`sys/shm_model.rs`): the code that makes references into the memory is the same.
#[cfg(all(test, any(target_os = "linux", windows)))]
mod tests {
    use super::*;

    /// Increments per thread: few under Miri, which runs a thousand times slower.
    const N: u64 = if cfg!(miri) { 40 } else { 20_000 };
    const THREADS: u64 = 4;

    fn reopen<T: Serialize, U: serde::de::DeserializeOwned>(h: &T) -> std::result::Result<U, String> {
        let mut bytes = Vec::new();
        ciborium::into_writer(h, &mut bytes).map_err(|e| e.to_string())?;
        ciborium::from_reader(&bytes[..]).map_err(|e| e.to_string())
    }

    /// Guards on the locked kinds and atomics on the atomic kinds, all at once: each count is
    /// exact, and (under Miri) no access races with another.
    #[test]
    fn guards_and_atomics_in_threads_count_exactly() {
        let v = Value::new(0u64).unwrap();
        let a = Array::<u32>::new(3).unwrap();
        let n = AtomicValue::new(0u64).unwrap();
        let m = AtomicArray::<u16>::new(3).unwrap();
        // A second mapping of each, as a handle received from another process.
        let (v2, a2): (Value<u64>, Array<u32>) = (reopen(&v).unwrap(), reopen(&a).unwrap());
        let (n2, m2): (AtomicValue<u64>, AtomicArray<u16>) = (reopen(&n).unwrap(), reopen(&m).unwrap());
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let (v, a, n, m) = if t % 2 == 0 { (&v, &a, &n, &m) } else { (&v2, &a2, &n2, &m2) };
                s.spawn(move || {
                    for i in 0..N {
                        let mut g = v.lock().unwrap();
                        *g += 1;
                        drop(g);
                        a.with_lock(|s| s[i as usize % 3] += 1).unwrap();
                        n.atomic().fetch_add(1, Ordering::Relaxed);
                        m.atomic(i as usize % 3).unwrap().fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        assert_eq!(v.get().unwrap(), THREADS * N);
        assert_eq!(a.to_vec().unwrap().iter().map(|&x| u64::from(x)).sum::<u64>(), THREADS * N);
        assert_eq!(n2.load(Ordering::SeqCst), THREADS * N);
        assert_eq!(m.to_vec(Ordering::SeqCst).iter().map(|&x| u64::from(x)).sum::<u64>(), THREADS * N);
    }

    #[test]
    fn a_handle_opened_as_the_other_kind_is_refused() {
        let v = Value::new(1u64).unwrap();
        let err = reopen::<_, AtomicValue<u64>>(&v).unwrap_err();
        assert!(err.contains("made as a Value or Array"), "{err}");
        let n = AtomicArray::<u64>::new(1).unwrap();
        let err = reopen::<_, Value<u64>>(&n).unwrap_err();
        assert!(err.contains("made as an AtomicValue or AtomicArray"), "{err}");
        let err = reopen::<_, Array<u64>>(&n).unwrap_err();
        assert!(err.contains("cannot be opened as a Value or Array"), "{err}");
        // One element: a Value and an Array of one are the same memory.
        let one: Array<u64> = reopen(&v).unwrap();
        assert_eq!(one.to_vec().unwrap(), [1]);
    }

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

    #[test]
    fn atomic_arrays_check_their_index() {
        let a = AtomicArray::from_slice(&[3i8, -4]).unwrap();
        assert_eq!(a.load(1, Ordering::Relaxed).unwrap(), -4);
        assert!(a.store(2, 0, Ordering::Relaxed).is_err());
        assert!(a.atomic(2).is_none());
        assert_eq!(a.len(), 2);
        let empty = AtomicArray::<u8>::new(0).unwrap();
        assert!(empty.is_empty() && empty.to_vec(Ordering::Relaxed).is_empty());
    }
}
