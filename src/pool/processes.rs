//! The [`Processes`] backend: the pool's front over the [engine](super::engine), which runs
//! chunks of CBOR-encoded tasks in worker processes and keeps their outcomes undecoded until a
//! result is read.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::engine::{self, ChunkOut, Config, Shared, Tasks};
use super::generic::sealed::{self, Gathered, Settings};
use super::generic::{DROP_JOIN, PoolBuilder, Processes};
use crate::process::Function;
use crate::util::deadline_of;
use crate::{Error, Result};

/// A submitted job: releases its results when dropped.
#[derive(Debug)]
pub struct Handle {
    shared: Arc<Shared>,
    job: u64,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.release(self.job);
    }
}

/// Arguments encoded one after the other, and where each ends.
#[derive(Debug, Default)]
pub struct Encoded {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl sealed::Backend for Processes {
    type Pool = Shared;
    /// The encoded argument, or why it could not be encoded (an error in `build`).
    type Init = std::result::Result<Vec<u8>, String>;
    type Job<R> = Handle;

    fn start(settings: Settings<Self::Init>) -> Result<Arc<Shared>> {
        let initializer = match settings.initializer {
            Some((name, Ok(args))) => Some((name, args)),
            Some((_, Err(e))) => return Err(Error::Encode(e)),
            None => None,
        };
        let shared = Shared::new(Config {
            processes: settings.processes,
            initializer,
            maxtasks: settings.maxtasks,
            prefix: settings.prefix,
            retry_lost: settings.retry_lost,
            shared_memory: settings.shared_memory,
        });
        if let Err(e) = engine::start(&shared) {
            shared.terminate();
            let _ = shared.join(deadline_of(Some(DROP_JOIN)));
            return Err(e);
        }
        Ok(shared)
    }

    fn processes(pool: &Shared) -> usize {
        pool.config.processes
    }

    fn pids(pool: &Shared) -> Vec<u32> {
        pool.pids()
    }

    fn close(pool: &Arc<Shared>) {
        pool.close();
    }

    fn terminate(pool: &Arc<Shared>) {
        pool.terminate();
    }

    fn join(pool: &Shared, deadline: Option<Instant>) -> Result<()> {
        pool.join(deadline)
    }

    fn window(pool: &Shared, function: &'static str, chunksize: usize) -> usize {
        pool.window(function, chunksize)
    }

    fn job_id<R>(job: &Handle) -> u64 {
        job.job
    }

    fn wait<R>(job: &Handle, deadline: Option<Instant>) -> bool {
        job.shared.wait_finished(job.job, deadline).is_some()
    }

    fn failed<R>(job: &Handle) -> Option<usize> {
        job.shared.failed_tasks(job.job)
    }

    fn seal<R>(job: &Handle) {
        job.shared.seal(job.job);
    }
}

impl<A, R> sealed::Runs<A, R> for Processes
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    type Args = Encoded;

    fn gather<I: Iterator<Item = A>>(items: &mut I, max: usize, first: usize) -> Gathered<Encoded> {
        let mut args = Encoded::default();
        let hint = items.size_hint().0.min(max);
        args.bytes.reserve(hint * 2);
        args.ends.reserve(hint);
        let mut failure = None;
        while args.ends.len() < max {
            let Some(item) = items.next() else { break };
            if let Err(e) = ciborium::into_writer(&item, &mut args.bytes) {
                failure = Some(Error::Encode(format!("item {}: {e}", first + args.ends.len())));
                args.bytes.truncate(args.ends.last().copied().unwrap_or(0));
                break;
            }
            args.ends.push(args.bytes.len());
        }
        Gathered { n: args.ends.len(), args, failure }
    }

    fn submit(pool: &Arc<Shared>, f: &Function<A, R>, args: Encoded, chunksize: usize) -> Result<Handle> {
        let Encoded { bytes, ends } = args;
        let job = pool.submit(Tasks { function: f.parts().0, args: bytes, ends: &ends, chunksize }, false)?;
        Ok(Handle { shared: pool.clone(), job })
    }

    fn open(pool: &Arc<Shared>, f: &Function<A, R>, _ordered: bool) -> Result<Handle> {
        let job =
            pool.submit(Tasks { function: f.parts().0, args: Vec::new(), ends: &[], chunksize: 1 }, true)?;
        Ok(Handle { shared: pool.clone(), job })
    }

    fn add(
        job: &Handle,
        f: &Function<A, R>,
        args: Encoded,
        chunksize: usize,
        first_chunk: usize,
        first_task: usize,
    ) -> Result<()> {
        let Encoded { bytes, ends } = args;
        let tasks = Tasks { function: f.parts().0, args: bytes, ends: &ends, chunksize };
        job.shared.add_chunks(job.job, tasks, first_chunk, first_task)
    }

    fn take(job: &Handle, deadline: Option<Instant>, each: &mut dyn FnMut(Result<R>)) -> bool {
        <Processes as sealed::Gets<R>>::get(job, deadline, each)
    }

    fn next_chunk(
        job: &Handle,
        index: Option<usize>,
        deadline: Option<Instant>,
        each: &mut dyn FnMut(Result<R>),
    ) -> Option<bool> {
        let out = job.shared.take_chunk(job.job, index, deadline)?;
        out.decode(each);
        Some(true)
    }
}

impl<R: DeserializeOwned> sealed::Gets<R> for Processes {
    fn get(job: &Handle, deadline: Option<Instant>, each: &mut dyn FnMut(Result<R>)) -> bool {
        let Some(outs) = job.shared.wait_finished(job.job, deadline) else { return false };
        outs.iter().for_each(|o: &ChunkOut| o.decode(&mut *each));
        true
    }

    fn on_complete(job: &Handle, f: Box<dyn FnOnce(Vec<Result<R>>) + Send>)
    where
        R: 'static,
    {
        job.shared.on_finished(
            job.job,
            Box::new(move |outs| {
                let mut all = Vec::new();
                outs.iter().for_each(|o| o.decode(|r| all.push(r)));
                f(all)
            }),
        );
    }
}

impl PoolBuilder<Processes> {
    /// A function each worker runs once with `args` before its first task (its result is
    /// ignored). If it panics, the pool stops: tasks fail with [`Error::Remote`] of kind
    /// `"initializer"` carrying the panic message, and new work is refused with kind `"pool"`.
    pub fn initializer<A, R>(self, f: &Function<A, R>, args: A) -> Self
    where
        A: Serialize + DeserializeOwned,
        R: Serialize,
    {
        let mut v = Vec::new();
        let encoded =
            ciborium::into_writer(&args, &mut v).map(|()| v).map_err(|e| crate::error::describe_encode(&e));
        self.with_initializer(f.parts().0, encoded)
    }
}
