//! Managers: a server process of shared objects that other processes use through proxies,
//! like `multiprocessing.Manager` (and the `processing` package's managers before it).
//!
//! A manager serves objects: the built-in types ([`DictProxy`], [`ListProxy`],
//! [`ValueProxy`], [`NamespaceProxy`], [`QueueProxy`], and the synchronization primitives
//! [`LockProxy`], [`RLockProxy`], [`SemaphoreProxy`], [`ConditionProxy`], [`EventProxy`],
//! [`BarrierProxy`]) and custom Rust types registered in a [`Registry`]. Every call on a proxy
//! is one request and one reply over an authenticated connection (spec/manager.md).
//!
//! Three ways to have one:
//! - [`Manager::start`] runs one in a new child process (this program started again, see
//!   [`process`](crate::process): `process::init` runs its server, [`SERVE`], built in); it ends when this
//!   process drops its last handle to it, calls [`Manager::shutdown`], or dies.
//! - [`ManagerServer::bind`] serves one in this process, on a given address.
//! - [`Manager::connect`] reaches a running one, from any process, local or over TCP, with its
//!   authkey.
//!
//! With the feature `encrypt`, a manager can encrypt its connections, keyed by its authkey
//! ([`ManagerBuilder::encrypt`], [`ManagerServer::bind_encrypted`],
//! [`Manager::connect_encrypted`]): proxies and queues of it sent to other processes carry
//! that, so those connect encrypted too. A plain client at an encrypting manager (or the
//! reverse) is refused at its first connection with a clear error.
//!
//! [`dummy::manager`](crate::dummy::manager) serves the same objects in this process, with no
//! connection: its proxies (these types) call them on their own thread.
//!
//! ```
//! use procwire::manager::{Manager, ManagerServer, Registry};
//! use procwire::{Address, AuthKey, Family};
//!
//! let key = AuthKey::random()?;
//! let server = ManagerServer::bind(&Address::fresh(Family::default())?, key.clone(), Registry::new())?;
//! let manager = Manager::connect(server.address(), key)?;
//! let l = manager.list(0..10)?;
//! l.reverse()?;
//! assert_eq!(l.to_vec()?, vec![9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
//! # Ok::<(), procwire::Error>(())
//! ```
//!
//! # Proxies across processes
//!
//! A proxy is a handle: the manager's address and key plus an object id. It serializes (so it
//! can be a [`Process`](crate::process::Process) argument, or travel in any message) and the
//! receiving process uses the same object. Objects are reference counted per process: an
//! object lives while some process holds a proxy of it (or one is in transit), and is freed
//! when the last one is dropped. Serializing a proxy takes a reference for the message; the
//! process that deserializes it takes that one over. A proxy serialized and never
//! deserialized keeps its object alive until the process that serialized it ends.
//!
//! # Concurrency, failures, and clients that die
//!
//! The manager serves each client connection on its own thread, and each object has its own
//! lock, so clients do not wait for each other except on the same object. A process opens
//! as many connections as it has threads making calls at the same time (a blocked
//! `acquire` on one thread does not hold up the others). An error or a panic inside a method
//! comes back as [`Error::Remote`] with its kind and message; the manager keeps serving.
//!
//! When a client process ends (exit, crash or SIGKILL) its connections close, and the
//! manager gives back what it held: locks, rlocks and conditions it owned are released,
//! semaphore permits it took and did not give back are returned, a barrier it was waiting
//! at breaks (as in `threading`, when a waiting thread is interrupted), and its references
//! are dropped. CPython's managers leave such locks held forever.

mod cbor;
mod link;
mod objects;
mod proxies;
mod server;
mod wire;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub(crate) use self::link::thread_token;
use self::link::{EXIT_GRACE, Link, START_TIMEOUT, link_for};
pub use self::proxies::{
    BarrierProxy, ConditionProxy, DictProxy, EventProxy, ListProxy, LockProxy, NamespaceProxy, QueueProxy,
    RLockProxy, SemaphoreProxy, ValueProxy,
};
pub use self::server::{BUILTIN_TYPES, ManagerServer, Registry, TypeBuilder};
use self::wire::{Plain, ProxyRef, RequestOut};
use crate::RemoteKind;
use crate::process::{Channel, ChannelFunction};
use crate::{Address, AuthKey, Connection, Error, Family, Result, ToAddress};

/// The wire text of [`RemoteKind::LeaseExpired`], the [`Error::Remote`] kind of a `release` by
/// a holder of a lock whose lease ran out: the manager took the lock back
/// ([`Manager::lock_with_lease`], [`Manager::rlock_with_lease`]).
pub const LEASE_EXPIRED: &str = "lease_expired";

/// The arguments of a manager child ([`SERVE`], or a function of yours that calls
/// [`serve_child`]): where to listen and the key. Made by [`ManagerBuilder`].
#[derive(Clone, Serialize, Deserialize)]
pub struct ChildArgs {
    address: Option<String>,
    authkey: Vec<u8>,
    /// Whether the manager encrypts its connections (absent in older programs' arguments: no).
    #[serde(default)]
    encrypt: bool,
    /// Whether it also listens on shared memory for clients on its host (absent: no).
    #[serde(default)]
    shared_memory: bool,
}

impl fmt::Debug for ChildArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildArgs")
            .field("address", &self.address)
            .field("encrypt", &self.encrypt)
            .field("shared_memory", &self.shared_memory)
            .finish_non_exhaustive()
    }
}

/// The function a manager child of the built-in types runs. It is built in:
/// [`process::init`](crate::process::init) finds it without a list, so `init(&[])` (or
/// `#[procwire::main]`) is all [`Manager::start`] needs; listing it, as older programs do, is
/// the same.
pub static SERVE: ChannelFunction<ChildArgs> =
    ChannelFunction::new("procwire.manager", |channel, args| serve_child(channel, args, Registry::new()));

/// What a manager child reports once it listens: its address and the shared-memory one
/// beside it, or why it could not bind.
type Started = std::result::Result<(String, Option<String>), String>;

/// The body of a manager child: binds, reports the addresses to the parent over `channel`,
/// serves `registry` until shut down, and exits when the parent dies (its end of `channel`
/// closes). For custom types, wrap it in a [`ChannelFunction`] of your own:
///
/// ```no_run
/// use procwire::manager::{ChildArgs, Manager, Registry, serve_child};
/// use procwire::process::ChannelFunction;
///
/// struct Foo;
/// fn registry() -> Registry {
///     let mut r = Registry::new();
///     r.register("Foo", |(): ()| Foo).method("bar", |_: &mut Foo, (): ()| println!("BAR"));
///     r
/// }
/// static NEW_MANAGER: ChannelFunction<ChildArgs> =
///     ChannelFunction::new("new_manager", |ch, args| serve_child(ch, args, registry()));
///
/// fn main() -> procwire::Result<()> {
///     procwire::process::init(&[&NEW_MANAGER]);
///     let manager = Manager::builder().start_with(&NEW_MANAGER)?;
///     let foo = manager.create("Foo", &())?;
///     foo.call::<_, ()>("bar", &())?;
///     Ok(())
/// }
/// ```
pub fn serve_child(mut channel: Connection, args: ChildArgs, registry: Registry) {
    let address = match args.address.as_deref().map(str::parse::<Address>) {
        Some(Ok(a)) => Ok(a),
        Some(Err(e)) => Err(e),
        None => Address::fresh(Family::default()),
    };
    let bound = address
        .and_then(|a| ManagerServer::bind_with(&a, args.authkey, registry, args.encrypt, args.shared_memory));
    let server = match bound {
        Ok(s) => s,
        Err(e) => {
            let _ = channel.send(&Started::Err(e.to_string()));
            return;
        }
    };
    let shm = server.shared_memory_address().map(Address::to_string);
    if channel.send(&Started::Ok((server.address().to_string(), shm))).is_err() {
        return;
    }
    // The parent holds the other end for as long as it uses the manager: its end of file
    // means the owner is gone (exited, crashed or killed), and so is the manager.
    let lifeline = std::thread::Builder::new().name("procwire-manager-lifeline".into()).spawn(move || {
        while channel.recv_bytes().is_ok() {}
        std::process::exit(0);
    });
    if lifeline.is_err() {
        return;
    }
    server.serve_forever();
}

/// Options for starting a manager in a child process; from [`Manager::builder`].
///
/// ```no_run
/// use procwire::manager::Manager;
/// use procwire::{Address, AuthKey};
///
/// procwire::process::init(&[]); // first in main: a manager child runs its server from here
/// let m = Manager::builder()
///     .address("tcp:127.0.0.1:0".parse()?)
///     .authkey(AuthKey::random()?)
///     .start()?;
/// println!("manager at {} (reachable by anyone with the key)", m.address());
/// # Ok::<(), procwire::Error>(())
/// ```
#[derive(Debug)]
pub struct ManagerBuilder {
    address: Option<Address>,
    authkey: Option<AuthKey>,
    encrypt: bool,
    shared_memory: bool,
}

impl Default for ManagerBuilder {
    fn default() -> Self {
        ManagerBuilder { address: None, authkey: None, encrypt: false, shared_memory: true }
    }
}

impl ManagerBuilder {
    /// Where the manager listens (default: a fresh address of the platform's default
    /// family; TCP port 0 takes a free port).
    pub fn address(mut self, address: Address) -> Self {
        self.address = Some(address);
        self
    }

    /// The key clients must hold (default: 32 random bytes, see [`Manager::authkey`]).
    pub fn authkey(mut self, key: impl Into<AuthKey>) -> Self {
        self.authkey = Some(key.into());
        self
    }

    /// Encrypts the manager's connections, keyed by its [`authkey`](Self::authkey) (see
    /// [`ListenerBuilder::encrypt`](crate::ListenerBuilder::encrypt)); the [`Manager`] this
    /// process gets, its proxies, and those sent to other processes connect encrypted. A
    /// plain client ([`Manager::connect`]) is refused at once. Not with a shared-memory
    /// address. Default: off.
    ///
    /// ```no_run
    /// use procwire::manager::Manager;
    ///
    /// procwire::process::init(&[]);
    /// let m = Manager::builder().address("tcp:0.0.0.0:0".parse()?).encrypt(true).start()?;
    /// assert!(m.is_encrypted());
    /// # Ok::<(), procwire::Error>(())
    /// ```
    #[cfg(feature = "encrypt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "encrypt")))]
    pub fn encrypt(mut self, on: bool) -> Self {
        self.encrypt = on;
        self
    }

    /// Whether processes on the manager's host reach it through memory they share with it
    /// (default: on, where shared-memory connections work: Linux, Apple's systems and Windows).
    /// The
    /// manager then also listens at a fresh `shm:` address beside its
    /// [`address`](Self::address); the [`Manager`] this process gets and every proxy of it
    /// carry both, and a process on this host connects through shared memory (a request and
    /// its reply cross without a system call while both sides are busy), any other (another
    /// host, CPython) through the address. [`Manager::connect`] with the address asks the
    /// manager for the other one and, on its host, moves there. An encrypting manager uses
    /// its address only. Off: only the address.
    ///
    /// ```no_run
    /// use procwire::manager::Manager;
    ///
    /// procwire::process::init(&[]);
    /// let m = Manager::builder().shared_memory(false).start()?;
    /// assert!(!m.is_shared_memory()?);
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn shared_memory(mut self, on: bool) -> Self {
        self.shared_memory = on;
        self
    }

    /// Starts a manager of the built-in types in a child process, which runs [`SERVE`] from
    /// [`process::init`](crate::process::init).
    pub fn start(self) -> Result<Manager> {
        self.start_with(&SERVE)
    }

    /// Starts a manager in a child process that runs `f` (a function that calls
    /// [`serve_child`] with its own [`Registry`]; it must be listed in
    /// [`process::init`](crate::process::init)), and waits until it listens.
    pub fn start_with(self, f: &ChannelFunction<ChildArgs>) -> Result<Manager> {
        let key = match self.authkey {
            Some(k) => k,
            None => AuthKey::random()?,
        };
        let args = ChildArgs {
            address: self.address.map(|a| a.to_string()),
            authkey: key.as_bytes().to_vec(),
            encrypt: self.encrypt,
            shared_memory: self.shared_memory,
        };
        let mut child = crate::process::start(f, args)?;
        child.set_read_timeout(Some(START_TIMEOUT));
        let reported = child.recv::<Started>();
        let fail = |child: Channel, e: Error| {
            let _ = child.kill();
            let _ = child.join_timeout(EXIT_GRACE);
            e
        };
        let parsed = match reported {
            Ok(Ok((a, shm))) => {
                a.parse::<Address>().and_then(|a| Ok((a, shm.map(|s| s.parse()).transpose()?)))
            }
            Ok(Err(message)) => Err(Error::Remote { kind: RemoteKind::Start, message }),
            Err(e) => Err(e),
        };
        let (address, shm) = match parsed {
            Ok(a) => a,
            Err(e) => return Err(fail(child, e)),
        };
        child.set_read_timeout(None);
        Ok(Manager { link: Link::started(address, shm, key, self.encrypt, child)? })
    }
}

/// A handle to a manager: creates shared objects and returns their proxies. Clones share the
/// connections.
///
/// A manager started by this process ([`Manager::start`]) lives until [`shutdown`]
/// (Manager::shutdown), until this process drops its last `Manager` handle and proxy of it,
/// or until this process ends.
///
/// [`shutdown`]: Manager::shutdown
#[derive(Clone)]
pub struct Manager {
    link: Arc<Link>,
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager")
            .field("address", &self.link.address)
            .field("owner", &self.link.owns_child())
            .finish()
    }
}

impl Manager {
    /// Options for [`start`](ManagerBuilder::start).
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder::default()
    }

    /// Starts a manager of the built-in types in a new child process, at a fresh address
    /// with a random key; the child runs [`SERVE`] from
    /// [`process::init`](crate::process::init).
    ///
    /// ```no_run
    /// use procwire::manager::Manager;
    ///
    /// procwire::process::init(&[]); // first in main
    /// let manager = Manager::start()?;
    /// let l = manager.list(0..10)?;
    /// l.reverse()?;
    /// println!("{:?}", l.to_vec()?);
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn start() -> Result<Manager> {
        ManagerBuilder::default().start()
    }

    /// Connects to the manager at `address` with its key (a wrong key is
    /// [`Error::AuthenticationFailed`]). On the manager's host, the handle moves to the
    /// manager's shared-memory address, which the manager tells it
    /// ([`ManagerBuilder::shared_memory`]).
    pub fn connect(address: impl ToAddress, key: impl Into<AuthKey>) -> Result<Manager> {
        Manager::connect_with(address, key, false)
    }

    /// As [`connect`](Manager::connect), to a manager that encrypts its connections
    /// ([`ManagerBuilder::encrypt`], [`ManagerServer::bind_encrypted`]): the connections of
    /// this handle and of its proxies are encrypted, keyed by `key`. At a manager that does
    /// not encrypt it fails at once with [`Error::AuthenticationFailed`] saying so.
    ///
    /// ```
    /// use procwire::manager::{Manager, ManagerServer, Registry};
    /// use procwire::{AuthKey, Error};
    ///
    /// let key = AuthKey::random()?;
    /// let server = ManagerServer::bind_encrypted("tcp:127.0.0.1:0", key.clone(), Registry::new())?;
    /// let m = Manager::connect_encrypted(server.address(), key.clone())?;
    /// let d = m.dict::<String, u32>()?;
    /// d.insert(&"one".to_string(), &1)?;
    /// assert_eq!(d.get(&"one".to_string())?, Some(1));
    /// assert!(matches!(Manager::connect(server.address(), key), Err(Error::AuthenticationFailed(_))));
    /// # Ok::<(), procwire::Error>(())
    /// ```
    #[cfg(feature = "encrypt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "encrypt")))]
    pub fn connect_encrypted(address: impl ToAddress, key: impl Into<AuthKey>) -> Result<Manager> {
        Manager::connect_with(address, key, true)
    }

    fn connect_with(address: impl ToAddress, key: impl Into<AuthKey>, encrypted: bool) -> Result<Manager> {
        let link = link_for(&address.to_address()?, None, &key.into(), encrypted);
        link.check()?;
        Ok(Manager { link })
    }

    /// A manager of the types of `registry` whose objects live in this process: proxies call
    /// them on their own thread, without a connection (the manager of
    /// [`dummy`](crate::dummy::manager)).
    pub(crate) fn in_process(registry: Registry) -> Result<Manager> {
        Ok(Manager { link: Link::local(registry)? })
    }

    /// The manager's address.
    pub fn address(&self) -> &Address {
        &self.link.address
    }

    /// The manager's key (give it, with the address, to processes that should connect).
    pub fn authkey(&self) -> &AuthKey {
        &self.link.key
    }

    /// Whether this handle's connections to the manager are encrypted (feature `encrypt`).
    pub fn is_encrypted(&self) -> bool {
        self.link.encrypted
    }

    /// The manager's shared-memory address, where processes on its host connect
    /// ([`ManagerBuilder::shared_memory`]); `None` when it has none or this handle does not
    /// know it: a handle of [`Manager::connect`] with the main address learns it from the
    /// manager at its first connection, and only on the manager's host.
    pub fn shared_memory_address(&self) -> Option<&Address> {
        self.link.shm.get()
    }

    /// Whether this handle's connections to the manager move their bytes through memory
    /// shared with it: it knows the manager's shared-memory address (a manager started with
    /// [`ManagerBuilder::shared_memory`] on, its proxies, or a [`Manager::connect`] that
    /// learned it) and runs on the manager's host. Asks a connection, which may connect.
    pub fn is_shared_memory(&self) -> Result<bool> {
        self.link.is_shared_memory()
    }

    /// Creates an object of a registered type from `args` and returns its untyped proxy.
    /// An unknown type id is an [`Error::Remote`] of kind `create`.
    pub fn create<A: Serialize>(&self, typeid: &str, args: &A) -> Result<Proxy> {
        let id: u64 = self.link.request(&RequestOut::Create { typeid, args })?;
        Ok(Proxy { inner: Arc::new(ProxyInner { link: self.link.clone(), id, typeid: typeid.to_string() }) })
    }

    /// The number of objects the manager holds (for all its clients).
    pub fn object_count(&self) -> Result<usize> {
        self.link.request::<(), usize>(&Plain::Count)
    }

    /// Shuts the manager down: its objects are dropped and every proxy of it stops working.
    /// When this process started it, waits for the child to exit (killing it after 5 s).
    pub fn shutdown(&self) -> Result<()> {
        self.link.shutdown()
    }
}

struct ProxyInner {
    link: Arc<Link>,
    id: u64,
    typeid: String,
}

impl Drop for ProxyInner {
    fn drop(&mut self) {
        if !self.link.dead.load(Ordering::SeqCst) {
            let _ = self.link.request::<(), ()>(&Plain::DecRef { id: self.id });
        }
    }
}

/// A proxy of any type: calls methods by name with serde arguments and results. Clones share
/// one reference; the object is freed when the last proxy of every process is gone. It
/// serializes as the manager's address and key and the object's id (see the [module
/// documentation](self#proxies-across-processes)).
///
/// ```
/// use procwire::manager::{Manager, ManagerServer, Registry};
/// use procwire::{Address, AuthKey, Error, Family, RemoteKind};
///
/// let mut reg = Registry::new();
/// reg.register("Greeter", |name: String| name)
///     .method("greet", |name: &mut String, greeting: String| format!("{greeting}, {name}!"));
/// let key = AuthKey::random()?;
/// let server = ManagerServer::bind(&Address::fresh(Family::Tcp)?, key.clone(), reg)?;
/// let m = Manager::connect(server.address(), key)?;
/// let g = m.create("Greeter", &"world")?;
/// assert_eq!(g.call::<_, String>("greet", &"Hello")?, "Hello, world!");
/// match g.call::<_, ()>("shout", &()) {
///     Err(Error::Remote { kind: RemoteKind::Attribute, .. }) => {}
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), procwire::Error>(())
/// ```
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<ProxyInner>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<Proxy[{}] object {} at {}>", self.inner.typeid, self.inner.id, self.inner.link.address)
    }
}

impl Proxy {
    /// Calls `method` with `args` and decodes its result as `R`. Errors raised by the method
    /// (a method that is not exposed: kind `attribute`; arguments that do not decode: kind
    /// `type`; a panic: kind `panic`) are [`Error::Remote`].
    pub fn call<A: Serialize, R: DeserializeOwned>(&self, method: &str, args: &A) -> Result<R> {
        self.inner.link.request(&RequestOut::Call { id: self.inner.id, method, args })
    }

    /// The object's type id.
    pub fn typeid(&self) -> &str {
        &self.inner.typeid
    }

    /// The object's id in its manager.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The manager that serves the object.
    pub fn manager(&self) -> Manager {
        Manager { link: self.inner.link.clone() }
    }
}

impl Serialize for Proxy {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let p = &self.inner;
        // A reference for the message, until the receiver adopts it.
        p.link.request::<(), ()>(&Plain::IncRef { id: p.id }).map_err(serde::ser::Error::custom)?;
        ProxyRef {
            address: p.link.address.to_string(),
            authkey: p.link.key.as_bytes().to_vec(),
            id: p.id,
            typeid: p.typeid.clone(),
            encrypted: p.link.encrypted,
            shm: p.link.shm.get().map(Address::to_string),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Proxy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let r = ProxyRef::deserialize(d)?;
        let address: Address = r.address.parse().map_err(serde::de::Error::custom)?;
        let shm = r.shm.map(|s| s.parse::<Address>()).transpose().map_err(serde::de::Error::custom)?;
        let link = link_for(&address, shm, &AuthKey::new(r.authkey), r.encrypted);
        link.request::<(), ()>(&Plain::Adopt { id: r.id }).map_err(|e| {
            serde::de::Error::custom(format!("cannot take over the proxy of object {}: {e}", r.id))
        })?;
        Ok(Proxy { inner: Arc::new(ProxyInner { link, id: r.id, typeid: r.typeid }) })
    }
}
