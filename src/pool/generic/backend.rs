//! What the pool's front needs from whatever runs its tasks, and the two backends that do:
//! [`Processes`] and [`Threads`]. As iceoryx2's `ipc::Service` and `local::Service`, a backend
//! only picks types: which arguments and results it accepts, and what a job and a pool's
//! state are. The traits are sealed; their methods are the crate's own.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use crate::Result;
use crate::process::Function;

/// The backends: worker processes ([`procwire::pool`](crate::pool)), whose tasks are
/// registered [`Function`]s with serde arguments and results, sent as CBOR; and worker threads
/// of this process ([`procwire::dummy::pool`](crate::dummy::pool)), which move them.
pub use crate::process::generic::{Processes, Threads};

/// What runs a pool's tasks: [`Processes`] or [`Threads`].
pub trait Backend: sealed::Backend {}
impl Backend for Processes {}
impl Backend for Threads {}

/// A backend that runs `fn(A) -> R` tasks and hands their results over once: with
/// [`Processes`], `A` and `R` are `Serialize + DeserializeOwned`; with [`Threads`], they are
/// `Send + 'static`.
pub trait Runs<A, R>: Backend + sealed::Runs<A, R> {}
impl<A, R, B: Backend + sealed::Runs<A, R>> Runs<A, R> for B {}

/// A backend whose results of type `R` can be read again (`get` on an
/// [`AsyncResult`](super::AsyncResult) or a [`MapResult`](super::MapResult)): with
/// [`Processes`], `R: DeserializeOwned` (each read decodes anew); with [`Threads`],
/// `R: Clone + Send + 'static` (each read clones).
pub trait Gets<R>: Backend + sealed::Gets<R> {}
impl<R, B: Backend + sealed::Gets<R>> Gets<R> for B {}

pub(crate) mod sealed {
    use super::*;
    use crate::Error;

    /// A pool's settings, as its builder gathered them.
    #[derive(Debug)]
    pub struct Settings<I> {
        pub processes: usize,
        /// The initializer's name, and what the backend made of it and its argument.
        pub initializer: Option<(&'static str, I)>,
        pub maxtasks: Option<u64>,
        pub prefix: String,
        pub retry_lost: bool,
        pub shared_memory: bool,
    }

    /// Items taken for submission.
    pub struct Gathered<T> {
        pub args: T,
        /// How many items `args` holds.
        pub n: usize,
        /// An item that could not be prepared (those before it are in `args`); none after it
        /// was taken.
        pub failure: Option<Error>,
    }

    pub trait Backend: Sized + 'static {
        /// The pool's state, shared by its handles and its threads.
        type Pool: fmt::Debug + Send + Sync;
        /// An initializer with its argument, as each worker runs it.
        type Init: Send + Sync;
        /// A submitted job whose tasks return `R`. Dropping it tells the backend that nobody
        /// waits for its results: an unfinished stream drops the chunks no worker has, and is
        /// sealed; other jobs run to their end.
        type Job<R>;

        /// Starts the workers; a worker that cannot start is an error, and the others stop.
        fn start(settings: Settings<Self::Init>) -> Result<Arc<Self::Pool>>;
        fn processes(pool: &Self::Pool) -> usize;
        fn pids(pool: &Self::Pool) -> Vec<u32>;
        fn close(pool: &Arc<Self::Pool>);
        fn terminate(pool: &Arc<Self::Pool>);
        fn join(pool: &Self::Pool, deadline: Option<Instant>) -> Result<()>;
        /// How many chunks of `chunksize` tasks of `function` a worker has in flight at once,
        /// the one it runs included (at least 1): the front keeps twice that many submitted.
        fn window(pool: &Self::Pool, function: &'static str, chunksize: usize) -> usize;

        fn job_id<R>(job: &Self::Job<R>) -> u64;
        /// Waits at most until `deadline` for the job to finish; whether it did.
        fn wait<R>(job: &Self::Job<R>, deadline: Option<Instant>) -> bool;
        /// How many of a finished job's tasks failed; `None` while it runs.
        fn failed<R>(job: &Self::Job<R>) -> Option<usize>;
        /// No more chunks will be added to a stream job.
        fn seal<R>(job: &Self::Job<R>);
    }

    pub trait Runs<A, R>: Backend {
        /// Items ready to be submitted.
        type Args;

        /// Takes at most `max` items; a failure names the item by its place, counting from
        /// `first`.
        fn gather<I: Iterator<Item = A>>(items: &mut I, max: usize, first: usize) -> Gathered<Self::Args>;
        /// A job of `args` in chunks of `chunksize` tasks, complete from the start.
        fn submit(
            pool: &Arc<Self::Pool>,
            f: &Function<A, R>,
            args: Self::Args,
            chunksize: usize,
        ) -> Result<Self::Job<R>>;
        /// An empty stream job (`imap`); `ordered`: its chunks are taken in order.
        fn open(pool: &Arc<Self::Pool>, f: &Function<A, R>, ordered: bool) -> Result<Self::Job<R>>;
        /// Adds the chunks of `args` to a stream job, numbering them on from `first_chunk` and
        /// their tasks from `first_task`. An error (the pool stopped) adds none.
        fn add(
            job: &Self::Job<R>,
            f: &Function<A, R>,
            args: Self::Args,
            chunksize: usize,
            first_chunk: usize,
            first_task: usize,
        ) -> Result<()>;
        /// Waits at most until `deadline` for the job to finish, then hands over each result
        /// in order, for the only time; `false` after the deadline.
        fn take(job: &Self::Job<R>, deadline: Option<Instant>, each: &mut dyn FnMut(Result<R>)) -> bool;
        /// Hands over the results of a stream job's next chunk: chunk `index`, or with
        /// `None` the first to finish. `None` after the deadline, `Some(false)` when the job
        /// will have no more.
        fn next_chunk(
            job: &Self::Job<R>,
            index: Option<usize>,
            deadline: Option<Instant>,
            each: &mut dyn FnMut(Result<R>),
        ) -> Option<bool>;
    }

    pub trait Gets<R>: Backend {
        /// As [`Runs::take`], and it can be done again.
        fn get(job: &Self::Job<R>, deadline: Option<Instant>, each: &mut dyn FnMut(Result<R>)) -> bool;
        /// Calls `f` with every result once the job is finished (at once if it is).
        fn on_complete(job: &Self::Job<R>, f: Box<dyn FnOnce(Vec<Result<R>>) + Send>)
        where
            R: 'static;
    }
}
