//! [`AuthKey`]: the shared secret, and where it comes from.

use std::fmt;
use std::path::Path;

use crate::error::io_context;
use crate::util::fill_random;
use crate::{Error, Result};

/// A shared secret key. Its `Debug` output never shows the key.
///
/// ```
/// use procwire::AuthKey;
/// let k = AuthKey::new(b"secret".to_vec());
/// assert_eq!(k.as_bytes(), b"secret");
/// assert_eq!(format!("{k:?}"), "AuthKey(6 bytes)");
/// assert_eq!(AuthKey::random().unwrap().as_bytes().len(), 32);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct AuthKey(Vec<u8>);

impl AuthKey {
    /// A key from raw bytes (CPython's `authkey=b"..."`).
    pub fn new(bytes: impl Into<Vec<u8>>) -> AuthKey {
        AuthKey(bytes.into())
    }

    /// 32 fresh random bytes from the operating system.
    pub fn random() -> Result<AuthKey> {
        let mut k = vec![0u8; 32];
        fill_random(&mut k)?;
        Ok(AuthKey(k))
    }

    /// The whole content of a file, byte for byte (no trimming: a trailing newline is part of
    /// the key). An empty file is an error, as it is almost always a mistake.
    pub fn from_file(path: impl AsRef<Path>) -> Result<AuthKey> {
        let path = path.as_ref();
        let bytes = std::fs::read(path)
            .map_err(|e| Error::Io(io_context(e, format_args!("reading authkey file {}", path.display()))))?;
        if bytes.is_empty() {
            return Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("authkey file {} is empty", path.display()),
            )));
        }
        Ok(AuthKey(bytes))
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthKey({} bytes)", self.0.len())
    }
}

impl From<&[u8]> for AuthKey {
    fn from(b: &[u8]) -> Self {
        AuthKey(b.to_vec())
    }
}

impl From<Vec<u8>> for AuthKey {
    fn from(b: Vec<u8>) -> Self {
        AuthKey(b)
    }
}

impl From<&str> for AuthKey {
    fn from(s: &str) -> Self {
        AuthKey(s.as_bytes().to_vec())
    }
}
