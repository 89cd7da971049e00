//! The chunk runner: what a `TASK` frame's runner record points at.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{Kernel, panics, runs};
use crate::error::RemotePanic;
use crate::func::{FunctionId, Image};
use crate::protocol::ProtocolError;
use crate::protocol::codec;
use crate::protocol::items::{self, ARG_HOLE, ARG_RUN, ARG_VALUE, Items, PushError};
use crate::protocol::message::{MAX_RESULT_ITEM, Results, Target, Timing};
use crate::sys::shm::RUNNING_ITEM;

/// Runs `K` on every item of `items`, appending one result item per item,
/// in batches: decode a batch of arguments, run the task on each, encode
/// the results.
///
/// One monomorphised copy of this function exists per kernel; its
/// [`Runner`](crate::func::Runner) record is the `runner` of the [`Target`]
/// the parent sends. It refuses a target whose signature is not its own
/// before it touches the function id.
pub(crate) fn run_chunk<K: Kernel + ?Sized>(
    target: Target,
    image: &Image,
    items: &[u8],
    out: &mut Results<'_>,
) -> Result<(u32, Timing), ProtocolError> {
    if target.signature != K::signature() {
        return Err(ProtocolError::new(format!(
            "the task's signature {:#x} is not that of its entry point ({})",
            target.signature,
            std::any::type_name::<K>()
        )));
    }
    // SAFETY: the signature matches this kernel, so the parent made
    // `target.func` with this kernel's `func_id`, in this same executable
    // (checked at the handshake).
    let Some(func) = (unsafe { K::func_from(FunctionId(target.func), image) }) else {
        return Err(ProtocolError::new(format!(
            "function id {:#x} is not a function of this executable",
            target.func
        )));
    };
    let mut items = Items::new(items);
    if let Some(Ok((ARG_RUN, _))) = items.clone().next() {
        return runs::run_runs::<K>(func, items, out);
    }
    let mut timing = Timing::default();
    let mut args = Vec::with_capacity(BATCH_ITEMS);
    let mut values = Vec::with_capacity(BATCH_ITEMS);
    let mut count = 0u32;
    loop {
        // Three phases per batch, timed as a whole: a clock read per item
        // would cost more than a trivial task.
        let start = Instant::now();
        let mut bytes = 0;
        while args.len() < BATCH_ITEMS && bytes < BATCH_BYTES {
            let Some(item) = items.next() else { break };
            let (tag, body) = item?;
            args.push(match tag {
                ARG_VALUE => Some(codec::decode::<K::In>(body)),
                ARG_HOLE => None,
                other => return Err(ProtocolError::new(format!("unknown argument tag {other}"))),
            });
            bytes += body.len();
        }
        if args.is_empty() {
            return Ok((count, timing));
        }
        let decoded = Instant::now();
        // The items' positions among the results not yet sent, for a death
        // that names its item (see `RUNNING_ITEM`).
        let first = count - out.sent();
        values.extend(args.drain(..).enumerate().map(|(i, arg)| match arg {
            Some(Ok(input)) => {
                RUNNING_ITEM.store(first + i as u32, Ordering::Relaxed);
                Ran::Value(panics::catching(|| K::call(func, input)))
            }
            Some(Err(message)) => Ran::BadArgument(message),
            None => Ran::Hole,
        }));
        RUNNING_ITEM.store(u32::MAX, Ordering::Relaxed);
        let ran = Instant::now();
        count += values.len() as u32;
        for value in values.drain(..) {
            out.push(|buf| push_result(value, buf));
        }
        let encoded = Instant::now();
        timing.decode_ns += nanos(decoded - start);
        timing.run_ns += nanos(ran - decoded);
        timing.encode_ns += nanos(encoded - ran);
    }
}

/// At most this many items are decoded ahead of running them...
const BATCH_ITEMS: usize = 256;
/// ... or this many bytes of arguments, so a chunk of large items is not
/// held decoded all at once.
const BATCH_BYTES: usize = 1 << 20;

fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What running one item gave.
enum Ran<R> {
    Value(Result<R, RemotePanic>),
    BadArgument(String),
    Hole,
}

/// Appends the result item for one outcome. Every failure becomes that
/// item's result; nothing unwinds out.
fn push_result<R: serde::Serialize>(ran: Ran<R>, out: &mut Vec<u8>) {
    match ran {
        Ran::Value(Ok(value)) => push_value(value, out),
        Ran::Value(Err(panic)) => push_panic(&panic, out),
        Ran::BadArgument(message) => items::push_bytes(out, items::RES_ARG_DECODE, message.as_bytes()),
        Ran::Hole => items::push_bytes(out, items::RES_SKIPPED, &[]),
    }
}

/// Appends the result item for a task's value: the value encoded, or the
/// error that encoding it (or dropping it) gave.
pub(super) fn push_value<R: serde::Serialize>(value: R, out: &mut Vec<u8>) {
    let start = out.len();
    let mut failed_encode = None;
    // `Serialize` and `Drop` are user code too: a panic in either is the
    // item's result.
    let outcome = panics::catching(|| {
        match items::push_with(out, items::RES_OK, |buf| codec::encode(&value, buf)) {
            Ok(()) => {}
            Err(PushError::Body(message)) => failed_encode = Some(message),
            Err(PushError::TooLarge(size)) => {
                failed_encode = Some(format!(
                    "the encoded result is {size} bytes, over the 4 GiB item limit"
                ))
            }
        }
        drop(value);
    });
    match outcome {
        Ok(()) => {
            if let Some(message) = failed_encode {
                items::push_bytes(out, items::RES_RESULT_ENCODE, message.as_bytes());
            } else if out.len() - start > MAX_RESULT_ITEM + 5 {
                // It encoded, but no frame can carry it.
                let size = (out.len() - start - 5) as u64;
                out.truncate(start);
                items::push_bytes(out, items::RES_TOO_LARGE, &size.to_le_bytes());
            }
        }
        Err(panic) => {
            // The panic may come after the value was pushed (in a `Drop`).
            out.truncate(start);
            push_panic(&panic, out);
        }
    }
}

/// Appends the result item for a task's panic.
pub(super) fn push_panic(panic: &RemotePanic, out: &mut Vec<u8>) {
    if items::push_with(out, items::RES_PANIC, |buf| codec::encode(panic, buf)).is_err() {
        items::push_bytes(out, items::RES_PANIC, &[]);
    }
}
