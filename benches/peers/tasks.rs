//! The task functions every side runs: procpool's workers, procspawn's,
//! rayon's threads and the raw peers compute the same values, so each
//! result can be checked against a serial run in the parent.

use std::hint::black_box;
use std::time::Instant;

use serde_bytes::ByteBuf;

/// The trivial task of workloads a, b, c and e (Python's is `x + 1` too).
pub(crate) fn inc(x: u64) -> u64 {
    x.wrapping_add(1)
}

/// A CPU-bound task of workload d: `iters` steps of a 64-bit LCG from
/// `seed`. Deterministic; `black_box` keeps the loop from being folded.
pub(crate) fn spin((seed, iters): (u64, u64)) -> u64 {
    let mut x = seed;
    for _ in 0..iters {
        x = black_box(
            x.wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407),
        );
    }
    x
}

/// The iteration count for which [`spin`] takes about `target_ms` here
/// (the fastest of five probes, so a busy moment does not shorten it).
pub(crate) fn calibrate_spin(target_ms: f64) -> u64 {
    const PROBE: u64 = 1_000_000;
    let best = (0..5)
        .map(|_| {
            let start = Instant::now();
            black_box(spin((1, black_box(PROBE))));
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    ((PROBE as f64) * target_ms * 1e-3 / best).round().max(1.0) as u64
}

/// The checksum of workload f: the wrapping sum of the little-endian
/// 64-bit words (and trailing bytes). Reads every byte, vectorises.
pub(crate) fn checksum(bytes: &[u8]) -> u64 {
    let words = bytes.chunks_exact(8);
    let tail = words
        .remainder()
        .iter()
        .fold(0u64, |s, &b| s.wrapping_add(u64::from(b)));
    words.fold(tail, |s, w| {
        s.wrapping_add(u64::from_le_bytes(w.try_into().expect("chunks of 8")))
    })
}

/// [`checksum`] as a procpool task: the buffer crosses as msgpack bytes.
pub(crate) fn checksum_task(buf: ByteBuf) -> u64 {
    checksum(&buf)
}

/// [`checksum`] as a procpool task on shared memory: the worker reads the
/// parent's region in place.
pub(crate) fn checksum_shared_task(buf: procpool::Bytes) -> u64 {
    checksum(&buf)
}

/// `len` pseudo-random bytes (xorshift64 from `seed`).
pub(crate) fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
