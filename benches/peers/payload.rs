//! (f) Large payloads: `map` over 16 MiB buffers (msgpack bytes through
//! `serde_bytes`) returning a checksum each, in GB/s of input, next to the
//! raw socketpair bandwidth (the same buffers streamed to a copy of this
//! program that returns the same checksum) and in-process `memcpy`.

use procpool::Pool;
use serde_bytes::ByteBuf;

use crate::harness::{Fallible, Opts, Sample, WORKERS, check_all, timed};
use crate::raw::{self, RawPeer};
use crate::report::{Better, Section, Target};
use crate::tasks::{checksum, checksum_task, random_bytes};

/// The size of one buffer.
const BUF: usize = 16 << 20;

/// (f) GB/s (10⁹ bytes of input per second).
pub(crate) fn large_payloads(opts: &Opts) -> Fallible<Vec<Section>> {
    let reps = opts.pick(1, 3, 5);
    let count = opts.pick(2, 16, 64);
    // Distinct buffers (each with its index in its first word), so a
    // checksum in the wrong place is caught.
    let base = random_bytes(BUF, 0x5eed);
    let bufs: Vec<Vec<u8>> = (0..count as u64)
        .map(|i| {
            let mut b = base.clone();
            b[..8].copy_from_slice(&i.to_le_bytes());
            b
        })
        .collect();
    let want: Vec<u64> = bufs.iter().map(|b| checksum(b)).collect();
    let gb = (count * BUF) as f64 / 1e9;

    let pool = Pool::new(WORKERS)?;
    let mut sink = RawPeer::sink()?;
    check_all(
        "procpool map(checksum) warm-up",
        &pool.map(checksum_task, inputs(&bufs[..2]))?,
        &want[..2],
    )?;
    sink.stream(&bufs[..2], &want[..2])?;

    let (mut pp, mut rw, mut mc) = (Sample::new(), Sample::new(), Sample::new());
    for _ in 0..reps {
        let items = inputs(&bufs);
        let (got, secs) = timed(|| pool.map(checksum_task, items));
        check_all("procpool map(checksum)", &got?, &want)?;
        pp.push(gb / secs);
        let (done, secs) = timed(|| sink.stream(&bufs, &want));
        done?;
        rw.push(gb / secs);
        mc.push(raw::memcpy_gbps(&bufs, &want)?);
    }
    sink.finish()?;
    pool.close();
    pool.join()?;

    let section = Section::new("(f) map over 16 MiB buffers", "GB/s", Better::Higher, pp)
        .peer("raw socketpair stream", rw, Some(Target::AtLeast(0.5)))
        .peer("memcpy in-process (reference)", mc, None)
        .note(format!(
            "{reps} reps of {count} buffers of 16 MiB ({gb:.2} GB), default chunksize ({} buffers per \
             chunk); {WORKERS} workers; raw: one process, one buffer at a time",
            count.div_ceil(4 * WORKERS)
        ));
    Ok(vec![section])
}

/// Fresh owned copies of `bufs` for one `map` (made before the clock
/// starts: `map` consumes its input).
fn inputs(bufs: &[Vec<u8>]) -> Vec<ByteBuf> {
    bufs.iter().map(|b| ByteBuf::from(b.clone())).collect()
}
