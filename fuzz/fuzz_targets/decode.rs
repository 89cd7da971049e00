//! Every byte string a peer could send, read both as the parent reads a
//! worker's channel and as a worker reads the parent's: it must end in a
//! value or a protocol error, never a panic, a hang or an unbounded
//! allocation.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    procpool::fuzzing::parent_reads(data);
    procpool::fuzzing::worker_reads(data);
});
