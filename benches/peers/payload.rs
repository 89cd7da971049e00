//! (f) Large payloads: `map` over 16 MiB buffers returning a checksum each,
//! in GB/s of input, next to the raw socketpair bandwidth (the same buffers
//! streamed to a copy of this program that returns the same checksum) and
//! in-process `memcpy`. The buffers cross as msgpack bytes (`serde_bytes`),
//! and as `procpool::Bytes` (shared memory): kept by the caller across the
//! repetitions (as the raw peer keeps its buffers), built before the clock
//! starts and consumed (as the `ByteBuf`s are), and with the copy into the
//! regions timed.

use procpool::{Bytes, Pool};
use serde_bytes::ByteBuf;

use crate::harness::{Fallible, Opts, Sample, WORKERS, check_all, timed};
use crate::raw::{self, RawPeer};
use crate::report::{Better, Section, Target};
use crate::tasks::{checksum, checksum_shared_task, checksum_task, random_bytes};

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
    check_all(
        "procpool map(checksum) on Bytes warm-up",
        &pool.map(checksum_shared_task, shared(&bufs[..2]))?,
        &want[..2],
    )?;

    // The caller's own regions, made once and kept, as the raw peer keeps
    // its buffers: `map` takes clones (a clone shares the region).
    let kept = shared(&bufs);
    let (mut pp, mut rw, mut mc) = (Sample::new(), Sample::new(), Sample::new());
    let (mut sh_kept, mut sh, mut sh_copy) = (Sample::new(), Sample::new(), Sample::new());
    for _ in 0..reps {
        let items = inputs(&bufs);
        let (got, secs) = timed(|| pool.map(checksum_task, items));
        check_all("procpool map(checksum)", &got?, &want)?;
        pp.push(gb / secs);
        let (got, secs) = timed(|| pool.map(checksum_shared_task, kept.iter().cloned()));
        check_all("procpool map(checksum) on the caller's Bytes", &got?, &want)?;
        sh_kept.push(gb / secs);
        let items = shared(&bufs);
        let (got, secs) = timed(|| pool.map(checksum_shared_task, items));
        check_all("procpool map(checksum) on Bytes", &got?, &want)?;
        sh.push(gb / secs);
        let (got, secs) = timed(|| pool.map(checksum_shared_task, shared(&bufs)));
        check_all("procpool map(checksum) on Bytes, copy timed", &got?, &want)?;
        sh_copy.push(gb / secs);
        let (done, secs) = timed(|| sink.stream(&bufs, &want));
        done?;
        rw.push(gb / secs);
        mc.push(raw::memcpy_gbps(&bufs, &want)?);
    }
    sink.finish()?;
    pool.close();
    pool.join()?;

    let section = Section::new("(f) map over 16 MiB buffers", "GB/s", Better::Higher, pp)
        .peer("raw socketpair stream", rw.clone(), Some(Target::AtLeast(0.7)))
        .peer("memcpy in-process (reference)", mc, None)
        .note(format!(
            "{reps} reps of {count} buffers of 16 MiB ({gb:.2} GB) as serde_bytes::ByteBuf, default \
             chunksize (a default chunk ends at 8 MiB of arguments: one buffer per chunk); {WORKERS} \
             workers; raw: one process, one buffer at a time"
        ));
    let kept_section = Section::new(
        "(f) map over 16 MiB buffers as procpool::Bytes the caller keeps",
        "GB/s",
        Better::Higher,
        sh_kept,
    )
    .peer("raw socketpair stream", rw.clone(), Some(Target::AtLeast(2.0)))
    .note(format!(
        "the same {count} buffers as procpool::Bytes (shared memory regions), made once before the \
         first rep and kept by the caller, as the raw peer keeps its buffers: map takes clones (a \
         clone shares its region), so no region is made or freed inside the timed section"
    ));
    let shared_section = Section::new(
        "(f) map over 16 MiB buffers as procpool::Bytes, consumed",
        "GB/s",
        Better::Higher,
        sh,
    )
    .peer("raw socketpair stream", rw.clone(), None)
    .note(format!(
        "the same {count} buffers as procpool::Bytes, made before the clock starts (as the ByteBufs \
         are cloned before it) and consumed by map: each region is freed inside the timed section"
    ));
    let copy_section = Section::new(
        "(f) map over 16 MiB buffers as procpool::Bytes, copy timed",
        "GB/s",
        Better::Higher,
        sh_copy,
    )
    .peer("raw socketpair stream", rw, None)
    .note("as above, with the copy of each buffer into its region inside the timed section".to_owned());
    Ok(vec![section, kept_section, shared_section, copy_section])
}

/// The buffers copied into shared regions, for one `map`.
fn shared(bufs: &[Vec<u8>]) -> Vec<Bytes> {
    bufs.iter().map(|b| Bytes::copy_from_slice(b)).collect()
}

/// Fresh owned copies of `bufs` for one `map` (made before the clock
/// starts: `map` consumes its input).
fn inputs(bufs: &[Vec<u8>]) -> Vec<ByteBuf> {
    bufs.iter().map(|b| ByteBuf::from(b.clone())).collect()
}
