//! Entry points for fuzzing the decoders: every byte string a peer could
//! send goes through the same code the pool and the workers run, and must
//! end in a value or a [`ProtocolError`](crate::protocol::ProtocolError), never a
//! panic, a hang or an allocation the frame limit does not allow.
//!
//! The `fuzz/` directory (`cargo fuzz run decode`) drives these; a unit
//! test below runs them over pseudo-random and mutated frames in every
//! `cargo test`.

use crate::error::RemotePanic;
use crate::protocol::frame::{self, ReadError};
use crate::protocol::items::Items;
use crate::protocol::message::{FromWorker, ToWorker};
use crate::result::sink::{ChunkMeta, ChunkOutcome, decode_chunk, validate};

/// A frame limit small enough that fuzzing explores the "too large" path.
const FUZZ_MAX_BODY: usize = 1 << 20;

/// Reads `bytes` as the parent reads a worker's channel: frames, messages,
/// and the results of every `DONE`, decoded as a few result types.
pub(crate) fn parent_reads(bytes: &[u8]) {
    let mut reader = bytes;
    let mut body = Vec::new();
    loop {
        let kind = match frame::read_frame(&mut reader, &mut body, FUZZ_MAX_BODY) {
            Ok(kind) => kind,
            Err(ReadError::Closed | ReadError::Truncated | ReadError::Protocol(_) | ReadError::Io(_)) => {
                return;
            }
        };
        let Ok(message) = FromWorker::decode(kind, &body) else {
            return;
        };
        if let FromWorker::Done { count, results, .. } = message {
            if validate(results, count).is_err() {
                return;
            }
            let meta = ChunkMeta {
                first: 0,
                count,
                holes: Vec::new(),
            };
            let _ = decode_chunk::<u64>(&meta, ChunkOutcome::Results(results), true);
            let _ = decode_chunk::<(String, Vec<u8>)>(&meta, ChunkOutcome::Results(results), true);
            let _ = decode_chunk::<Option<RemotePanic>>(&meta, ChunkOutcome::Results(results), false);
            // Region handles name no region here: an error, never a map.
            let _ = decode_chunk::<crate::Bytes>(&meta, ChunkOutcome::Results(results), true);
        }
    }
}

/// Reads `bytes` as a worker reads its channel: frames, task messages, and
/// the items of every task.
pub(crate) fn worker_reads(bytes: &[u8]) {
    let mut reader = bytes;
    let mut body = Vec::new();
    while let Ok(kind) = frame::read_frame(&mut reader, &mut body, FUZZ_MAX_BODY) {
        let Ok(ToWorker::Task { items, .. }) = ToWorker::decode(kind, &body) else {
            return;
        };
        for item in Items::new(items) {
            let Ok((_, body)) = item else { break };
            let _ = crate::protocol::codec::decode::<(u32, String)>(body);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{codec, items, message};

    /// xorshift64*: deterministic, so a failure names its seed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn valid_done() -> Vec<u8> {
        let mut out = Vec::new();
        message::start_done(&mut out);
        items::push_with(&mut out, items::RES_OK, |b| codec::encode(&7u64, b)).unwrap();
        let panic = RemotePanic::new("boom".into(), None, None);
        items::push_with(&mut out, items::RES_PANIC, |b| codec::encode(&panic, b)).unwrap();
        items::push_bytes(&mut out, items::RES_ARG_DECODE, b"bad");
        message::finish_done(
            &mut out,
            3,
            3,
            message::Timing::default(),
            frame::DEFAULT_MAX_BODY,
        )
        .unwrap();
        out
    }

    #[test]
    fn random_and_mutated_frames_never_panic() {
        let seeds = [
            valid_done(),
            message::ready_frame(42),
            message::text_frame(message::FAULT, "x"),
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..20_000 {
            let mut bytes = seeds[round % seeds.len()].clone();
            for _ in 0..=rng.below(4) {
                match rng.below(4) {
                    0 => {
                        let at = rng.below(bytes.len());
                        bytes[at] = rng.next() as u8;
                    }
                    1 => bytes.truncate(rng.below(bytes.len() + 1)),
                    2 => {
                        let extra = bytes.clone();
                        bytes.extend_from_slice(&extra[..rng.below(extra.len() + 1)]);
                    }
                    _ => bytes = (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
                }
                if bytes.is_empty() {
                    break;
                }
            }
            parent_reads(&bytes);
            worker_reads(&bytes);
        }
    }
}
