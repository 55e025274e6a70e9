//! A handle's connection to a queue served by another process (or by this one, reached
//! through its address): a feeder thread that writes puts in batches, and reads shared by
//! whichever calling thread needs the next message.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

mod send;

use self::send::Tx;
use super::server::read_batch;
use super::wire::{self, Info};
use crate::RemoteKind;
use crate::shared::AtomicValue;
use crate::util::{deadline_of, lock, wait_deadline};
use crate::{Address, AuthKey, Client, Error, Family, Receiver, Result};

/// How long a handle waits for the server's answer to a control message before it calls the
/// connection broken.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long dropping a handle waits for its last puts to be written.
const DROP_FLUSH: Duration = Duration::from_secs(10);

/// The receiving side's state.
pub(crate) struct Rx {
    /// Items received and not yet taken, oldest first.
    items: VecDeque<Vec<u8>>,
    /// Items the server may still send us (asked for with `WANT`, not received).
    credit: u64,
    /// How many items to keep asked for or buffered; grows up to `prefetch`.
    window: u64,
    pub(crate) prefetch: u64,
    getters: usize,
    /// Reserved slots this handle may fill with `PUT`, and slots asked for and not granted.
    put_credit: u64,
    reserve_asked: u64,
    cancelled: u64,
    unreserved: u64,
    sizes: VecDeque<u64>,
    done: VecDeque<Option<String>>,
    joins_sent: u64,
    joined: u64,
    /// `FINISHED` answers not yet reported: each ends one get (the server cancelled the
    /// credit it answered).
    ends: u64,
    /// A thread is withdrawing this handle's request (CANCEL sent, CANCELLED not handled).
    cancelling: bool,
    reading: bool,
    waiters: usize,
    broken: Option<String>,
}

pub(crate) struct Link {
    tx: Mutex<Tx>,
    tx_cv: Condvar,
    st: Mutex<Rx>,
    cv: Condvar,
    rx: Mutex<Receiver>,
    /// Serialises request/answer pairs (`QSIZE`, `TASK_DONE`).
    call: Mutex<()>,
    pub(crate) info: Info,
    /// The shared counter of items taken, when the server maps it (else `ACK` messages).
    acks: Option<AtomicValue<u64>>,
    /// Whether the connection moves its bytes through shared memory.
    shared_memory: bool,
}

/// The owner of a link: stops and joins the feeder when the last handle goes.
pub(crate) struct Remote {
    pub(crate) link: Arc<Link>,
    feeder: Mutex<Option<JoinHandle<()>>>,
}

fn broken_error(why: &str) -> Error {
    if why == "closed" { Error::Closed } else { Error::Protocol(format!("queue connection lost: {why}")) }
}

/// What broke a connection, as [`broken_error`] reads it back: the server going away is
/// "closed", whether it closed in order or reset a connection it had not read to the end.
fn describe(e: &Error) -> String {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    match e {
        Error::Closed => "closed".into(),
        Error::Io(io)
            if matches!(io.kind(), BrokenPipe | ConnectionReset | ConnectionAborted | UnexpectedEof) =>
        {
            "closed".into()
        }
        e => e.to_string(),
    }
}

impl Remote {
    /// Connects to the queue at `address`; with `ask`, asks for its shared-memory address,
    /// which the server tells in `INFO` if it has one (see
    /// [`move_nearer`](crate::listener::beside::move_nearer)).
    pub(crate) fn connect(
        address: &Address,
        key: AuthKey,
        encrypted: bool,
        prefetch: u64,
        max_item: u64,
        ask: bool,
    ) -> Result<Remote> {
        let mut conn = Client::builder()
            .authkey(key)
            .encrypt_if(encrypted)
            .max_message_size(max_item + 1)
            .connect(address)?;
        // Where this handle counts the items it takes, if shared memory works here: only over
        // a Unix socket, so the server is on this host (and it says whether it could map it).
        let local = matches!(address.family(), Family::Unix | Family::UnixAbstract | Family::Shm);
        let acks = if local { AtomicValue::new(0u64).ok() } else { None };
        let mut hello = Vec::new();
        wire::push_value(
            &mut hello,
            wire::HELLO,
            &wire::Hello { version: wire::VERSION, acks: acks.clone(), shm: ask },
        )?;
        let shared_memory = conn.is_shared_memory();
        let (mut tx, mut rx) = {
            conn.set_read_timeout(Some(CONTROL_TIMEOUT));
            conn.split()
        };
        tx.write_frames(&hello, deadline_of(Some(CONTROL_TIMEOUT)))?;
        let reply = rx.recv_bytes()?;
        let (op, body) = wire::split(&reply)?;
        let info: Info = match op {
            wire::INFO => wire::value(op, body)?,
            wire::REFUSED => {
                let why: String = wire::value(op, body)?;
                return Err(Error::Protocol(format!("the queue refused this handle: {why}")));
            }
            _ => return Err(Error::Protocol(format!("expected INFO from the queue, got {op:#04x}"))),
        };
        rx.set_read_timeout(None);
        let acks = acks.filter(|_| info.acks_shared);
        let link = Link {
            acks,
            tx: Mutex::new(Tx::new(tx)),
            tx_cv: Condvar::new(),
            st: Mutex::new(Rx {
                items: VecDeque::new(),
                credit: 0,
                window: 1,
                prefetch,
                getters: 0,
                put_credit: 0,
                reserve_asked: 0,
                cancelled: 0,
                unreserved: 0,
                sizes: VecDeque::new(),
                done: VecDeque::new(),
                joins_sent: 0,
                joined: 0,
                ends: 0,
                cancelling: false,
                reading: false,
                waiters: 0,
                broken: None,
            }),
            cv: Condvar::new(),
            rx: Mutex::new(rx),
            call: Mutex::new(()),
            info,
            shared_memory,
        };
        Ok(Remote { link: Arc::new(link), feeder: Mutex::new(None) })
    }

    /// Queues an encoded item; the feeder writes it. With a maxsize, waits for a reserved
    /// slot until `deadline` first (`Ok(false)`: none came).
    pub(crate) fn put(&self, item: &[u8], deadline: Option<Instant>) -> Result<bool> {
        if let Some(max) = self.link.info.maxsize
            && !self.link.reserve_slot(max, deadline)?
        {
            return Ok(false);
        }
        self.ensure_feeder()?;
        self.link.queue_put(item)?;
        Ok(true)
    }

    fn ensure_feeder(&self) -> Result<()> {
        let mut f = lock(&self.feeder);
        if f.is_none() {
            let link = self.link.clone();
            *f = Some(thread::Builder::new().name("procwire-queue-feed".into()).spawn(move || link.feed())?);
        }
        Ok(())
    }

    /// Writes every put made so far and stops the feeder; later puts fail.
    ///
    /// Returns once the server has every put: a process that closes its handle (or drops it)
    /// and then tells another process it is done cannot have its items overtaken by what
    /// that process puts next, such as the sentinels that tell consumers to stop.
    pub(crate) fn close(&self) -> Result<()> {
        self.link.send_now(&[], deadline_of(Some(DROP_FLUSH)))?;
        self.finish()
    }

    /// Stops the feeder after it wrote everything, then, if this handle ever put, waits for
    /// the server to answer a request sent after the puts (it handles messages in order).
    fn finish(&self) -> Result<()> {
        self.link.stop_feeder();
        let feeder = lock(&self.feeder).take();
        let Some(h) = feeder else { return Ok(()) };
        let _ = h.join();
        self.link.qsize().map(drop)
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

impl Link {
    /// Whether the connection moves its bytes through shared memory.
    pub(crate) fn is_shared_memory(&self) -> bool {
        self.shared_memory
    }

    /// Waits for the thread that reads (or withdraws a request) to hand over, at most until
    /// `deadline`; `false` if it had passed.
    fn wait_for_reader<'a>(
        &'a self,
        mut st: MutexGuard<'a, Rx>,
        deadline: Option<Instant>,
    ) -> (MutexGuard<'a, Rx>, bool) {
        st.waiters += 1;
        let (mut st, waited) = wait_deadline(&self.cv, st, deadline);
        st.waiters -= 1;
        (st, waited)
    }

    /// One step of waiting for a message: reads a batch if no other thread is reading, or
    /// waits for the reader to hand over what it read. Returns the state and whether
    /// `deadline` passed.
    fn step<'a>(
        &'a self,
        mut st: MutexGuard<'a, Rx>,
        deadline: Option<Instant>,
    ) -> Result<(MutexGuard<'a, Rx>, bool)> {
        if let Some(why) = &st.broken {
            return Err(broken_error(why));
        }
        if st.reading {
            let (st, waited) = self.wait_for_reader(st, deadline);
            return Ok((st, !waited));
        }
        let passed = deadline.is_some_and(|d| Instant::now() >= d);
        st.reading = true;
        drop(st);
        let mut guard: Option<MutexGuard<'_, Rx>> = None;
        let r = {
            let mut rx = lock(&self.rx);
            read_batch(&mut rx, deadline, &mut |frame| {
                let st = guard.get_or_insert_with(|| lock(&self.st));
                Self::dispatch(st, frame)
            })
        };
        let mut st = guard.unwrap_or_else(|| lock(&self.st));
        st.reading = false;
        match r {
            Ok(()) | Err(Error::Timeout(_)) => {}
            Err(e) => {
                st.broken.get_or_insert(describe(&e));
            }
        }
        if st.waiters > 0 {
            self.cv.notify_all();
        }
        // Past the deadline the read above only looked at what had already arrived.
        let passed = passed || deadline.is_some_and(|d| Instant::now() >= d);
        Ok((st, passed))
    }

    fn dispatch(st: &mut Rx, frame: &[u8]) -> Result<()> {
        let (op, body) = wire::split(frame)?;
        match op {
            wire::ITEM => {
                st.items.push_back(body.to_vec());
                st.credit = st.credit.saturating_sub(1);
            }
            wire::GRANT => {
                let n = wire::count(op, body)?;
                st.put_credit += n;
                st.reserve_asked = st.reserve_asked.saturating_sub(n);
            }
            wire::CANCELLED => {
                st.cancelled += 1;
                st.credit = 0;
            }
            wire::UNRESERVED => {
                st.unreserved += 1;
                st.reserve_asked = 0;
            }
            wire::SIZE => st.sizes.push_back(wire::count(op, body)?),
            wire::DONE => st.done.push_back(wire::value(op, body)?),
            wire::JOINED => st.joined = st.joined.saturating_add(wire::count(op, body)?),
            wire::FINISHED => {
                st.ends = st.ends.saturating_add(1);
                st.credit = 0;
            }
            _ => return Err(Error::Protocol(format!("unexpected queue message {op:#04x}"))),
        }
        Ok(())
    }

    /// Takes a reserved slot, asking the server for more when none is left.
    fn reserve_slot(&self, max: u64, deadline: Option<Instant>) -> Result<bool> {
        let mut st = lock(&self.st);
        loop {
            if st.put_credit > 0 {
                st.put_credit -= 1;
                return Ok(true);
            }
            if st.reserve_asked == 0 {
                // A few slots at a time, so one producer does not pay a round trip per put
                // yet cannot hold much of a small queue; unused ones go back when it idles.
                let n = (max / 8).clamp(1, 64);
                st.reserve_asked = n;
                drop(st);
                self.send_value(wire::RESERVE, n)?;
                st = lock(&self.st);
                continue;
            }
            let (g, timed_out) = self.step(st, deadline)?;
            st = g;
            if timed_out && st.put_credit == 0 {
                // Withdraw the request; a grant may cross it, and then the put goes ahead.
                let seen = st.unreserved;
                drop(st);
                self.send_now(&[0, 0, 0, 1, wire::UNRESERVE], deadline_of(Some(CONTROL_TIMEOUT)))?;
                st = self.wait_until(lock(&self.st), |st| st.unreserved > seen)?;
                if st.put_credit > 0 {
                    st.put_credit -= 1;
                    return Ok(true);
                }
                return Ok(false);
            }
        }
    }

    /// Waits (reading as needed) until `cond` holds, at most [`CONTROL_TIMEOUT`].
    fn wait_until<'a>(
        &'a self,
        mut st: MutexGuard<'a, Rx>,
        cond: impl Fn(&Rx) -> bool,
    ) -> Result<MutexGuard<'a, Rx>> {
        let deadline = deadline_of(Some(CONTROL_TIMEOUT));
        while !cond(&st) {
            let (g, timed_out) = self.step(st, deadline)?;
            st = g;
            if timed_out && !cond(&st) {
                st.broken.get_or_insert_with(|| "the queue did not answer".into());
                return Err(Error::Timeout("waiting for the queue to answer".into()));
            }
        }
        Ok(st)
    }

    /// Takes the next item, waiting until `deadline` (`None` after it).
    pub(crate) fn get(&self, deadline: Option<Instant>) -> Result<Option<Vec<u8>>> {
        let mut st = lock(&self.st);
        st.getters += 1;
        let r = self.get_locked(st, deadline);
        lock(&self.st).getters -= 1;
        r
    }

    fn get_locked<'a>(
        &'a self,
        mut st: MutexGuard<'a, Rx>,
        deadline: Option<Instant>,
    ) -> Result<Option<Vec<u8>>> {
        let mut waited = false;
        loop {
            if let Some(item) = st.items.pop_front() {
                self.ack_taken(st, 1)?;
                return Ok(Some(item));
            }
            if st.ends > 0 {
                st.ends -= 1;
                return Err(Error::Finished);
            }
            if st.cancelling {
                // Another thread is withdrawing this handle's request: no WANT may cross its
                // CANCEL. Wait for it without reading (it reads), then ask again.
                let (g, waited) = self.wait_for_reader(st, deadline);
                st = g;
                if !waited {
                    return Ok(None);
                }
                continue;
            }
            if st.credit == 0 {
                let n = st.window.max(1);
                st.credit = n;
                let mut f = Vec::with_capacity(16);
                wire::push_count(&mut f, wire::WANT, n);
                self.send_locked(st, &f)?;
                st = lock(&self.st);
                continue;
            }
            if !waited {
                // Items ran out while this consumer wanted more: ask further ahead next time.
                waited = true;
                st.window = (st.window * 2).clamp(1, st.prefetch.max(1));
            }
            let (g, timed_out) = self.step(st, deadline)?;
            st = g;
            if timed_out && st.items.is_empty() {
                return self.give_up(st);
            }
        }
    }

    /// Acknowledges `n` items just taken (the write happens before the caller gets them, so
    /// a consumer that dies later does not return them), and tops the window up.
    fn ack_taken(&self, mut st: MutexGuard<'_, Rx>, n: u64) -> Result<()> {
        let outstanding = st.credit + st.items.len() as u64;
        let target = if st.prefetch == 0 || st.cancelling { 0 } else { st.window };
        let want = if outstanding * 2 <= target { target - outstanding } else { 0 };
        st.credit += want;
        let mut f = Vec::with_capacity(16);
        self.ack(&mut f, n);
        if want > 0 {
            wire::push_count(&mut f, wire::WANT, want);
        }
        if f.is_empty() {
            return Ok(());
        }
        self.send_locked(st, &f)
    }

    /// Records `n` items as taken: in the shared counter (a store the server reads even after
    /// this process is gone), or as an `ACK` appended to `frames`.
    fn ack(&self, frames: &mut Vec<u8>, n: u64) {
        match &self.acks {
            Some(acks) => {
                acks.atomic().fetch_add(n, Ordering::Release);
            }
            None => wire::push_count(frames, wire::ACK, n),
        }
    }

    /// A get that timed out: withdraws this handle's request so no item waits here for a
    /// consumer that stopped asking; an item that crossed the withdrawal is taken after all,
    /// and any further ones go back to the queue.
    fn give_up<'a>(&'a self, mut st: MutexGuard<'a, Rx>) -> Result<Option<Vec<u8>>> {
        if st.getters > 1 || st.credit == 0 || st.cancelling {
            return Ok(None);
        }
        // While this runs no thread of this handle sends WANT (see get_locked and
        // ack_taken), so after CANCELLED the server has sent this handle exactly what it
        // holds unacknowledged, and a RETURN takes back exactly the items buffered here.
        st.cancelling = true;
        let seen = st.cancelled;
        let r = self.send_locked(st, &[0, 0, 0, 1, wire::CANCEL]).and_then(|()| {
            let st = self.wait_until(lock(&self.st), |st| st.cancelled > seen)?;
            self.after_cancel(st)
        });
        let mut st = lock(&self.st);
        st.cancelling = false;
        if st.waiters > 0 {
            self.cv.notify_all();
        }
        r
    }

    /// The end of [`give_up`](Link::give_up), once CANCELLED arrived: take the first item
    /// that crossed the withdrawal, hand the others back if no other thread wants them.
    fn after_cancel(&self, mut st: MutexGuard<'_, Rx>) -> Result<Option<Vec<u8>>> {
        let Some(item) = st.items.pop_front() else { return Ok(None) };
        let rest = st.items.len() as u64;
        let mut f = Vec::new();
        self.ack(&mut f, 1);
        if st.getters == 1 && rest > 0 {
            st.items.clear();
            wire::push_count(&mut f, wire::RETURN, rest);
        }
        if !f.is_empty() {
            self.send_locked(st, &f)?;
        }
        Ok(Some(item))
    }

    /// Asks the server for a value with `op` and waits for the answer `take` finds.
    fn call<R>(&self, frames: &[u8], take: impl Fn(&mut Rx) -> Option<R>) -> Result<R> {
        let _turn = lock(&self.call);
        self.send_now(frames, deadline_of(Some(CONTROL_TIMEOUT)))?;
        let deadline = deadline_of(Some(CONTROL_TIMEOUT));
        let mut st = lock(&self.st);
        loop {
            if let Some(r) = take(&mut st) {
                return Ok(r);
            }
            let (g, timed_out) = self.step(st, deadline)?;
            st = g;
            if timed_out {
                st.broken.get_or_insert_with(|| "the queue did not answer".into());
                return Err(Error::Timeout("waiting for the queue to answer".into()));
            }
        }
    }

    /// Sends `FINISH` behind every put of this handle and returns once the server has it (it
    /// answers the `QSIZE` that follows it).
    pub(crate) fn finish_queue(&self) -> Result<()> {
        self.call(&[0, 0, 0, 1, wire::FINISH, 0, 0, 0, 1, wire::QSIZE], |st| st.sizes.pop_front()).map(drop)
    }

    pub(crate) fn qsize(&self) -> Result<u64> {
        self.call(&[0, 0, 0, 1, wire::QSIZE], |st| st.sizes.pop_front())
    }

    pub(crate) fn task_done(&self) -> Result<()> {
        let mut f = Vec::new();
        wire::push_count(&mut f, wire::TASK_DONE, 1);
        match self.call(&f, |st| st.done.pop_front())? {
            None => Ok(()),
            Some(message) => Err(Error::Remote { kind: RemoteKind::Value, message }),
        }
    }

    /// Waits until every item put so far (this handle's included) was marked done.
    /// The server answers `JOIN`s in the order they were sent, so this request is answered
    /// once `joined` reaches its number.
    pub(crate) fn join(&self, deadline: Option<Instant>) -> Result<bool> {
        let number = {
            let _turn = lock(&self.call);
            let number = {
                let mut st = lock(&self.st);
                st.joins_sent += 1;
                st.joins_sent
            };
            self.send_now(&[0, 0, 0, 1, wire::JOIN], deadline_of(Some(CONTROL_TIMEOUT)))?;
            number
        };
        let mut st = lock(&self.st);
        loop {
            if st.joined >= number {
                return Ok(true);
            }
            let (g, timed_out) = self.step(st, deadline)?;
            st = g;
            if timed_out && st.joined < number {
                return Ok(false);
            }
        }
    }

    pub(crate) fn set_prefetch(&self, n: u64) {
        let mut st = lock(&self.st);
        st.prefetch = n;
        st.window = st.window.min(n.max(1));
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::queue::Queue;

    #[test]
    fn consumers_count_in_shared_memory_over_unix_sockets_and_with_messages_over_tcp() {
        let unix: Queue<u64> = Queue::new().unwrap();
        let r = Remote::connect(unix.address(), unix.authkey().clone(), false, 8, 1 << 20, false).unwrap();
        assert!(r.link.info.acks_shared && r.link.acks.is_some());
        unix.put(&5).unwrap();
        assert_eq!(r.link.get(None).unwrap(), Some(vec![5]));
        assert_eq!(r.link.acks.as_ref().unwrap().load(Ordering::SeqCst), 1, "the get was counted");

        let tcp_addr = Address::fresh(Family::Tcp).unwrap();
        let tcp: Queue<u64> = crate::queue::QueueBuilder::new().address(tcp_addr).build().unwrap();
        let r = Remote::connect(tcp.address(), tcp.authkey().clone(), false, 8, 1 << 20, false).unwrap();
        assert!(!r.link.info.acks_shared && r.link.acks.is_none());
    }
}
