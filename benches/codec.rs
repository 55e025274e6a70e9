//! Micro-benchmarks of the hot paths: frame header encode/decode, taking small frames out of a
//! receive buffer, and round trips over an in-process socketpair (`pipe(true)`).
//!
//! `cargo bench --bench codec`. The transport benchmark with a raw-socket baseline is the
//! `procwire bench` command (see README).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use procwire::codec::{FrameBuf, decode_header, encode_header};

fn headers(c: &mut Criterion) {
    c.bench_function("encode_header short", |b| b.iter(|| encode_header(black_box(1234))));
    c.bench_function("encode_header long", |b| b.iter(|| encode_header(black_box(5 << 32))));
    let h = encode_header(1234);
    c.bench_function("decode_header", |b| b.iter(|| decode_header(black_box(h.as_bytes()), 1 << 30)));
}

fn framebuf(c: &mut Criterion) {
    // 64 KiB worth of 16-byte frames, as one receive would bring them in.
    let mut wire = Vec::new();
    while wire.len() + 20 <= 60 << 10 {
        wire.extend_from_slice(encode_header(16).as_bytes());
        wire.extend_from_slice(&[7; 16]);
    }
    let frames = wire.len() / 20;
    let mut g = c.benchmark_group("framebuf");
    g.throughput(Throughput::Elements(frames as u64));
    g.bench_function("take 16 B frames", |b| {
        let mut fb = FrameBuf::new(64 << 10, 1 << 20);
        b.iter(|| {
            fb.spare()[..wire.len()].copy_from_slice(&wire);
            fb.filled(wire.len());
            let mut n = 0;
            while let Some(f) = fb.next_frame().unwrap() {
                n += f.len();
            }
            black_box(n)
        })
    });
    g.finish();
}

fn socketpair(c: &mut Criterion) {
    let mut g = c.benchmark_group("socketpair round trip");
    for size in [16usize, 4096, 64 << 10] {
        let (mut a, mut b) = procwire::pipe(true).unwrap();
        let echo = std::thread::spawn(move || {
            let mut buf = Vec::new();
            while b.recv_bytes_into(&mut buf).is_ok() {
                if b.send_bytes(&buf).is_err() {
                    break;
                }
            }
        });
        let msg = vec![1u8; size];
        let mut back = Vec::new();
        g.throughput(Throughput::Bytes(2 * size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |bench, _| {
            bench.iter(|| {
                a.send_bytes(&msg).unwrap();
                a.recv_bytes_into(&mut back).unwrap();
            })
        });
        drop(a);
        echo.join().unwrap();
    }
    g.finish();
}

criterion_group!(benches, headers, framebuf, socketpair);
criterion_main!(benches);
