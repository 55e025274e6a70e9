//! The worker's side: a child started with the built-in pool entry runs chunks of tasks in the
//! order they arrive and answers each chunk before it starts the next (spec/pool.md).

use std::time::Instant;

use crate::connection::Sender;
use crate::process::{Call, EXIT_PANICKED, EXIT_START_FAILED, Entry, Registry, Sealed, receive_args};
use crate::{Connection, Error, Result};

use super::WORKER_ENTRY;
use super::wire::{self, Ran, WorkerStart};

/// What to do after a message.
enum Next {
    Continue,
    Exit(i32),
}

/// The pool's worker as a child entry, in the crate's built-in table: a child started with
/// [`WORKER_ENTRY`] runs tasks of any [`Function`](crate::process::Function) in the program's
/// registry.
pub(crate) struct WorkerEntry;

/// The worker entry, for the built-in table.
pub(crate) static WORKER: WorkerEntry = WorkerEntry;

impl Sealed for WorkerEntry {
    fn run_child(&self, conn: Connection, registry: Registry<'_>) -> i32 {
        run_worker(conn, registry)
    }
}

impl Entry for WorkerEntry {
    fn name(&self) -> &'static str {
        WORKER_ENTRY
    }
    fn takes_channel(&self) -> bool {
        true
    }
}

struct Worker<'f> {
    registry: Registry<'f>,
    /// By function id: the function, or why there is none.
    table: Vec<std::result::Result<&'f dyn Call, String>>,
    out: Vec<u8>,
    scratch: [u8; wire::SCRATCH],
}

/// Runs the worker over the bootstrap connection; returns the exit code.
fn run_worker(mut conn: Connection, registry: Registry<'_>) -> i32 {
    let Some(start) = receive_args::<WorkerStart>(&mut conn, WORKER_ENTRY) else { return EXIT_START_FAILED };
    let (mut tx, mut rx) = conn.split();
    if start.version != wire::VERSION {
        let why = format!("pool protocol version {} is not {}", start.version, wire::VERSION);
        let mut out = Vec::new();
        let at = wire::start_frame(&mut out, wire::INIT_FAILED);
        wire::push_text(&mut out, &why);
        wire::end_frame(&mut out, at);
        let _ = tx.write_frames(&out, None);
        return EXIT_START_FAILED;
    }
    let mut w = Worker { registry, table: Vec::new(), out: Vec::new(), scratch: [0; wire::SCRATCH] };
    loop {
        let mut exit = None;
        let r = rx.recv_batch(None, &mut |frame| match w.handle(frame, &mut tx)? {
            Next::Continue => Ok(()),
            Next::Exit(code) => {
                exit = Some(code);
                // Stops the batch: what follows an EXIT is not for this worker.
                Err(Error::Closed)
            }
        });
        if let Some(code) = exit {
            return code;
        }
        match r {
            Ok(()) => {}
            // The parent is gone (or closed the pool without a word): nothing left to do.
            Err(Error::Closed | Error::Truncated { .. }) => return 0,
            Err(e) => {
                eprintln!("procwire pool worker {}: {e}", std::process::id());
                return EXIT_START_FAILED;
            }
        }
    }
}

impl<'f> Worker<'f> {
    fn handle(&mut self, frame: &[u8], tx: &mut Sender) -> Result<Next> {
        let Some((&op, mut body)) = frame.split_first() else {
            return Err(Error::Protocol("an empty pool message".into()));
        };
        match op {
            wire::FUNCTION => {
                let fid = wire::take_uint(&mut body)? as usize;
                let name: String = wire::take_value(&mut body, &mut self.scratch)?;
                let entry = self.lookup(&name);
                if self.table.len() <= fid {
                    self.table.resize(fid + 1, Err(String::new()));
                }
                self.table[fid] = entry;
                Ok(Next::Continue)
            }
            wire::INIT => {
                let fid = wire::take_uint(&mut body)? as usize;
                self.out.clear();
                let ran = self.run(fid, body, 1);
                if ran.failed == 0 && ran.rest == 0 {
                    return Ok(Next::Continue);
                }
                let why = match wire::take_outcome::<serde::de::IgnoredAny>(
                    &mut &self.out[..],
                    &mut self.scratch,
                ) {
                    Err((Error::Remote { kind, message }, _)) => format!("{kind}: {message}"),
                    _ => "its arguments were not all used".to_string(),
                };
                let mut frame = Vec::new();
                let at = wire::start_frame(&mut frame, wire::INIT_FAILED);
                wire::push_text(&mut frame, &why);
                wire::end_frame(&mut frame, at);
                let _ = tx.write_frames(&frame, None);
                Ok(Next::Exit(EXIT_PANICKED))
            }
            wire::CHUNK => {
                let id = wire::take_uint(&mut body)?;
                let fid = wire::take_uint(&mut body)? as usize;
                let n = wire::take_uint(&mut body)?;
                self.out.clear();
                let at = wire::start_frame(&mut self.out, wire::RESULT);
                wire::push_uint(&mut self.out, id);
                // Fixed-width fields, filled in once known.
                let fields = self.out.len();
                self.out.extend_from_slice(&[0x1b, 0, 0, 0, 0, 0, 0, 0, 0, 0x1b, 0, 0, 0, 0, 0, 0, 0, 0]);
                let t = Instant::now();
                let ran = self.run(fid, body, n);
                if ran.rest != 0 {
                    return Err(Error::Protocol(format!(
                        "a chunk of {n} tasks with {} bytes too many",
                        ran.rest
                    )));
                }
                let elapsed = u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
                self.out[fields + 1..fields + 9].copy_from_slice(&elapsed.to_be_bytes());
                self.out[fields + 10..fields + 18].copy_from_slice(&ran.failed.to_be_bytes());
                wire::end_frame(&mut self.out, at);
                // Written before the next chunk starts: if that one kills this process, the
                // parent knows exactly which chunk it was.
                tx.write_frames(&self.out, None)?;
                if self.out.capacity() > 1 << 20 {
                    self.out = Vec::new();
                }
                Ok(Next::Continue)
            }
            wire::EXIT => Ok(Next::Exit(0)),
            _ => Err(Error::Protocol(format!("unknown pool message {op:#04x}"))),
        }
    }

    /// Runs `n` tasks of function `fid`, appending their outcomes to `self.out`.
    fn run(&mut self, fid: usize, args: &[u8], n: u64) -> Ran {
        match self.table.get(fid) {
            Some(Ok(f)) => wire::run_tasks(*f, args, n, &mut self.out),
            Some(Err(why)) => wire::not_run(n, why, &mut self.out),
            None => wire::not_run(n, &format!("function id {fid} was not defined"), &mut self.out),
        }
    }

    fn lookup(&self, name: &str) -> std::result::Result<&'f dyn Call, String> {
        let entry = self.registry.find(name)?;
        entry.as_call().ok_or_else(|| wire::TAKES_CHANNEL.to_string())
    }
}
