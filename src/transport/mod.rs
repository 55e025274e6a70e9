//! Transports: one [`Stream`] type and one [`RawListener`] type over Unix domain sockets, TCP,
//! Windows named pipes and memory (the in-process transport). Platform code lives in `unix/`
//! and `windows/` only, the in-process transport in `inproc.rs`, the encrypted stream over any of
//! them (feature `encrypt`) in `sealed.rs`; the rest of the crate sees
//! the types defined here, which pass each call to the one or the other.

use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{Address, Result};

pub(crate) mod inproc;
#[cfg(feature = "encrypt")]
pub(crate) mod sealed;
pub(crate) mod shm;

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as platform;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as platform;

pub(crate) use platform::BindOptions;
#[cfg(unix)]
pub(crate) use unix::PollSet;

/// The socket addresses a TCP host name or literal stands for.
pub(crate) fn resolve(
    addr: &crate::Address,
    host: &str,
    port: u16,
) -> crate::Result<Vec<std::net::SocketAddr>> {
    use std::net::ToSocketAddrs;
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| addr.invalid(format!("cannot resolve host: {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(addr.invalid("host resolves to no address"));
    }
    Ok(addrs)
}

/// The credentials of the process at the other end of a Unix-socket connection; see
/// [`Connection::peer_credentials`](crate::Connection::peer_credentials). Displayed as `pid 1234, uid 1000` (or `uid 1000`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct PeerCredentials {
    /// The peer's process id, where the OS reports one (Linux, when the peer's process is
    /// visible in this process's pid namespace).
    pub pid: Option<u32>,
    /// The peer's effective user id when it connected.
    pub uid: u32,
    /// The peer's effective group id when it connected.
    pub gid: u32,
}

impl std::fmt::Display for PeerCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(pid) = self.pid {
            write!(f, "pid {pid}, ")?;
        }
        write!(f, "uid {}", self.uid)
    }
}

/// A connected byte stream: an OS one (socket, pipe, named pipe), an in-process one, or one
/// through memory shared with another process.
pub(crate) enum Stream {
    Os(platform::Stream),
    Mem(inproc::Stream),
    /// Boxed: its rings' state is larger than any other kind's.
    Shm(Box<shm::Stream>),
    /// An encrypted stream over another (feature `encrypt`).
    #[cfg(feature = "encrypt")]
    Sealed(Box<sealed::Sealed>),
}

// An in-process stream's state is its rings and locks: the kind says enough.
impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stream::Os(s) => s.fmt(f),
            Stream::Mem(_) => f.write_str("InProcess"),
            Stream::Shm(s) => f.debug_tuple("SharedMemory").field(s.socket()).finish(),
            #[cfg(feature = "encrypt")]
            Stream::Sealed(s) => s.fmt(f),
        }
    }
}

/// The end of a connection (both halves of a split one dropped), with the `tracing` feature.
#[cfg(feature = "tracing")]
impl Drop for Stream {
    fn drop(&mut self) {
        crate::trace::event!(
            DEBUG,
            local = ?self.local_addr().map(|a| a.to_string()),
            peer = ?self.peer_addr().map(|a| a.to_string()),
            "connection closed"
        );
    }
}

/// The error for what an in-process stream cannot do.
fn in_process_only(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, format!("an in-process connection cannot {what}"))
}

/// The error for what an encrypted stream cannot do.
#[cfg(feature = "encrypt")]
fn encrypted_cannot(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, format!("an encrypted connection cannot {what}"))
}

impl Stream {
    /// Whether the bytes move through memory shared with another process.
    pub(crate) fn is_shared_memory(&self) -> bool {
        matches!(self, Stream::Shm(_))
    }

    pub(crate) fn can_read(&self) -> bool {
        match self {
            Stream::Os(s) => s.can_read(),
            Stream::Mem(s) => s.can_read(),
            Stream::Shm(_) => true,
            #[cfg(feature = "encrypt")]
            Stream::Sealed(s) => s.inner().can_read(),
        }
    }

    pub(crate) fn can_write(&self) -> bool {
        match self {
            Stream::Os(s) => s.can_write(),
            Stream::Mem(s) => s.can_write(),
            Stream::Shm(_) => true,
            #[cfg(feature = "encrypt")]
            Stream::Sealed(s) => s.inner().can_write(),
        }
    }

    /// Reads into `buf`; 0 means end of stream; `TimedOut` when `deadline` passes first.
    pub(crate) fn read(&self, buf: &mut [u8], deadline: Option<Instant>) -> io::Result<usize> {
        match self {
            Stream::Os(s) => s.read(buf, deadline),
            Stream::Mem(s) => s.read_raw(buf.as_mut_ptr(), buf.len(), deadline),
            Stream::Shm(s) => s.read_raw(buf.as_mut_ptr(), buf.len(), deadline),
            #[cfg(feature = "encrypt")]
            Stream::Sealed(s) => s.read(buf, deadline),
        }
    }

    /// Reads at most `max` bytes into the spare capacity of `v` (no zeroing), extending its
    /// length.
    pub(crate) fn read_spare(
        &self,
        v: &mut Vec<u8>,
        max: usize,
        deadline: Option<Instant>,
    ) -> io::Result<usize> {
        #[cfg(feature = "encrypt")]
        if let Stream::Sealed(s) = self {
            return s.read_spare(v, max, deadline);
        }
        let spare = v.spare_capacity_mut();
        let len = spare.len().min(max);
        let n = self.read_uninit(&mut spare[..len], deadline)?;
        // SAFETY: the read initialised the first n (at most len) bytes of the spare capacity.
        unsafe { v.set_len(v.len() + n) };
        Ok(n)
    }

    /// Reads into memory that need not be initialised; the first returned-length bytes of
    /// `buf` are then. Not for an encrypted stream (whose bytes are plaintext only once opened).
    pub(crate) fn read_uninit(
        &self,
        buf: &mut [std::mem::MaybeUninit<u8>],
        deadline: Option<Instant>,
    ) -> io::Result<usize> {
        let len = buf.len();
        match self {
            #[cfg(unix)]
            Stream::Os(s) => s.read_raw(buf.as_mut_ptr().cast(), len, deadline),
            #[cfg(windows)]
            Stream::Os(s) => s.read_uninit(buf, deadline),
            Stream::Mem(s) => s.read_raw(buf.as_mut_ptr().cast(), len, deadline),
            Stream::Shm(s) => s.read_raw(buf.as_mut_ptr().cast(), len, deadline),
            #[cfg(feature = "encrypt")]
            Stream::Sealed(_) => unreachable!("an encrypted stream over another"),
        }
    }

    /// Writes some of `bufs`; `TimedOut` when `deadline` passes first.
    pub(crate) fn write_vectored(
        &self,
        bufs: &[IoSlice<'_>],
        deadline: Option<Instant>,
    ) -> io::Result<usize> {
        match self {
            Stream::Os(s) => s.write_vectored(bufs, deadline),
            Stream::Mem(s) => s.write_vectored(bufs, deadline),
            Stream::Shm(s) => s.write_vectored(bufs, deadline),
            #[cfg(feature = "encrypt")]
            Stream::Sealed(s) => s.write_vectored(bufs, deadline),
        }
    }

    /// Whether data (or end of stream) can be read now, waiting up to `timeout` (`None`: forever).
    pub(crate) fn wait_readable(&self, timeout: Option<Duration>) -> io::Result<bool> {
        match self {
            Stream::Os(s) => s.wait_readable(timeout),
            Stream::Mem(s) => s.wait_readable(timeout),
            Stream::Shm(s) => s.wait_readable(timeout),
            #[cfg(feature = "encrypt")]
            Stream::Sealed(s) => s.wait_readable(timeout),
        }
    }

    pub(crate) fn local_addr(&self) -> Option<Address> {
        match self {
            Stream::Os(s) => s.local_addr(),
            Stream::Mem(s) => s.local_addr(),
            Stream::Shm(s) => s.local_addr(),
            #[cfg(feature = "encrypt")]
            Stream::Sealed(s) => s.inner().local_addr(),
        }
    }

    pub(crate) fn peer_addr(&self) -> Option<Address> {
        match self {
            Stream::Os(s) => s.peer_addr(),
            Stream::Mem(s) => s.peer_addr(),
            Stream::Shm(s) => s.peer_addr(),
            #[cfg(feature = "encrypt")]
            Stream::Sealed(s) => s.inner().peer_addr(),
        }
    }

    /// The peer process's credentials: Unix sockets only.
    pub(crate) fn peer_credentials(&self) -> Option<crate::transport::PeerCredentials> {
        match self {
            Stream::Os(s) => s.peer_credentials(),
            Stream::Mem(_) => None,
            Stream::Shm(s) => s.socket().peer_credentials(),
            #[cfg(feature = "encrypt")]
            Stream::Sealed(s) => s.inner().peer_credentials(),
        }
    }

    /// The ring size of a shared-memory stream; `None` for the other kinds.
    pub(crate) fn shm_ring_size(&self) -> Option<usize> {
        match self {
            Stream::Shm(s) => Some(s.ring_size()),
            _ => None,
        }
    }

    /// The spin window of a shared-memory stream; nothing to do for the other kinds.
    pub(crate) fn set_spin(&self, window: Duration) {
        if let Stream::Shm(s) = self {
            s.set_spin(window);
        }
    }

    /// TCP keepalive; nothing to do for the other kinds.
    pub(crate) fn set_keepalive(&self, idle: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Os(s) => s.set_keepalive(idle),
            #[cfg(feature = "encrypt")]
            Stream::Sealed(s) => s.inner().set_keepalive(idle),
            _ => Ok(()),
        }
    }

    pub(crate) fn pass_to_child(&self, cmd: &mut std::process::Command, var: &str) -> io::Result<()> {
        match self {
            Stream::Os(s) => s.pass_to_child(cmd, var),
            Stream::Mem(_) => Err(in_process_only("be passed to a child process")),
            Stream::Shm(s) => s.pass_to_child(cmd, var),
            // Its keys and message counters live in this process.
            #[cfg(feature = "encrypt")]
            Stream::Sealed(_) => Err(encrypted_cannot("be passed to a child process")),
        }
    }

    /// Notes that the peer end of this stream went to child `pid` (see
    /// [`pass_to_child`](Stream::pass_to_child)), so that handles handed over it later go to
    /// that child: a Windows pipe keeps naming the process that made it. Nothing to note on Unix.
    pub(crate) fn handed_to(&self, pid: u32) {
        #[cfg(windows)]
        if let Stream::Os(s) = self {
            s.handed_to(pid);
        }
        #[cfg(unix)]
        let _ = pid;
    }

    pub(crate) fn from_env(var: &str) -> Result<Stream> {
        if let Some(s) = shm::from_env(var)? {
            return Ok(Stream::Shm(Box::new(s)));
        }
        platform::Stream::from_env(var).map(Stream::Os)
    }

    /// The OS stream, for what only OS streams do (passing descriptors and handles).
    pub(crate) fn os(&self) -> io::Result<&platform::Stream> {
        match self {
            Stream::Os(s) => Ok(s),
            Stream::Mem(_) => Err(in_process_only("pass descriptors or handles")),
            Stream::Shm(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a shared-memory connection cannot pass descriptors",
            )),
            // Descriptors would cross beside the encryption, not inside it.
            #[cfg(feature = "encrypt")]
            Stream::Sealed(_) => Err(encrypted_cannot("pass descriptors or handles")),
        }
    }
}

#[cfg(unix)]
impl Stream {
    pub(crate) fn can_pass_fds(&self) -> bool {
        matches!(self, Stream::Os(s) if s.can_pass_fds())
    }

    pub(crate) fn dup_for_passing(&self) -> io::Result<(std::os::fd::OwnedFd, &'static str)> {
        self.os()?.dup_for_passing()
    }

    pub(crate) fn from_passed(fd: std::os::fd::OwnedFd, tag: &str) -> Option<Stream> {
        platform::Stream::from_passed(fd, tag).map(Stream::Os)
    }

    pub(crate) fn send_fd(
        &self,
        byte: u8,
        fd: std::os::fd::BorrowedFd<'_>,
        deadline: Option<Instant>,
    ) -> io::Result<()> {
        self.os()?.send_fd(byte, fd, deadline)
    }

    pub(crate) fn recv_fd(
        &self,
        deadline: Option<Instant>,
    ) -> io::Result<(u8, Option<std::os::fd::OwnedFd>)> {
        self.os()?.recv_fd(deadline)
    }
}

#[cfg(windows)]
impl Stream {
    pub(crate) fn peer_process(&self) -> io::Result<u32> {
        self.os()?.peer_process()
    }

    pub(crate) fn share_handle(&self, h: std::os::windows::io::BorrowedHandle<'_>) -> io::Result<Vec<u8>> {
        self.os()?.share_handle(h)
    }

    pub(crate) fn take_handle(&self, shared: &[u8]) -> io::Result<std::os::windows::io::OwnedHandle> {
        self.os()?.take_handle(shared)
    }

    pub(crate) fn share_socket(&self, s: std::os::windows::io::BorrowedSocket<'_>) -> io::Result<Vec<u8>> {
        self.os()?.share_socket(s)
    }

    pub(crate) fn take_socket(&self, shared: &[u8]) -> io::Result<std::os::windows::io::OwnedSocket> {
        self.os()?.take_socket(shared)
    }

    pub(crate) fn share_stream(&self, carrier: &Stream) -> io::Result<(Vec<u8>, &'static str, Vec<u8>)> {
        self.os()?.share_stream(carrier.os()?)
    }

    pub(crate) fn take_stream(&self, shared: &[u8], tag: &str) -> io::Result<Option<Stream>> {
        Ok(self.os()?.take_stream(shared, tag)?.map(Stream::Os))
    }
}

/// Connects to `addr`: an OS connection, or one to an in-process listener.
pub(crate) fn connect(addr: &Address, deadline: Option<Instant>) -> Result<Stream> {
    match addr {
        Address::InProc(name) => Ok(Stream::Mem(inproc::connect(name, deadline)?)),
        _ => platform::connect(addr, deadline).map(Stream::Os),
    }
}

/// Whether shared-memory connections work on this platform: where the region passed to the
/// peer cannot be shrunk under its mapping (Linux's sealed memory files, Apple's POSIX shared
/// memory, Windows sections, whose size is fixed when they are made). Consumers use them only
/// where this holds; `shm:` addresses fail elsewhere.
pub(crate) const SHARED_MEMORY: bool =
    cfg!(any(target_os = "linux", target_os = "android", target_vendor = "apple", windows));

/// Whether an `shm:` listener at `path` may be on this host: a Unix socket is there (a
/// Windows named pipe of that name exists).
#[cfg(unix)]
pub(crate) fn is_socket(path: &std::path::Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

#[cfg(windows)]
pub(crate) use windows::pipe_exists as is_socket;

/// A connected pair of OS streams (see [`crate::pipe`]).
pub(crate) fn pipe(duplex: bool) -> io::Result<(Stream, Stream)> {
    let (a, b) = platform::pipe(duplex)?;
    Ok((Stream::Os(a), Stream::Os(b)))
}

/// The message a shared-memory listener's region travels with (the descriptor rides on its
/// first byte): a plain client reads it as its first message, and knows it used the wrong
/// address form.
pub(crate) const SHM_OFFER: &[u8] = b"procwire-shm-1:offer";
/// The first message of a shared-memory client without an authkey (there is no handshake to
/// carry the mark), so that a plain listener can tell.
pub(crate) const SHM_HELLO: &[u8] = b"procwire-shm-1:hello";
/// What a plain side answers to [`SHM_OFFER`] or [`SHM_HELLO`]: no shared memory here.
pub(crate) const SHM_REFUSED: &[u8] = b"procwire-shm-1:refused";

/// Bytes of each ring of a shared-memory connection, unless its endpoint or pipe says otherwise.
pub const DEFAULT_SHM_RING: usize = 4 << 20;

/// Whether `bytes` is a ring size a shared-memory connection can have: a power of two from
/// 4 KiB to 1 GiB.
pub(crate) fn valid_shm_ring(bytes: usize) -> bool {
    shm::ring::valid_capacity(bytes)
}

/// Moves a stream just through its handshake onto shared memory (`addr` an `shm:` address):
/// the listener's side makes the region with rings of `ring` bytes and sends it, the client's
/// takes it, refusing rings smaller than `ring`. `hello`: the client sent [`SHM_HELLO`] (no
/// handshake), which the listener's side finds on the socket before the first doorbell bell.
/// The new stream owns a duplicate of the socket (the named pipe); `stream` is dropped by the
/// caller.
pub(crate) fn upgrade_to_shm(
    stream: &Stream,
    listener: bool,
    addr: &Address,
    ring: usize,
    hello: bool,
    deadline: Option<Instant>,
) -> io::Result<Stream> {
    let socket = platform::shm_region::own_copy(stream.os()?)?;
    let shm = if listener {
        shm::offer(socket, Some(addr.clone()), ring, hello, deadline)?
    } else {
        shm::take_offer(socket, Some(addr.clone()), ring, deadline)?
    };
    Ok(Stream::Shm(Box::new(shm)))
}

/// A connected pair of shared-memory streams with rings of `ring` bytes over a socket pair (a
/// named pipe pair on Windows).
pub(crate) fn pipe_shared_memory(ring: usize) -> io::Result<(Stream, Stream)> {
    let (a, b) = platform::pipe(true)?;
    let (a, b) = shm::pair(a, b, ring)?;
    Ok((Stream::Shm(Box::new(a)), Stream::Shm(Box::new(b))))
}

/// A connected pair of in-process streams.
pub(crate) fn pipe_in_process(duplex: bool) -> (Stream, Stream) {
    let (a, b) = inproc::pair(duplex);
    (Stream::Mem(a), Stream::Mem(b))
}

/// A listening socket or named pipe, or an in-process listener.
#[derive(Debug)]
pub(crate) enum RawListener {
    Os(platform::RawListener),
    Mem(inproc::Listener),
}

impl RawListener {
    pub(crate) fn bind(addr: &Address, opts: &BindOptions) -> Result<RawListener> {
        match addr {
            Address::InProc(name) => Ok(RawListener::Mem(inproc::Listener::bind(addr, name, opts.backlog)?)),
            _ => platform::RawListener::bind(addr, opts).map(RawListener::Os),
        }
    }

    pub(crate) fn local_addr(&self) -> io::Result<Address> {
        match self {
            RawListener::Os(l) => l.local_addr(),
            RawListener::Mem(l) => Ok(l.local_addr()),
        }
    }

    /// A connection waiting to be accepted, if there is one, and its peer's address.
    pub(crate) fn try_accept(&self) -> io::Result<Option<(Stream, Option<Address>)>> {
        match self {
            RawListener::Os(l) => Ok(l.try_accept()?.map(|(s, a)| (Stream::Os(s), a))),
            RawListener::Mem(l) => Ok(l.try_accept().map(|s| (Stream::Mem(s), None))),
        }
    }
}

#[cfg(unix)]
impl RawListener {
    /// The listening socket's descriptor; an in-process listener has none.
    pub(crate) fn os_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        match self {
            RawListener::Os(l) => Some(std::os::fd::AsFd::as_fd(l)),
            RawListener::Mem(_) => None,
        }
    }
}

/// Something [`wait_ready`] can watch: a stream, or a listener.
pub(crate) enum Pollable<'a> {
    Stream(&'a Stream),
    Listener(&'a RawListener),
}

/// The longest an OS wait lasts, when in-process objects are watched too, before those are
/// looked at again.
const MIXED_SLICE: Duration = Duration::from_millis(1);

/// Waits until the listener has a connection queued or one of `streams` is readable, or
/// `deadline` passes. Returns whether the listener is ready and the indices of ready streams.
pub(crate) fn wait_any(
    listener: Option<&RawListener>,
    streams: &[&Stream],
    deadline: Option<Instant>,
) -> io::Result<(bool, Vec<usize>)> {
    let os_listener = match listener {
        None => Some(None),
        Some(RawListener::Os(l)) => Some(Some(l)),
        Some(RawListener::Mem(_)) => None,
    };
    if let Some(l) = os_listener {
        let os: Option<Vec<&platform::Stream>> =
            streams.iter().map(|s| if let Stream::Os(s) = s { Some(s) } else { None }).collect();
        if let Some(os) = os {
            return platform::wait_any(l, &os, deadline);
        }
    }
    let items: Vec<Pollable<'_>> = listener
        .map(Pollable::Listener)
        .into_iter()
        .chain(streams.iter().map(|s| Pollable::Stream(s)))
        .collect();
    let ready = wait_ready(&items, deadline)?;
    let skip = usize::from(listener.is_some());
    Ok((
        skip == 1 && ready.first() == Some(&0),
        ready.into_iter().filter(|&i| i >= skip).map(|i| i - skip).collect(),
    ))
}

/// Waits until at least one of `items` is readable (a listener: has a connection queued) or
/// `deadline` passes; returns the indices of the ready ones (empty after the deadline).
pub(crate) fn wait_ready(items: &[Pollable<'_>], deadline: Option<Instant>) -> io::Result<Vec<usize>> {
    wait_ready_with(items, &[], deadline)
}

/// Waits as [`wait_ready`] over `items` and the exit of the children behind `sentinels`; the
/// indices returned count `items` first, then `sentinels`.
///
/// OS objects alone go to one OS wait. In-process objects alone are waited for on a signal
/// they fire when data arrives. With both, the OS wait runs in slices of [`MIXED_SLICE`],
/// with the in-process ones looked at between them.
pub(crate) fn wait_ready_with(
    items: &[Pollable<'_>],
    sentinels: &[&crate::sys::Sentinel],
    deadline: Option<Instant>,
) -> io::Result<Vec<usize>> {
    let shm: Vec<(usize, &shm::Stream)> = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| match item {
            Pollable::Stream(Stream::Shm(s)) => Some((i, &**s)),
            _ => None,
        })
        .collect();
    if !shm.is_empty() {
        return shm::wait_many(&shm, deadline, |d| wait_ready_each(items, sentinels, d));
    }
    wait_ready_each(items, sentinels, deadline)
}

/// [`wait_ready_with`] once: a shared-memory stream is its doorbell socket here.
fn wait_ready_each(
    items: &[Pollable<'_>],
    sentinels: &[&crate::sys::Sentinel],
    deadline: Option<Instant>,
) -> io::Result<Vec<usize>> {
    let mut os = Vec::new();
    let mut os_index = Vec::new();
    let mut mem = Vec::new();
    for (i, item) in items.iter().enumerate() {
        // An encrypted stream is watched through its inner stream, unless it has data already.
        #[cfg(feature = "encrypt")]
        let sealed_inner;
        #[cfg(feature = "encrypt")]
        let item = match item {
            Pollable::Stream(Stream::Sealed(s)) if s.ready_now() => return Ok(vec![i]),
            Pollable::Stream(Stream::Sealed(s)) => {
                sealed_inner = Pollable::Stream(s.inner());
                &sealed_inner
            }
            other => other,
        };
        match item {
            Pollable::Stream(Stream::Os(s)) => {
                os.push(platform::Pollable::Stream(s));
                os_index.push(i);
            }
            Pollable::Listener(RawListener::Os(l)) => {
                os.push(platform::Pollable::Listener(l));
                os_index.push(i);
            }
            Pollable::Stream(Stream::Shm(s)) => {
                os.push(platform::Pollable::Stream(s.socket()));
                os_index.push(i);
            }
            Pollable::Stream(Stream::Mem(s)) => mem.push((i, Mem::Stream(s))),
            Pollable::Listener(RawListener::Mem(l)) => mem.push((i, Mem::Listener(l))),
            #[cfg(feature = "encrypt")]
            Pollable::Stream(Stream::Sealed(_)) => unreachable!("an encrypted stream over another"),
        }
    }
    let os_ready = |r: Vec<usize>| -> Vec<usize> {
        r.into_iter()
            .map(|j| if j < os_index.len() { os_index[j] } else { items.len() + j - os_index.len() })
            .collect()
    };
    if mem.is_empty() {
        return Ok(os_ready(platform::wait_ready_with(&os, sentinels, deadline)?));
    }
    // Ready already, or no time to wait: no need to be woken.
    let ready: Vec<usize> = mem.iter().filter(|(_, m)| m.ready_now()).map(|(i, _)| *i).collect();
    if !ready.is_empty() || deadline.is_some_and(|d| d <= Instant::now()) {
        let mut ready = ready;
        if !os.is_empty() || !sentinels.is_empty() {
            ready.extend(os_ready(platform::wait_ready_with(&os, sentinels, Some(Instant::now()))?));
        }
        ready.sort_unstable();
        return Ok(ready);
    }
    let signal = Arc::new(inproc::Signal::default());
    for (_, m) in &mem {
        m.watch(&signal);
    }
    inproc::sleeper_fence();
    let result = (|| loop {
        let mut ready: Vec<usize> = mem.iter().filter(|(_, m)| m.ready_now()).map(|(i, _)| *i).collect();
        let nothing_else = os.is_empty() && sentinels.is_empty();
        if !nothing_else {
            // Already something ready: only look at the OS objects, do not wait.
            let until = if ready.is_empty() {
                let slice = Instant::now() + MIXED_SLICE;
                Some(deadline.map_or(slice, |d| d.min(slice)))
            } else {
                Some(Instant::now())
            };
            ready.extend(os_ready(platform::wait_ready_with(&os, sentinels, until)?));
        }
        if !ready.is_empty() || deadline.is_some_and(|d| d <= Instant::now()) {
            ready.sort_unstable();
            return Ok(ready);
        }
        if nothing_else {
            signal.wait(deadline);
        }
    })();
    for (_, m) in &mem {
        m.unwatch(&signal);
    }
    result
}

/// An in-process object being waited for.
enum Mem<'a> {
    Stream(&'a inproc::Stream),
    Listener(&'a inproc::Listener),
}

impl Mem<'_> {
    fn watch(&self, signal: &Arc<inproc::Signal>) {
        match self {
            Mem::Stream(s) => {
                s.watch(signal);
            }
            Mem::Listener(l) => l.watch(signal),
        }
    }

    fn unwatch(&self, signal: &Arc<inproc::Signal>) {
        match self {
            Mem::Stream(s) => s.unwatch(signal),
            Mem::Listener(l) => l.unwatch(signal),
        }
    }

    fn ready_now(&self) -> bool {
        match self {
            Mem::Stream(s) => s.readable_now(),
            Mem::Listener(l) => l.ready_now(),
        }
    }
}
