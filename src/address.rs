//! Addresses: one enum for every transport, with one string form that parses and prints.
//!
//! | form | meaning |
//! | --- | --- |
//! | `unix:/run/app.sock` | Unix domain socket at a filesystem path |
//! | `unix:@name` | Linux abstract-namespace Unix socket (no file) |
//! | `tcp:127.0.0.1:7000`, `tcp:[::1]:7000`, `tcp:localhost:7000` | TCP |
//! | `pipe:name` | Windows named pipe `\\.\pipe\name` |
//! | `inproc:name` | in-process listener: threads of this process only, no socket |
//! | `shm:/run/app.sock` | processes of one host through shared memory, the handshake on a Unix socket at the path |
//!
//! ```
//! use procwire::Address;
//! let a: Address = "tcp:[::1]:7000".parse().unwrap();
//! assert_eq!(a.to_string(), "tcp:[::1]:7000");
//! let u: Address = "unix:/tmp/x.sock".parse().unwrap();
//! assert_eq!(u, Address::Unix("/tmp/x.sock".into()));
//! ```

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use crate::{Error, Result};

/// Where a [`Listener`](crate::Listener) listens and a [`Client`](crate::Client) connects.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Address {
    /// A Unix domain socket at a filesystem path: `unix:/path`.
    Unix(PathBuf),
    /// A Linux abstract-namespace Unix socket: `unix:@name`.
    UnixAbstract(String),
    /// A TCP host (name or IP literal) and port: `tcp:host:port`.
    Tcp {
        /// Host name or IP address (IPv6 without brackets).
        host: String,
        /// Port; 0 asks the OS for a free one when binding.
        port: u16,
    },
    /// A Windows named pipe `\\.\pipe\name`: `pipe:name`.
    Pipe(String),
    /// An in-process listener, `inproc:name`: reachable from threads of this process only,
    /// with no socket and no system call per message (see [`crate::dummy`]). Names are
    /// process-wide; a listener's name is free again when it is dropped.
    InProc(String),
    /// A shared-memory connection between two processes of one host, `shm:/path`: a Unix
    /// socket at the path (on Windows, `shm:name`: the named pipe `\\.\pipe\name`) carries
    /// the handshake, then the two sides move their messages through memory they both map
    /// (Linux, macOS and Windows; both sides must use this form).
    Shm(PathBuf),
}

/// A transport family, for [`Address::fresh`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Family {
    /// Unix domain socket with a filesystem path.
    Unix,
    /// Linux abstract-namespace Unix socket.
    UnixAbstract,
    /// TCP over IPv4 loopback.
    Tcp,
    /// TCP over IPv6 loopback.
    Tcp6,
    /// Windows named pipe.
    Pipe,
    /// In-process listener (threads of this process only).
    InProc,
    /// Shared memory between processes, over a Unix socket at a filesystem path (a named pipe
    /// on Windows).
    Shm,
}

impl Default for Family {
    /// The platform's default: [`Family::Unix`] on Unix, [`Family::Pipe`] on Windows (as
    /// CPython's `default_family`).
    fn default() -> Family {
        // The one platform difference of this module: named pipes are Windows' local transport.
        if cfg!(windows) { Family::Pipe } else { Family::Unix }
    }
}

impl Address {
    /// A TCP address from a socket address.
    pub fn tcp(addr: SocketAddr) -> Address {
        Address::Tcp { host: addr.ip().to_string(), port: addr.port() }
    }

    /// A new address of `family` that nothing else uses: a socket path inside a fresh private
    /// directory (mode 0700) for [`Family::Unix`], a random abstract name, TCP port 0 on
    /// loopback (the real port is known after binding: [`Listener::address`]), or a random pipe
    /// name; for [`Family::Shm`] a socket path as for [`Family::Unix`] (a random pipe name on
    /// Windows). Like CPython's `arbitrary_address`.
    ///
    /// The private directory of a [`Family::Unix`] address is removed by the
    /// [`Listener`](crate::Listener) bound to it when that listener is dropped.
    ///
    /// [`Listener::address`]: crate::Listener::address
    ///
    /// ```
    /// use procwire::{Address, Family};
    /// let a = Address::fresh(Family::Tcp).unwrap();
    /// assert_eq!(a.to_string(), "tcp:127.0.0.1:0");
    /// ```
    pub fn fresh(family: Family) -> Result<Address> {
        Ok(match family {
            Family::Unix => {
                let dir = crate::sys::fresh_dir()?;
                Address::Unix(dir.join("listener.sock"))
            }
            Family::UnixAbstract => Address::UnixAbstract(format!("procwire-{}", random_name()?)),
            Family::Tcp => Address::Tcp { host: "127.0.0.1".into(), port: 0 },
            Family::Tcp6 => Address::Tcp { host: "::1".into(), port: 0 },
            Family::Pipe => Address::Pipe(format!("procwire-{}-{}", std::process::id(), random_name()?)),
            Family::InProc => Address::InProc(format!("procwire-{}", random_name()?)),
            // A named pipe underneath on Windows: a random pipe name, as for Family::Pipe.
            Family::Shm if cfg!(windows) => {
                Address::Shm(format!("procwire-shm-{}-{}", std::process::id(), random_name()?).into())
            }
            Family::Shm => Address::Shm(crate::sys::fresh_dir()?.join("shm.sock")),
        })
    }

    /// The family of this address.
    pub fn family(&self) -> Family {
        match self {
            Address::Unix(_) => Family::Unix,
            Address::UnixAbstract(_) => Family::UnixAbstract,
            Address::Tcp { host, .. } if host.contains(':') => Family::Tcp6,
            Address::Tcp { .. } => Family::Tcp,
            Address::Pipe(_) => Family::Pipe,
            Address::InProc(_) => Family::InProc,
            Address::Shm(_) => Family::Shm,
        }
    }

    pub(crate) fn invalid(&self, reason: impl Into<String>) -> Error {
        Error::InvalidAddress { addr: self.to_string(), reason: reason.into() }
    }
}

fn random_name() -> Result<String> {
    let mut b = [0u8; 8];
    crate::util::fill_random(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // A relative path that starts with '@' would read back as an abstract name.
            Address::Unix(p) if p.as_os_str().as_encoded_bytes().starts_with(b"@") => {
                write!(f, "unix:./{}", p.display())
            }
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
            Address::UnixAbstract(n) => write!(f, "unix:@{n}"),
            Address::Tcp { host, port } if host.contains(':') => write!(f, "tcp:[{host}]:{port}"),
            Address::Tcp { host, port } => write!(f, "tcp:{host}:{port}"),
            Address::Pipe(n) => write!(f, "pipe:{n}"),
            Address::InProc(n) => write!(f, "inproc:{n}"),
            Address::Shm(p) => write!(f, "shm:{}", p.display()),
        }
    }
}

impl FromStr for Address {
    type Err = Error;

    fn from_str(s: &str) -> Result<Address> {
        let bad = |reason: &str| Error::InvalidAddress { addr: s.to_string(), reason: reason.to_string() };
        let (scheme, rest) = s.split_once(':').ok_or_else(|| {
            bad("expected unix:/path, unix:@name, tcp:host:port, pipe:name, inproc:name or shm:/path")
        })?;
        match scheme {
            "unix" => {
                if let Some(name) = rest.strip_prefix('@') {
                    if name.is_empty() {
                        return Err(bad("empty abstract socket name"));
                    }
                    Ok(Address::UnixAbstract(name.to_string()))
                } else if rest.is_empty() {
                    Err(bad("empty socket path"))
                } else {
                    Ok(Address::Unix(PathBuf::from(rest)))
                }
            }
            "tcp" => {
                let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
                    let (h, p) = v6.split_once("]:").ok_or_else(|| bad("expected tcp:[v6-address]:port"))?;
                    h.parse::<std::net::Ipv6Addr>().map_err(|_| bad("not an IPv6 address inside [...]"))?;
                    (h, p)
                } else {
                    let (h, p) = rest.rsplit_once(':').ok_or_else(|| bad("expected tcp:host:port"))?;
                    if h.contains(':') {
                        return Err(bad("IPv6 addresses go in brackets: tcp:[::1]:7000"));
                    }
                    (h, p)
                };
                if host.is_empty() {
                    return Err(bad("empty host"));
                }
                let port = port.parse::<u16>().map_err(|_| bad("port must be a number from 0 to 65535"))?;
                // Normalise IP literals so that printing round-trips to the canonical form.
                let host =
                    host.parse::<IpAddr>().map(|ip| ip.to_string()).unwrap_or_else(|_| host.to_string());
                Ok(Address::Tcp { host, port })
            }
            "pipe" => {
                let name = rest.strip_prefix(r"\\.\pipe\").unwrap_or(rest);
                if name.is_empty() || name.len() > 256 || name.contains(['\\', '\0']) {
                    return Err(bad("pipe names have 1 to 256 characters and no backslash or NUL"));
                }
                Ok(Address::Pipe(name.to_string()))
            }
            "inproc" if rest.is_empty() => Err(bad("empty in-process name")),
            "inproc" => Ok(Address::InProc(rest.to_string())),
            "shm" if rest.is_empty() => Err(bad("empty socket path")),
            "shm" => Ok(Address::Shm(PathBuf::from(rest))),
            _ => Err(bad("unknown scheme; expected unix:, tcp:, pipe:, inproc: or shm:")),
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(a: SocketAddr) -> Address {
        Address::tcp(a)
    }
}

/// What [`Listener::bind`](crate::Listener::bind), [`Client::connect`](crate::Client::connect)
/// and their builders accept as an address, as std's `ToSocketAddrs`: an [`Address`], its
/// string form (`"unix:/run/app.sock"`, parsed; a bad one is an [`Error::InvalidAddress`]),
/// or a [`SocketAddr`], and references to any of these. Sealed: the crate's types only.
///
/// ```
/// use procwire::{Address, ToAddress};
/// let a: Address = "tcp:127.0.0.1:7000".parse()?;
/// assert_eq!("tcp:127.0.0.1:7000".to_address()?, a);
/// assert_eq!((&a).to_address()?, a);
/// assert!("nowhere".to_address().is_err());
/// # Ok::<(), procwire::Error>(())
/// ```
pub trait ToAddress: sealed::Sealed {
    /// The address named, or why it is not one.
    fn to_address(&self) -> Result<Address>;
}

mod sealed {
    /// Keeps [`ToAddress`](super::ToAddress) to the types this module implements it for.
    pub trait Sealed {}
    impl Sealed for super::Address {}
    impl Sealed for str {}
    impl Sealed for String {}
    impl Sealed for std::net::SocketAddr {}
    impl<T: Sealed + ?Sized> Sealed for &T {}
}

impl ToAddress for Address {
    fn to_address(&self) -> Result<Address> {
        Ok(self.clone())
    }
}

impl ToAddress for str {
    fn to_address(&self) -> Result<Address> {
        self.parse()
    }
}

impl ToAddress for String {
    fn to_address(&self) -> Result<Address> {
        self.parse()
    }
}

impl ToAddress for SocketAddr {
    fn to_address(&self) -> Result<Address> {
        Ok(Address::tcp(*self))
    }
}

impl<T: ToAddress + ?Sized> ToAddress for &T {
    fn to_address(&self) -> Result<Address> {
        (**self).to_address()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for s in [
            "unix:/run/app.sock",
            "unix:relative/x.sock",
            "unix:@abstract-name",
            "tcp:127.0.0.1:7000",
            "tcp:[::1]:0",
            "tcp:localhost:80",
            "tcp:[fe80::1]:65535",
            "pipe:my-pipe",
            "inproc:some name:with colons",
        ] {
            let a: Address = s.parse().unwrap();
            assert_eq!(a.to_string(), s);
            assert_eq!(a.to_string().parse::<Address>().unwrap(), a);
        }
    }

    #[test]
    fn a_path_starting_with_at_does_not_print_as_an_abstract_name() {
        let a = Address::Unix("@x".into());
        assert_eq!(a.to_string(), "unix:./@x");
        assert_eq!(a.to_string().parse::<Address>().unwrap().family(), Family::Unix);
    }

    #[test]
    fn windows_pipe_prefix_is_accepted() {
        assert_eq!(r"pipe:\\.\pipe\abc".parse::<Address>().unwrap(), Address::Pipe("abc".into()));
    }

    #[test]
    fn rejects_bad_forms() {
        for s in [
            "",
            "nope",
            "tcp:1.2.3.4",
            "tcp::80",
            "tcp:::1:80",
            "tcp:[::1]80",
            "tcp:[zz]:1",
            "tcp:h:99999",
            "unix:",
            "unix:@",
            "pipe:",
            "inproc:",
            "ftp:x",
        ] {
            let e = s.parse::<Address>().unwrap_err();
            assert!(matches!(e, Error::InvalidAddress { .. }), "{s}: {e}");
        }
    }

    #[test]
    fn families() {
        assert_eq!("tcp:[::1]:1".parse::<Address>().unwrap().family(), Family::Tcp6);
        assert_eq!("tcp:1.2.3.4:1".parse::<Address>().unwrap().family(), Family::Tcp);
        assert_eq!(Address::tcp("[::1]:5".parse().unwrap()).to_string(), "tcp:[::1]:5");
    }

    #[test]
    fn fresh_addresses_differ() {
        let a = Address::fresh(Family::UnixAbstract).unwrap();
        let b = Address::fresh(Family::UnixAbstract).unwrap();
        assert_ne!(a, b);
        let Address::Unix(p) = Address::fresh(Family::Unix).unwrap() else { panic!() };
        let dir = p.parent().unwrap();
        assert!(dir.is_dir());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(dir).unwrap().permissions().mode() & 0o777, 0o700);
        }
        std::fs::remove_dir(dir).unwrap();
    }
}
