//! Shared memory as Miri sees it: a model of `unix/shm.rs` and `windows/shm.rs` on the heap, so
//! that the code of `shared.rs` that turns pointers into the memory into references runs
//! unchanged under Miri (which runs neither `memfd_create` nor `mmap`).
//!
//! A [`Mapping`] is a zeroed, page-aligned heap block in a table of this process, found again
//! by its number ([`Mapping::open`]); every handle of one block uses the same memory. A
//! [`Lock`] is a word in the mutex space that holds its holder's thread number: taken by a
//! compare-and-swap, locked again by its holder is a `Deadlock` error, and a thread that ends
//! holding it leaves it marked abandoned, which the next locker takes over with the flag set,
//! as a robust mutex's `EOWNERDEAD` or a Windows mutex's `WAIT_ABANDONED`.

use std::alloc::Layout;
use std::cell::RefCell;
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// Bytes reserved for the lock word in shared memory.
pub(crate) const MUTEX_SPACE: usize = 64;

/// A lock word's value when free, and when its holder ended holding it.
const FREE: u32 = 0;
const ABANDONED: u32 = u32::MAX;

/// One heap block standing for a memory file.
struct Block {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: plain memory; as with a real mapping, every access goes through raw pointers whose
// synchronisation is the caller's (the lock, atomics).
unsafe impl Send for Block {}
// SAFETY: as above.
unsafe impl Sync for Block {}

impl Drop for Block {
    fn drop(&mut self) {
        // SAFETY: allocated in Mapping::create with this layout; the last Arc is going.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

/// The blocks of this process by number, as the kernel's table of memory files. Weak, so a
/// block goes with its last mapping, as memory does.
static BLOCKS: Mutex<Vec<Weak<Block>>> = Mutex::new(Vec::new());

fn blocks() -> std::sync::MutexGuard<'static, Vec<Weak<Block>>> {
    BLOCKS.lock().unwrap_or_else(|e| e.into_inner())
}

/// A mapping of one block.
pub(crate) struct Mapping {
    block: Arc<Block>,
    id: i32,
}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapping").field("id", &self.id).field("len", &self.len()).finish()
    }
}

impl Mapping {
    /// A new zero-filled block of `len` bytes.
    pub(crate) fn create(len: usize) -> io::Result<Mapping> {
        let layout = Layout::from_size_align(len.max(1), 4096)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: a layout of non-zero size.
        let ptr = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })
            .ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        let block = Arc::new(Block { ptr, layout });
        let mut all = blocks();
        let id = i32::try_from(all.len()).map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
        all.push(Arc::downgrade(&block));
        Ok(Mapping { block, id })
    }

    /// The block numbered `id`, if some mapping still has it.
    pub(crate) fn open(_pid: u32, id: i32) -> io::Result<Mapping> {
        let block = usize::try_from(id).ok().and_then(|i| blocks().get(i).and_then(Weak::upgrade));
        match block {
            Some(block) => Ok(Mapping { block, id }),
            None => Err(io::Error::new(io::ErrorKind::NotFound, "no such shared memory")),
        }
    }

    /// As [`Mapping::create`]: a block has no descriptor to pass.
    pub(crate) fn create_passable(len: usize) -> io::Result<Mapping> {
        Mapping::create(len)
    }

    /// Blocks have no descriptors: unsupported.
    #[cfg(unix)]
    pub(crate) fn adopt(_fd: std::os::fd::OwnedFd) -> io::Result<Mapping> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }

    /// Blocks have no descriptors: unsupported.
    #[cfg(unix)]
    pub(crate) fn share_fd(&self) -> io::Result<std::os::fd::BorrowedFd<'_>> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }

    pub(crate) fn ptr(&self) -> *mut u8 {
        self.block.ptr.as_ptr()
    }

    pub(crate) fn len(&self) -> usize {
        self.block.layout.size()
    }

    /// The two numbers a handle carries: no process, and the block's number.
    pub(crate) fn origin(&self) -> (u32, i32) {
        (0, self.id)
    }
}

/// This thread's number (from 1), and the lock words it holds: marked abandoned when the thread
/// ends, as the kernel does with a robust mutex's holder.
struct Holder {
    me: u32,
    held: RefCell<Vec<(Arc<Block>, usize)>>,
}

impl Drop for Holder {
    fn drop(&mut self) {
        for (block, at) in self.held.get_mut().drain(..) {
            word(&block, at).store(ABANDONED, Ordering::Release);
        }
    }
}

thread_local! {
    static HOLDER: Holder = {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        Holder { me: NEXT.fetch_add(1, Ordering::Relaxed), held: RefCell::new(Vec::new()) }
    };
}

fn word(block: &Block, at: usize) -> &AtomicU32 {
    // SAFETY: `at` is inside the block and 64-byte aligned (the contract of Lock::create and
    // open), and the bytes there are only ever used as this atomic.
    unsafe { &*block.ptr.as_ptr().add(at).cast::<AtomicU32>() }
}

/// The lock of one block.
#[derive(Debug)]
pub(crate) struct Lock {
    at: usize,
}

impl Lock {
    /// Makes the lock in the `MUTEX_SPACE` bytes at offset `at` of `map` (zeroed: free).
    ///
    /// # Safety
    /// Those bytes lie inside `map`, suitably aligned, and nobody uses them yet.
    pub(crate) unsafe fn create(map: &Mapping, at: usize) -> io::Result<Lock> {
        word(&map.block, at).store(FREE, Ordering::Release);
        Ok(Lock { at })
    }

    /// The lock made at offset `at` of `map`.
    ///
    /// # Safety
    /// As [`Lock::create`], except that the bytes hold the lock.
    pub(crate) unsafe fn open(_map: &Mapping, at: usize) -> io::Result<Lock> {
        Ok(Lock { at })
    }

    /// Takes the lock (waiting at most `timeout` when one is given); `true` when its previous
    /// holder ended holding it.
    ///
    /// # Safety
    /// `map` is the mapping this lock was made or opened with.
    pub(crate) unsafe fn lock(&self, map: &Mapping, timeout: Option<Duration>) -> io::Result<bool> {
        let w = word(&map.block, self.at);
        let deadline = timeout.map(|t| Instant::now() + t);
        HOLDER.with(|h| {
            loop {
                let seen = w.load(Ordering::Relaxed);
                if seen == h.me {
                    return Err(io::Error::new(
                        io::ErrorKind::Deadlock,
                        "this thread holds the lock already",
                    ));
                }
                if (seen == FREE || seen == ABANDONED)
                    && w.compare_exchange(seen, h.me, Ordering::Acquire, Ordering::Relaxed).is_ok()
                {
                    h.held.borrow_mut().push((map.block.clone(), self.at));
                    return Ok(seen == ABANDONED);
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "the lock stayed held"));
                }
                std::thread::yield_now();
            }
        })
    }

    /// Releases the lock, which this thread holds.
    ///
    /// # Safety
    /// As [`Lock::lock`], and this thread holds the lock.
    pub(crate) unsafe fn unlock(&self, map: &Mapping) {
        HOLDER.with(|h| {
            let mut held = h.held.borrow_mut();
            if let Some(i) = held.iter().position(|(b, at)| Arc::ptr_eq(b, &map.block) && *at == self.at) {
                held.swap_remove(i);
            }
        });
        word(&map.block, self.at).store(FREE, Ordering::Release);
    }
}
