//! Windows transports: named pipes in message mode, as CPython's `AF_PIPE`, and TCP through
//! socket2.
//!
//! The rest of the crate reads and writes a byte stream of length-prefixed frames. A named pipe
//! carries one frame per pipe message and no length prefix, so that a Windows CPython peer can be
//! on the other end. [`Stream`] adapts: written bytes are cut into frames and each payload goes
//! out as one message ([`msg_pipe`]); each message received is handed up as a frame header
//! followed by the payload, the header made from the message's length.
//!
//! Pipe I/O is overlapped (interprocess opens every pipe handle that way) with an event per
//! direction, so a receive on one thread and a send on another do not wait for each other, and
//! deadlines are kept by waiting on the event and cancelling the operation ([`overlapped`]).
//! TCP sockets stay nonblocking and wait with `WSAPoll`.
//!
//! Limitations: readiness of named pipes in [`wait_any`] is polled (see there); only pipe
//! connections can be passed to a child process at its start (a socket is shared only with a
//! known process); the `mode` of [`BindOptions`] does not
//! apply (pipes get the default security descriptor, as CPython's do).

mod connect;
mod handles;
mod listener;
mod msg_pipe;
mod overlapped;
mod poll;
pub(crate) mod shm_region;
mod stream;

pub(crate) use connect::{connect, pipe};
pub(crate) use listener::{BindOptions, RawListener, pipe_exists};
pub(crate) use poll::{Pollable, wait_any, wait_ready_with};
pub(crate) use stream::Stream;

const UNIX_ONLY: &str = "Unix domain socket addresses exist only on Unix";

use crate::util::lock;
