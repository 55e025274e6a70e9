//! Named threads for the thread backend (`procwire::dummy` and the thread pool): a thread
//! started for a `Process`, a `start`ed function or a pool worker knows its name, as a child
//! process knows its own.

use std::collections::BTreeSet;
use std::sync::Mutex;

use crate::error::io_context;
use crate::util::lock;
use crate::{Error, Result};

thread_local! {
    static CURRENT: std::cell::Cell<Option<&'static str>> = const { std::cell::Cell::new(None) };
}

/// Names the calling thread for [`current_name`].
fn set_current_name(name: &str) {
    static NAMES: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let mut names = lock(&NAMES);
    let interned = match names.get(name) {
        Some(n) => *n,
        None => {
            let n: &'static str = Box::leak(name.to_string().into_boxed_str());
            names.insert(n);
            n
        }
    };
    CURRENT.with(|c| c.set(Some(interned)));
}

/// Spawns a named thread (a name with a NUL byte, which the OS cannot take, is shortened).
pub(crate) fn spawn_named(name: &str, f: impl FnOnce() + Send + 'static) -> Result<()> {
    let thread_name: String = name.chars().filter(|c| *c != '\0').collect();
    let name = name.to_string();
    std::thread::Builder::new()
        .name(thread_name)
        .spawn(move || {
            set_current_name(&name);
            f();
        })
        .map(drop)
        .map_err(|e| Error::Io(io_context(e, "cannot start a thread")))
}

/// The name the calling thread was started with by [`spawn_named`]; `None` on other threads.
pub(crate) fn current_name() -> Option<&'static str> {
    CURRENT.with(|c| c.get())
}
