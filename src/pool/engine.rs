//! The engine behind every call: turns a call's items into jobs (chunks)
//! and submits them, and builds the result the caller holds.

use std::sync::Arc;

use crossbeam_channel::unbounded;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::pool::job::Encoder;
use crate::pool::policy::TaskPolicy;
use crate::pool::shared::{Admission, Shared};
use crate::progress::Progress;
use crate::result::callbacks::Callbacks;
use crate::result::imap::{Sent, Stream};
use crate::result::sink::{Collect, Forward, OneShot, Sink, StreamWaker};
use crate::result::slot::{AsyncResult, Canceller, Resolver};
use crate::result::window::{self, Window};
use crate::task::Kernel;

/// CPython's default chunk size for `n` items on `workers` workers:
/// `ceil(n / (4 * workers))`.
pub(crate) fn default_chunksize(n: usize, workers: usize) -> usize {
    n.div_ceil(4 * workers.max(1))
}

/// Tasks with a timeout go to workers one at a time, so that each has its
/// own deadline.
fn one_at_a_time(chunksize: Option<usize>, policy: TaskPolicy) -> Option<usize> {
    match policy.timeout {
        Some(_) => Some(1),
        None => chunksize,
    }
}

fn check_chunksize(chunksize: Option<usize>) -> Result<(), Error> {
    match chunksize {
        Some(0) => Err(Error::InvalidArgument("the chunk size must be at least 1".into())),
        _ => Ok(()),
    }
}

/// The exact length of `items`, when its size hint gives one.
fn exact_len(items: &impl Iterator) -> Option<usize> {
    match items.size_hint() {
        (lo, Some(hi)) if lo == hi => Some(lo),
        _ => None,
    }
}

pub(crate) fn apply<K>(
    shared: &Arc<Shared>,
    func: K::Func,
    arg: K::In,
    policy: TaskPolicy,
    callbacks: Option<Callbacks<K::Out>>,
) -> Result<AsyncResult<K::Out>, Error>
where
    K: Kernel,
    K::In: Serialize,
    K::Out: DeserializeOwned + Send,
{
    shared.check_open()?;
    let encoder = Encoder::new::<K>(shared, func, policy)?;
    let (slot, resolver) = Resolver::new(callbacks, &shared.callback_sender(), || shared.pending.token());
    if shared.is_remote() {
        slot.comes_from_far();
    }
    let sink: Arc<dyn Sink> = OneShot::new(resolver);
    let job = encoder
        .chunk(shared, &mut std::iter::once(arg), 1, 0, &sink)
        .expect("one item makes one chunk");
    // Refused: the job (and its resolver) is dropped; the caller gets the
    // reason instead of a result.
    shared
        .submit(job, Admission::New)
        .map_err(|refused| refused.into_error())?;
    Ok(AsyncResult::new(
        slot,
        Some(Canceller::new(shared, encoder.token())),
    ))
}

pub(crate) fn map<K, I>(
    shared: &Arc<Shared>,
    func: K::Func,
    items: I,
    chunksize: Option<usize>,
    policy: TaskPolicy,
    callbacks: Option<Callbacks<Vec<K::Out>>>,
    progress: Option<Progress>,
) -> Result<AsyncResult<Vec<K::Out>>, Error>
where
    K: Kernel,
    K::In: Serialize,
    K::Out: DeserializeOwned + Send,
    I: IntoIterator<Item = K::In>,
{
    check_chunksize(chunksize)?;
    let chunksize = one_at_a_time(chunksize, policy);
    let encoder = Encoder::new::<K>(shared, func, policy)?;
    // The call counts as work from before it is accepted until all its
    // chunks are submitted: `join` either waits for it or has begun before
    // it, and then the call is refused whole, never cut short.
    let feeding = shared.pending.token();
    shared.check_open()?;
    let items = items.into_iter();
    let workers = shared.processes;
    let result = match (chunksize, exact_len(&items)) {
        (Some(size), _) => map_chunks(shared, encoder, items, size, callbacks, progress),
        (None, Some(n)) => {
            let size = default_chunksize(n, workers);
            map_chunks(shared, encoder.bounded(), items, size, callbacks, progress)
        }
        (None, None) => {
            // Like CPython: a length is needed for the default chunk size.
            let items: Vec<_> = items.collect();
            let size = default_chunksize(items.len(), workers);
            map_chunks(
                shared,
                encoder.bounded(),
                items.into_iter(),
                size,
                callbacks,
                progress,
            )
        }
    };
    drop(feeding);
    Ok(result)
}

fn map_chunks<A, R, I>(
    shared: &Arc<Shared>,
    encoder: Encoder,
    mut items: I,
    size: usize,
    callbacks: Option<Callbacks<Vec<R>>>,
    progress: Option<Progress>,
) -> AsyncResult<Vec<R>>
where
    A: Serialize + 'static,
    R: DeserializeOwned + Send + 'static,
    I: Iterator<Item = A>,
{
    let (slot, resolver) = Resolver::new(callbacks, &shared.callback_sender(), || shared.pending.token());
    if shared.is_remote() {
        slot.comes_from_far();
    }
    let total = exact_len(&items);
    if let Some(progress) = &progress {
        progress.start(total);
    }
    let collect = Collect::new(resolver, progress.clone());
    let sink: Arc<dyn Sink> = Arc::clone(&collect) as Arc<dyn Sink>;
    let mut first = 0;
    while let Some(job) = encoder.chunk(shared, &mut items, size.max(1), first, &sink) {
        first += job.ticket.meta.count as usize;
        // The call was accepted (see `map`): its chunks continue it.
        if let Err(refused) = shared.submit(job, Admission::Continuation) {
            refused.fail();
        }
    }
    if let (Some(progress), None) = (&progress, total) {
        progress.start(Some(first));
    }
    collect.seal(first);
    AsyncResult::new(slot, Some(Canceller::new(shared, encoder.token())))
}

/// The lazy results of `imap` (`ordered`) or `imap_unordered`. Without a
/// chunk size from the caller, chunks start at one item and follow the
/// pace of the work, whatever the input's length (see [`window`]).
///
/// [`window`]: crate::result::window
pub(crate) fn stream<'a, K, I>(
    shared: &Arc<Shared>,
    func: K::Func,
    items: I,
    chunksize: Option<usize>,
    policy: TaskPolicy,
    ordered: bool,
    progress: Option<Progress>,
) -> Result<Stream<'a, K::Out>, Error>
where
    K: Kernel,
    K::In: Serialize,
    K::Out: DeserializeOwned + Send,
    I: IntoIterator<Item = K::In>,
    I::IntoIter: Send + 'a,
{
    check_chunksize(chunksize)?;
    let chunksize = one_at_a_time(chunksize, policy);
    let mut encoder = Encoder::new::<K>(shared, func, policy)?;
    if chunksize.is_none() {
        encoder = encoder.bounded_to(window::CHUNK_BYTES);
    }
    // As in `map`: accepted whole with its first window, or refused.
    let opening = shared.pending.token();
    shared.check_open()?;
    let mut items = items.into_iter();
    if let Some(progress) = &progress {
        progress.start(exact_len(&items));
    }
    let window = Window::new(shared.processes, chunksize);
    let (to, results) = unbounded();
    let waker = StreamWaker::default();
    let sink: Arc<dyn Sink> = Forward::new(to, Arc::clone(&waker), progress.clone());
    let producer = Arc::clone(shared);
    let produce = Box::new(move |first, size| {
        let job = encoder.chunk(&producer, &mut items, size, first, &sink)?;
        let sent = Sent {
            count: job.ticket.meta.count as usize,
            bytes: job.frame.len(),
        };
        if let Err(refused) = producer.submit(job, Admission::Continuation) {
            // Its items come back as errors, in their place.
            refused.fail();
        }
        Some(sent)
    });
    let stream = Stream::new(produce, window, results, waker, ordered, progress);
    drop(opening);
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_chunksize_matches_cpython() {
        // CPython: chunksize, extra = divmod(n, workers * 4); if extra: chunksize += 1
        for (n, workers, expected) in [
            (0, 5, 0),
            (1, 5, 1),
            (100, 5, 5),
            (101, 5, 6),
            (1_000_000, 2, 125_000),
            (7, 1, 2),
        ] {
            assert_eq!(default_chunksize(n, workers), expected, "n={n} workers={workers}");
        }
    }

    #[test]
    fn exact_len_trusts_only_exact_hints() {
        assert_eq!(exact_len(&(0..10)), Some(10));
        assert_eq!(exact_len(&(0..10).filter(|x| x % 2 == 0)), None);
    }
}
