//! Handing handles and sockets to the process at the other end of a pipe (see `handles.rs` at
//! the crate root for the protocol).

use std::io;
use std::mem;
use std::os::windows::io::{
    AsHandle, AsRawHandle, AsRawSocket, AsSocket, BorrowedHandle, BorrowedSocket, FromRawSocket, OwnedHandle,
    OwnedSocket,
};
use std::ptr;

use socket2::Socket;
use windows_sys::Win32::Networking::WinSock::{SOCKET, WSAGetLastError};

use super::stream::{Inner, Stream, dir_of_tag, dir_tag};

/// The tag of a TCP stream handed over (pipe ends have [`dir_tag`]).
const TAG_TCP: &str = "tcp";

fn no_peer_process() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "on Windows, handles can only be passed over a named-pipe connection (the process at the \
         other end of a TCP connection is not known)",
    )
}

/// Winsock must be started in a process before a socket is made from shared socket
/// information; std and socket2 start it only when they make a socket themselves.
fn winsock_started() -> io::Result<()> {
    use windows_sys::Win32::Networking::WinSock::{WSADATA, WSAStartup};
    static STARTED: std::sync::OnceLock<i32> = std::sync::OnceLock::new();
    let r = *STARTED.get_or_init(|| {
        // SAFETY: WSADATA is plain data that WSAStartup fills. The start is never undone (as
        // std's is not): sockets may live until the process exits.
        let mut data: WSADATA = unsafe { mem::zeroed() };
        // SAFETY: a valid out pointer; version 2.2.
        unsafe { WSAStartup(0x0202, &mut data) }
    });
    if r == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(r)) }
}

/// What one process shares with another: both pids (checked by the taker), then `payload`.
fn addressed(to: u32, payload: &[u8]) -> Vec<u8> {
    [&std::process::id().to_le_bytes()[..], &to.to_le_bytes(), payload].concat()
}

/// The payload of what `from` shared, after checking that it was shared by `from` and for us.
///
/// Windows records a pipe's client and server process when the pipe is made and never
/// updates them: over a pipe end that was itself handed to another process, one side may name
/// the wrong process. Both sides' view is checked, so that such a pipe fails clearly instead of
/// taking from (or sharing with) a third process.
fn unaddressed(from: u32, shared: &[u8]) -> io::Result<&[u8]> {
    let me = std::process::id();
    let (Some(by), Some(to)) = (shared.get(..4), shared.get(4..8)) else {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "shared handle information too short"));
    };
    let by = u32::from_le_bytes(by.try_into().unwrap_or_default());
    let to = u32::from_le_bytes(to.try_into().unwrap_or_default());
    if by != from || to != me {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "process {by} shared a handle for process {to}, and this is process {me} whose pipe names \
                 process {from} at the other end: a pipe end that was handed to another process cannot \
                 carry handles (Windows keeps naming the processes it was made by)"
            ),
        ));
    }
    Ok(&shared[8..])
}

impl Stream {
    /// The process at the other end of this named pipe: the child it was handed to, or else as
    /// Windows recorded it when the pipe was made (this process for a `pipe()` pair); an `Unsupported` error for TCP, whose peer
    /// process cannot be known.
    pub(crate) fn peer_process(&self) -> io::Result<u32> {
        use windows_sys::Win32::System::Pipes::{
            GetNamedPipeClientProcessId, GetNamedPipeInfo, GetNamedPipeServerProcessId, PIPE_SERVER_END,
        };
        let Inner::Pipe(p) = &self.inner else {
            return Err(no_peer_process());
        };
        match self.peer.load(std::sync::atomic::Ordering::Relaxed) {
            0 => {}
            pid => return Ok(pid),
        }
        let mut flags = 0u32;
        // SAFETY: a pipe handle we own; the out pointers are valid or null.
        if unsafe { GetNamedPipeInfo(p.raw(), &mut flags, ptr::null_mut(), ptr::null_mut(), ptr::null_mut()) }
            == 0
        {
            return Err(io::Error::last_os_error());
        }
        let mut pid = 0u32;
        // SAFETY: as above.
        let ok = unsafe {
            if flags & PIPE_SERVER_END != 0 {
                GetNamedPipeClientProcessId(p.raw(), &mut pid)
            } else {
                GetNamedPipeServerProcessId(p.raw(), &mut pid)
            }
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(pid)
    }

    /// What the peer needs to take `h` with [`take_handle`](Stream::take_handle): its value in
    /// this process, which the caller keeps open until the peer has answered.
    pub(crate) fn share_handle(&self, h: BorrowedHandle<'_>) -> io::Result<Vec<u8>> {
        Ok(addressed(self.peer_process()?, &(h.as_raw_handle() as u64).to_le_bytes()))
    }

    /// A handle of this process duplicated from the one the peer shared with
    /// [`share_handle`](Stream::share_handle).
    pub(crate) fn take_handle(&self, shared: &[u8]) -> io::Result<OwnedHandle> {
        let pid = self.peer_process()?;
        let value: [u8; 8] = unaddressed(pid, shared)?
            .try_into()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "a shared handle is 8 bytes"))?;
        crate::sys::duplicate_from(pid, u64::from_le_bytes(value) as usize, false)
    }

    /// What the peer needs to make its own copy of socket `s` with
    /// [`take_socket`](Stream::take_socket) (`WSADuplicateSocketW` for the peer's pid).
    pub(crate) fn share_socket(&self, s: BorrowedSocket<'_>) -> io::Result<Vec<u8>> {
        use windows_sys::Win32::Networking::WinSock::{WSADuplicateSocketW, WSAPROTOCOL_INFOW};
        let pid = self.peer_process()?;
        // SAFETY: plain data, filled by the call below.
        let mut info: WSAPROTOCOL_INFOW = unsafe { mem::zeroed() };
        // SAFETY: a socket the caller keeps open, a valid out pointer.
        if unsafe { WSADuplicateSocketW(s.as_raw_socket() as SOCKET, pid, &mut info) } != 0 {
            // SAFETY: no preconditions.
            return Err(io::Error::from_raw_os_error(unsafe { WSAGetLastError() }));
        }
        // SAFETY: WSAPROTOCOL_INFOW is integers and arrays of them, read as its bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts(ptr::from_ref(&info).cast::<u8>(), size_of::<WSAPROTOCOL_INFOW>())
        };
        Ok(addressed(pid, bytes))
    }

    /// A socket of this process made from what the peer's [`share_socket`](Stream::share_socket)
    /// gave.
    pub(crate) fn take_socket(&self, shared: &[u8]) -> io::Result<OwnedSocket> {
        use windows_sys::Win32::Networking::WinSock::{
            FROM_PROTOCOL_INFO, INVALID_SOCKET, WSA_FLAG_NO_HANDLE_INHERIT, WSA_FLAG_OVERLAPPED,
            WSAPROTOCOL_INFOW, WSASocketW,
        };
        let shared = unaddressed(self.peer_process()?, shared)?;
        if shared.len() != size_of::<WSAPROTOCOL_INFOW>() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "shared socket information of the wrong size",
            ));
        }
        // SAFETY: any bytes are a valid WSAPROTOCOL_INFOW (integers only); read unaligned.
        let info = unsafe { shared.as_ptr().cast::<WSAPROTOCOL_INFOW>().read_unaligned() };
        winsock_started()?;
        // SAFETY: the information is checked by Winsock, which fails on what it does not know.
        let s = unsafe {
            WSASocketW(
                FROM_PROTOCOL_INFO,
                FROM_PROTOCOL_INFO,
                FROM_PROTOCOL_INFO,
                &info,
                0,
                WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT,
            )
        };
        if s == INVALID_SOCKET {
            // SAFETY: no preconditions.
            return Err(io::Error::from_raw_os_error(unsafe { WSAGetLastError() }));
        }
        // SAFETY: a new socket that nothing else owns.
        Ok(unsafe { OwnedSocket::from_raw_socket(s as _) })
    }

    /// Hands this stream over `carrier` to its peer: what the peer needs to take it, its kind's
    /// tag, and the bytes this stream took from the pipe and did not hand up yet (they go along,
    /// after the connection's own). Refused in the middle of a message either way.
    pub(crate) fn share_stream(&self, carrier: &Stream) -> io::Result<(Vec<u8>, &'static str, Vec<u8>)> {
        match &self.inner {
            Inner::Tcp(s) => Ok((carrier.share_socket(s.as_socket())?, TAG_TCP, Vec::new())),
            Inner::Pipe(p) => {
                let pending = p.pending_for_handover()?;
                Ok((carrier.share_handle(p.handle.as_handle())?, dir_tag(p.dir()), pending))
            }
        }
    }

    /// A stream taken from what the peer's [`share_stream`](Stream::share_stream) gave;
    /// `Ok(None)` when `tag` names no stream.
    pub(crate) fn take_stream(&self, shared: &[u8], tag: &str) -> io::Result<Option<Stream>> {
        if tag == TAG_TCP {
            return Stream::tcp(Socket::from(self.take_socket(shared)?)).map(Some);
        }
        let Some(dir) = dir_of_tag(tag) else { return Ok(None) };
        Stream::pipe(self.take_handle(shared)?, dir).map(Some)
    }
}
