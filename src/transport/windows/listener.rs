//! Listening TCP sockets and named pipes: bind, and accept without waiting.

use std::collections::VecDeque;
use std::io;
use std::os::windows::io::OwnedHandle;
use std::sync::Mutex;
use std::time::Instant;

use interprocess::os::windows::named_pipe::{PipeListener, PipeListenerOptions, PipeMode, pipe_mode};
use socket2::{Domain, Socket, Type};
use windows_sys::Win32::Networking::WinSock::POLLRDNORM;

use super::msg_pipe::Dir;
use super::poll::{poll_sockets, pollfd};
use super::stream::to_address;
use super::{Stream, UNIX_ONLY, lock};
use crate::error::io_context;
use crate::{Address, Error, Result};

/// Pipe buffer size asked for each direction. CPython asks for 8 KiB; more lets a sender queue
/// more small messages before it has to wait for the reader.
const PIPE_BUFFER: u32 = 64 << 10;

type MsgListener = PipeListener<pipe_mode::Messages, pipe_mode::Messages>;

/// `\\.\pipe\NAME`, after checking that Windows accepts NAME.
pub(super) fn pipe_path(addr: &Address, name: &str) -> Result<String> {
    if name.is_empty() || name.contains(['\\', '\0']) {
        return Err(addr.invalid("pipe names are non-empty and have no backslash or NUL"));
    }
    let path = format!(r"\\.\pipe\{name}");
    if path.encode_utf16().count() > 256 {
        return Err(addr.invalid(r"a pipe name is limited to 256 characters with its \\.\pipe\ prefix"));
    }
    Ok(path)
}

/// The pipe name of a `pipe:` address, or of an `shm:` one (a named pipe underneath).
pub(super) fn pipe_name(addr: &Address) -> Option<Result<&str>> {
    match addr {
        Address::Pipe(name) => Some(Ok(name)),
        Address::Shm(path) => Some(path.to_str().ok_or_else(|| addr.invalid("pipe names are Unicode"))),
        _ => None,
    }
}

/// Whether a named pipe called `name` (an `shm:` address's path) exists on this host: someone
/// listens there.
pub(crate) fn pipe_exists(name: &std::path::Path) -> bool {
    use windows_sys::Win32::Foundation::{ERROR_SEM_TIMEOUT, GetLastError};
    use windows_sys::Win32::System::Pipes::WaitNamedPipeW;
    let Some(Ok(path)) = name.to_str().map(|n| pipe_path(&Address::Shm(name.into()), n)) else {
        return false;
    };
    let wide: Vec<u16> = path.encode_utf16().chain([0]).collect();
    // SAFETY: a NUL-terminated name; waits at most 1 ms for a free instance.
    if unsafe { WaitNamedPipeW(wide.as_ptr(), 1) } != 0 {
        return true;
    }
    // Every instance busy: it exists. Any other failure (no such pipe above all): it does not.
    // SAFETY: no preconditions.
    unsafe { GetLastError() == ERROR_SEM_TIMEOUT }
}

/// Options for a message-mode pipe listener on `path` (checked by [`pipe_path`]: interprocess
/// panics on a NUL inside).
pub(super) fn pipe_options(path: &str) -> PipeListenerOptions<'_> {
    PipeListenerOptions::new()
        .path(path)
        .mode(PipeMode::Messages)
        .input_buffer_size_hint(PIPE_BUFFER)
        .output_buffer_size_hint(PIPE_BUFFER)
}

pub(super) fn shared_stream<T>(_: T) -> io::Error {
    io::Error::other("interprocess returned a pipe stream whose handle is shared")
}

/// One accept on a nonblocking pipe listener: `Ok(None)` when no client waits.
fn accept_pipe(listener: &MsgListener) -> io::Result<Option<Stream>> {
    match listener.accept() {
        Ok(s) => {
            // Instances of a nonblocking listener are in PIPE_NOWAIT mode, where an empty pipe
            // reads as closed; back to waiting mode (deadlines are kept here, not by the pipe).
            s.set_nonblocking(false)?;
            let h = OwnedHandle::try_from(s).map_err(shared_stream)?;
            Ok(Some(Stream::pipe(h, Dir::Duplex)?))
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

/// A bound, listening TCP socket or named pipe.
#[derive(Debug)]
pub(crate) struct RawListener {
    pub(super) inner: ListenerInner,
}

#[derive(Debug)]
pub(super) enum ListenerInner {
    Tcp(Socket),
    Pipe {
        /// Nonblocking: accept returns at once when no client waits.
        listener: MsgListener,
        name: String,
        /// Connections that [`wait_any`] accepted to find out whether one was waiting.
        accepted: Mutex<VecDeque<Stream>>,
    },
}

/// Options that matter when binding.
pub(crate) struct BindOptions {
    pub(crate) backlog: i32,
    /// Permission bits of a Unix socket file. Named pipes keep the default security
    /// descriptor, as CPython's do.
    #[allow(dead_code, reason = "no Unix socket files on Windows")]
    pub(crate) mode: u32,
}

fn bind_error(addr: &Address, e: io::Error) -> Error {
    Error::Io(io_context(e, format_args!("cannot bind {addr}")))
}

impl RawListener {
    pub(crate) fn bind(addr: &Address, opts: &BindOptions) -> Result<RawListener> {
        if let Some(name) = pipe_name(addr) {
            let name = name?;
            let path = pipe_path(addr, name)?;
            let listener = pipe_options(&path)
                .nonblocking(true)
                .create_duplex::<pipe_mode::Messages>()
                .map_err(|e| {
                    if e.kind() == io::ErrorKind::PermissionDenied {
                        // The first instance of a name is exclusive: someone else has it.
                        Error::Io(io::Error::new(
                            io::ErrorKind::AddrInUse,
                            format!("cannot bind {addr}: the pipe name is taken (or access to it is denied)"),
                        ))
                    } else {
                        bind_error(addr, e)
                    }
                })?;
            let accepted = Mutex::new(VecDeque::new());
            return Ok(RawListener { inner: ListenerInner::Pipe { listener, name: name.into(), accepted } });
        }
        match addr {
            Address::Tcp { host, port } => {
                let mut last = None;
                for sa in crate::transport::resolve(addr, host, *port)? {
                    let sock =
                        Socket::new(Domain::for_address(sa), Type::STREAM, Some(socket2::Protocol::TCP))?;
                    // No SO_REUSEADDR: on Windows it would let another socket take over a bound
                    // port (CPython sets it on POSIX only).
                    if sa.is_ipv6() {
                        sock.set_only_v6(true)?;
                    }
                    match sock.bind(&sa.into()) {
                        Ok(()) => {
                            sock.listen(opts.backlog)?;
                            sock.set_nonblocking(true)?;
                            return Ok(RawListener { inner: ListenerInner::Tcp(sock) });
                        }
                        Err(e) => last = Some(bind_error(addr, e)),
                    }
                }
                Err(last.unwrap_or_else(|| addr.invalid("no address to bind")))
            }
            Address::Unix(path) => {
                // No listener will own the private directory of `Address::fresh(Family::Unix)`
                // and remove it on drop, so it goes now.
                if let Some(dir) = path.parent() {
                    crate::sys::remove_fresh_dir(dir);
                }
                Err(addr.invalid(UNIX_ONLY))
            }
            Address::UnixAbstract(_) => Err(addr.invalid(UNIX_ONLY)),
            Address::InProc(_) => Err(addr.invalid("in-process addresses have no OS pipe or socket")),
            Address::Pipe(_) | Address::Shm(_) => unreachable!("named pipes, bound above"),
        }
    }

    /// The bound address (the real port after binding port 0).
    pub(crate) fn local_addr(&self) -> io::Result<Address> {
        match &self.inner {
            ListenerInner::Tcp(sock) => {
                to_address(sock.local_addr()?).ok_or_else(|| io::Error::other("listener has no address"))
            }
            ListenerInner::Pipe { name, .. } => Ok(Address::Pipe(name.clone())),
        }
    }

    /// One accept attempt without waiting: `Ok(None)` when no connection is queued.
    pub(crate) fn try_accept(&self) -> io::Result<Option<(Stream, Option<Address>)>> {
        match &self.inner {
            ListenerInner::Tcp(sock) => loop {
                match sock.accept() {
                    Ok((s, sa)) => return Ok(Some((Stream::tcp(s)?, to_address(sa)))),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                    // A client that gave up before we got to it: not our error.
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::Interrupted
                                | io::ErrorKind::ConnectionAborted
                                | io::ErrorKind::ConnectionReset
                        ) => {}
                    Err(e) => return Err(e),
                }
            },
            ListenerInner::Pipe { listener, accepted, .. } => {
                if let Some(s) = lock(accepted).pop_front() {
                    return Ok(Some((s, None)));
                }
                Ok(accept_pipe(listener)?.map(|s| (s, None)))
            }
        }
    }

    /// Whether a connection waits now; a pipe connection found so is kept for `try_accept`.
    pub(super) fn probe(&self) -> io::Result<bool> {
        match &self.inner {
            ListenerInner::Tcp(sock) => {
                Ok(poll_sockets(&mut [pollfd(sock, POLLRDNORM)], Some(Instant::now()))? > 0)
            }
            ListenerInner::Pipe { listener, accepted, .. } => {
                let mut accepted = lock(accepted);
                if !accepted.is_empty() {
                    return Ok(true);
                }
                match accept_pipe(listener)? {
                    Some(s) => {
                        accepted.push_back(s);
                        Ok(true)
                    }
                    None => Ok(false),
                }
            }
        }
    }
}
