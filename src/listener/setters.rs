//! The setters a blocking and an async builder share, written once: `client_setters!` for
//! `ClientBuilder` and its tokio twin, `listener_setters!` for `ListenerBuilder` and its twin.
//! Both expand to `endpoint_setters!`, the `EndpointOptions` setters, with the words
//! that differ between a client and a listener; the side's own options (`encrypt`, the retries,
//! the handshake table) stay with each builder, since they differ between the faces.
//!
//! A builder using them has an `endpoint: EndpointOptions` field; a listener builder also has
//! `backlog: i32` and `mode: u32`, a client builder `connect_timeout: Duration`.

/// The `EndpointOptions` setters, each with its doc text; the
/// arguments are the sentences that name one side or the other.
macro_rules! endpoint_setters {
    (
        authkey: $authkey:expr,
        keyless: $keyless:expr,
        $(keyless_example: $keyless_example:expr,)?
        keepalive: $keepalive:expr,
        handshake_timeout: $handshake_timeout:expr,
        conns: $conns:expr,
        conns_receive: $conns_receive:expr $(,)?
    ) => {
        #[doc = $authkey]
        pub fn authkey(mut self, key: impl Into<$crate::AuthKey>) -> Self {
            self.endpoint.key = Some(key.into());
            self
        }

        #[doc = $keyless]
        $(#[doc = ""] #[doc = $keyless_example])?
        pub fn allow_unauthenticated_tcp(mut self, allow: bool) -> Self {
            self.endpoint.keyless_tcp = allow;
            self
        }

        #[doc = concat!(
            "Turns on TCP keepalive", $keepalive, ", probing after `idle` of silence, so that a ",
            "peer that vanished without closing (host down, link cut) is eventually reported by a ",
            "receive (see [`Connection::set_keepalive`](crate::Connection::set_keepalive)). ",
            "Default: off. No effect on other transports."
        )]
        pub fn tcp_keepalive(mut self, idle: Option<::std::time::Duration>) -> Self {
            self.endpoint.keepalive = idle;
            self
        }

        /// Also accepts the HMAC-MD5 handshake of CPython 3.11 and older. MD5 is weak: enable
        /// it only to talk to such peers.
        #[cfg(feature = "legacy-md5")]
        pub fn legacy_md5(mut self, allow: bool) -> Self {
            self.endpoint.legacy = allow;
            self
        }

        #[doc = concat!($handshake_timeout, " (default 10 s).")]
        pub fn handshake_timeout(mut self, t: ::std::time::Duration) -> Self {
            self.endpoint.handshake_timeout = t;
            self
        }

        #[doc = concat!("The largest message ", $conns_receive, " (default 64 MiB).")]
        pub fn max_message_size(mut self, max: u64) -> Self {
            self.endpoint.conn.max_message_size = max;
            self
        }

        #[doc = concat!("The read timeout of ", $conns, " (default none).")]
        pub fn read_timeout(mut self, t: Option<::std::time::Duration>) -> Self {
            self.endpoint.conn.read_timeout = t;
            self
        }

        #[doc = concat!("The write timeout of ", $conns, " (default none).")]
        pub fn write_timeout(mut self, t: Option<::std::time::Duration>) -> Self {
            self.endpoint.conn.write_timeout = t;
            self
        }
    };
}

/// The setters of a client builder (blocking or async) that do the same on both faces.
macro_rules! client_setters {
    () => {
        $crate::listener::endpoint_setters! {
            authkey: "Answers the listener's challenge with `key` and challenges it back. \
Without a key there is no handshake (as in CPython), which is refused for TCP \
addresses unless [`allow_unauthenticated_tcp`](Self::allow_unauthenticated_tcp) \
says otherwise.",
            keyless: "Allows connecting to a TCP address without an [`authkey`](Self::authkey) \
(default: refused, unlike CPython). Without a key the client cannot tell the \
listener it meant from anyone else who took the port, and the listener accepts \
anyone.",
            keepalive: "",
            handshake_timeout: "How long the handshake may take",
            conns: "the connection",
            conns_receive: "the connection receives",
        }

        /// How long one connection attempt may take (default 20 s).
        pub fn connect_timeout(mut self, t: ::std::time::Duration) -> Self {
            self.connect_timeout = t;
            self
        }
    };
}

/// The setters of a listener builder (blocking or async) that do the same on both faces;
/// `keyless_example` is a doc example for `allow_unauthenticated_tcp`.
macro_rules! listener_setters {
    ($(keyless_example: $keyless_example:expr)?) => {
        $crate::listener::endpoint_setters! {
            authkey: "Requires clients to prove they hold `key` (and proves it to them). Without \
                a key there is no handshake at all, as in CPython: anyone who can connect is \
                accepted. That is allowed for Unix path sockets (the socket file's mode, 0600 by \
                default, decides who can connect), abstract Unix sockets (no protection at all: \
                any process in the same network namespace can connect) and named pipes, but \
                refused for TCP unless \
                [`allow_unauthenticated_tcp`](Self::allow_unauthenticated_tcp) says otherwise.",
            keyless: "Allows binding a TCP address without an [`authkey`](Self::authkey) \
                (default: refused, unlike CPython). Without a key, anyone who can reach the port \
                is accepted and can send any message; use it only on a network where that is \
                acceptable.",
            $(keyless_example: $keyless_example,)?
            keepalive: " for every accepted TCP connection",
            handshake_timeout: "How long a client may take to complete the handshake",
            conns: "accepted connections",
            conns_receive: "accepted connections receive",
        }

        /// The length of the kernel's queue of connections not yet accepted (default 128).
        pub fn backlog(mut self, backlog: u32) -> Self {
            self.backlog = backlog.min(i32::MAX as u32) as i32;
            self
        }

        /// Permission bits of the socket file of a Unix path address (default `0o600`: only
        /// the owner may connect). The file has exactly these before anyone can connect,
        /// whatever the umask, and they are never set through a symbolic link: a path that is
        /// no longer our socket when the mode is set makes `bind` fail.
        pub fn socket_mode(mut self, mode: u32) -> Self {
            self.mode = mode;
            self
        }
    };
}

pub(crate) use {client_setters, endpoint_setters, listener_setters};
