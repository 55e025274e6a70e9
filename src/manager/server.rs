//! The serving side: the [`Registry`] of types, object table with reference counts per
//! session, and [`ManagerServer`] (a listener and a thread per client connection).

use std::collections::HashMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::objects::{self, Ctx, Fault, Near, Object, Outcome, args, lock, no_method, reply};
use super::wire::{self, MAX_HELLO, OK, Reply, Request, VERSION};
use crate::RemoteKind;
use crate::{Address, AuthKey, Connection, Error, Listener, Result, ToAddress};

type Create = dyn Fn(&[u8], &Near) -> std::result::Result<Arc<dyn Object>, Fault> + Send + Sync;
type Method<T> = Box<dyn Fn(&mut T, &[u8]) -> Outcome + Send + Sync>;
type Methods<T> = Arc<RwLock<HashMap<String, Method<T>>>>;

/// The types a manager can create, by type id: the built-ins, and the custom types registered
/// with [`register`](Registry::register).
///
/// ```
/// use procwire::manager::Registry;
///
/// struct Counter(u64);
/// let mut reg = Registry::new();
/// reg.register("Counter", |start: u64| Counter(start))
///     .method("add", |c: &mut Counter, n: u64| { c.0 += n; c.0 })
///     .method("get", |c: &mut Counter, (): ()| c.0);
/// assert!(reg.contains("Counter") && reg.contains("dict"));
/// ```
pub struct Registry {
    types: HashMap<String, Box<Create>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.types.keys().collect();
        names.sort();
        f.debug_struct("Registry").field("types", &names).finish()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new()
    }
}

/// The type ids of the built-in types.
pub const BUILTIN_TYPES: &[&str] = &[
    "dict",
    "list",
    "value",
    "namespace",
    "queue",
    "lock",
    "rlock",
    "semaphore",
    "bounded_semaphore",
    "condition",
    "event",
    "barrier",
];

impl Registry {
    /// A registry of the built-in types ([`BUILTIN_TYPES`]).
    pub fn new() -> Registry {
        let mut r = Registry { types: HashMap::new() };
        r.builtin("dict", |_, _| Ok(Arc::new(objects::Dict::default())));
        r.builtin("list", |a, _| Ok(Arc::new(objects::List::new(a)?)));
        r.builtin("value", |a, _| Ok(Arc::new(objects::Cell::new(a)?)));
        r.builtin("namespace", |_, _| Ok(Arc::new(objects::Namespace::default())));
        r.builtin("queue", |a, near| Ok(Arc::new(objects::SharedQueue::new(args("queue", a)?, near)?)));
        r.builtin("lock", |a, _| Ok(Arc::new(objects::Lock::new(false, args("lock", a)?)?)));
        r.builtin("rlock", |a, _| Ok(Arc::new(objects::Lock::new(true, args("rlock", a)?)?)));
        r.builtin("semaphore", |a, _| Ok(Arc::new(objects::Semaphore::new(args("semaphore", a)?, false))));
        r.builtin("bounded_semaphore", |a, _| {
            Ok(Arc::new(objects::Semaphore::new(args("bounded_semaphore", a)?, true)))
        });
        r.builtin("condition", |_, _| Ok(Arc::new(objects::Condition::default())));
        r.builtin("event", |_, _| Ok(Arc::new(objects::Event::default())));
        r.builtin("barrier", |a, _| {
            let parties: u64 = args("barrier", a)?;
            if parties == 0 {
                return Err(Fault::new(RemoteKind::Value, "a barrier needs at least one party"));
            }
            Ok(Arc::new(objects::Barrier::new(parties)))
        });
        r
    }

    fn builtin(
        &mut self,
        typeid: &str,
        f: impl Fn(&[u8], &Near) -> std::result::Result<Arc<dyn Object>, Fault> + Send + Sync + 'static,
    ) {
        self.types.insert(typeid.to_string(), Box::new(f));
    }

    /// Whether `typeid` can be created.
    pub fn contains(&self, typeid: &str) -> bool {
        self.types.contains_key(typeid)
    }

    /// Registers the type `T` under `typeid`, created by `create` from the arguments a client
    /// gives ([`Manager::create`](super::Manager::create)); add the methods clients may call
    /// with [`TypeBuilder::method`]. Only those are exposed: any other name is an
    /// [`Error::Remote`] of kind `attribute`. A `typeid` registered before (a built-in
    /// included) is replaced.
    pub fn register<T, A, F>(&mut self, typeid: &str, create: F) -> TypeBuilder<T>
    where
        T: Send + 'static,
        A: DeserializeOwned,
        F: Fn(A) -> T + Send + Sync + 'static,
    {
        let methods: Methods<T> = Arc::new(RwLock::new(HashMap::new()));
        let m = methods.clone();
        let name: Arc<str> = typeid.into();
        let n = name.clone();
        let f = move |a: &[u8], _: &Near| -> std::result::Result<Arc<dyn Object>, Fault> {
            let a: A = args(&format!("{n} (its constructor)"), a)?;
            let value = catch_unwind(AssertUnwindSafe(|| create(a)))
                .map_err(|p| Fault::new(RemoteKind::Panic, crate::util::panic_message(&*p)))?;
            Ok(Arc::new(Custom { typeid: n.clone(), value: Mutex::new(value), methods: m.clone() }))
        };
        self.types.insert(typeid.to_string(), Box::new(f));
        TypeBuilder { methods, typeid: name }
    }

    fn create(&self, typeid: &str, a: &[u8], near: &Near) -> std::result::Result<Arc<dyn Object>, Fault> {
        match self.types.get(typeid) {
            Some(f) => f(a, near),
            None => Err(Fault::new(
                RemoteKind::Create,
                format!("no type {:?} is registered with this manager", objects::clip(typeid)),
            )),
        }
    }
}

/// Adds the exposed methods of a type registered with [`Registry::register`].
pub struct TypeBuilder<T> {
    methods: Methods<T>,
    typeid: Arc<str>,
}

impl<T> fmt::Debug for TypeBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypeBuilder").field("typeid", &self.typeid).finish()
    }
}

impl<T: Send + 'static> TypeBuilder<T> {
    /// Exposes `name`: a call decodes its arguments as `A` (a mismatch is an
    /// [`Error::Remote`] of kind `type`), runs `f` on the object (calls on one object run one
    /// at a time) and sends back the `R`. A panic in `f` comes back as kind `panic` with its
    /// message, and the object stays usable.
    pub fn method<A, R, F>(self, name: &str, f: F) -> Self
    where
        A: DeserializeOwned,
        R: Serialize,
        F: Fn(&mut T, A) -> R + Send + Sync + 'static,
    {
        let n = format!("{}.{name}", self.typeid);
        let m: Method<T> = Box::new(move |t, a| reply(f(t, args(&n, a)?)));
        lock_write(&self.methods).insert(name.to_string(), m);
        self
    }

    /// As [`method`](TypeBuilder::method), for a method that can fail: an `Err(e)` comes back
    /// as an [`Error::Remote`] of kind `error` with `e.to_string()`.
    pub fn try_method<A, R, E, F>(self, name: &str, f: F) -> Self
    where
        A: DeserializeOwned,
        R: Serialize,
        E: fmt::Display,
        F: Fn(&mut T, A) -> std::result::Result<R, E> + Send + Sync + 'static,
    {
        let n = format!("{}.{name}", self.typeid);
        let m: Method<T> = Box::new(move |t, a| {
            f(t, args(&n, a)?).map_err(|e| Fault::new(RemoteKind::Error, e.to_string())).and_then(reply)
        });
        lock_write(&self.methods).insert(name.to_string(), m);
        self
    }
}

fn lock_write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// An instance of a registered type.
struct Custom<T> {
    typeid: Arc<str>,
    value: Mutex<T>,
    methods: Methods<T>,
}

impl<T: Send> Object for Custom<T> {
    fn call(&self, _ctx: &mut Ctx<'_>, method: &str, a: &[u8]) -> Outcome {
        let methods = self.methods.read().unwrap_or_else(|p| p.into_inner());
        let Some(m) = methods.get(method) else { return Err(no_method(&self.typeid, method)) };
        // A panic poisons the mutex; the object stays usable (as a Python object after an
        // exception), so the poison is ignored.
        let mut v = lock(&self.value);
        m(&mut v, a)
    }
}

/// One object and who refers to it.
struct Entry {
    obj: Arc<dyn Object>,
    /// References per session.
    refs: HashMap<u64, u64>,
    /// References in transit (a proxy serialized to another process), per serializing session.
    floating: HashMap<u64, u64>,
}

impl Entry {
    fn unreferenced(&self) -> bool {
        self.refs.is_empty() && self.floating.is_empty()
    }
}

fn dec(m: &mut HashMap<u64, u64>, k: u64) -> bool {
    match m.get_mut(&k) {
        Some(n) => {
            *n -= 1;
            if *n == 0 {
                m.remove(&k);
            }
            true
        }
        None => false,
    }
}

/// The objects of one manager and who holds them, whether reached over connections
/// ([`ManagerServer`]) or from this process's own threads.
pub(crate) struct Inner {
    registry: Registry,
    near: Near,
    objects: Mutex<HashMap<u64, Entry>>,
    next_id: AtomicU64,
    sessions: Mutex<HashMap<u64, usize>>,
    stop: AtomicBool,
    stopped: (Mutex<bool>, Condvar),
}

impl Inner {
    /// A manager of the types of `registry`, reached at `near`.
    pub(super) fn new(registry: Registry, near: Near) -> Inner {
        Inner {
            registry,
            near,
            objects: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            sessions: Mutex::new(HashMap::new()),
            stop: AtomicBool::new(false),
            stopped: (Mutex::new(false), Condvar::new()),
        }
    }

    pub(super) fn is_shut_down(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn object(&self, id: u64) -> std::result::Result<Arc<dyn Object>, Fault> {
        lock(&self.objects).get(&id).map(|e| e.obj.clone()).ok_or_else(|| missing(id))
    }

    pub(super) fn handle(&self, session: u64, req: Request<'_>, conn: Option<&mut Connection>) -> Outcome {
        if self.stop.load(Ordering::SeqCst) {
            return Err(Fault::new(RemoteKind::Shutdown, "the manager was shut down"));
        }
        match req {
            Request::Hello { .. } => Err(Fault::new(RemoteKind::Protocol, "Hello sent twice")),
            Request::Create { typeid, args } => {
                let obj = catch_unwind(AssertUnwindSafe(|| self.registry.create(typeid, args, &self.near)))
                    .map_err(|p| Fault::new(RemoteKind::Panic, crate::util::panic_message(&*p)))??;
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                let entry = Entry { obj, refs: HashMap::from([(session, 1)]), floating: HashMap::new() };
                lock(&self.objects).insert(id, entry);
                reply(id)
            }
            Request::Call { id, method, args } => {
                let obj = self.object(id)?;
                let mut ctx = Ctx { session, conn, stop: &self.stop };
                catch_unwind(AssertUnwindSafe(|| obj.call(&mut ctx, method, args)))
                    .map_err(|p| Fault::new(RemoteKind::Panic, crate::util::panic_message(&*p)))?
            }
            Request::IncRef { id } => {
                let mut objects = lock(&self.objects);
                let e = objects.get_mut(&id).ok_or_else(|| missing(id))?;
                *e.floating.entry(session).or_default() += 1;
                reply(())
            }
            Request::Adopt { id } => {
                let mut objects = lock(&self.objects);
                let e = objects.get_mut(&id).ok_or_else(|| missing(id))?;
                if let Some(s) = e.floating.keys().next().copied() {
                    dec(&mut e.floating, s);
                }
                *e.refs.entry(session).or_default() += 1;
                reply(())
            }
            Request::DecRef { id } => {
                let mut objects = lock(&self.objects);
                let e = objects.get_mut(&id).ok_or_else(|| missing(id))?;
                if !dec(&mut e.refs, session) {
                    return Err(Fault::new(
                        RemoteKind::Reference,
                        format!("this process holds no reference to object {id}"),
                    ));
                }
                let gone = e.unreferenced().then(|| objects.remove(&id));
                drop(objects);
                // Dropped outside the table's lock: a queue's end waits for its threads.
                drop(gone);
                reply(())
            }
            Request::Count => reply(lock(&self.objects).len()),
            Request::Shutdown => {
                self.shutdown();
                reply(())
            }
        }
    }

    fn session_opened(&self, session: u64) {
        *lock(&self.sessions).entry(session).or_default() += 1;
    }

    /// The last connection of a session closed: its process ended (or stopped using the
    /// manager). Whatever it held is given back, and its references are dropped.
    fn session_closed(&self, session: u64) {
        {
            let mut s = lock(&self.sessions);
            let Some(n) = s.get_mut(&session) else { return };
            *n -= 1;
            if *n > 0 {
                return;
            }
            s.remove(&session);
        }
        let all: Vec<Arc<dyn Object>> = lock(&self.objects).values().map(|e| e.obj.clone()).collect();
        for o in &all {
            o.session_ended(session);
        }
        drop(all);
        let mut freed = Vec::new();
        {
            let mut objects = lock(&self.objects);
            objects.retain(|id, e| {
                e.refs.remove(&session);
                e.floating.remove(&session);
                if e.unreferenced() {
                    freed.push((*id, e.obj.clone()));
                    false
                } else {
                    true
                }
            });
        }
        drop(freed);
    }

    pub(super) fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let all: Vec<Entry> = lock(&self.objects).drain().map(|(_, e)| e).collect();
        drop(all);
        *lock(&self.stopped.0) = true;
        self.stopped.1.notify_all();
    }
}

fn missing(id: u64) -> Fault {
    Fault::new(
        RemoteKind::Reference,
        format!("object {id} does not exist (it was freed, or never created here)"),
    )
}

/// Sends a fault as the reply.
fn send_fault(conn: &mut Connection, f: Fault) -> Result<()> {
    conn.send(&Reply::Err { kind: f.kind.as_str().into(), message: f.message })
}

/// Reads the Hello that opens a connection (at most [`MAX_HELLO`] bytes: it has no reason to
/// be larger); the session it names and whether it asks for the shared-memory address, or
/// `None` (refused, answered) to close the connection.
fn hello(conn: &mut Connection, buf: &mut Vec<u8>) -> Option<(u64, bool)> {
    let max = conn.max_message_size();
    conn.set_max_message_size(MAX_HELLO);
    conn.set_read_timeout(Some(crate::listener::DEFAULT_HANDSHAKE_TIMEOUT));
    let got = conn.recv_bytes_into(buf);
    conn.set_max_message_size(max);
    conn.set_read_timeout(None);
    let fault = match got.map(|_| wire::parse(buf)) {
        Ok(Ok(Request::Hello { version, session, shm })) if version == VERSION => {
            return Some((session, shm));
        }
        Ok(Ok(Request::Hello { version, .. })) => {
            Fault::new(RemoteKind::Version, format!("protocol version {version} is not {VERSION}"))
        }
        Ok(_) | Err(Error::MessageTooLarge { .. }) => {
            Fault::new(RemoteKind::Protocol, "the first request on a manager connection must be Hello")
        }
        Err(_) => return None,
    };
    crate::trace::event!(WARN, fault = ?fault, "manager refused a client");
    let _ = send_fault(conn, fault);
    None
}

/// The answer to a Hello: null, or the shared-memory address when the client asked for it
/// (`ask`) and came through the main address (`conn`), so that a client on this host moves
/// there.
fn hello_answer(near: &Near, ask: bool, conn: &Connection) -> Vec<u8> {
    let mut answer = OK.to_vec();
    let told = crate::listener::beside::to_tell(near.shm.as_ref(), ask, conn);
    // Writing an Option<String> into a Vec cannot fail.
    let _ = ciborium::into_writer(&told, &mut answer);
    answer
}

/// Serves one client connection until it closes.
fn serve_connection(inner: Arc<Inner>, mut conn: Connection) {
    let mut buf = Vec::new();
    let Some((session, ask)) = hello(&mut conn, &mut buf) else { return };
    crate::trace::event!(INFO, address = %inner.near.address, session, "manager client connected");
    // Counted before the answer: a client that moves to the shared-memory address closes
    // this connection once that one is answered, and its session must not end between.
    inner.session_opened(session);
    if conn.send_bytes(&hello_answer(&inner.near, ask, &conn)).is_err() {
        inner.session_closed(session);
        return;
    }
    while !inner.stop.load(Ordering::Relaxed) {
        if conn.recv_bytes_into(&mut buf).is_err() {
            break;
        }
        let outcome = match wire::parse(&buf) {
            Ok(req) => inner.handle(session, req, Some(&mut conn)),
            Err(e) => Err(Fault::new(RemoteKind::Protocol, format!("not a manager request: {e}"))),
        };
        let sent = match outcome {
            Ok(reply) => conn.send_bytes(&reply),
            Err(f) => {
                crate::trace::event!(DEBUG, address = %inner.near.address, session, fault = ?f, "manager request failed");
                send_fault(&mut conn, f)
            }
        };
        if sent.is_err() {
            break;
        }
    }
    drop(conn);
    crate::trace::event!(INFO, address = %inner.near.address, session, "manager client disconnected");
    inner.session_closed(session);
}

/// A manager served by this process: a listener on its address and a thread per client
/// connection. [`Manager::start`](super::Manager::start) runs one in a child process;
/// `bind` serves one here.
///
/// ```
/// use procwire::manager::{Manager, ManagerServer, Registry};
/// use procwire::{Address, AuthKey, Family};
///
/// let key = AuthKey::random()?;
/// let server = ManagerServer::bind(&Address::fresh(Family::Tcp)?, key.clone(), Registry::new())?;
/// let m = Manager::connect(server.address(), key)?;
/// let d = m.dict::<String, u32>()?;
/// d.insert(&"one".to_string(), &1)?;
/// assert_eq!(d.get(&"one".to_string())?, Some(1));
/// drop(d);
/// assert_eq!(server.object_count(), 0, "the last proxy is gone");
/// # Ok::<(), procwire::Error>(())
/// ```
pub struct ManagerServer {
    inner: Arc<Inner>,
    address: Address,
    /// The shared-memory listener's address beside `address`, if it has one.
    shm: Option<Address>,
    acceptors: Vec<JoinHandle<()>>,
}

impl fmt::Debug for ManagerServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagerServer").field("address", &self.address).field("shm", &self.shm).finish()
    }
}

impl ManagerServer {
    /// Binds `address` (port 0 and [`Address::fresh`] work: see
    /// [`address`](ManagerServer::address)) and serves the types of `registry` to clients
    /// that prove they hold `key`, from background threads, until
    /// [`shutdown`](ManagerServer::shutdown), a client's [`Manager::shutdown`](super::Manager::shutdown),
    /// or the drop of this value.
    ///
    /// Where shared-memory connections work, it also listens at a fresh `shm:` address
    /// ([`shared_memory_address`](ManagerServer::shared_memory_address)) for clients on this
    /// host, and the queues it serves do too, as a manager of [`Manager::start`](super::Manager::start)
    /// does; where that listener cannot be made, it serves at `address` alone.
    ///
    /// ```
    /// use procwire::manager::{Manager, ManagerServer, Registry};
    /// use procwire::{AuthKey, Family};
    ///
    /// let key = AuthKey::random()?;
    /// let server = ManagerServer::bind("tcp:127.0.0.1:0", key.clone(), Registry::new())?;
    /// if let Some(shm) = server.shared_memory_address() {
    ///     assert_eq!(shm.family(), Family::Shm);
    ///     let m = Manager::connect(shm, key)?;
    ///     assert!(m.is_shared_memory()?);
    /// }
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn bind(
        address: impl ToAddress,
        key: impl Into<AuthKey>,
        registry: Registry,
    ) -> Result<ManagerServer> {
        ManagerServer::bind_with(address, key, registry, false, true)
    }

    /// As [`bind`](ManagerServer::bind), encrypting every connection, keyed by `key` (see
    /// [`ListenerBuilder::encrypt`](crate::ListenerBuilder::encrypt)): clients connect with
    /// [`Manager::connect_encrypted`](super::Manager::connect_encrypted), a plain client is
    /// refused at once, and queues the manager serves ([`Manager::queue`](super::Manager::queue))
    /// encrypt too.
    #[cfg(feature = "encrypt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "encrypt")))]
    pub fn bind_encrypted(
        address: impl ToAddress,
        key: impl Into<AuthKey>,
        registry: Registry,
    ) -> Result<ManagerServer> {
        ManagerServer::bind_with(address, key, registry, true, false)
    }

    /// Binds `address`, and with `shared_memory` (unless it encrypts, and where shared memory
    /// works) a fresh `shm:` address beside it for clients on this host.
    pub(super) fn bind_with(
        address: impl ToAddress,
        key: impl Into<AuthKey>,
        registry: Registry,
        encrypt: bool,
        shared_memory: bool,
    ) -> Result<ManagerServer> {
        let builder = Listener::builder().authkey(key).encrypt_if(encrypt);
        let listener = builder.clone().bind(address)?;
        let beside = crate::listener::beside::bind_beside(&builder, shared_memory, encrypt);
        let address = listener.address().clone();
        let shm = beside.as_ref().map(|l| l.address().clone());
        let near = Near { address: address.clone(), encrypt, shared_memory, shm: shm.clone() };
        let inner = Arc::new(Inner::new(registry, near));
        let mut server = ManagerServer { inner, address, shm, acceptors: Vec::new() };
        for listener in std::iter::once(listener).chain(beside) {
            let i = server.inner.clone();
            // On failure the server drops here, stopping the acceptors started already.
            server.acceptors.push(
                std::thread::Builder::new()
                    .name("procwire-manager".into())
                    .spawn(move || accept_loop(&i, &listener))?,
            );
        }
        Ok(server)
    }

    /// The address clients connect to (with the real port after binding port 0).
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The shared-memory address beside [`address`](Self::address), for clients on this host
    /// ([`Manager::connect`](super::Manager::connect) at it, or at `address`, which tells
    /// it, moves their requests through memory); `None` when the server has none (encrypted,
    /// or where shared memory does not work).
    pub fn shared_memory_address(&self) -> Option<&Address> {
        self.shm.as_ref()
    }

    /// Waits until the manager is shut down (by [`shutdown`](ManagerServer::shutdown) or a
    /// client's [`Manager::shutdown`](super::Manager::shutdown)), as `serve_forever`.
    pub fn serve_forever(&self) {
        let (m, cv) = &self.inner.stopped;
        let mut stopped = lock(m);
        while !*stopped {
            stopped = cv.wait(stopped).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Whether the manager was shut down.
    pub fn is_shut_down(&self) -> bool {
        self.inner.is_shut_down()
    }

    /// Stops serving: the listener closes, every object is dropped, blocked calls return an
    /// error within 0.1 s, and each client connection ends after its next request (answered
    /// with an error) or when its client closes it.
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }

    /// The number of live objects.
    pub fn object_count(&self) -> usize {
        lock(&self.inner.objects).len()
    }
}

impl Drop for ManagerServer {
    fn drop(&mut self) {
        self.inner.shutdown();
        for t in self.acceptors.drain(..) {
            let _ = t.join();
        }
    }
}

fn accept_loop(inner: &Arc<Inner>, listener: &Listener) {
    while !inner.stop.load(Ordering::SeqCst) {
        // An error concerns one client (wrong key, stalled handshake) or is our own timeout.
        if let Ok(conn) = listener.accept_timeout(Duration::from_millis(100)) {
            let i = inner.clone();
            // A thread that cannot start drops the connection: that client sees it closed.
            let spawned = std::thread::Builder::new()
                .name("procwire-manager-client".into())
                .spawn(move || serve_connection(i, conn));
            if let Err(e) = spawned {
                crate::trace::event!(WARN, error = %e, "manager refused a client: no thread to serve it");
                let _ = e;
            }
        }
    }
}
