//! In-process listeners: a process-wide table of names, each with a queue of connected
//! streams that `accept` takes.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use super::signal::{Signal, fire_all, unwatch};
use super::{Stream, pair_named};
use crate::util::{lock, wait_deadline};
use crate::{Address, Result};

#[derive(Debug)]
struct ListenState {
    queue: VecDeque<Stream>,
    open: bool,
    watchers: Vec<Arc<Signal>>,
}

#[derive(Debug)]
struct Listening {
    state: Mutex<ListenState>,
    /// Clients waiting for room in the queue.
    room: Condvar,
    backlog: usize,
}

/// The process-wide table of in-process listeners, by name.
static LISTENERS: Mutex<Option<HashMap<String, Arc<Listening>>>> = Mutex::new(None);

/// A listening in-process address.
#[derive(Debug)]
pub(crate) struct Listener {
    name: String,
    at: Arc<Listening>,
}

impl Listener {
    pub(crate) fn bind(addr: &Address, name: &str, backlog: i32) -> Result<Listener> {
        let mut table = lock(&LISTENERS);
        let table = table.get_or_insert_with(HashMap::new);
        if table.contains_key(name) {
            return Err(crate::Error::Io(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{addr} is already bound in this process"),
            )));
        }
        let at = Arc::new(Listening {
            state: Mutex::new(ListenState { queue: VecDeque::new(), open: true, watchers: Vec::new() }),
            room: Condvar::new(),
            backlog: usize::try_from(backlog).unwrap_or(1).max(1),
        });
        table.insert(name.to_string(), at.clone());
        Ok(Listener { name: name.to_string(), at })
    }

    pub(crate) fn local_addr(&self) -> Address {
        Address::InProc(self.name.clone())
    }

    pub(crate) fn try_accept(&self) -> Option<Stream> {
        let mut st = lock(&self.at.state);
        let s = st.queue.pop_front();
        if s.is_some() {
            self.at.room.notify_all();
        }
        s
    }

    pub(crate) fn ready_now(&self) -> bool {
        !lock(&self.at.state).queue.is_empty()
    }

    pub(crate) fn watch(&self, signal: &Arc<Signal>) {
        lock(&self.at.state).watchers.push(signal.clone());
    }

    pub(crate) fn unwatch(&self, signal: &Arc<Signal>) {
        unwatch(&mut lock(&self.at.state).watchers, signal);
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(table) = lock(&LISTENERS).as_mut()
            && table.get(&self.name).is_some_and(|l| Arc::ptr_eq(l, &self.at))
        {
            table.remove(&self.name);
        }
        let queued = {
            let mut st = lock(&self.at.state);
            st.open = false;
            self.at.room.notify_all();
            std::mem::take(&mut st.queue)
        };
        // Outside the lock: dropping them wakes their clients.
        drop(queued);
    }
}

/// Connects to the listener named `name`: `ConnectionRefused` if there is none; waits until
/// `deadline` (then `TimedOut`) while its queue of unaccepted connections is full.
pub(crate) fn connect(name: &str, deadline: Option<Instant>) -> io::Result<Stream> {
    let at = lock(&LISTENERS).as_ref().and_then(|t| t.get(name).cloned()).ok_or_else(|| {
        io::Error::new(io::ErrorKind::ConnectionRefused, "no listener of that name in this process")
    })?;
    let addr = Address::InProc(name.to_string());
    let (mine, theirs) = pair_named(true, None, Some(addr.clone()));
    let mut theirs = theirs;
    theirs.local = Some(addr);
    let mut st = lock(&at.state);
    loop {
        if !st.open {
            return Err(io::Error::new(io::ErrorKind::ConnectionRefused, "the listener was dropped"));
        }
        if st.queue.len() < at.backlog {
            st.queue.push_back(theirs);
            fire_all(&st.watchers);
            return Ok(mine);
        }
        if deadline.is_some_and(|d| d <= Instant::now()) {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let (g, _) = wait_deadline(&at.room, st, deadline);
        st = g;
    }
}

#[cfg(test)]
mod tests {
    use std::io::IoSlice;
    use std::time::Duration;

    use super::super::tests::read;
    use super::*;

    #[test]
    fn listeners_are_found_by_name_and_refuse_when_gone() {
        let name = "inproc-unit-test-listener";
        let addr = Address::InProc(name.into());
        let l = Listener::bind(&addr, name, 1).unwrap();
        assert!(Listener::bind(&addr, name, 1).is_err());
        let c = connect(name, None).unwrap();
        // The queue holds one: a second client waits, then times out.
        let e = connect(name, Some(Instant::now() + Duration::from_millis(10))).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        let s = l.try_accept().unwrap();
        assert_eq!(s.local_addr(), Some(addr.clone()));
        assert_eq!(c.peer_addr(), Some(addr));
        c.write_vectored(&[IoSlice::new(b"hi")], None).unwrap();
        assert_eq!(read(&s, 2, None).unwrap(), b"hi");
        drop(l);
        assert_eq!(connect(name, None).unwrap_err().kind(), io::ErrorKind::ConnectionRefused);
    }
}
