//! Shared memory on Windows: not implemented yet (named file mappings are the plan); every
//! call says so.

use std::io;

fn unsupported() -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, "shared memory is not supported on Windows yet")
}

/// A shared mapping (never made on Windows yet).
#[derive(Debug)]
pub(crate) struct Mapping(());

impl Mapping {
    pub(crate) fn create(_len: usize) -> io::Result<Mapping> {
        Err(unsupported())
    }

    pub(crate) fn open(_pid: u32, _fd: i32) -> io::Result<Mapping> {
        Err(unsupported())
    }

    pub(crate) fn ptr(&self) -> *mut u8 {
        std::ptr::null_mut()
    }

    pub(crate) fn len(&self) -> usize {
        0
    }

    pub(crate) fn raw_fd(&self) -> i32 {
        -1
    }
}

pub(crate) const MUTEX_SPACE: usize = 64;

/// # Safety
/// Never reached: no mapping exists on Windows.
pub(crate) unsafe fn mutex_init(_at: *mut u8) -> io::Result<()> {
    Err(unsupported())
}

/// # Safety
/// Never reached: no mapping exists on Windows.
pub(crate) unsafe fn mutex_lock(_at: *mut u8) -> io::Result<bool> {
    Err(unsupported())
}

/// # Safety
/// Never reached: no mapping exists on Windows.
pub(crate) unsafe fn mutex_unlock(_at: *mut u8) {}
