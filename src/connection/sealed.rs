//! Turning a connection whose encrypted handshake finished into an encrypted one.

use std::sync::Arc;

use super::{Connection, READ_BUFFER};
use crate::secure::Session;
use crate::transport::Stream;
use crate::transport::sealed::Sealed;
use crate::{Error, Result};

impl Connection {
    /// The same stream, from now on carried in `session`'s transport messages. What the
    /// handshake read past its last message is the first ciphertext.
    pub(crate) fn seal(self, session: Session) -> Result<Connection> {
        let unread = self
            .unread()
            .ok_or_else(|| Error::Protocol("a handshake connection with a half-read message".into()))?
            .to_vec();
        let max = self.max_message_size();
        let stream = Arc::clone(&self.rx.stream);
        drop(self);
        let stream =
            Arc::try_unwrap(stream).map_err(|_| Error::Protocol("the handshake stream is shared".into()))?;
        let sealed = Stream::Sealed(Box::new(Sealed::new(stream, session, &unread)));
        Ok(Connection::with_buffer(sealed, READ_BUFFER, max))
    }
}
