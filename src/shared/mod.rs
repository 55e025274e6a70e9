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

mod atomic;
mod guard;
mod handle;
mod locked;
mod segment;

use std::io;

pub use bytemuck::Pod;

pub use self::atomic::{AtomicArray, AtomicValue, HasAtomic};
pub use self::guard::Guard;
pub use self::locked::{Array, Value};
use crate::Error;

/// An `InvalidData` error: memory, or a handle to it, that is not what it is opened as.
fn invalid(why: String) -> Error {
    Error::Io(io::Error::new(io::ErrorKind::InvalidData, why))
}

/// An [`Error::InvalidInput`] for index `i` of an array of `len`.
fn out_of_range(i: usize, len: usize) -> Error {
    Error::InvalidInput(format!("index {i} out of range for an array of {len}"))
}

/// Threads in one process, on the real memory and lock, and under Miri on the model of both
/// (`sys/shm_model.rs`): the code that makes references into the memory is the same. The
/// tests of each part are next to it, under `shared::`.
#[cfg(all(test, any(target_os = "linux", windows)))]
mod tests {
    use std::sync::atomic::Ordering;

    use super::handle::reopen;
    use super::*;

    /// Increments per thread: few under Miri, which is far slower.
    const N: u64 = if cfg!(miri) { 40 } else { 20_000 };
    const THREADS: u64 = 4;

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
}
