//! A worker's writer thread: takes chunks from the queue into the worker's window and sends
//! them, several in one write.

use std::sync::Arc;

use crate::connection::Sender;
use crate::util::lock;

use super::super::wire;
use super::state::{Chunk, State, window};
use super::{Config, Shared, thread_ended};

/// The most argument bytes in flight to one worker (beyond its first chunk).
pub(super) const MAX_IN_FLIGHT_BYTES: usize = 4 << 20;

pub(super) fn push_function(frames: &mut Vec<u8>, fid: usize, name: &str) {
    let at = wire::start_frame(frames, wire::FUNCTION);
    wire::push_uint(frames, fid as u64);
    wire::push_text(frames, name);
    wire::end_frame(frames, at);
}

/// What a writer does next.
pub(super) enum Take {
    Send,
    /// Send, then EXIT: the worker retires (maxtasksperchild) or the pool is closed.
    Exit,
    Wait,
    Stop,
}

/// Moves chunks for slot `k` from the queue to its flight; `batch` gets them.
pub(super) fn take(
    st: &mut State,
    cfg: &Config,
    k: usize,
    generation: u64,
    batch: &mut Vec<Chunk>,
    defs: &mut Vec<usize>,
) -> Take {
    if st.terminated.is_some() || st.slots[k].generation != generation || st.slots[k].exit_sent {
        return Take::Stop;
    }
    let live = st.live_workers().max(1);
    let in_flight: usize = st.slots.iter().map(|s| s.in_flight.len()).sum();
    // No worker takes more than its share of what there is to do.
    let share = (st.pending.len() + in_flight).div_ceil(live).max(1);
    while let Some(c) = st.pending.front() {
        let slot = &st.slots[k];
        let w = window(st.estimates[c.fid].map(|t| t * c.n as f64)).min(share);
        if slot.in_flight.len() >= w
            || (!slot.in_flight.is_empty() && slot.in_flight_bytes + c.range.len() > MAX_IN_FLIGHT_BYTES)
            || cfg.maxtasks.is_some_and(|m| slot.assigned >= m)
        {
            break;
        }
        let c = st.pending.pop_front().expect("looked at");
        let slot = &mut st.slots[k];
        if slot.defined.len() <= c.fid {
            slot.defined.resize(c.fid + 1, false);
        }
        if !slot.defined[c.fid] {
            slot.defined[c.fid] = true;
            defs.push(c.fid);
        }
        slot.in_flight_bytes += c.range.len();
        slot.assigned += c.n as u64;
        slot.in_flight.push_back(c.clone());
        batch.push(c);
    }
    let slot = &st.slots[k];
    let retire = cfg.maxtasks.is_some_and(|m| slot.assigned >= m);
    let finished = st.closed && st.pending.is_empty() && st.open_jobs == 0;
    if retire || finished {
        st.slots[k].exit_sent = true;
        Take::Exit
    } else if batch.is_empty() {
        Take::Wait
    } else {
        Take::Send
    }
}

/// The writer thread of slot `k`'s worker of `generation`.
pub(super) fn writer(shared: &Arc<Shared>, k: usize, generation: u64, mut tx: Sender) {
    let mut frames = Vec::new();
    let mut batch = Vec::new();
    let mut defs = Vec::new();
    loop {
        let mut names = Vec::new();
        let action = {
            let mut st = lock(&shared.state);
            loop {
                match take(&mut st, &shared.config, k, generation, &mut batch, &mut defs) {
                    Take::Wait => {
                        st.slots[k].writer_waiting = true;
                        st = shared.writers[k].wait(st).unwrap_or_else(|p| p.into_inner());
                        st.slots[k].writer_waiting = false;
                    }
                    other => {
                        names.extend(defs.drain(..).map(|fid| (fid, st.functions[fid])));
                        break other;
                    }
                }
            }
        };
        if matches!(action, Take::Stop) {
            break;
        }
        for (fid, name) in names {
            push_function(&mut frames, fid, name);
        }
        for c in batch.drain(..) {
            let at = wire::start_frame(&mut frames, wire::CHUNK);
            wire::push_uint(&mut frames, c.id);
            wire::push_uint(&mut frames, c.fid as u64);
            wire::push_uint(&mut frames, c.n as u64);
            frames.extend_from_slice(&c.args[c.range.clone()]);
            wire::end_frame(&mut frames, at);
        }
        let exit = matches!(action, Take::Exit);
        if exit {
            let at = wire::start_frame(&mut frames, wire::EXIT);
            wire::end_frame(&mut frames, at);
        }
        // A failed write means the worker is gone: its supervisor sees that and cleans up.
        if tx.write_frames(&frames, None).is_err() || exit {
            break;
        }
        frames.clear();
        if frames.capacity() > 4 << 20 {
            frames = Vec::new();
        }
    }
    thread_ended(shared);
}
