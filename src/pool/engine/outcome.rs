//! What came back from a worker: its messages parsed, and a chunk's outcomes decoded into
//! each task's result.

use crate::RemoteKind;
use crate::{Error, Result};

use super::super::wire;

/// What became of a chunk's tasks.
#[derive(Debug)]
pub(in crate::pool) enum ChunkOut {
    /// The worker's outcomes, one per task (spec/pool.md), `failed` of them failures.
    Data { n: usize, failed: usize, bytes: Vec<u8> },
    /// Every task failed the same way without an outcome of its own.
    Failed { n: usize, kind: RemoteKind, message: String },
    /// A lost chunk whose tasks were retried one by one.
    Parts(Vec<ChunkOut>),
}

impl ChunkOut {
    /// Calls `each` with every task's result, in order.
    pub(in crate::pool) fn decode<R: serde::de::DeserializeOwned>(&self, mut each: impl FnMut(Result<R>)) {
        self.decode_into(&mut each);
    }

    pub(super) fn decode_into<R: serde::de::DeserializeOwned>(&self, each: &mut dyn FnMut(Result<R>)) {
        match self {
            ChunkOut::Data { n, bytes, .. } => {
                let mut body = &bytes[..];
                let mut scratch = [0u8; wire::SCRATCH];
                let mut lost: Option<String> = None;
                for _ in 0..*n {
                    if let Some(why) = &lost {
                        each(Err(Error::Decode(why.clone())));
                        continue;
                    }
                    match wire::take_outcome::<R>(&mut body, &mut scratch) {
                        Ok(r) => each(Ok(r)),
                        Err((e, true)) => each(Err(e)),
                        Err((e, false)) => {
                            lost = Some(format!("an earlier result of the same chunk did not decode ({e})"));
                            each(Err(e));
                        }
                    }
                }
            }
            ChunkOut::Failed { n, kind, message } => {
                for _ in 0..*n {
                    each(Err(Error::Remote { kind: kind.clone(), message: message.clone() }));
                }
            }
            ChunkOut::Parts(parts) => {
                for p in parts {
                    p.decode_into(each);
                }
            }
        }
    }

    /// How many tasks failed.
    pub(super) fn failed(&self) -> usize {
        match self {
            ChunkOut::Data { failed, .. } => *failed,
            ChunkOut::Failed { n, .. } => *n,
            ChunkOut::Parts(parts) => parts.iter().map(ChunkOut::failed).sum(),
        }
    }
}

/// One message from a worker.
pub(super) enum Got {
    Result { id: u64, elapsed: u64, failed: u64, bytes: Vec<u8> },
    InitFailed(String),
}

pub(super) fn parse(frame: &[u8], scratch: &mut [u8]) -> Result<Got> {
    let Some((&op, mut body)) = frame.split_first() else {
        return Err(Error::Protocol("an empty pool message".into()));
    };
    match op {
        wire::RESULT => {
            let id = wire::take_uint(&mut body)?;
            let elapsed = wire::take_uint(&mut body)?;
            let failed = wire::take_uint(&mut body)?;
            Ok(Got::Result { id, elapsed, failed, bytes: body.to_vec() })
        }
        wire::INIT_FAILED => Ok(Got::InitFailed(wire::take_value(&mut body, scratch)?)),
        _ => Err(Error::Protocol(format!("unknown pool message {op:#04x} from a worker"))),
    }
}
