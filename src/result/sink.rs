//! Sinks: where a finished chunk's results go. The supervisor thread that
//! read a `DONE` frame calls [`Sink::complete`] with the raw results; the
//! sink decodes them into values (so decoding runs in parallel across
//! workers' threads) and delivers them.
//!
//! A value that nobody will take (its call failed, or its receiver is
//! gone) is dropped here, outside any lock, each drop shielded: its `Drop`
//! is user code, and a panic in it must not cost the supervisor thread.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::Instant;

use crossbeam_channel::Sender;
use serde::de::DeserializeOwned;

use crate::error::{DataKind, Error, RemotePanic};
use crate::progress::Progress;
use crate::protocol::items::{self, Items};
use crate::protocol::{ProtocolError, codec, plain};
use crate::result::slot::Resolver;
use crate::task::panics::{drop_shielded, shielded};

/// What a chunk is, besides its bytes. A chunk may be split on its way
/// to a worker; each part has its own `ChunkMeta`.
#[derive(Debug)]
pub(crate) struct ChunkMeta {
    /// The input position of its first item.
    pub(crate) first: usize,
    /// How many items it holds.
    pub(crate) count: u32,
    /// Items the parent could not encode: position in the chunk, error.
    pub(crate) holes: Vec<(u32, Error)>,
}

/// How a chunk ended.
#[derive(Debug)]
pub(crate) enum ChunkOutcome<'a> {
    /// The worker's result items (already checked by [`validate`]).
    Results(&'a [u8]),
    /// The whole chunk failed (its worker died, the pool was terminated).
    Failed(Error),
}

/// Receives the outcome of each chunk (or part of a chunk) of one call,
/// exactly once per chunk.
pub(crate) trait Sink: Send + Sync {
    fn complete(&self, meta: &ChunkMeta, outcome: ChunkOutcome<'_>);
}

/// Checks that a `DONE` payload holds `count` well-formed result items;
/// returns how many of them are values (the others are errors).
pub(crate) fn validate(results: &[u8], count: u32) -> Result<u32, ProtocolError> {
    let (mut seen, mut ok) = (0usize, 0usize);
    for item in Items::new(results) {
        let (tag, body) = item?;
        if tag > items::RES_RUN {
            return Err(ProtocolError::new(format!("unknown result tag {tag}")));
        }
        let width = items::width(tag, body, items::RES_RUN)?;
        seen += width;
        if matches!(tag, items::RES_OK | items::RES_RUN) {
            ok += width;
        }
    }
    if seen != count as usize {
        return Err(ProtocolError::new(format!("{seen} results for {count} items")));
    }
    // `ok <= seen == count`.
    Ok(ok as u32)
}

/// Decodes a chunk's outcome into one result per item. With `indexed`,
/// errors carry the item's input position.
pub(crate) fn decode_chunk<R: DeserializeOwned + 'static>(
    meta: &ChunkMeta,
    outcome: ChunkOutcome<'_>,
    indexed: bool,
) -> Vec<Result<R, Error>> {
    let index_of = |pos: usize| indexed.then_some(meta.first + pos);
    match outcome {
        ChunkOutcome::Failed(error) => (0..meta.count as usize)
            .map(|pos| Err(error.clone().at_index_opt(index_of(pos))))
            .collect(),
        ChunkOutcome::Results(bytes) => {
            let mut results = Vec::with_capacity(meta.count as usize);
            for item in Items::new(bytes) {
                let pos = results.len();
                match item {
                    Ok((items::RES_RUN, body)) => match run(body, pos, meta, indexed) {
                        Ok(values) => results.extend(values.into_iter().map(Ok)),
                        Err(e) => results.push(Err(e)),
                    },
                    Ok((tag, body)) => results.push(decode_item(tag, body, index_of(pos), pos, meta)),
                    Err(e) => results.push(Err(Error::Decode {
                        index: index_of(pos),
                        what: DataKind::Result,
                        message: e.0,
                    })),
                }
            }
            results
        }
    }
}

/// The values of a run of plain results whose first item is at position
/// `pos` of the chunk (the supervisor checked its shape).
fn run<R: 'static>(body: &[u8], pos: usize, meta: &ChunkMeta, indexed: bool) -> Result<Vec<R>, Error> {
    let mut values = Vec::new();
    extend_with_run(&mut values, body).map_err(|message| Error::Decode {
        index: indexed.then_some(meta.first + pos),
        what: DataKind::Result,
        message,
    })?;
    Ok(values)
}

/// Appends the values of a run of plain results to `values`.
#[expect(clippy::ptr_arg, reason = "the values are downcast as a `Vec`")]
fn extend_with_run<R: 'static>(values: &mut Vec<R>, body: &[u8]) -> Result<(), String> {
    let (size, bytes) = items::run_values(body).map_err(|e| e.0)?;
    if plain::size_of::<R>() != Some(size) || !plain::extend_from(values, bytes) {
        return Err(format!(
            "a run of {size}-byte values is not a {}",
            std::any::type_name::<R>()
        ));
    }
    Ok(())
}

fn decode_item<R: DeserializeOwned>(
    tag: u8,
    body: &[u8],
    index: Option<usize>,
    pos: usize,
    meta: &ChunkMeta,
) -> Result<R, Error> {
    let text = || String::from_utf8_lossy(body).into_owned();
    match tag {
        items::RES_OK => codec::decode(body).map_err(|message| Error::Decode {
            index,
            what: DataKind::Result,
            message,
        }),
        items::RES_PANIC => Err(Error::Panicked {
            index,
            panic: codec::decode::<RemotePanic>(body).unwrap_or_else(|_| {
                RemotePanic::new("(the worker could not describe the panic)".into(), None, None)
            }),
        }),
        items::RES_ARG_DECODE => Err(Error::Decode {
            index,
            what: DataKind::Argument,
            message: text(),
        }),
        items::RES_RESULT_ENCODE => Err(Error::Encode {
            index,
            what: DataKind::Result,
            message: text(),
        }),
        items::RES_TOO_LARGE => Err(Error::TooLarge {
            index,
            what: DataKind::Result,
            size: body.try_into().map_or(usize::MAX, |b| {
                usize::try_from(u64::from_le_bytes(b)).unwrap_or(usize::MAX)
            }),
            limit: crate::protocol::message::MAX_RESULT_ITEM,
        }),
        _ => Err(meta
            .holes
            .iter()
            .find(|(at, _)| *at as usize == pos)
            .map(|(_, e)| e.clone().at_index_opt(index))
            .unwrap_or_else(|| Error::Decode {
                index,
                what: DataKind::Argument,
                message: "the worker skipped an item the parent sent".into(),
            })),
    }
}

/// The sink of `apply_async`: one chunk of one item.
pub(crate) struct OneShot<R: Send + 'static> {
    resolver: Mutex<Option<Resolver<R>>>,
}

impl<R: Send + 'static> OneShot<R> {
    pub(crate) fn new(resolver: Resolver<R>) -> Arc<Self> {
        Arc::new(OneShot {
            resolver: Mutex::new(Some(resolver)),
        })
    }
}

impl<R: DeserializeOwned + Send + 'static> Sink for OneShot<R> {
    fn complete(&self, meta: &ChunkMeta, outcome: ChunkOutcome<'_>) {
        let result = decode_chunk::<R>(meta, outcome, false)
            .pop()
            .unwrap_or(Err(Error::Terminated));
        let resolver = self.resolver.lock().unwrap_or_else(|e| e.into_inner()).take();
        match resolver {
            Some(resolver) => resolver.resolve(result),
            None => drop_shielded(result),
        }
    }
}

/// The sink of `map_async`: gathers chunks by input position; on failure
/// keeps the error of the lowest failing input position.
pub(crate) struct Collect<R: Send + 'static> {
    state: Mutex<CollectState<R>>,
    progress: Option<Progress>,
}

struct CollectState<R: Send + 'static> {
    /// The values of the first items, in order, put in place as their
    /// chunks come.
    front: Vec<R>,
    /// Other finished chunks by the input position of their first item.
    parts: BTreeMap<usize, Vec<R>>,
    /// Items whose chunk is done.
    done: usize,
    /// How many items the call has, once all are submitted.
    total: Option<usize>,
    /// The failure at the lowest input position so far, with that position
    /// (an error need not carry an index: a protocol failure does not).
    error: Option<(usize, Error)>,
    resolver: Option<Resolver<Vec<R>>>,
}

impl<R: Send + 'static> Collect<R> {
    pub(crate) fn new(resolver: Resolver<Vec<R>>, progress: Option<Progress>) -> Arc<Self> {
        Arc::new(Collect {
            progress,
            state: Mutex::new(CollectState {
                front: Vec::new(),
                parts: BTreeMap::new(),
                done: 0,
                total: None,
                error: None,
                resolver: Some(resolver),
            }),
        })
    }

    /// Says how many items the call has, once all are submitted.
    pub(crate) fn seal(&self, total: usize) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.total = Some(total);
        self.finish_if_done(state);
    }

    fn finish_if_done(&self, mut state: std::sync::MutexGuard<'_, CollectState<R>>) {
        if state.total != Some(state.done) {
            return;
        }
        let Some(resolver) = state.resolver.take() else {
            return;
        };
        let result = match state.error.take() {
            Some((_, error)) => Err(error),
            None => {
                let parts = std::mem::take(&mut state.parts);
                let mut values = std::mem::take(&mut state.front);
                values.reserve(state.done - values.len());
                for part in parts.into_values() {
                    values.extend(part);
                }
                Ok(values)
            }
        };
        drop(state);
        if let Some(progress) = &self.progress {
            progress.finish(result.as_ref().err());
        }
        resolver.resolve(result);
    }
}

impl<R: DeserializeOwned + Send + 'static> Collect<R> {
    /// Decodes a chunk's values onto the end of `values`, up to its first
    /// failure, which it returns with its input position.
    fn decode_into(
        values: &mut Vec<R>,
        meta: &ChunkMeta,
        outcome: ChunkOutcome<'_>,
    ) -> Option<(usize, Error)> {
        let bytes = match outcome {
            ChunkOutcome::Failed(error) => return Some((meta.first, error.at_index(meta.first))),
            ChunkOutcome::Results(bytes) => bytes,
        };
        values.reserve(meta.count as usize);
        let start = values.len();
        for item in Items::new(bytes) {
            // Only values come before the first error.
            let pos = values.len() - start;
            let index = meta.first + pos;
            let result = match item {
                Ok((items::RES_RUN, body)) => {
                    extend_with_run(values, body).map_err(|message| Error::Decode {
                        index: Some(index),
                        what: DataKind::Result,
                        message,
                    })
                }
                Ok((tag, body)) => decode_item(tag, body, Some(index), pos, meta).map(|v| values.push(v)),
                Err(e) => Err(Error::Decode {
                    index: Some(index),
                    what: DataKind::Result,
                    message: e.0,
                }),
            };
            if let Err(e) = result {
                return Some((index, e));
            }
        }
        None
    }
}

impl<R: DeserializeOwned + Send + 'static> Sink for Collect<R> {
    fn complete(&self, meta: &ChunkMeta, outcome: ChunkOutcome<'_>) {
        // Straight into the values: a `map` of a million items must not
        // build a million `Result`s first. Plain values that come in order
        // (no user code runs to decode them) go straight to their place
        // in the output, with no copy when the call ends.
        if plain::size_of::<R>().is_some() {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if state.error.is_none() && state.front.len() == meta.first {
                let mut front = std::mem::take(&mut state.front);
                let first_error = Self::decode_into(&mut front, meta, outcome);
                while let Some(part) = state.parts.remove(&front.len()) {
                    front.extend(part);
                }
                state.front = front;
                return self.settle(state, meta, Vec::new(), first_error);
            }
        }
        let mut values = Vec::new();
        let first_error = Self::decode_into(&mut values, meta, outcome);
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.settle(state, meta, values, first_error);
    }
}

impl<R: Send + 'static> Collect<R> {
    /// Records a chunk whose values (if not already in place) are
    /// `values`, and whose first failure is `first_error`.
    fn settle(
        &self,
        mut state: std::sync::MutexGuard<'_, CollectState<R>>,
        meta: &ChunkMeta,
        values: Vec<R>,
        first_error: Option<(usize, Error)>,
    ) {
        if let Some(progress) = &self.progress {
            progress.advance(meta.count, first_error.as_ref().map(|(_, e)| e));
        }
        state.done += meta.count as usize;
        // The call failed: its values are nobody's.
        let unwanted = match first_error {
            Some((at, e)) => {
                if state.error.as_ref().is_none_or(|(old, _)| at < *old) {
                    state.error = Some((at, e));
                }
                // Parts never overlap: the front holds the first items,
                // `values` (when the front does not hold them) this chunk's.
                let mut parts = std::mem::take(&mut state.parts);
                let front = std::mem::take(&mut state.front);
                for (at, part) in [(0, front), (meta.first, values)] {
                    if !part.is_empty() {
                        parts.insert(at, part);
                    }
                }
                parts
            }
            None if state.error.is_none() => {
                if !values.is_empty() {
                    state.parts.insert(meta.first, values);
                }
                BTreeMap::new()
            }
            None => BTreeMap::from([(meta.first, values)]),
        };
        self.finish_if_done(state);
        for value in unwanted.into_values().flatten() {
            drop_shielded(value);
        }
    }
}

/// One chunk's results, for the `imap` iterators.
#[derive(Debug)]
pub(crate) struct ChunkResults<R> {
    /// The input position of its first item.
    pub(crate) first: usize,
    /// One result per item.
    pub(crate) items: Vec<Result<R, Error>>,
    /// When a worker's results for it came in; `None` when the chunk
    /// failed whole (it did not run to its end).
    pub(crate) came: Option<Instant>,
    /// The size of its encoded results.
    pub(crate) bytes: usize,
}

/// The task polling an `imap` as a `Stream`, woken when a chunk arrives.
pub(crate) type StreamWaker = Arc<Mutex<Option<Waker>>>;

/// The sink of `imap` and `imap_unordered`: forwards each decoded chunk.
pub(crate) struct Forward<R> {
    to: Sender<ChunkResults<R>>,
    waker: StreamWaker,
    progress: Option<Progress>,
}

impl<R> Forward<R> {
    pub(crate) fn new(
        to: Sender<ChunkResults<R>>,
        waker: StreamWaker,
        progress: Option<Progress>,
    ) -> Arc<Self> {
        Arc::new(Forward { to, waker, progress })
    }
}

impl<R: DeserializeOwned + Send + 'static> Sink for Forward<R> {
    fn complete(&self, meta: &ChunkMeta, outcome: ChunkOutcome<'_>) {
        let (came, bytes) = match &outcome {
            ChunkOutcome::Failed(_) => (None, 0),
            ChunkOutcome::Results(results) => (Some(Instant::now()), results.len()),
        };
        if let Some(progress) = &self.progress {
            let failure = match &outcome {
                ChunkOutcome::Failed(error) => Some(error),
                ChunkOutcome::Results(_) => None,
            };
            progress.advance(meta.count, failure);
        }
        let results = ChunkResults {
            first: meta.first,
            items: decode_chunk(meta, outcome, true),
            came,
            bytes,
        };
        // The iterator may be gone; then nobody wants the results.
        if let Err(unwanted) = self.to.send(results) {
            for item in unwanted.0.items {
                drop_shielded(item);
            }
        }
        let waker = self.waker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(waker) = waker {
            shielded(|| waker.wake());
        }
    }
}

impl<R: Send + 'static> fmt::Debug for Collect<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Collect")
    }
}

#[cfg(test)]
#[path = "sink_tests.rs"]
mod tests;
