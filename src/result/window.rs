//! The window of an `imap`: how much of the input is read ahead of the
//! results the caller has taken, and in chunks of what size.
//!
//! # Bounds
//!
//! Items read and not yet yielded to the caller (waiting, running, or done
//! and not yet taken) are at most [`CHUNKS_PER_WORKER`] chunks per worker
//! at the current chunk size; with the default chunk size that is never
//! more than [`MAX_ITEMS`]. Bytes held (the encoded arguments of chunks not
//! yet back, and the encoded results not yet taken) stop the reading at
//! [`BYTES_PER_WORKER`] per worker; past that, one more chunk is read only
//! while fewer chunks are out than there are workers (so that no worker
//! idles for want of a large item) and the results held are under the
//! budget. So a window holds at most its budget and one chunk per worker.
//!
//! # Chunk size
//!
//! A chunk size the caller chose is kept. Otherwise chunks start at one
//! item, so the first result comes after one task's time, and the size
//! follows the pace of the chunks that come back: the items that fit in
//! [`ROUND_TRIP`] at the pace of the last chunk (from its submission to its
//! results, so queueing counts and the estimate errs towards smaller
//! chunks), at most double or half the size before, at most
//! `MAX_ITEMS / (CHUNKS_PER_WORKER × workers)`. With up to four chunks per
//! worker in flight, a chunk then runs for about a quarter of the round
//! trip: ~10 ms, long enough that the cost of a chunk (a few tens of µs)
//! is lost in it, short enough that results keep coming.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Chunks read ahead per worker: one running, the others waiting for it.
pub(crate) const CHUNKS_PER_WORKER: usize = 4;

/// The most items a window with the default chunk size holds.
pub(crate) const MAX_ITEMS: usize = 1 << 18;

/// The bytes (arguments out and results not yet taken) per worker past
/// which the window reads no more.
pub(crate) const BYTES_PER_WORKER: usize = 8 << 20;

/// With the default chunk size, a chunk ends once its encoded arguments
/// reach this size: a worker's share of the byte budget is then several
/// chunks, so it has the next while it runs one.
pub(crate) const CHUNK_BYTES: usize = BYTES_PER_WORKER / CHUNKS_PER_WORKER;

/// The time from a chunk's submission to its results that the default
/// chunk size aims at.
pub(crate) const ROUND_TRIP: Duration = Duration::from_millis(40);

/// A chunk whose results have not all come back.
#[derive(Debug)]
struct Out {
    sent: Instant,
    /// Its items whose results are still to come (the pool may split a
    /// chunk, and its parts come back one by one).
    left: usize,
    /// Its encoded arguments.
    bytes: usize,
}

/// How far an `imap` reads ahead, and the size of its next chunk.
#[derive(Debug)]
pub(crate) struct Window {
    workers: usize,
    size: usize,
    /// Whether the size follows the pace (the caller chose none).
    adaptive: bool,
    max_size: usize,
    /// Chunks out, by the input position of their first item.
    out: BTreeMap<usize, Out>,
    input_bytes: usize,
    result_bytes: usize,
    budget: usize,
}

impl Window {
    /// The window of a call on `workers` workers, with the chunk size the
    /// caller chose, if any.
    pub(crate) fn new(workers: usize, chunksize: Option<usize>) -> Window {
        let workers = workers.max(1);
        let (size, adaptive) = match chunksize {
            Some(size) => (size.max(1), false),
            None => (1, true),
        };
        Window {
            workers,
            size,
            adaptive,
            max_size: (MAX_ITEMS / (CHUNKS_PER_WORKER * workers)).max(1),
            out: BTreeMap::new(),
            input_bytes: 0,
            result_bytes: 0,
            budget: BYTES_PER_WORKER.saturating_mul(workers),
        }
    }

    /// The size of the next chunk, in items.
    pub(crate) fn chunk_size(&self) -> usize {
        self.size
    }

    /// Whether another chunk may be read, with `held` items read and not
    /// yet yielded.
    pub(crate) fn may_read(&self, held: usize) -> bool {
        let items = self.size.saturating_mul(CHUNKS_PER_WORKER * self.workers);
        if held >= items {
            return false;
        }
        let bytes = self.input_bytes + self.result_bytes;
        bytes < self.budget || (self.out.len() < self.workers && self.result_bytes < self.budget)
    }

    /// The size of the next chunk, with `held` items read and not yet
    /// yielded: the chunk size, cut so that the window never holds more
    /// than its item bound (call it when [`may_read`](Self::may_read)).
    pub(crate) fn next_size(&self, held: usize) -> usize {
        let items = self.size.saturating_mul(CHUNKS_PER_WORKER * self.workers);
        self.size.min(items.saturating_sub(held)).max(1)
    }

    /// A chunk of `count` items from input position `first`, `bytes` long,
    /// was submitted at `at`.
    pub(crate) fn sent(&mut self, first: usize, count: usize, bytes: usize, at: Instant) {
        self.input_bytes += bytes;
        let out = Out {
            sent: at,
            left: count,
            bytes,
        };
        self.out.insert(first, out);
    }

    /// The results of `count` items from input position `first` (a chunk,
    /// or a part of one) came back: at `came` from a worker, `bytes` of
    /// them encoded, or (`None`) failed without running.
    pub(crate) fn came(&mut self, first: usize, count: usize, came: Option<Instant>, bytes: usize) {
        self.result_bytes += bytes;
        let Some((&start, out)) = self.out.range_mut(..=first).next_back() else {
            debug_assert!(false, "results for items {first}.. that were never sent");
            return;
        };
        out.left = out.left.saturating_sub(count);
        let sent = out.sent;
        if out.left == 0 {
            self.input_bytes -= out.bytes;
            self.out.remove(&start);
        }
        if let (true, Some(came)) = (self.adaptive, came) {
            self.adapt(count, came.saturating_duration_since(sent));
        }
    }

    /// Results that were `bytes` long (encoded) were all yielded.
    pub(crate) fn yielded(&mut self, bytes: usize) {
        self.result_bytes -= bytes;
    }

    /// Sizes the next chunks to what fits in [`ROUND_TRIP`] at the pace of
    /// a chunk of `count` items that took `took`.
    fn adapt(&mut self, count: usize, took: Duration) {
        let took = took.as_nanos().max(1);
        let fits = ROUND_TRIP.as_nanos() * count as u128 / took;
        let fits = usize::try_from(fits).unwrap_or(usize::MAX);
        self.size = fits
            .clamp((self.size / 2).max(1), self.size.saturating_mul(2))
            .min(self.max_size);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Sends a chunk of the window's size and returns its first position.
    fn send(w: &mut Window, first: &mut usize, bytes: usize, at: Instant) -> usize {
        let start = *first;
        let count = w.chunk_size();
        w.sent(start, count, bytes, at);
        *first += count;
        start
    }

    #[test]
    fn quick_chunks_double_the_size_up_to_the_cap() {
        let mut w = Window::new(2, None);
        assert_eq!(w.chunk_size(), 1, "the first result comes after one task");
        let (t0, mut first) = (Instant::now(), 0);
        let mut sizes = Vec::new();
        for _ in 0..20 {
            let count = w.chunk_size();
            let at = send(&mut w, &mut first, 8, t0);
            w.came(at, count, Some(t0 + MS), 8);
            w.yielded(8);
            sizes.push(w.chunk_size());
        }
        assert_eq!(sizes[..4], [2, 4, 8, 16]);
        assert_eq!(*sizes.last().unwrap(), MAX_ITEMS / (CHUNKS_PER_WORKER * 2));
    }

    #[test]
    fn slow_chunks_halve_the_size_and_settle_on_the_round_trip() {
        let mut w = Window::new(1, None);
        w.size = 64;
        let t0 = Instant::now();
        // 64 items in 400 ms: 10 times too slow, but halved at most.
        w.sent(0, 64, 10, t0);
        w.came(0, 64, Some(t0 + 400 * MS), 0);
        assert_eq!(w.chunk_size(), 32);
        // 32 items in 80 ms: 16 fit in the round trip.
        w.sent(64, 32, 10, t0);
        w.came(64, 32, Some(t0 + 80 * MS), 0);
        assert_eq!(w.chunk_size(), 16);
        // One-item tasks of a second stay one item.
        w.size = 1;
        w.sent(96, 1, 10, t0);
        w.came(96, 1, Some(t0 + 1000 * MS), 0);
        assert_eq!(w.chunk_size(), 1);
    }

    #[test]
    fn a_chosen_size_is_kept_and_failed_chunks_teach_nothing() {
        let mut w = Window::new(2, Some(5));
        let t0 = Instant::now();
        w.sent(0, 5, 10, t0);
        w.came(0, 5, Some(t0 + MS), 0);
        assert_eq!(w.chunk_size(), 5);
        let mut w = Window::new(2, None);
        w.sent(0, 1, 10, t0);
        w.came(0, 1, None, 0);
        assert_eq!(w.chunk_size(), 1);
    }

    #[test]
    fn items_held_stop_the_reading() {
        let w = Window::new(2, Some(3));
        assert!(w.may_read(0));
        assert!(w.may_read(3 * CHUNKS_PER_WORKER * 2 - 1));
        assert!(!w.may_read(3 * CHUNKS_PER_WORKER * 2));
        // The last chunk is cut to the bound.
        assert_eq!(w.next_size(0), 3);
        assert_eq!(w.next_size(3 * CHUNKS_PER_WORKER * 2 - 2), 2);
        assert_eq!(w.next_size(3 * CHUNKS_PER_WORKER * 2 - 1), 1);
    }

    #[test]
    fn bytes_out_stop_the_reading_once_every_worker_has_a_chunk() {
        let mut w = Window::new(2, None);
        let t0 = Instant::now();
        let big = BYTES_PER_WORKER * 2;
        // One chunk over the whole budget: the other worker still gets one.
        w.sent(0, 2, big, t0);
        assert!(w.may_read(2));
        w.sent(2, 1, big, t0);
        assert!(!w.may_read(3), "each worker has a chunk, and the budget is spent");
        // The pool split the first chunk: its bytes go when both parts are
        // back.
        w.came(0, 1, Some(t0), 0);
        assert!(!w.may_read(3));
        w.came(1, 1, Some(t0), 0);
        assert_eq!(w.out.len(), 1);
        assert!(w.may_read(3));
    }

    #[test]
    fn results_not_yet_taken_count_against_the_budget() {
        let mut w = Window::new(1, None);
        let t0 = Instant::now();
        w.sent(0, 1, 10, t0);
        w.came(0, 1, Some(t0), BYTES_PER_WORKER);
        assert!(
            !w.may_read(1),
            "a worker idles, but the results held fill the budget"
        );
        w.yielded(BYTES_PER_WORKER);
        assert!(w.may_read(0));
    }
}
