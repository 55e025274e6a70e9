//! Opening Windows streams: connecting to an address, and making a connected pair of pipe ends.

use std::io;
use std::os::windows::io::OwnedHandle;
use std::time::{Duration, Instant};

use interprocess::ConnectWaitMode;
use interprocess::os::windows::named_pipe::{DuplexPipeStream, SendPipeStream, pipe_mode};
use socket2::{Domain, Socket, Type};

use super::listener::{pipe_name, pipe_options, pipe_path, shared_stream};
use super::msg_pipe::Dir;
use super::{Stream, UNIX_ONLY};
use crate::{Address, Error, Result};

/// Connects to `addr`, giving up at `deadline`.
pub(crate) fn connect(addr: &Address, deadline: Option<Instant>) -> Result<Stream> {
    let left = |d: Instant| d.saturating_duration_since(Instant::now());
    if let Some(name) = pipe_name(addr) {
        let path = pipe_path(addr, name?)?;
        let wait = match deadline {
            None => ConnectWaitMode::Unbounded,
            Some(d) => ConnectWaitMode::Timeout(left(d)),
        };
        let c = DuplexPipeStream::<pipe_mode::Messages>::connect_by_path_with_wait_mode(path.as_str(), wait)?;
        let h = OwnedHandle::try_from(c).map_err(shared_stream)?;
        return Ok(Stream::pipe(h, Dir::Duplex)?);
    }
    match addr {
        Address::Tcp { host, port } => {
            let mut last = None;
            for sa in crate::transport::resolve(addr, host, *port)? {
                let s = Socket::new(Domain::for_address(sa), Type::STREAM, Some(socket2::Protocol::TCP))?;
                let r = match deadline {
                    None => s.connect(&sa.into()),
                    Some(d) => s.connect_timeout(&sa.into(), left(d).max(Duration::from_millis(1))),
                };
                match r {
                    Ok(()) => return Ok(Stream::tcp(s)?),
                    Err(e) => last = Some(e),
                }
            }
            Err(Error::Io(last.unwrap_or_else(|| io::ErrorKind::NotFound.into())))
        }
        Address::Unix(_) | Address::UnixAbstract(_) => Err(addr.invalid(UNIX_ONLY)),
        Address::InProc(_) => Err(addr.invalid("in-process addresses have no OS pipe or socket")),
        Address::Pipe(_) | Address::Shm(_) => unreachable!("named pipes, connected above"),
    }
}

fn fresh_pipe_path() -> io::Result<String> {
    let mut b = [0u8; 8];
    crate::util::fill_random(&mut b).map_err(|e| match e {
        Error::Io(e) => e,
        e => io::Error::other(e.to_string()),
    })?;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(r"\\.\pipe\procwire-pair-{}-{hex}", std::process::id()))
}

/// A connected pair of message pipe ends: (server end, client end) for `duplex`, else (a
/// receive-only server end, a send-only client end), as CPython's `Pipe()` makes them.
pub(crate) fn pipe(duplex: bool) -> io::Result<(Stream, Stream)> {
    let path = fresh_pipe_path()?;
    let path = path.as_str();
    // A blocking listener: the accept below returns at once because our client is connected
    // by then, and the accepted instance needs no switch out of PIPE_NOWAIT (which a
    // receive-only server handle has no right to make).
    let opts = pipe_options(path);
    // A single attempt: a busy pipe means someone else holds the one free instance.
    let once = ConnectWaitMode::Timeout(Duration::ZERO);
    // The same steps for both kinds, whose types differ (interprocess's mode tags are sealed,
    // so no generic function can name them): create the server end, connect the client end,
    // accept it; the (server, client) handles.
    macro_rules! connect_and_accept {
        ($create:ident, $client:ty) => {{
            let listener = opts.$create::<pipe_mode::Messages>()?;
            let c = <$client>::connect_by_path_with_wait_mode(path, once).map_err(stranger_first)?;
            // Before accepting: connected to someone else's listener, ours would wait forever.
            ours(c.server_process_id())?;
            let client = OwnedHandle::try_from(c).map_err(shared_stream)?;
            let s = listener.accept()?;
            ours(s.client_process_id())?;
            (OwnedHandle::try_from(s).map_err(shared_stream)?, client)
        }};
    }
    if duplex {
        let (server, client) = connect_and_accept!(create_duplex, DuplexPipeStream<pipe_mode::Messages>);
        Ok((Stream::pipe(server, Dir::Duplex)?, Stream::pipe(client, Dir::Duplex)?))
    } else {
        let (server, client) = connect_and_accept!(create_recv_only, SendPipeStream<pipe_mode::Messages>);
        Ok((Stream::pipe(server, Dir::RecvOnly)?, Stream::pipe(client, Dir::SendOnly)?))
    }
}

/// The default security descriptor of a pipe lets any local user open it for reading, so
/// another process may get to the fresh name of a `pipe()` between its creation and our
/// connect. That pair is refused rather than shared.
fn stranger_first(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::TimedOut {
        io::Error::new(io::ErrorKind::AddrInUse, "another process connected to a fresh private pipe first")
    } else {
        e
    }
}

/// Both ends of a `pipe()` must be this process. The server end is checked because the name
/// may not be exclusive to our listener (Wine does not enforce that).
fn ours(peer: io::Result<u32>) -> io::Result<()> {
    if peer.ok() != Some(std::process::id()) {
        return Err(io::Error::new(io::ErrorKind::AddrInUse, "another process is on a fresh private pipe"));
    }
    Ok(())
}
