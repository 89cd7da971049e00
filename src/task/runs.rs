//! The chunk runner's fast path: a chunk whose arguments are of a plain
//! type arrives as runs of native bytes (see
//! [`protocol::plain`](crate::protocol::plain)). They are read a batch at a
//! time straight into a `Vec`, run under one panic guard per batch that
//! resumes after the item that panicked, and their results go back as runs
//! too when the result type is plain.
//!
//! A failing item still fails alone, with its own position: a panic
//! becomes that item's result, and the items after it run on.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{Kernel, panics};
use crate::error::RemotePanic;
use crate::protocol::items::{self, ARG_RUN, Items};
use crate::protocol::message::{Results, Timing};
use crate::protocol::{ProtocolError, plain};
use crate::sys::shm::RUNNING_ITEM;

/// Items read, run and answered together.
const BATCH: usize = 4096;

/// Runs `func` on every item of `items`, a chunk of runs of `K::In`; the
/// count of items and where the time went.
pub(super) fn run_runs<K: Kernel + ?Sized>(
    func: K::Func,
    items: Items<'_>,
    out: &mut Results<'_>,
) -> Result<(u32, Timing), ProtocolError> {
    let width = plain::size_of::<K::In>()
        .ok_or_else(|| ProtocolError::new("a run of arguments for a task whose argument is not plain"))?;
    let result_width = plain::size_of::<K::Out>();
    let mut timing = Timing::default();
    let mut count = 0u32;
    let mut args: Vec<K::In> = Vec::with_capacity(BATCH);
    let mut values: Vec<K::Out> = Vec::with_capacity(BATCH);
    let mut panics = Vec::new();
    for item in items {
        let (tag, body) = item?;
        if tag != ARG_RUN {
            return Err(ProtocolError::new(format!(
                "argument tag {tag} in a task of runs"
            )));
        }
        let (size, bytes) = items::run_values(body)?;
        if size != width {
            return Err(ProtocolError::new(format!(
                "a run of {size}-byte arguments for a task of {width}-byte ones"
            )));
        }
        for batch in bytes.chunks(BATCH * width) {
            let start = Instant::now();
            args.clear();
            assert!(
                plain::extend_from(&mut args, batch),
                "a plain type reads its bytes"
            );
            let decoded = Instant::now();
            // The items' positions among the results not yet sent, for a
            // death that names its item (see `RUNNING_ITEM`).
            let first = count - out.sent();
            run_batch::<K>(func, &mut args, first, &mut values, &mut panics);
            RUNNING_ITEM.store(u32::MAX, Ordering::Relaxed);
            let ran = Instant::now();
            count += (batch.len() / width) as u32;
            match result_width {
                Some(result_width) => push_runs(out, result_width, &mut values, &mut panics),
                None => push_each(out, &mut values, &mut panics),
            }
            let encoded = Instant::now();
            timing.decode_ns += nanos(decoded - start);
            timing.run_ns += nanos(ran - decoded);
            timing.encode_ns += nanos(encoded - ran);
        }
    }
    Ok((count, timing))
}

/// Runs `func` on each of `args` (emptied), appending the results to
/// `values` and the panics to `panics` with their position in the batch.
/// One panic guard covers the batch; after a panic it resumes with the
/// next item.
fn run_batch<K: Kernel + ?Sized>(
    func: K::Func,
    args: &mut Vec<K::In>,
    first: u32,
    values: &mut Vec<K::Out>,
    panics: &mut Vec<(usize, RemotePanic)>,
) {
    let mut args = args.drain(..);
    let mut at = 0;
    loop {
        let ran = panics::catching(|| {
            for arg in args.by_ref() {
                RUNNING_ITEM.store(first + at as u32, Ordering::Relaxed);
                values.push(K::call(func, arg));
                at += 1;
            }
        });
        match ran {
            Ok(()) => return,
            Err(panic) => {
                panics.push((at, panic));
                at += 1;
            }
        }
    }
}

/// Appends the batch's results in item order: the values between two
/// panics as one run of their bytes, each panic as an item of its own.
fn push_runs<R: 'static>(
    out: &mut Results<'_>,
    width: usize,
    values: &mut Vec<R>,
    panics: &mut Vec<(usize, RemotePanic)>,
) {
    let mut pending = std::mem::take(values);
    let mut next = 0;
    for (at, panic) in panics.drain(..) {
        // `at` counts the panics before it too; the values before it are
        // the first `at - next` still pending.
        let rest = pending.split_off(at - next);
        push_run(out, width, &pending);
        out.push(|buf| super::runner::push_panic(&panic, buf));
        next = at + 1;
        pending = rest;
    }
    push_run(out, width, &pending);
    pending.clear();
    *values = pending;
}

#[expect(clippy::ptr_arg, reason = "the values are downcast as a `Vec`")]
fn push_run<R: 'static>(out: &mut Results<'_>, width: usize, values: &Vec<R>) {
    if values.is_empty() {
        return;
    }
    out.push_items(values.len() as u32, |buf| {
        items::push_run(buf, items::RES_RUN, width, values.len(), |buf| {
            assert!(plain::put_all(values, buf), "a plain type puts its bytes");
        });
    });
}

/// Appends the batch's results in item order, each encoded on its own.
fn push_each<R: serde::Serialize>(
    out: &mut Results<'_>,
    values: &mut Vec<R>,
    panics: &mut Vec<(usize, RemotePanic)>,
) {
    let mut panics = panics.drain(..).peekable();
    let mut values = values.drain(..);
    let mut at = 0;
    loop {
        if panics.peek().is_some_and(|(p, _)| *p == at) {
            let (_, panic) = panics.next().expect("peeked");
            out.push(|buf| super::runner::push_panic(&panic, buf));
        } else if let Some(value) = values.next() {
            out.push(|buf| super::runner::push_value(value, buf));
        } else {
            return;
        }
        at += 1;
    }
}

fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
