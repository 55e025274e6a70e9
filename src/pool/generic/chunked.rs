//! [`Chunked`]: the map family of a [`Pool`] with a chosen chunk size, so that the size is
//! set once (on the builder, or for some calls) rather than passed to every call.

use std::fmt;

use super::results::{self, IMap, MapResult};
use super::{Backend, Pool, Runs, chunksize_or};
use crate::Result;
use crate::process::Function;

/// A pool's map family with its own chunk size, from
/// [`Pool::with_chunksize`](super::Pool::with_chunksize).
///
/// ```
/// # use procwire::dummy::{pool::Pool, process::Function};
/// # static SQUARE: Function<u64, u64> = Function::new("square", |x| x * x);
/// let pool = Pool::new(2)?;
/// let big = pool.with_chunksize(1000);
/// assert_eq!(big.map(&SQUARE, 0..10_000)?.len(), 10_000);
/// assert_eq!(big.map(&SQUARE, [3])?, [9]);
/// # Ok::<(), procwire::Error>(())
/// ```
pub struct Chunked<'a, B: Backend> {
    pub(super) pool: &'a Pool<B>,
    /// `None`: the defaults (`default_chunksize` for `map`, 1 for `imap`).
    pub(super) chunksize: Option<usize>,
}

impl<B: Backend> fmt::Debug for Chunked<'_, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chunked").field("chunksize", &self.chunksize).finish_non_exhaustive()
    }
}

impl<B: Backend> Chunked<'_, B> {
    /// [`Pool::map`] in chunks of this size.
    pub fn map<A, R, I>(&self, f: &Function<A, R>, items: I) -> Result<Vec<R>>
    where
        B: Runs<A, R>,
        I: IntoIterator<Item = A>,
    {
        let (job, len) = self.submit(f, items)?;
        let mut all = results::All::new(len);
        B::take(&job, None, &mut |r| all.push(r));
        all.finish()
    }

    /// [`Pool::map_async`] in chunks of this size.
    pub fn map_async<A, R, I>(&self, f: &Function<A, R>, items: I) -> Result<MapResult<B, R>>
    where
        B: Runs<A, R>,
        I: IntoIterator<Item = A>,
    {
        let (job, len) = self.submit(f, items)?;
        Ok(MapResult::new(job, len))
    }

    /// [`Pool::starmap`] in chunks of this size.
    pub fn starmap<A, R, I>(&self, f: &Function<A, R>, items: I) -> Result<Vec<R>>
    where
        B: Runs<A, R>,
        I: IntoIterator<Item = A>,
    {
        self.map(f, items)
    }

    /// [`Pool::starmap_async`] in chunks of this size.
    pub fn starmap_async<A, R, I>(&self, f: &Function<A, R>, items: I) -> Result<MapResult<B, R>>
    where
        B: Runs<A, R>,
        I: IntoIterator<Item = A>,
    {
        self.map_async(f, items)
    }

    /// [`Pool::imap`] in chunks of this size.
    pub fn imap<A, R, I>(&self, f: &Function<A, R>, items: I) -> Result<IMap<B, R, I::IntoIter>>
    where
        B: Runs<A, R>,
        I: IntoIterator<Item = A>,
    {
        self.imap_with(f, items, true)
    }

    /// [`Pool::imap_unordered`] in chunks of this size.
    pub fn imap_unordered<A, R, I>(&self, f: &Function<A, R>, items: I) -> Result<IMap<B, R, I::IntoIter>>
    where
        B: Runs<A, R>,
        I: IntoIterator<Item = A>,
    {
        self.imap_with(f, items, false)
    }

    fn submit<A, R, I>(&self, f: &Function<A, R>, items: I) -> Result<(B::Job<R>, usize)>
    where
        B: Runs<A, R>,
        I: IntoIterator<Item = A>,
    {
        self.pool.submit(f, items, self.chunksize)
    }

    fn imap_with<A, R, I>(
        &self,
        f: &Function<A, R>,
        items: I,
        ordered: bool,
    ) -> Result<IMap<B, R, I::IntoIter>>
    where
        B: Runs<A, R>,
        I: IntoIterator<Item = A>,
    {
        let chunksize = chunksize_or(self.chunksize, || 1)?;
        let pool = &self.pool.pool;
        let job = B::open(pool, f, ordered)?;
        Ok(IMap::new(pool.clone(), job, f, items.into_iter(), chunksize, ordered))
    }
}
