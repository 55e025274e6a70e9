//! [`Sentinel`]: the public handle on a child's exit that [`wait`](crate::wait()) watches. It
//! lives below both `wait` and `process`, so that `wait` can watch children without naming the
//! process layer that starts them.

use crate::sys;

/// What [`wait`](crate::wait()) watches for a child's exit: from a
/// [`Process`](crate::process::Process) (through `From`) or
/// [`Channel::sentinel`](crate::process::Channel::sentinel). A process that was not started
/// yet counts as ready.
#[derive(Debug, Default)]
pub struct Sentinel {
    raw: Option<sys::Sentinel>,
}

impl Sentinel {
    /// The sentinel of a started child.
    pub(crate) fn new(raw: sys::Sentinel) -> Sentinel {
        Sentinel { raw: Some(raw) }
    }

    /// The OS-level sentinel back; `None` before the child was started.
    pub(crate) fn into_raw(self) -> Option<sys::Sentinel> {
        self.raw
    }

    /// The OS-level sentinel; `None` before the child was started.
    pub(crate) fn raw(&self) -> Option<&sys::Sentinel> {
        self.raw.as_ref()
    }
}
