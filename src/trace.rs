//! Events for the `tracing` feature. The macro expands to nothing without the feature: its
//! arguments are not even evaluated, so there is no cost, and `tracing` is not a dependency.

/// `trace::event!(LEVEL, fields..., "message")`: `tracing::event!` at `tracing::Level::LEVEL`
/// with the feature, nothing without it.
macro_rules! event {
    ($level:ident, $($rest:tt)+) => {
        #[cfg(feature = "tracing")]
        {
            ::tracing::event!(target: "procwire", ::tracing::Level::$level, $($rest)+);
        }
    };
}

pub(crate) use event;
