//! `queue`: a queue the manager's process serves; callers get its handle.

use super::{Ctx, Fault, Near, Object, Outcome, copy, no_method, reply};
use crate::Address;
use crate::RemoteKind;
use crate::queue::{Queue, QueueBuilder};

/// `queue`: a [`Queue`](crate::queue::Queue) served by the manager's process; callers get its
/// handle and use it directly.
pub(crate) struct SharedQueue {
    /// The reply to `handle`.
    handle: Vec<u8>,
    _queue: Queue<ciborium::Value>,
}

impl SharedQueue {
    pub(crate) fn new(maxsize: Option<u64>, near: &Near) -> Result<SharedQueue, Fault> {
        let mut b = QueueBuilder::new().encrypt_if(near.encrypt).shared_memory(near.shared_memory);
        if let Some(m) = maxsize {
            b = b.maxsize(usize::try_from(m).unwrap_or(usize::MAX));
        }
        // Reachable wherever the manager is: a TCP manager's queue listens on the same host.
        if let Address::Tcp { host, .. } = &near.address {
            b = b.address(Address::Tcp { host: host.clone(), port: 0 });
        }
        let q = b
            .build::<ciborium::Value>()
            .map_err(|e| Fault::new(RemoteKind::Create, format!("cannot create the queue: {e}")))?;
        Ok(SharedQueue { handle: reply(&q)?, _queue: q })
    }
}

impl Object for SharedQueue {
    fn call(&self, _ctx: &mut Ctx<'_>, method: &str, _a: &[u8]) -> Outcome {
        match method {
            "handle" => copy(&self.handle),
            _ => Err(no_method("queue", method)),
        }
    }
}
