//! pprocess's [`Exchange`]: many [`Channel`]s watched at once, each handed over when it has a
//! message, with an optional bound on how many children run at a time.

use std::fmt;
use std::io;
use std::time::Duration;

use super::pprocess::Channel;
use crate::wait::{Waitable, wait_with};
use crate::{Error, Result};

/// The handler of an [`Exchange`]: called with each channel that has a message.
type Handler<'h> = Box<dyn FnMut(&mut Channel) -> Result<()> + Send + 'h>;

/// pprocess's `Exchange`: watches many [`Channel`]s and hands over those with a message.
///
/// With a handler ([`on_ready`](Exchange::on_ready), pprocess's `store_data`) and a limit,
/// it runs a bounded number of children at a time:
///
/// ```no_run
/// use procwire::Connection;
/// use procwire::process::{ChannelFunction, Exchange, start};
///
/// fn cube(mut ch: Connection, n: u64) {
///     let _ = ch.send(&(n * n * n));
/// }
/// static CUBE: ChannelFunction<u64> = ChannelFunction::new("cube", cube);
///
/// fn main() -> procwire::Result<()> {
///     procwire::process::init(&[&CUBE]);
///     let mut total = 0;
///     let mut ex = Exchange::with_limit(4).on_ready(|ch| {
///         total += ch.recv::<u64>()?;
///         Ok(())
///     });
///     for n in 1..=10 {
///         ex.add_wait(start(&CUBE, n)?)?;
///     }
///     ex.finish()?;
///     drop(ex);
///     assert_eq!(total, 3025);
///     Ok(())
/// }
/// ```
///
/// A channel whose child hung up (end of stream, nothing left to read) leaves the exchange
/// during [`ready`](Exchange::ready), and its child is reaped then or, at the latest, by
/// [`finish`](Exchange::finish).
pub struct Exchange<'h> {
    channels: Vec<Channel>,
    limit: Option<usize>,
    handler: Option<Handler<'h>>,
    departed: Vec<Channel>,
}

impl fmt::Debug for Exchange<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exchange")
            .field("channels", &self.channels)
            .field("limit", &self.limit)
            .field("handler", &self.handler.is_some())
            .finish()
    }
}

impl Default for Exchange<'_> {
    fn default() -> Self {
        Exchange::new()
    }
}

impl<'h> Exchange<'h> {
    /// An empty exchange without a limit.
    pub fn new() -> Self {
        Exchange { channels: Vec::new(), limit: None, handler: None, departed: Vec::new() }
    }

    /// An empty exchange that [`add_wait`](Exchange::add_wait) keeps to at most `limit`
    /// channels (at least 1).
    pub fn with_limit(limit: usize) -> Self {
        Exchange { limit: Some(limit.max(1)), ..Exchange::new() }
    }

    /// Sets the handler that [`store`](Exchange::store), [`wait`](Exchange::wait),
    /// [`add_wait`](Exchange::add_wait) and [`finish`](Exchange::finish) call for each channel
    /// with a message (pprocess's `store_data`). A handler that returns [`Error::Closed`] or
    /// [`Error::Truncated`] (from a receive) removes the channel; another error removes it and
    /// is returned.
    pub fn on_ready(mut self, handler: impl FnMut(&mut Channel) -> Result<()> + Send + 'h) -> Self {
        self.handler = Some(Box::new(handler));
        self
    }

    /// Adds a channel to watch.
    pub fn add(&mut self, channel: Channel) {
        self.channels.push(channel);
    }

    /// Adds a channel after [`wait`](Exchange::wait)ing for room under the limit.
    pub fn add_wait(&mut self, channel: Channel) -> Result<()> {
        self.wait()?;
        self.add(channel);
        Ok(())
    }

    /// Handles ready channels until fewer than the limit remain (no-op without a limit).
    pub fn wait(&mut self) -> Result<()> {
        while let Some(limit) = self.limit
            && self.channels.len() >= limit
        {
            self.store()?;
        }
        Ok(())
    }

    /// The channels being watched.
    pub fn active(&self) -> &[Channel] {
        &self.channels
    }

    /// Whether no channel is watched.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// Waits until some channels have a message, and returns them; channels whose child hung
    /// up leave the exchange meanwhile. Empty when the last channels just hung up.
    pub fn ready(&mut self) -> Result<Vec<&mut Channel>> {
        self.ready_for(None)
    }

    /// As [`ready`](Exchange::ready), waiting at most `timeout` (zero: just look): empty if
    /// no message came by then.
    pub fn ready_timeout(&mut self, timeout: Duration) -> Result<Vec<&mut Channel>> {
        self.ready_for(Some(timeout))
    }

    fn ready_for(&mut self, timeout: Option<Duration>) -> Result<Vec<&mut Channel>> {
        self.sweep();
        if self.channels.is_empty() {
            return Ok(Vec::new());
        }
        let ready = {
            let objects: Vec<Waitable<'_>> =
                self.channels.iter().map(|c| Waitable::Connection(&c.conn)).collect();
            wait_with(&objects, timeout)?
        };
        let mut hung_up = Vec::new();
        let mut pids = Vec::new();
        for i in ready {
            let c = &mut self.channels[i];
            if c.conn.has_buffered() {
                pids.push(c.pid());
                continue;
            }
            match c.conn.fill_ready() {
                Ok(true) => pids.push(c.pid()),
                Ok(false) => hung_up.push(i),
                Err(Error::Io(e))
                    if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => {}
                Err(_) => hung_up.push(i),
            }
        }
        for &i in hung_up.iter().rev() {
            let c = self.channels.remove(i);
            self.departed.push(c);
        }
        self.sweep();
        Ok(self.channels.iter_mut().filter(|c| pids.contains(&c.pid())).collect())
    }

    /// Stops watching the channel to child `pid` and returns it.
    pub fn remove(&mut self, pid: u32) -> Option<Channel> {
        let i = self.channels.iter().position(|c| c.pid() == pid)?;
        Some(self.channels.remove(i))
    }

    /// Calls the handler for each channel that has a message, waiting until one has; returns
    /// how many were handled.
    pub fn store(&mut self) -> Result<usize> {
        self.store_for(None)
    }

    /// As [`store`](Exchange::store), waiting at most `timeout` for a message: 0 if none came.
    pub fn store_timeout(&mut self, timeout: Duration) -> Result<usize> {
        self.store_for(Some(timeout))
    }

    fn store_for(&mut self, timeout: Option<Duration>) -> Result<usize> {
        let Some(mut handler) = self.handler.take() else {
            return Err(Error::InvalidInput("this exchange has no handler (Exchange::on_ready)".into()));
        };
        let r = self.store_with(&mut handler, timeout);
        self.handler = Some(handler);
        r
    }

    fn store_with(&mut self, handler: &mut Handler<'h>, timeout: Option<Duration>) -> Result<usize> {
        let pids: Vec<u32> = self.ready_for(timeout)?.iter().map(|c| c.pid()).collect();
        let mut n = 0;
        for pid in pids {
            let Some(i) = self.channels.iter().position(|c| c.pid() == pid) else { continue };
            match handler(&mut self.channels[i]) {
                Ok(()) => n += 1,
                Err(e) => {
                    let c = self.channels.remove(i);
                    self.departed.push(c);
                    if !matches!(e, Error::Closed | Error::Truncated { .. }) {
                        return Err(e);
                    }
                }
            }
        }
        Ok(n)
    }

    /// Handles messages until every channel has hung up, then reaps their children.
    pub fn finish(&mut self) -> Result<()> {
        while !self.channels.is_empty() {
            self.store()?;
        }
        for c in self.departed.drain(..) {
            c.join()?;
        }
        Ok(())
    }

    /// Reaps the children of departed channels that have exited.
    fn sweep(&mut self) {
        self.departed.retain(|c| c.is_alive());
    }
}
