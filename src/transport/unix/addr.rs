//! Socket addresses: `Address` to and from `sockaddr`, with the limits of `sun_path`.

use socket2::SockAddr;

use crate::{Address, Result};

pub(super) fn to_address(sa: SockAddr) -> Option<Address> {
    if let Some(s) = sa.as_socket() {
        return Some(Address::tcp(s));
    }
    if let Some(p) = sa.as_pathname() {
        return Some(Address::Unix(p.to_path_buf()));
    }
    sa.as_abstract_namespace().map(|n| Address::UnixAbstract(String::from_utf8_lossy(n).into_owned()))
}

/// sun_path holds this many bytes including the terminating NUL.
const SUN_PATH_LEN: usize = {
    // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
    let s: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    s.sun_path.len()
};

pub(super) fn unix_sockaddr(addr: &Address) -> Result<SockAddr> {
    match addr {
        Address::Unix(path) | Address::Shm(path) => {
            let len = path.as_os_str().len();
            if len >= SUN_PATH_LEN {
                return Err(addr.invalid(format!(
                    "the socket path is {len} bytes; this OS allows at most {} (use a shorter directory, \
                     or an abstract name on Linux)",
                    SUN_PATH_LEN - 1
                )));
            }
            Ok(SockAddr::unix(path)?)
        }
        Address::UnixAbstract(name) => abstract_sockaddr(addr, name),
        _ => unreachable!("unix_sockaddr called with a non-unix address"),
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_sockaddr(addr: &Address, name: &str) -> Result<SockAddr> {
    let mut bytes = vec![0u8];
    bytes.extend_from_slice(name.as_bytes());
    if bytes.len() > SUN_PATH_LEN {
        return Err(addr.invalid(format!("abstract names are limited to {} bytes", SUN_PATH_LEN - 1)));
    }
    use std::os::unix::ffi::OsStrExt;
    Ok(SockAddr::unix(std::ffi::OsStr::from_bytes(&bytes))?)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_sockaddr(addr: &Address, _name: &str) -> Result<SockAddr> {
    Err(addr.invalid("abstract Unix socket names exist only on Linux"))
}
