//! [`AtomicValue`] and [`AtomicArray`]: integers with no lock, only ever used as their atomic
//! type, and [`HasAtomic`], the integer types that have one.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{
    AtomicI8, AtomicI16, AtomicI32, AtomicI64, AtomicIsize, AtomicU8, AtomicU16, AtomicU32, AtomicU64,
    AtomicUsize, Ordering,
};

use super::segment::{Kind, Segment};
use super::{Pod, out_of_range};
use crate::Result;

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

/// One integer in shared memory without a lock, only ever used atomically (see the
/// [module docs](super)). CPython's `Value(..., lock=False)`, made safe: its memory is never
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
    pub(super) seg: Arc<Segment>,
    pub(super) _t: PhantomData<T>,
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
    pub(super) seg: Arc<Segment>,
    pub(super) len: usize,
    pub(super) _t: PhantomData<T>,
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

    /// Loads element `i`; an [`Error::InvalidInput`](crate::Error::InvalidInput) out of range.
    pub fn load(&self, i: usize, order: Ordering) -> Result<T> {
        self.atomic(i).map(|a| T::load(a, order)).ok_or_else(|| out_of_range(i, self.len))
    }

    /// Stores `value` in element `i`; an [`Error::InvalidInput`](crate::Error::InvalidInput) out of
    /// range.
    pub fn store(&self, i: usize, value: T, order: Ordering) -> Result<()> {
        self.atomic(i).map(|a| T::store(a, value, order)).ok_or_else(|| out_of_range(i, self.len))
    }

    /// Every element, each loaded with `order` (one at a time: not a snapshot of the whole).
    pub fn to_vec(&self, order: Ordering) -> Vec<T> {
        (0..self.len).filter_map(|i| self.atomic(i)).map(|a| T::load(a, order)).collect()
    }
}

#[cfg(all(test, any(target_os = "linux", windows)))]
mod tests {
    use super::*;

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
