//! The lazy iterators of `imap` and `imap_unordered`.
//!
//! Input is read and submitted as results are consumed: the [`Window`]
//! bounds what is read and not yet yielded (in items and in bytes) and
//! sizes the chunks, so an endless or huge input runs in bounded memory.
//! Taking results tops the window up, each time the results of a chunk are
//! used up and whenever nothing is ready.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::iter::FusedIterator;
use std::time::Instant;

use std::pin::Pin;
use std::task::{Context, Poll};

use crossbeam_channel::{Receiver, TryRecvError};

use crate::error::Error;
use crate::progress::Progress;
use crate::result::sink::{ChunkResults, StreamWaker};
use crate::result::window::Window;

/// Reads, encodes and submits to the pool the chunk of at most `size`
/// items starting at input position `first` (called as
/// `produce(first, size)`); `None` when the input is exhausted.
pub(crate) type Produce<'a> = Box<dyn FnMut(usize, usize) -> Option<Sent> + Send + 'a>;

/// What [`Produce`] sent: a chunk of `count` items, `bytes` encoded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sent {
    pub(crate) count: usize,
    pub(crate) bytes: usize,
}

/// The results of a chunk (or of a part of one) that came back and are not
/// all yielded yet.
struct Part<R> {
    items: std::vec::IntoIter<Result<R, Error>>,
    /// Their encoded size, held against the window until all are yielded.
    bytes: usize,
}

/// What both iterators share. Everything is counted in items (input
/// positions), because the pool may split a chunk on its way to a worker.
pub(crate) struct Stream<'a, R> {
    produce: Produce<'a>,
    results: Receiver<ChunkResults<R>>,
    /// Set by `poll_next` before it returns `Pending`.
    waker: StreamWaker,
    ordered: bool,
    window: Window,
    /// Items submitted: the input position of the next chunk.
    submitted: usize,
    /// Items whose results came back.
    received: usize,
    /// Items yielded to the caller.
    yielded: usize,
    exhausted: bool,
    /// Ordered: the next position to release, and parts that came early
    /// (by their first position).
    next_pos: usize,
    early: BTreeMap<usize, Part<R>>,
    /// Parts to yield, in order.
    ready: VecDeque<Part<R>>,
    progress: Option<Progress>,
}

impl<'a, R> Stream<'a, R> {
    pub(crate) fn new(
        produce: Produce<'a>,
        window: Window,
        results: Receiver<ChunkResults<R>>,
        waker: StreamWaker,
        ordered: bool,
        progress: Option<Progress>,
    ) -> Self {
        let mut stream = Stream {
            produce,
            results,
            waker,
            ordered,
            window,
            submitted: 0,
            received: 0,
            yielded: 0,
            exhausted: false,
            next_pos: 0,
            early: BTreeMap::new(),
            ready: VecDeque::new(),
            progress,
        };
        stream.fill();
        stream
    }

    /// Takes in the results that came back, then reads and submits chunks
    /// while the window allows.
    fn fill(&mut self) {
        while let Ok(chunk) = self.results.try_recv() {
            self.accept(chunk);
        }
        while !self.exhausted && self.window.may_read(self.submitted - self.yielded) {
            let size = self.window.next_size(self.submitted - self.yielded);
            match (self.produce)(self.submitted, size) {
                Some(Sent { count, bytes }) => {
                    self.window.sent(self.submitted, count, bytes, Instant::now());
                    self.submitted += count;
                }
                None => self.exhausted = true,
            }
        }
    }

    /// The next result that may be yielded now, if any. A part used up
    /// frees its room in the window, which is then topped up.
    fn take_ready(&mut self) -> Option<Result<R, Error>> {
        loop {
            if let Some(part) = self.ready.front_mut() {
                let item = part.items.next();
                let used_up = part.items.len() == 0;
                if item.is_some() {
                    self.yielded += 1;
                }
                if used_up {
                    let done = self.ready.pop_front().expect("just seen");
                    self.window.yielded(done.bytes);
                    self.fill();
                }
                match item {
                    Some(item) => return Some(item),
                    None => continue,
                }
            }
            if !self.ordered {
                return None;
            }
            let part = self.early.remove(&self.next_pos)?;
            self.next_pos += part.items.len();
            self.ready.push_back(part);
        }
    }

    /// The next item ready without waiting, after topping the window up;
    /// `Err(true)` when the stream is over, `Err(false)` when nothing is
    /// ready yet.
    fn ready_item(&mut self) -> Result<Result<R, Error>, bool> {
        loop {
            if let Some(item) = self.take_ready() {
                return Ok(item);
            }
            self.fill();
            if let Some(item) = self.take_ready() {
                return Ok(item);
            }
            if self.received == self.submitted {
                debug_assert!(self.exhausted, "an empty window is always topped up");
                if let Some(progress) = self.progress.take() {
                    progress.finish(None);
                }
                return Err(true);
            }
            match self.results.try_recv() {
                Ok(chunk) => self.accept(chunk),
                Err(TryRecvError::Empty) => return Err(false),
                Err(TryRecvError::Disconnected) => return Err(true),
            }
        }
    }

    fn accept(&mut self, chunk: ChunkResults<R>) {
        let count = chunk.items.len();
        self.received += count;
        self.window.came(chunk.first, count, chunk.came, chunk.bytes);
        let part = Part {
            items: chunk.items.into_iter(),
            bytes: chunk.bytes,
        };
        if self.ordered {
            self.early.insert(chunk.first, part);
        } else {
            self.ready.push_back(part);
        }
    }

    fn next_item(&mut self) -> Option<Result<R, Error>> {
        loop {
            match self.ready_item() {
                Ok(item) => return Some(item),
                Err(true) => return None,
                // Every submitted chunk is completed exactly once (its
                // ticket sees to that), and this stream holds a sender, so
                // this cannot wait forever.
                Err(false) => self.accept(self.results.recv().ok()?),
            }
        }
    }

    fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<R, Error>>> {
        match self.ready_item() {
            Ok(item) => return Poll::Ready(Some(item)),
            Err(true) => return Poll::Ready(None),
            Err(false) => {}
        }
        *self.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        // A chunk may have come in before the waker was in place.
        match self.ready_item() {
            Ok(item) => Poll::Ready(Some(item)),
            Err(true) => Poll::Ready(None),
            Err(false) => Poll::Pending,
        }
    }
}

impl<R> Drop for Stream<'_, R> {
    fn drop(&mut self) {
        // Dropped before its end: the tasks still running are nobody's
        // progress any more.
        if let Some(progress) = self.progress.take() {
            progress.stop();
        }
    }
}

impl<R> fmt::Debug for Stream<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("ordered", &self.ordered)
            .field("submitted_items", &self.submitted)
            .field("received_items", &self.received)
            .field("yielded_items", &self.yielded)
            .field("chunk_size", &self.window.chunk_size())
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

impl<'a, R> IMap<'a, R> {
    /// The same results as a [`futures_core::Stream`], for `async` code:
    /// polling never waits for a result; the pool wakes the task when
    /// results come in. Works on any executor. A poll does top the window
    /// up from your input iterator (encoding its items and handing them to
    /// idle workers), so give a stream an input that is ready, such as a
    /// range or a `Vec`: an input that itself waits waits inside the poll.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::StreamExt;
    ///
    /// let pool = procpool::Pool::new(2)?;
    /// let stream = pool.imap(|x: u64| x * 2, 0..5)?.into_stream();
    /// let doubled: Vec<u64> = futures::executor::block_on(stream.map(Result::unwrap).collect());
    /// assert_eq!(doubled, [0, 2, 4, 6, 8]);
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn into_stream(self) -> IMapStream<'a, R> {
        IMapStream(self.0)
    }
}

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

impl<'a, R> IMapUnordered<'a, R> {
    /// The same results as a [`futures_core::Stream`], in the order they
    /// finish; see [`IMap::into_stream`].
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::StreamExt;
    ///
    /// let pool = procpool::Pool::new(2)?;
    /// let stream = pool.imap_unordered(|x: u64| x + 1, 0..4)?.into_stream();
    /// let mut all: Vec<u64> = futures::executor::block_on(stream.map(Result::unwrap).collect());
    /// all.sort();
    /// assert_eq!(all, [1, 2, 3, 4]);
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn into_stream(self) -> IMapStream<'a, R> {
        IMapStream(self.0)
    }
}

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

/// The results of an `imap` or `imap_unordered` as a
/// [`futures_core::Stream`]: made by [`IMap::into_stream`] and
/// [`IMapUnordered::into_stream`]. Polling never waits for a result (see
/// [`IMap::into_stream`] for the input side).
///
/// # Examples
///
/// ```
/// use futures::StreamExt;
///
/// fn square(x: u64) -> u64 { x * x }
///
/// let pool = procpool::Pool::new(2)?;
/// let mut stream = pool.imap(square, 1..4)?.into_stream();
/// futures::executor::block_on(async {
///     while let Some(square) = stream.next().await {
///         assert!(square? > 0);
///     }
///     Ok::<(), procpool::Error>(())
/// })?;
/// # Ok::<(), procpool::Error>(())
/// ```
pub struct IMapStream<'a, R>(Stream<'a, R>);

// Results are never pinned: they are only moved out, whole.
impl<R> Unpin for IMapStream<'_, R> {}

impl<R> futures_core::Stream for IMapStream<'_, R> {
    type Item = Result<R, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().0.poll_item(cx)
    }
}

impl<R> fmt::Debug for IMapStream<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("IMapStream").field(&self.0).finish()
    }
}
