//! What the queue's front needs from whatever holds its items, and the two backends that do:
//! [`Processes`] and [`Threads`]. As iceoryx2's `ipc::Service` and `local::Service`, a backend
//! picks the types (what an item must be, what a handle holds) and does the waiting; the
//! front does the rest. The traits are sealed; their methods are the crate's own.

use std::fmt;
use std::time::Instant;

use crate::Result;

/// The backends: a queue served by the process that creates it, reached by other processes
/// over authenticated connections ([`procwire::queue`](crate::queue)), whose items are serde
/// values sent as CBOR; and a queue in this process's memory, shared by threads
/// ([`procwire::dummy::queue`](crate::dummy::queue)), which stores items as they are.
pub use crate::process::generic::{Processes, Threads};

/// What holds a queue's items: [`Processes`] or [`Threads`].
pub trait Backend: sealed::Backend {}
impl Backend for Processes {}
impl Backend for Threads {}

/// A backend that carries items of type `T`: with [`Processes`], `T: Serialize +
/// DeserializeOwned` (a put encodes, a get decodes); with [`Threads`], `T: Clone` (a put
/// stores a clone of the item it is lent; the queue is `Send` when `T` is).
pub trait Carries<T>: Backend + sealed::Carries<T> {}
impl<T, B: Backend + sealed::Carries<T>> Carries<T> for B {}

pub(crate) mod sealed {
    use super::*;

    /// A queue's settings, as its builder gathered them.
    #[derive(Clone, Debug)]
    pub struct Settings<O> {
        /// At least 1 when set.
        pub maxsize: Option<usize>,
        pub prefetch: u64,
        pub max_item_size: u64,
        /// What only this backend has settings for.
        pub options: O,
    }

    pub trait Backend: Sized + 'static {
        /// Settings of this backend alone.
        type Options: Clone + fmt::Debug + Default;
        /// One handle of a queue of `T`s; its clones share the queue.
        type Handle<T>: Clone + fmt::Debug;

        fn maxsize<T>(h: &Self::Handle<T>) -> Option<usize>;
        fn qsize<T>(h: &Self::Handle<T>) -> Result<usize>;
        fn set_prefetch<T>(h: &Self::Handle<T>, n: u64);
        /// No more puts through this handle: [`Error::Closed`](crate::Error::Closed) after.
        fn close<T>(h: &Self::Handle<T>) -> Result<()>;
        fn task_done<T>(h: &Self::Handle<T>) -> Result<()>;
        /// No more items will come: gets that find the queue empty from now on fail with
        /// [`Error::Finished`](crate::Error::Finished) instead of waiting.
        fn finish<T>(h: &Self::Handle<T>) -> Result<()>;
        /// Waits at most until `deadline` for every task to be done; whether they were.
        fn join<T>(h: &Self::Handle<T>, deadline: Option<Instant>) -> Result<bool>;
    }

    pub trait Carries<T>: Backend {
        fn build(settings: Settings<Self::Options>, joinable: bool) -> Result<Self::Handle<T>>;
        /// Puts a copy of `item`, waiting at most until `deadline` for room; whether it did.
        fn put(h: &Self::Handle<T>, item: &T, deadline: Option<Instant>) -> Result<bool>;
        /// Takes the front item, waiting at most until `deadline`; `None` if none came,
        /// [`Error::Finished`](crate::Error::Finished) if none will.
        fn get(h: &Self::Handle<T>, deadline: Option<Instant>) -> Result<Option<T>>;
    }
}
