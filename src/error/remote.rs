//! [`RemoteKind`]: what kind of error the other side of a request raised.

use std::fmt;

/// Declares the kinds with their wire strings, once: the enum, `as_str` and the parse.
macro_rules! remote_kinds {
    ($($(#[$doc:meta])* $name:ident = $wire:literal,)*) => {
        /// The kind of an [`Error::Remote`](crate::Error::Remote): what went wrong on the side
        /// that served the request (a manager, a pool worker, a child process, a queue server).
        ///
        /// On the wire a kind is its text ([`as_str`](RemoteKind::as_str), also its `Display`),
        /// as SPEC.md and spec/ name it. A kind this version does not know (from a newer peer,
        /// say) is [`Other`](RemoteKind::Other) with that text, so new kinds can be added without
        /// breaking a match that has a `_` arm.
        ///
        /// ```
        /// use procwire::RemoteKind;
        /// assert_eq!(RemoteKind::BrokenBarrier.as_str(), "broken_barrier");
        /// assert_eq!(RemoteKind::from("index"), RemoteKind::Index);
        /// assert_eq!(RemoteKind::from("from_the_future"), RemoteKind::Other("from_the_future".into()));
        /// // Kinds are equal when their wire texts are, however they were made.
        /// assert_eq!(RemoteKind::Other("panic".into()), RemoteKind::Panic);
        /// ```
        #[derive(Debug, Clone)]
        #[non_exhaustive]
        pub enum RemoteKind {
            $($(#[$doc])* $name,)*
            /// A kind without a variant here, with its wire text.
            Other(String),
        }

        impl RemoteKind {
            /// The kind's wire text, e.g. `"broken_barrier"` for [`RemoteKind::BrokenBarrier`].
            pub fn as_str(&self) -> &str {
                match self {
                    $(RemoteKind::$name => $wire,)*
                    RemoteKind::Other(s) => s,
                }
            }
        }

        // By wire text, so that `Other("panic")` (made by hand) equals `Panic`, as the wire
        // cannot tell them apart either; Hash agrees with it.
        impl PartialEq for RemoteKind {
            fn eq(&self, other: &RemoteKind) -> bool {
                self.as_str() == other.as_str()
            }
        }

        impl Eq for RemoteKind {}

        impl std::hash::Hash for RemoteKind {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.as_str().hash(state);
            }
        }

        impl From<&str> for RemoteKind {
            /// Reads a wire text: the variant that has it, else [`RemoteKind::Other`].
            fn from(s: &str) -> RemoteKind {
                match s {
                    $($wire => RemoteKind::$name,)*
                    other => RemoteKind::Other(other.to_string()),
                }
            }
        }
    };
}

remote_kinds! {
    /// A process, pool task or manager could not be started: the function is not registered,
    /// its arguments do not decode, or the child failed before running it.
    Start = "start",
    /// The function or method panicked; the message is the panic's.
    Panic = "panic",
    /// The result could not be encoded to be sent back.
    Encode = "encode",
    /// The worker or child exited (or was killed) before sending its result.
    Exit = "exit",
    /// The pool cannot take or finish the work: it is closed, terminated, or its workers
    /// could not start.
    Pool = "pool",
    /// The pool was terminated before the task had a result.
    Terminated = "terminated",
    /// A pool worker's initializer failed.
    Initializer = "initializer",
    /// The manager's type does not expose the method.
    Attribute = "attribute",
    /// The arguments do not decode as the method's.
    Type = "type",
    /// The manager cannot create the object: an unknown type id, or a queue that cannot be made.
    Create = "create",
    /// A fallible registered method returned an error.
    Error = "error",
    /// The session holds no reference to the object, or the object does not exist.
    Reference = "reference",
    /// An argument with the right type but a wrong value (as Python's `ValueError`), or a
    /// queue's `task_done` called more often than items were put.
    Value = "value",
    /// An index out of range (as Python's `IndexError`).
    Index = "index",
    /// A lock or condition used by a caller that does not hold it (as Python's `RuntimeError`).
    Runtime = "runtime",
    /// A barrier was broken (or reset) while waiting, or waited on while broken.
    BrokenBarrier = "broken_barrier",
    /// The waiting caller went away, or the manager is shutting down.
    Gone = "gone",
    /// The manager was shut down.
    Shutdown = "shutdown",
    /// The request broke the manager's protocol.
    Protocol = "protocol",
    /// The client and the manager speak different protocol versions.
    Version = "version",
    /// A lock's release after its lease ran out
    /// ([`LEASE_EXPIRED`](crate::manager::LEASE_EXPIRED)).
    LeaseExpired = "lease_expired",
    /// The server cannot allocate what the request needs.
    Memory = "memory",
}

impl fmt::Display for RemoteKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<String> for RemoteKind {
    fn from(s: String) -> RemoteKind {
        match RemoteKind::from(s.as_str()) {
            RemoteKind::Other(_) => RemoteKind::Other(s),
            known => known,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RemoteKind;

    #[test]
    fn kinds_read_back_from_their_wire_text() {
        for k in [RemoteKind::Start, RemoteKind::BrokenBarrier, RemoteKind::LeaseExpired, RemoteKind::Memory]
        {
            assert_eq!(RemoteKind::from(k.as_str()), k);
            assert_eq!(k.to_string(), k.as_str());
        }
        assert_eq!(RemoteKind::from(String::from("key")), RemoteKind::Other("key".into()));
        assert_eq!(RemoteKind::Other("key".into()).as_str(), "key");
    }

    #[test]
    fn a_kind_made_by_hand_equals_the_variant_of_its_text() {
        use std::collections::HashSet;
        assert_eq!(RemoteKind::Other("panic".into()), RemoteKind::Panic);
        assert_ne!(RemoteKind::Other("panik".into()), RemoteKind::Panic);
        let set: HashSet<RemoteKind> = [RemoteKind::Panic, RemoteKind::Other("panic".into())].into();
        assert_eq!(set.len(), 1);
    }
}
