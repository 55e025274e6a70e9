//! I/O errors that say what was being done, with the original error kept as the source.

use std::{error, fmt, io};

/// What was being done when `source` happened. Its text is `"{what}: {source}"`, as the
/// messages were before the original was kept; `source()` gives the original back, so its
/// `raw_os_error()` stays reachable.
#[derive(Debug)]
struct Context {
    what: String,
    source: io::Error,
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.source)
    }
}

impl error::Error for Context {
    fn source(&self) -> Option<&(dyn error::Error + 'static)> {
        Some(&self.source)
    }
}

/// `e` with `what` in front of its message, of the same kind, `e` kept as its source.
///
/// (`io::Error::source` forwards to the inner error's source, so the chain is
/// outer `io::Error` → `e`.)
pub(crate) fn io_context(e: io::Error, what: impl fmt::Display) -> io::Error {
    io::Error::new(e.kind(), Context { what: what.to_string(), source: e })
}

/// The OS error code of `e` or of the first error with one down its `source()` chain.
pub(crate) fn raw_os_error_in(mut e: &(dyn error::Error + 'static)) -> Option<i32> {
    loop {
        if let Some(code) = e.downcast_ref::<io::Error>().and_then(io::Error::raw_os_error) {
            return Some(code);
        }
        e = e.source()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_stays_reachable() {
        let e = io_context(io::Error::from_raw_os_error(2), "cannot open x");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().starts_with("cannot open x: "), "{e}");
        assert_eq!(e.raw_os_error(), None);
        assert_eq!(raw_os_error_in(&e), Some(2));
    }
}
