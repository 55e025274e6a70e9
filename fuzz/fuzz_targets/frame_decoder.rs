//! The frame decoder fed arbitrary bytes: `FrameBuf` split at arbitrary read sizes, and a real
//! `Connection` over a socket pair, both checked against a plain reference decoder (SPEC.md
//! §2.3, §2.4). Input: 4 option bytes, then the byte stream.

#![no_main]

use libfuzzer_sys::fuzz_target;
use procwire_fuzz::{Rng, check_connection, check_framebuf};

fuzz_target!(|data: &[u8]| {
    let Some((opts, wire)) = data.split_first_chunk::<4>() else { return };
    let capacity = 12 + usize::from(opts[0]) * 4;
    let small = u64::from(u16::from_be_bytes([opts[1], opts[2]]));
    let max = match opts[3] % 4 {
        0 => small,
        1 => 256,
        2 => 64 << 20,
        _ => u64::MAX,
    };
    check_framebuf(
        wire,
        capacity,
        max,
        &mut Rng::new(u64::from_be_bytes([0, 0, 0, 0, opts[0], opts[1], opts[2], opts[3]])),
    );
    if opts[3] & 4 != 0 {
        // The connection reserves the announced length ahead of the bytes, but at most 64 MiB:
        // within the fuzzer's memory limit whatever the maximum.
        check_connection(wire, max);
    }
});
