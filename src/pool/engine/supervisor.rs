//! A worker slot's supervisor thread: starts the worker, reads its results, and replaces it
//! when it ends, failing or retrying the chunk it died in.

use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::RemoteKind;
use crate::connection::Receiver;
use crate::process::spawn_child;
use crate::util::lock;
use crate::{Error, PipeKind, Result};

use super::super::WORKER_ENTRY;
use super::super::wire::{self, WorkerStart};
use super::outcome::{Got, parse};
use super::state::{Chunk, Split, State, Worker};
use super::writer::{push_function, writer};
use super::{ChunkOut, Shared, thread_ended};

/// How often a supervisor with nothing to read checks on its worker.
pub(super) const CHECK_EVERY: Duration = Duration::from_millis(200);
/// How long a terminated worker has to exit after SIGTERM before it gets SIGKILL.
pub(super) const TERM_GRACE: Duration = Duration::from_secs(1);
/// Attempts to start a replacement worker before the slot gives up.
pub(super) const RESPAWN_ATTEMPTS: u32 = 3;

/// Starts the worker of slot `k` and its writer thread.
pub(super) fn start_worker(shared: &Arc<Shared>, k: usize) -> Result<(Receiver, Arc<Worker>, u64)> {
    let name = {
        let mut st = lock(&shared.state);
        if let Some(e) = st.refusal() {
            return Err(e);
        }
        st.slots[k].starting = true;
        let n = st.next_worker;
        st.next_worker += 1;
        format!("{}-{n}", shared.config.prefix)
    };
    let r = (|| {
        let mut args = Vec::new();
        ciborium::into_writer(&WorkerStart { version: wire::VERSION }, &mut args)
            .map_err(|e| crate::error::encode_error(&e))?;
        // Shared memory where it works: chunks and results cross without a system call while
        // the worker and the pool's threads are busy.
        spawn_child(WORKER_ENTRY, &args, &name, true, PipeKind::local(shared.config.shared_memory))
    })();
    let (conn, child) = match r {
        Ok(x) => x,
        Err(e) => {
            lock(&shared.state).slots[k].starting = false;
            return Err(e);
        }
    };
    let (mut tx, rx) = conn.split();
    let worker = Arc::new(Worker { name, child });
    let init_fid = shared.config.initializer.as_ref().map(|(f, _)| lock(&shared.state).fid(f));
    if let (Some(fid), Some((f, a))) = (init_fid, &shared.config.initializer) {
        let mut frames = Vec::new();
        push_function(&mut frames, fid, f);
        let at = wire::start_frame(&mut frames, wire::INIT);
        wire::push_uint(&mut frames, fid as u64);
        frames.extend_from_slice(a);
        wire::end_frame(&mut frames, at);
        // Before the writer starts, so these come first. A worker that died at once fails
        // this write, and the supervisor then sees how it ended.
        let _ = tx.write_frames(&frames, None);
    }
    let mut st = lock(&shared.state);
    let terminated = st.terminated.is_some();
    let slot = &mut st.slots[k];
    slot.starting = false;
    slot.generation += 1;
    let generation = slot.generation;
    slot.worker = Some(worker.clone());
    slot.in_flight.clear();
    slot.in_flight_bytes = 0;
    slot.assigned = 0;
    slot.exit_sent = false;
    slot.defined.clear();
    if let Some(fid) = init_fid {
        slot.defined.resize(fid + 1, false);
        slot.defined[fid] = true;
    }
    if terminated {
        drop(st);
        let _ = worker.child.signal(false);
        return Ok((rx, worker, generation));
    }
    st.threads += 1;
    drop(st);
    let sh = shared.clone();
    let spawned = thread::Builder::new()
        .name(format!("procwire-pool-w{k}"))
        .spawn(move || writer(&sh, k, generation, tx));
    if spawned.is_err() {
        thread_ended(shared);
        let _ = worker.child.signal(true);
    }
    Ok((rx, worker, generation))
}

/// How a worker's connection ended.
pub(super) enum End {
    /// End of stream, or the worker exited.
    Gone,
    InitFailed(String),
    Broken(Error),
}

/// The supervisor of slot `k`: starts its worker, reads its results, and replaces it.
pub(super) fn supervise(shared: &Arc<Shared>, k: usize, first: mpsc::Sender<Result<()>>) {
    let mut first = Some(first);
    let mut failures = 0;
    loop {
        let (mut rx, worker, generation) = match start_worker(shared, k) {
            Ok(x) => x,
            Err(e) => {
                if let Some(tx) = first.take() {
                    let _ = tx.send(Err(e));
                    break;
                }
                failures += 1;
                if failures < RESPAWN_ATTEMPTS && lock(&shared.state).refusal().is_none() {
                    thread::sleep(Duration::from_millis(100) * 2u32.pow(failures));
                    continue;
                }
                give_up(shared, &e);
                break;
            }
        };
        failures = 0;
        if let Some(tx) = first.take() {
            let _ = tx.send(Ok(()));
        }
        let end = read_results(shared, k, generation, &mut rx, &worker);
        drop(rx);
        if let End::Broken(_) = &end {
            let _ = worker.child.signal(true);
        }
        let code = reap(&worker);
        if !worker_ended(shared, k, &worker, end, code) {
            break;
        }
    }
    thread_ended(shared);
}

/// A slot could not start a worker: if no worker is left, nothing can run.
pub(super) fn give_up(shared: &Arc<Shared>, e: &Error) {
    let mut st = lock(&shared.state);
    if st.live_workers() == 0 && !st.slots.iter().any(|s| s.starting) && st.terminated.is_none() {
        let why = format!("no worker process could be started: {e}");
        st.fail_all(shared, RemoteKind::Pool, &why);
        st.broken = Some(why);
        shared.changed.notify_all();
    }
}

/// Reads results until the worker's connection ends.
pub(super) fn read_results(
    shared: &Arc<Shared>,
    k: usize,
    generation: u64,
    rx: &mut Receiver,
    worker: &Worker,
) -> End {
    let mut got = Vec::new();
    let mut scratch = [0u8; wire::SCRATCH];
    let mut exited = false;
    loop {
        let mut bad = None;
        let r = rx.recv_batch(Some(Instant::now() + CHECK_EVERY), &mut |frame| {
            match parse(frame, &mut scratch) {
                Ok(g) => got.push(g),
                Err(e) => bad = Some(e),
            }
            if bad.is_some() { Err(Error::Closed) } else { Ok(()) }
        });
        if !got.is_empty()
            && let Err(e) = apply(shared, k, generation, &mut got)
        {
            return e;
        }
        if let Some(e) = bad {
            return End::Broken(e);
        }
        match r {
            Ok(()) => {}
            Err(Error::Timeout(_)) => {
                // The stream stays open while a grandchild holds it: look at the process too,
                // and once it has exited, read what it wrote before for one more round.
                if exited {
                    return End::Gone;
                }
                exited = !matches!(worker.child.exitcode(), Ok(None));
                let terminated = lock(&shared.state).terminated;
                if terminated.is_some_and(|t| t.elapsed() > TERM_GRACE) {
                    let _ = worker.child.signal(true);
                }
            }
            Err(Error::Closed | Error::Truncated { .. }) => return End::Gone,
            Err(e) => return End::Broken(e),
        }
    }
}

/// Applies a batch of messages from slot `k`'s worker.
pub(super) fn apply(
    shared: &Arc<Shared>,
    k: usize,
    generation: u64,
    got: &mut Vec<Got>,
) -> std::result::Result<(), End> {
    let mut st = lock(&shared.state);
    let mut end = Ok(());
    for g in got.drain(..) {
        match g {
            Got::Result { id, elapsed, failed, bytes } => {
                let slot = &mut st.slots[k];
                if slot.generation != generation {
                    break;
                }
                let Some(c) = slot.in_flight.pop_front() else {
                    // After terminate or a failed initializer: its chunks were failed already.
                    if st.terminated.is_some() || st.broken.is_some() {
                        continue;
                    }
                    end = Err(End::Broken(Error::Protocol(format!(
                        "a result for chunk {id}, which was not sent"
                    ))));
                    break;
                };
                if c.id != id {
                    end = Err(End::Broken(Error::Protocol(format!(
                        "a result for chunk {id} where chunk {} was next",
                        c.id
                    ))));
                    slot.in_flight.push_front(c);
                    break;
                }
                slot.in_flight_bytes -= c.range.len();
                let per_task = elapsed as f64 / c.n.max(1) as f64;
                let est = &mut st.estimates[c.fid];
                *est = Some(est.map_or(per_task, |e| 0.75 * e + 0.25 * per_task));
                let failed = usize::try_from(failed).unwrap_or(usize::MAX).min(c.n);
                st.chunk_done(shared, &c, ChunkOut::Data { n: c.n, failed, bytes });
            }
            Got::InitFailed(why) => {
                end = Err(End::InitFailed(why));
                break;
            }
        }
    }
    if st.slots[k].writer_waiting {
        shared.writers[k].notify_one();
    }
    drop(st);
    shared.changed.notify_all();
    end
}

/// Waits for an ended worker's exit code (killing it if it does not exit).
pub(super) fn reap(worker: &Worker) -> Option<i32> {
    if let Ok(Some(code)) = worker.child.join(Some(Duration::from_secs(2))) {
        return Some(code);
    }
    let _ = worker.child.signal(true);
    worker.child.join(Some(Duration::from_secs(5))).ok().flatten()
}

/// Why a worker's tasks were lost, for their error messages.
pub(super) fn describe(worker: &Worker, code: Option<i32>) -> String {
    let how = match code {
        Some(c) if c < 0 => {
            let sig = -c;
            let what = match sig {
                9 => " (SIGKILL: killed, for example by the out-of-memory killer)",
                6 => " (SIGABRT: aborted, for example after a failed allocation)",
                11 => " (SIGSEGV: a segmentation fault)",
                15 => " (SIGTERM)",
                _ => "",
            };
            format!("was killed by signal {sig}{what}")
        }
        Some(c) => format!("exited with code {c}"),
        None => "ended (its exit code could not be read)".to_string(),
    };
    format!("worker process {} (pid {}) {how}", worker.name, worker.child.pid())
}

/// Cleans up after slot `k`'s worker ended; whether to start a replacement.
pub(super) fn worker_ended(
    shared: &Arc<Shared>,
    k: usize,
    worker: &Worker,
    end: End,
    code: Option<i32>,
) -> bool {
    let mut st = lock(&shared.state);
    let slot = &mut st.slots[k];
    slot.worker = None;
    slot.generation += 1;
    let lost: Vec<Chunk> = slot.in_flight.drain(..).collect();
    slot.in_flight_bytes = 0;
    shared.writers[k].notify_all();
    let again = match end {
        _ if st.terminated.is_some() => false,
        End::InitFailed(why) => {
            let why = format!("the initializer failed in {}: {why}", describe(worker, code));
            st.pending.extend(lost);
            st.fail_all(shared, RemoteKind::Initializer, &why);
            st.broken = Some(why);
            false
        }
        end => {
            let mut lost = lost.into_iter();
            if let Some(c) = lost.next() {
                let mut why = describe(worker, code);
                if let End::Broken(e) = &end {
                    why = format!("{why} after a protocol error ({e})");
                }
                let parts = if shared.config.retry_lost && c.tries == 0 { split(&mut st, &c) } else { None };
                for c in lost.rev() {
                    st.pending.push_front(c);
                }
                match parts {
                    Some(parts) => {
                        for p in parts.into_iter().rev() {
                            st.pending.push_front(p);
                        }
                    }
                    None => {
                        let which = if c.n == 1 {
                            "while running this task".to_string()
                        } else {
                            format!(
                                "while running this task's chunk (tasks {} to {} of the call)",
                                c.first,
                                c.first + c.n - 1
                            )
                        };
                        let retried = if c.tries > 0 { " (it was the task's second try)" } else { "" };
                        let message = format!("{why} {which}{retried}");
                        st.chunk_done(
                            shared,
                            &c,
                            ChunkOut::Failed { n: c.n, kind: RemoteKind::Exit, message },
                        );
                    }
                }
                shared.wake_writers(&st);
            }
            st.broken.is_none() && (!st.closed || !st.pending.is_empty() || st.open_jobs > 0)
        }
    };
    shared.changed.notify_all();
    again
}

/// A lost chunk to retry: itself marked as tried if it has one task, else one chunk per task
/// (so that a task that kills its worker again fails alone), gathered by a [`Split`].
pub(super) fn split(st: &mut State, c: &Chunk) -> Option<Vec<Chunk>> {
    if c.n == 1 {
        return Some(vec![Chunk { tries: 1, ..c.clone() }]);
    }
    let split_id = st.next_chunk;
    st.next_chunk += 1;
    let mut parts = Vec::with_capacity(c.n);
    let mut body = &c.args[c.range.clone()];
    let mut pos = c.range.start;
    for i in 0..c.n {
        let before = body.len();
        skip_value(&mut body).ok()?;
        let len = before - body.len();
        let id = st.next_chunk;
        st.next_chunk += 1;
        parts.push(Chunk {
            id,
            first: c.first + i,
            n: 1,
            range: pos..pos + len,
            tries: 1,
            part: Some((split_id, i)),
            ..c.clone()
        });
        pos += len;
    }
    st.splits.insert(
        split_id,
        Split { job: c.job, index: c.index, parts: (0..c.n).map(|_| None).collect(), left: c.n },
    );
    Some(parts)
}

/// Skips one CBOR value at the front of `body`.
pub(super) fn skip_value(body: &mut &[u8]) -> Result<()> {
    let mut scratch = [0u8; wire::SCRATCH];
    wire::take_value::<serde::de::IgnoredAny>(body, &mut scratch).map(|_| ())
}
