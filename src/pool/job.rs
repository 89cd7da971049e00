//! A job is one chunk on its way to a worker: the encoded `TASK` frame, and
//! the [`Ticket`] that says where its outcome goes.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::error::{DataKind, Error};
use crate::func::Image;
use crate::pool::policy::TaskPolicy;
use crate::pool::shared::Shared;
use crate::pool::stats::Stats;
use crate::protocol::attach::{self, Collect, TaskFrame};
use crate::protocol::items::{self, PushError};
use crate::protocol::message::{self, Target};
use crate::protocol::{codec, plain};
use crate::result::callbacks::CallToken;
use crate::result::pending::PendingToken;
use crate::result::sink::{ChunkMeta, ChunkOutcome, Sink};
use crate::task::Kernel;

/// One chunk to run.
pub(crate) struct Job {
    /// The whole `TASK` frame, ready to send, and the shared regions it
    /// names (kept until the job is done with, retries included).
    pub(crate) frame: TaskFrame,
    pub(crate) ticket: Ticket,
    /// Set when the chunk cannot be sent at all (its frame is over the
    /// limit): the job then fails with it instead of being queued.
    pub(crate) unsendable: Option<Error>,
}

impl Job {
    /// Fails the whole chunk without running it.
    pub(crate) fn fail(self, error: Error) {
        self.ticket.complete(ChunkOutcome::Failed(error));
    }

    /// Splits the chunk after its first `at` items (`0 < at < count`): this
    /// job keeps its id and the first items, job `tail` (which holds
    /// `pending`) gets the rest. Both deliver to the same sink.
    pub(crate) fn split(self, at: u32, tail: u64, pending: PendingToken) -> (Job, Job) {
        let Job {
            frame,
            mut ticket,
            unsendable,
        } = self;
        debug_assert!(unsendable.is_none(), "an unsendable job is never dispatched");
        let (head_frame, tail_frame) =
            message::split_task(&frame, at, ticket.id, tail).expect("a split inside the chunk");
        // Both parts keep every region: which items name which is not
        // worth finding out.
        let (head_frame, tail_frame) = (frame.with_bytes(head_frame), frame.with_bytes(tail_frame));
        let rest = ticket.split_off(at, tail, pending);
        (
            Job {
                frame: head_frame,
                ticket,
                unsendable: None,
            },
            Job {
                frame: tail_frame,
                ticket: rest,
                unsendable: None,
            },
        )
    }
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("id", &self.ticket.id)
            .field("bytes", &self.frame.len())
            .finish()
    }
}

/// Where a chunk's outcome goes. Completed exactly once: explicitly, or on
/// drop with [`Error::Terminated`], so that no waiter is ever left hanging.
pub(crate) struct Ticket {
    pub(crate) id: u64,
    pub(crate) meta: ChunkMeta,
    pub(crate) policy: TaskPolicy,
    /// Which run of the chunk this is: 1, then 2, ... when retried.
    pub(crate) attempt: u32,
    /// How many times the chunk went back to the queue because its worker
    /// died before starting it (which the worker's marker says, and a
    /// hostile task can forge: see `supervisor::report`).
    pub(crate) unstarted_requeues: u32,
    /// The call the chunk belongs to, for cancelling it.
    pub(crate) call: Arc<CallToken>,
    stats: Arc<Stats>,
    sink: Option<Arc<dyn Sink>>,
    _pending: PendingToken,
}

impl Ticket {
    /// A ticket for a chunk that came from elsewhere (a worker host runs
    /// a caller's chunk): its outcome goes to `sink`.
    #[cfg(feature = "redis")]
    pub(crate) fn new(
        id: u64,
        count: u32,
        policy: TaskPolicy,
        call: Arc<CallToken>,
        shared: &Shared,
        sink: Arc<dyn Sink>,
    ) -> Ticket {
        Ticket {
            id,
            meta: ChunkMeta {
                first: 0,
                count,
                holes: Vec::new(),
            },
            policy,
            attempt: 1,
            unstarted_requeues: 0,
            call,
            stats: Arc::clone(&shared.stats),
            sink: Some(sink),
            _pending: shared.pending.token(),
        }
    }

    /// Whether the chunk may run again after its worker died.
    pub(crate) fn may_retry(&self) -> bool {
        crate::pool::shared::plan::runs_again(self.attempt, self.policy.retries, self.call.is_cancelled())
    }

    /// Keeps the first `at` items here and returns a ticket, with id `id`,
    /// for the rest.
    /// Splits off the first `at` items as a ticket with id `head`, for
    /// results that came in a part; this ticket keeps its id and the rest.
    pub(crate) fn split_head(&mut self, at: u32, head: u64, pending: PendingToken) -> Ticket {
        let rest = self.split_off(at, self.id, pending);
        let mut first = std::mem::replace(self, rest);
        first.id = head;
        first
    }

    fn split_off(&mut self, at: u32, id: u64, pending: PendingToken) -> Ticket {
        let holes = std::mem::take(&mut self.meta.holes);
        let (head, tail): (Vec<_>, Vec<_>) = holes.into_iter().partition(|(pos, _)| *pos < at);
        self.meta.holes = head;
        let rest = ChunkMeta {
            first: self.meta.first + at as usize,
            count: self.meta.count - at,
            holes: tail.into_iter().map(|(pos, e)| (pos - at, e)).collect(),
        };
        self.meta.count = at;
        Ticket {
            id,
            meta: rest,
            policy: self.policy,
            attempt: self.attempt,
            unstarted_requeues: self.unstarted_requeues,
            call: Arc::clone(&self.call),
            stats: Arc::clone(&self.stats),
            sink: self.sink.clone(),
            _pending: pending,
        }
    }

    pub(crate) fn complete(mut self, outcome: ChunkOutcome<'_>) {
        if let Some(sink) = self.sink.take() {
            if let ChunkOutcome::Failed(_) = &outcome {
                self.stats.chunk_failed(self.meta.count);
            }
            sink.complete(&self.meta, outcome);
        }
    }

    /// Drops the ticket without an outcome, for a job the caller is told
    /// about directly: its callbacks do not run, and its result (which
    /// nobody holds) resolves to [`Error::Terminated`].
    pub(crate) fn abandon(mut self) {
        self.sink = None;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(sink) = self.sink.take() {
            self.stats.chunk_failed(self.meta.count);
            sink.complete(&self.meta, ChunkOutcome::Failed(Error::Terminated));
        }
    }
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("id", &self.id)
            .field("meta", &self.meta)
            .finish()
    }
}

/// Encodes chunks of arguments for one call of one task function.
#[derive(Debug, Clone)]
pub(crate) struct Encoder {
    call: Target,
    max_body: usize,
    policy: TaskPolicy,
    token: Arc<CallToken>,
    /// Ends a chunk early once its frame is this large (default chunk
    /// sizes only: a chunk size the caller chose is kept).
    chunk_bytes: Option<usize>,
}

/// With the default chunk size, a chunk ends once its encoded items reach
/// this size: large items then go a few at a time, so that workers start
/// sooner and frames stay small enough for the allocator to reuse.
pub(crate) const DEFAULT_CHUNK_BYTES: usize = 8 << 20;

/// A chunk ends once its items name this many shared regions
/// ([`Bytes`](crate::Bytes)), whatever the chunk size: each is a descriptor
/// the worker holds while it runs the chunk, and a sandboxed worker may
/// hold only a few (`Sandbox::max_open_files`, 64 by default).
pub(crate) const MAX_REGIONS: usize = 16;

/// With the default chunk size, a chunk of plain values (see
/// [`plain`]) ends at this size: at a few nanoseconds an item, chunks of
/// 32 k `u64`s keep both ends busy (the parent encodes and decodes one
/// chunk while workers run others) with a per-chunk cost lost in the
/// work.
pub(crate) const PLAIN_CHUNK_BYTES: usize = 256 << 10;

impl Encoder {
    /// The encoder for `func` run by kernel `K`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when the function is not part of this
    /// executable's image (it comes from a shared library), so a worker
    /// could not find it.
    pub(crate) fn new<K: Kernel>(
        shared: &Shared,
        func: K::Func,
        policy: TaskPolicy,
    ) -> Result<Encoder, Error> {
        let call = call_for::<K>(func)?;
        Ok(Encoder {
            call,
            max_body: shared.start.max_body,
            policy,
            token: Arc::default(),
            chunk_bytes: None,
        })
    }

    /// Ends chunks early at [`DEFAULT_CHUNK_BYTES`] (for a default chunk
    /// size).
    pub(crate) fn bounded(self) -> Self {
        self.bounded_to(DEFAULT_CHUNK_BYTES)
    }

    /// Ends a chunk once its frame reaches `bytes` (for a default chunk
    /// size): the item that reaches it is the chunk's last.
    pub(crate) fn bounded_to(mut self, bytes: usize) -> Self {
        self.chunk_bytes = Some(bytes);
        self
    }

    /// The token that cancels this call.
    pub(crate) fn token(&self) -> &Arc<CallToken> {
        &self.token
    }

    /// Takes up to `size` items from `items` and encodes them as a chunk
    /// whose first item is at input position `first`. Returns `None` when
    /// `items` has nothing left.
    pub(crate) fn chunk<A: Serialize + 'static>(
        &self,
        shared: &Shared,
        items: &mut impl Iterator<Item = A>,
        size: usize,
        first: usize,
        sink: &Arc<dyn Sink>,
    ) -> Option<Job> {
        // Shared regions the items name go beside the frame; none cross
        // to another machine (their bytes go inline).
        let regions = (!shared.is_remote()).then(Collect::start);
        // Room for the headers and a small item: an `apply` allocates once.
        let mut frame = Vec::with_capacity(128);
        message::start_task(&mut frame);
        let mut holes = Vec::new();
        let count = shared.stats.parent_encoding(|| {
            let count = match plain::size_of::<A>() {
                Some(width) => self.plain_items(items, size, width, &mut frame),
                None => self.items(items, size, &mut frame, &mut holes),
            };
            (count, count, frame.len())
        });
        let attached = regions.map(Collect::finish).unwrap_or_default();
        if count == 0 {
            return None;
        }
        let id = shared.next_job_id();
        let unsendable = message::finish_task(&mut frame, id, self.call, count, self.max_body)
            .err()
            .map(|size| Error::TooLarge {
                index: None,
                what: DataKind::Argument,
                size,
                limit: self.max_body,
            });
        Some(Job {
            frame: TaskFrame::new(frame, attached),
            ticket: Ticket {
                id,
                meta: ChunkMeta { first, count, holes },
                policy: self.policy,
                attempt: 1,
                unstarted_requeues: 0,
                call: Arc::clone(&self.token),
                stats: Arc::clone(&shared.stats),
                sink: Some(Arc::clone(sink)),
                _pending: shared.pending.token(),
            },
            unsendable,
        })
    }

    /// Appends up to `size` items to `frame`, each encoded on its own;
    /// an item that cannot be encoded becomes a hole (recorded in `holes`).
    /// Returns how many.
    fn items<A: Serialize>(
        &self,
        items: &mut impl Iterator<Item = A>,
        size: usize,
        frame: &mut Vec<u8>,
        holes: &mut Vec<(u32, Error)>,
    ) -> u32 {
        let mut count = 0u32;
        for item in items.by_ref().take(size) {
            if let Err(e) = items::push_with(frame, items::ARG_VALUE, |buf| codec::encode(&item, buf)) {
                let error = match e {
                    PushError::Body(message) => Error::Encode {
                        index: None,
                        what: DataKind::Argument,
                        message,
                    },
                    PushError::TooLarge(size) => Error::TooLarge {
                        index: None,
                        what: DataKind::Argument,
                        size,
                        limit: u32::MAX as usize,
                    },
                };
                items::push_bytes(frame, items::ARG_HOLE, &[]);
                holes.push((count, error));
            }
            count += 1;
            if self.chunk_bytes.is_some_and(|max| frame.len() >= max) || attach::collected() >= MAX_REGIONS {
                break;
            }
        }
        count
    }

    /// Appends up to `size` items of a plain type of `width` bytes to
    /// `frame`, as runs of their bytes; returns how many.
    fn plain_items<A: 'static>(
        &self,
        items: &mut impl Iterator<Item = A>,
        size: usize,
        width: usize,
        frame: &mut Vec<u8>,
    ) -> u32 {
        let bound = self.chunk_bytes.map(|max| max.min(PLAIN_CHUNK_BYTES));
        let size = size.min(bound.map_or(usize::MAX, |max| max.div_ceil(width)));
        if size == 1 {
            // An `apply`: no `Vec` for one value.
            let Some(item) = items.next() else { return 0 };
            items::push_run(frame, items::ARG_RUN, width, 1, |buf| {
                assert!(plain::put_one(&item, buf), "a plain type puts its bytes");
            });
            return 1;
        }
        let mut count = 0;
        let mut run = Vec::new();
        while count < size {
            run.clear();
            run.extend(items.by_ref().take((size - count).min(items::MAX_RUN)));
            if run.is_empty() {
                break;
            }
            items::push_run(frame, items::ARG_RUN, width, run.len(), |buf| {
                assert!(plain::put_all(&run, buf), "a plain type puts its bytes");
            });
            count += run.len();
        }
        // At most `u32::MAX` items: `size` comes from a chunk size, and
        // larger chunks fail as too large to send.
        u32::try_from(count).unwrap_or(u32::MAX)
    }
}

/// The wire description of `func` run by kernel `K`.
fn call_for<K: Kernel>(func: K::Func) -> Result<Target, Error> {
    let image = Image::current().map_err(Error::Bootstrap)?;
    K::target_for(func, image).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "the task function ({}) is not part of this program's executable (does it come from \
             a shared library?); workers can only run functions linked into the program",
            std::any::type_name::<K::Func>()
        ))
    })
}

/// The `TASK` frame that runs a pool's initializer `func(arg)` in a new
/// worker: job 0, one item.
///
/// # Errors
///
/// [`Error::InvalidArgument`] as for a task function; [`Error::Encode`] or
/// [`Error::TooLarge`] when the argument does not encode.
pub(crate) fn init_frame<K: Kernel>(func: K::Func, arg: &K::In, max_body: usize) -> Result<Vec<u8>, Error>
where
    K::In: Serialize,
{
    let call = call_for::<K>(func)?;
    let mut frame = Vec::new();
    message::start_task(&mut frame);
    let encode_error = |message| Error::Encode {
        index: None,
        what: DataKind::Argument,
        message,
    };
    items::push_with(&mut frame, items::ARG_VALUE, |buf| codec::encode(arg, buf)).map_err(|e| match e {
        PushError::Body(message) => encode_error(message),
        PushError::TooLarge(size) => encode_error(format!("the initializer's argument is {size} bytes")),
    })?;
    message::finish_task(&mut frame, message::INIT_JOB, call, 1, max_body).map_err(|size| {
        Error::TooLarge {
            index: None,
            what: DataKind::Argument,
            size,
            limit: max_body,
        }
    })?;
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::policy::WorkerLimits;
    use crate::pool::shared::Options;
    use crate::result::sink::Collect;
    use crate::result::slot::Resolver;
    use crate::task::Unary;
    use crate::worker::handle::StartConfig;

    fn len(bytes: serde_bytes::ByteBuf) -> usize {
        bytes.len()
    }

    #[test]
    fn default_chunks_end_once_their_frame_is_large() {
        let shared = Shared::new(
            1,
            Options {
                start: StartConfig::new(std::time::Duration::from_secs(1)).unwrap(),
                policy: TaskPolicy::default(),
                limits: WorkerLimits::default(),
                init: None,
                #[cfg(feature = "redis")]
                remote: None,
            },
        )
        .unwrap();
        let (_slot, resolver) = Resolver::new(None, &shared.callback_sender(), || shared.pending.token());
        let sink: Arc<dyn Sink> = Collect::<usize>::new(resolver, None);
        let three_mib = || std::iter::repeat_with(|| serde_bytes::ByteBuf::from(vec![0u8; 3 << 20])).take(5);
        let encoder =
            Encoder::new::<Unary<serde_bytes::ByteBuf, usize>>(&shared, len, TaskPolicy::default()).unwrap();
        let chosen = encoder
            .clone()
            .chunk(&shared, &mut three_mib(), 5, 0, &sink)
            .unwrap();
        assert_eq!(
            chosen.ticket.meta.count, 5,
            "a chunk size the caller chose is kept"
        );
        let mut items = three_mib();
        let bounded = encoder.bounded();
        let first = bounded.chunk(&shared, &mut items, 5, 0, &sink).unwrap();
        assert_eq!(first.ticket.meta.count, 3, "3 x 3 MiB reach the 8 MiB bound");
        assert_eq!(
            bounded
                .chunk(&shared, &mut items, 5, 3, &sink)
                .unwrap()
                .ticket
                .meta
                .count,
            2
        );
        for job in [chosen, first] {
            job.ticket.abandon();
        }
    }
}
