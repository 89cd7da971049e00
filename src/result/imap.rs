//! The lazy iterators of `imap` and `imap_unordered`.
//!
//! Input is read and submitted as results are consumed: at most a window of
//! chunks (four per worker) is submitted and not yet yielded, so an endless
//! or huge input runs in bounded memory. Each call to `next` tops the window
//! up before it waits.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::iter::FusedIterator;
use std::sync::Arc;

use crossbeam_channel::Receiver;

use crate::error::Error;
use crate::pool::job::Job;
use crate::pool::shared::{Admission, Shared};
use crate::result::sink::ChunkResults;

/// Makes the chunk starting at input position `first`; `None` when the
/// input is exhausted.
pub(crate) type Produce<'a> = Box<dyn FnMut(usize) -> Option<Job> + Send + 'a>;

/// What both iterators share. Everything is counted in items (input
/// positions), because the pool may split a chunk on its way to a worker.
pub(crate) struct Stream<'a, R> {
    shared: Arc<Shared>,
    produce: Produce<'a>,
    results: Receiver<ChunkResults<R>>,
    ordered: bool,
    /// The window, in chunks.
    window: usize,
    /// The largest chunk so far, to turn the window into items.
    chunk_size: usize,
    /// Items submitted: the input position of the next chunk.
    submitted: usize,
    /// Items whose results came back.
    received: usize,
    exhausted: bool,
    /// Ordered: the next position to release, and parts that came early
    /// (by their first position).
    next_pos: usize,
    early: BTreeMap<usize, Vec<Result<R, Error>>>,
    ready: VecDeque<Result<R, Error>>,
}

impl<'a, R> Stream<'a, R> {
    pub(crate) fn new(
        shared: Arc<Shared>,
        produce: Produce<'a>,
        results: Receiver<ChunkResults<R>>,
        ordered: bool,
    ) -> Self {
        let window = 4 * shared.processes.max(1);
        let mut stream = Stream {
            shared,
            produce,
            results,
            ordered,
            window,
            chunk_size: 1,
            submitted: 0,
            received: 0,
            exhausted: false,
            next_pos: 0,
            early: BTreeMap::new(),
            ready: VecDeque::new(),
        };
        stream.fill();
        stream
    }

    /// Items submitted and not yet released to the caller.
    fn in_window(&self) -> usize {
        self.submitted
            - if self.ordered {
                self.next_pos
            } else {
                self.received
            }
    }

    fn fill(&mut self) {
        while !self.exhausted && self.in_window() < self.window * self.chunk_size {
            match (self.produce)(self.submitted) {
                Some(job) => {
                    let count = job.ticket.meta.count as usize;
                    self.submitted += count;
                    self.chunk_size = self.chunk_size.max(count);
                    if let Err(refused) = self.shared.submit(job, Admission::Continuation) {
                        // Its items come back as errors, in their place.
                        refused.fail();
                    }
                }
                None => self.exhausted = true,
            }
        }
    }

    fn next_item(&mut self) -> Option<Result<R, Error>> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(item);
            }
            if self.ordered
                && let Some(items) = self.early.remove(&self.next_pos)
            {
                self.next_pos += items.len();
                self.ready.extend(items);
                continue;
            }
            self.fill();
            if self.received == self.submitted {
                return None;
            }
            // Every submitted chunk is completed exactly once (its ticket
            // sees to that), and this stream holds a sender, so this cannot
            // wait forever.
            let (first, items) = self.results.recv().ok()?;
            self.received += items.len();
            if self.ordered {
                self.early.insert(first, items);
            } else {
                self.ready.extend(items);
            }
        }
    }
}

impl<R> fmt::Debug for Stream<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("ordered", &self.ordered)
            .field("submitted_items", &self.submitted)
            .field("received_items", &self.received)
            .field("input_exhausted", &self.exhausted)
            .finish()
    }
}

/// The iterator of [`Pool::imap`](crate::Pool::imap): results in input
/// order, each as soon as it and all before it are done.
///
/// # Examples
///
/// ```
/// let pool = procpool::Pool::new(2)?;
/// let squares: Vec<u64> = pool.imap(|x: u64| x * x, 0..6)?.collect::<Result<_, _>>()?;
/// assert_eq!(squares, [0, 1, 4, 9, 16, 25]);
/// # Ok::<(), procpool::Error>(())
/// ```
pub struct IMap<'a, R>(pub(crate) Stream<'a, R>);

impl<R> Iterator for IMap<'_, R> {
    type Item = Result<R, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next_item()
    }
}

impl<R> FusedIterator for IMap<'_, R> {}

impl<R> fmt::Debug for IMap<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("IMap").field(&self.0).finish()
    }
}

/// The iterator of [`Pool::imap_unordered`](crate::Pool::imap_unordered):
/// results in the order they finish.
///
/// # Examples
///
/// ```
/// let pool = procpool::Pool::new(2)?;
/// let mut squares: Vec<u64> = pool.imap_unordered(|x: u64| x * x, 0..6)?.collect::<Result<_, _>>()?;
/// squares.sort();
/// assert_eq!(squares, [0, 1, 4, 9, 16, 25]);
/// # Ok::<(), procpool::Error>(())
/// ```
pub struct IMapUnordered<'a, R>(pub(crate) Stream<'a, R>);

impl<R> Iterator for IMapUnordered<'_, R> {
    type Item = Result<R, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next_item()
    }
}

impl<R> FusedIterator for IMapUnordered<'_, R> {}

impl<R> fmt::Debug for IMapUnordered<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("IMapUnordered").field(&self.0).finish()
    }
}
