//! What a submitted call gives back: [`AsyncResult`] and [`MapResult`] (all results at once,
//! readable again) and the [`IMap`] iterator (chunk by chunk, submitting more items as results
//! are consumed).

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::backend::{Backend, Gets, Runs};
use crate::process::Function;
use crate::util::deadline_of;
use crate::{Error, Result};

pub(super) fn no_result() -> Error {
    Error::Protocol("a pool task without a result".into())
}

/// Gathers results as `map` and `get` return them: all in order, or the first error.
pub(super) struct All<R> {
    ok: Vec<R>,
    error: Option<Error>,
}

impl<R> All<R> {
    pub(super) fn new(len: usize) -> Self {
        All { ok: Vec::with_capacity(len), error: None }
    }

    pub(super) fn push(&mut self, r: Result<R>) {
        match r {
            Ok(r) if self.error.is_none() => self.ok.push(r),
            Ok(_) => {}
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
    }

    pub(super) fn finish(self) -> Result<Vec<R>> {
        self.error.map_or(Ok(self.ok), Err)
    }
}

/// The result of [`Pool::apply_async`](super::Pool::apply_async), as CPython's `AsyncResult`.
///
/// ```
/// # use std::time::{Duration, Instant};
/// # use procwire::dummy::{pool::Pool, process::Function};
/// # static SLOW_SQUARE: Function<u64, u64> = Function::new("slow_square", |x| x * x);
/// # let pool = Pool::new(2)?;
/// let r = pool.apply_async(&SLOW_SQUARE, 12)?;
/// if !r.wait_timeout(Duration::from_millis(100)) {
///     println!("still running");
/// }
/// assert_eq!(r.get()?, 144);
/// assert_eq!(r.successful(), Some(true));
/// # Ok::<(), procwire::Error>(())
/// ```
pub struct AsyncResult<B: Backend, R> {
    job: B::Job<R>,
}

impl<B: Backend, R> fmt::Debug for AsyncResult<B, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("job", &B::job_id(&self.job))
            .field("ready", &self.ready())
            .finish()
    }
}

impl<B: Backend, R> AsyncResult<B, R> {
    pub(super) fn new(job: B::Job<R>) -> Self {
        AsyncResult { job }
    }

    /// Waits until the result is there.
    pub fn wait(&self) {
        B::wait(&self.job, None);
    }

    /// Waits at most `timeout` for the result; whether it is there.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        B::wait(&self.job, deadline_of(Some(timeout)))
    }

    /// Whether the result is there.
    pub fn ready(&self) -> bool {
        B::failed(&self.job).is_some()
    }

    /// Whether the task succeeded; `None` while it runs (CPython raises `ValueError` then).
    pub fn successful(&self) -> Option<bool> {
        B::failed(&self.job).map(|n| n == 0)
    }
}

impl<B: Gets<R>, R> AsyncResult<B, R> {
    /// Waits for the task and returns its result, or its error ([`Error::Remote`] of kind
    /// [`Panic`](crate::RemoteKind::Panic), [`Exit`](crate::RemoteKind::Exit),
    /// [`Terminated`](crate::RemoteKind::Terminated), ...). It can be called again: each call
    /// decodes the result anew (a clone of it with threads).
    pub fn get(&self) -> Result<R> {
        self.get_until(None).and_then(|r| r.ok_or_else(no_result))
    }

    /// As [`get`](AsyncResult::get), waiting at most `timeout`: `None` if the result is not
    /// there yet (ask again later).
    pub fn get_timeout(&self, timeout: Duration) -> Result<Option<R>> {
        self.get_until(deadline_of(Some(timeout)))
    }

    fn get_until(&self, deadline: Option<Instant>) -> Result<Option<R>> {
        let mut first = None;
        if !B::get(&self.job, deadline, &mut |r| {
            first.get_or_insert(r);
        }) {
            return Ok(None);
        }
        first.unwrap_or_else(|| Err(no_result())).map(Some)
    }

    /// Calls `f` with the result once it is there (at once if it is). Callbacks of one pool
    /// run one at a time, so they should be quick: a process pool runs them on its callback
    /// thread in the order their tasks finish; a thread pool on the worker thread that
    /// finished the task, or on the thread that calls `on_complete` (or
    /// [`terminate`](super::Pool::terminate)) when it is done already. A panic in `f` is
    /// caught and ignored.
    ///
    /// ```
    /// # use procwire::dummy::{pool::Pool, process::Function};
    /// # static SQUARE: Function<u64, u64> = Function::new("square", |x| x * x);
    /// # let pool = Pool::new(2)?;
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let _r = pool.apply_async(&SQUARE, 9)?.on_complete(move |r| tx.send(r.ok()).unwrap());
    /// assert_eq!(rx.recv().unwrap(), Some(81));
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn on_complete(self, f: impl FnOnce(Result<R>) + Send + 'static) -> Self
    where
        R: 'static,
    {
        B::on_complete(
            &self.job,
            Box::new(move |all| f(all.into_iter().next().unwrap_or_else(|| Err(no_result())))),
        );
        self
    }
}

/// The result of [`Pool::map_async`](super::Pool::map_async) and
/// [`Pool::starmap_async`](super::Pool::starmap_async), as CPython's `MapResult`.
///
/// ```
/// # use std::time::{Duration, Instant};
/// # use procwire::dummy::{pool::Pool, process::Function};
/// # static SQUARE: Function<u64, u64> = Function::new("square", |x| x * x);
/// # let pool = Pool::new(2)?;
/// let r = pool.map_async(&SQUARE, 0..100)?;
/// let each = r.get_each();
/// assert!(each.iter().all(|r| r.is_ok()));
/// # Ok::<(), procwire::Error>(())
/// ```
pub struct MapResult<B: Backend, R> {
    job: B::Job<R>,
    len: usize,
}

impl<B: Backend, R> fmt::Debug for MapResult<B, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapResult")
            .field("job", &B::job_id(&self.job))
            .field("len", &self.len)
            .field("ready", &self.ready())
            .finish()
    }
}

impl<B: Backend, R> MapResult<B, R> {
    pub(super) fn new(job: B::Job<R>, len: usize) -> Self {
        MapResult { job, len }
    }

    /// The number of tasks.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no tasks.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Waits until all the results are there.
    pub fn wait(&self) {
        B::wait(&self.job, None);
    }

    /// Waits at most `timeout` for all the results; whether they are there.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        B::wait(&self.job, deadline_of(Some(timeout)))
    }

    /// Whether all the results are there.
    pub fn ready(&self) -> bool {
        B::failed(&self.job).is_some()
    }

    /// Whether every task succeeded; `None` while some run.
    pub fn successful(&self) -> Option<bool> {
        B::failed(&self.job).map(|n| n == 0)
    }
}

impl<B: Gets<R>, R> MapResult<B, R> {
    /// Waits for every task and returns every result in order, or the first failed task's
    /// error. It can be called again (with threads, it returns clones).
    pub fn get(&self) -> Result<Vec<R>> {
        self.get_until(None).and_then(|r| r.ok_or_else(no_result))
    }

    /// As [`get`](MapResult::get), waiting at most `timeout`: `None` if the results are not
    /// all there yet (ask again later).
    pub fn get_timeout(&self, timeout: Duration) -> Result<Option<Vec<R>>> {
        self.get_until(deadline_of(Some(timeout)))
    }

    fn get_until(&self, deadline: Option<Instant>) -> Result<Option<Vec<R>>> {
        let mut all = All::new(self.len);
        if !B::get(&self.job, deadline, &mut |r| all.push(r)) {
            return Ok(None);
        }
        all.finish().map(Some)
    }

    /// As [`get`](MapResult::get), with each task's own result: a failed task does not hide
    /// the others.
    pub fn get_each(&self) -> Vec<Result<R>> {
        self.get_each_until(None).unwrap_or_default()
    }

    /// As [`get_each`](MapResult::get_each), waiting at most `timeout`: `None` if the
    /// results are not all there yet.
    pub fn get_each_timeout(&self, timeout: Duration) -> Option<Vec<Result<R>>> {
        self.get_each_until(deadline_of(Some(timeout)))
    }

    fn get_each_until(&self, deadline: Option<Instant>) -> Option<Vec<Result<R>>> {
        let mut each = Vec::with_capacity(self.len);
        B::get(&self.job, deadline, &mut |r| each.push(r)).then_some(each)
    }

    /// Calls `f` with the results (as [`get`](MapResult::get) returns them) once they are
    /// all there; see [`AsyncResult::on_complete`].
    pub fn on_complete(self, f: impl FnOnce(Result<Vec<R>>) + Send + 'static) -> Self
    where
        R: 'static,
    {
        B::on_complete(&self.job, Box::new(move |each| f(each.into_iter().collect())));
        self
    }
}

/// The iterator of [`Pool::imap`](super::Pool::imap) and
/// [`Pool::imap_unordered`](super::Pool::imap_unordered): each task's result.
///
/// It keeps enough chunks submitted ahead of the caller to fill every worker's window twice
/// (and at least four per worker); a process pool sizes those windows from how long the
/// function's chunks take. Dropping it drops the chunks no worker has yet.
pub struct IMap<B: Backend, R, I: Iterator> {
    pool: Arc<B::Pool>,
    job: B::Job<R>,
    f: Function<I::Item, R>,
    /// `None` once exhausted (or after an item that could not be prepared).
    items: Option<I>,
    chunksize: usize,
    ordered: bool,
    /// Chunks submitted, tasks submitted, chunks taken back.
    submitted: usize,
    tasks: usize,
    taken: usize,
    buffer: VecDeque<Result<R>>,
    failure: Option<Error>,
}

impl<B: Backend, R, I: Iterator> fmt::Debug for IMap<B, R, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IMap")
            .field("function", &self.f.parts().0)
            .field("ordered", &self.ordered)
            .field("chunksize", &self.chunksize)
            .field("submitted_tasks", &self.tasks)
            .finish()
    }
}

impl<B: Backend, R, I: Iterator> IMap<B, R, I> {
    pub(super) fn new(
        pool: Arc<B::Pool>,
        job: B::Job<R>,
        f: &Function<I::Item, R>,
        items: I,
        chunksize: usize,
        ordered: bool,
    ) -> Self {
        let (name, f) = f.parts();
        IMap {
            pool,
            job,
            f: Function::new(name, f),
            items: Some(items),
            chunksize,
            ordered,
            submitted: 0,
            tasks: 0,
            taken: 0,
            buffer: VecDeque::new(),
            failure: None,
        }
    }
}

impl<B, R, I> IMap<B, R, I>
where
    B: Runs<I::Item, R>,
    I: Iterator,
{
    /// The next result, waiting at most `timeout`: `None` at the end,
    /// `Some(Err(Error::Timeout))` if it is not there yet (ask again later), as CPython's
    /// `next(timeout)`. [`next`](Iterator::next) waits as long as it takes.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<R>> {
        self.next_until(deadline_of(Some(timeout)))
    }

    fn next_until(&mut self, deadline: Option<Instant>) -> Option<Result<R>> {
        loop {
            if let Some(r) = self.buffer.pop_front() {
                return Some(r);
            }
            self.top_up();
            if self.taken == self.submitted {
                return self.failure.take().map(Err);
            }
            let index = self.ordered.then_some(self.taken);
            let buffer = &mut self.buffer;
            match B::next_chunk(&self.job, index, deadline, &mut |r| buffer.push_back(r)) {
                Some(true) => self.taken += 1,
                // Stopped (terminated): what was not submitted will not be.
                Some(false) => {
                    self.items = None;
                    self.taken = self.submitted;
                }
                None => {
                    return Some(Err(Error::Timeout("waiting for the next result of a pool imap".into())));
                }
            }
        }
    }

    /// Submits chunks until the look-ahead is full or the items run out.
    fn top_up(&mut self) {
        let Some(items) = self.items.as_mut() else { return };
        let n = B::processes(&self.pool);
        let window = B::window(&self.pool, self.f.parts().0, self.chunksize);
        let ahead = (4 * n).max(2 * n * window);
        let outstanding = self.submitted - self.taken;
        if outstanding >= ahead {
            return;
        }
        let want = (ahead - outstanding) * self.chunksize;
        let g = B::gather(items, want, self.tasks);
        let mut exhausted = g.n < want;
        if let Some(e) = g.failure {
            self.failure = Some(e);
            exhausted = true;
        }
        if g.n > 0 {
            match B::add(&self.job, &self.f, g.args, self.chunksize, self.submitted, self.tasks) {
                Ok(()) => {
                    self.submitted += g.n.div_ceil(self.chunksize);
                    self.tasks += g.n;
                }
                Err(e) => {
                    self.failure.get_or_insert(e);
                    exhausted = true;
                }
            }
        }
        if exhausted {
            self.items = None;
            B::seal(&self.job);
        }
    }
}

impl<B, R, I> Iterator for IMap<B, R, I>
where
    B: Runs<I::Item, R>,
    I: Iterator,
{
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        self.next_until(None)
    }
}
