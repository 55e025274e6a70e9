//! Receiving a message of N bytes allocates once, exactly N bytes: no growth by doubling, no
//! second buffer. Counted by a global allocator that records the allocations of the thread
//! that asked for it, while the sending happens on another thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, counting what the current thread allocates while asked to.
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    /// Allocations (and reallocations) made while counting, and their sizes in bytes.
    static ALLOCS: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

fn record(size: usize) {
    // try_with: the allocator also runs while thread-locals are torn down.
    let _ = COUNTING.try_with(|c| {
        if c.get() {
            let _ = ALLOCS.try_with(|a| {
                let (n, bytes) = a.get();
                a.set((n + 1, bytes + size));
            });
        }
    });
}

// SAFETY: every call goes to the system allocator unchanged; counting touches only
// thread-locals with const initialisers (no allocation).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns its result with the allocations this thread made meanwhile.
fn counted<T>(f: impl FnOnce() -> T) -> (T, (usize, usize)) {
    ALLOCS.with(|a| a.set((0, 0)));
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (r, ALLOCS.with(Cell::get))
}

#[test]
fn receiving_a_message_of_n_bytes_allocates_once_exactly_n_bytes() {
    // Small ones come out of the receive buffer, the larger ones are read straight into their
    // own allocation; the socket's buffer is far smaller than the largest, so that one arrives
    // in many reads.
    let sizes = [1, 16, 1 << 10, (64 << 10) - 4, (64 << 10) + 1, 1 << 20, 16 << 20];
    let (mut rx, mut tx) = procwire::pipe(true).unwrap();
    let sender = std::thread::spawn(move || {
        for &n in &sizes {
            tx.send_bytes(&vec![0x5a; n]).unwrap();
        }
        tx
    });
    for &n in &sizes {
        let (msg, (count, bytes)) = counted(|| rx.recv_bytes().unwrap());
        assert_eq!(msg.len(), n);
        assert!(msg.iter().all(|&b| b == 0x5a), "{n} bytes: content");
        // A Vec<u8> never holds fewer than 8 bytes of capacity once it allocates.
        let exact = n.max(8);
        assert_eq!((count, bytes), (1, exact), "{n} bytes: (allocations, bytes allocated)");
        assert_eq!(msg.capacity(), exact, "{n} bytes: capacity");
    }
    drop(sender.join().unwrap());
    // An empty message allocates nothing.
    let (mut rx, mut tx) = procwire::pipe(true).unwrap();
    tx.send_bytes(b"").unwrap();
    let (msg, allocs) = counted(|| rx.recv_bytes().unwrap());
    assert!(msg.is_empty());
    assert_eq!(allocs, (0, 0));
}
