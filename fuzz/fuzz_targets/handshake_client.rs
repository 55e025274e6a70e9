//! The client's side of the handshake fed arbitrary peer bytes, interleaved with an honest
//! listener's messages (see `procwire_fuzz::check_handshake`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use procwire::auth::Role;

fuzz_target!(|data: &[u8]| {
    procwire_fuzz::check_handshake(Role::Client, data);
});
