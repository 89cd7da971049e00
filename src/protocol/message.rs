//! The messages, each the body of one frame.
//!
//! | kind | direction | body |
//! |------|-----------|------|
//! | `TASK` (0x01) | parent → worker | job id u64, [`Target`] (runner u64, function u64, signature u64), item count u32, items |
//! | `MARK` (0x02) | parent → worker | empty; the worker's started-job marker (a shared page) rides along as a descriptor, right after `READY` |
//! | `READY` (0x81) | worker → parent | protocol version u32, pid u32 |
//! | `REJECT` (0x82) | worker → parent | UTF-8 reason (the worker then exits) |
//! | `DONE` (0x83) | worker → parent | job id u64, item count u32, [`Timing`] (3 × u64 ns), item results |
//! | `FAULT` (0x84) | worker → parent | UTF-8 reason (the worker then exits) |
//! | `PANIC` (0x85) | worker → parent | job id u64, the [`RemotePanic`] (codec); only under `panic = "abort"`, the worker then aborts |
//! | `PART` (0x86) | worker → parent | as `DONE` (timing zero): the results of the task's first items, sent before the rest is run |
//! | `DESCS` (0x04 / 0x88) | either way | job id u64, descriptor count u32, then one zero byte per descriptor; the descriptors (sealed memfds) ride along, for the values of that job's frames (the next `TASK`; that job's `PART`s and `DONE`) to name (see `attach`) |
//!
//! Integers are little endian. A worker handles one task at a time and
//! answers each with exactly one `DONE` carrying the same job id, or dies
//! running it (after a `PANIC`, when a panic aborts the process). Results
//! of a task that add up to more than [`PART_BYTES`] come in parts: `PART`
//! frames with the results of the next items, then the `DONE` with the
//! last ones, so that no frame nears the limit however large a chunk's
//! results are. Job 0 ([`INIT_JOB`]) is a worker's initializer.

use super::{ProtocolError, codec};
use super::{frame, items};
use crate::error::RemotePanic;

pub(crate) const TASK: u8 = 0x01;
/// Parent → worker, right after `READY`: an empty body, with the worker's
/// started-job marker (a shared page) attached as a descriptor.
pub(crate) const MARK: u8 = 0x02;
/// Parent → worker, after its initializer: lock yourself down under the
/// sandbox policy in the body (opaque here: see `sandbox`). The worker
/// answers `LOCKED`, or `REJECT` and exits.
pub(crate) const LOCK: u8 = 0x03;
pub(crate) const READY: u8 = 0x81;
pub(crate) const REJECT: u8 = 0x82;
pub(crate) const DONE: u8 = 0x83;
pub(crate) const FAULT: u8 = 0x84;
/// Worker → parent, when a task's panic aborts the worker (`panic =
/// "abort"`): the panic, sent from the panic hook before the abort.
pub(crate) const PANIC: u8 = 0x85;
/// Worker → parent: the results of a task's first items; see the module
/// docs.
pub(crate) const PART: u8 = 0x86;
/// Worker → parent: the lockdown holds; the body says how far.
pub(crate) const LOCKED: u8 = 0x87;

/// A worker sends the results it holds as a `PART` once they reach this
/// size.
pub(crate) const PART_BYTES: usize = 64 << 20;

/// The largest encoded result one item may have: what fits in a `DONE`
/// frame of the default limit on its own.
pub(crate) const MAX_RESULT_ITEM: usize = frame::DEFAULT_MAX_BODY - DONE_HEADER - 5;

/// The job id of a worker's initializer task; tasks count from 1.
pub(crate) const INIT_JOB: u64 = 0;

const TASK_HEADER: usize = 8 + 8 + 8 + 8 + 4;
const DONE_HEADER: usize = 8 + 4 + 3 * 8;

/// What a `TASK` runs: three numbers whose meaning belongs to the layer
/// above (`func`): the runner, the task function, and the signature the
/// runner checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) runner: u64,
    pub(crate) func: u64,
    pub(crate) signature: u64,
}

/// A message to a worker.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ToWorker<'a> {
    /// Run `target` on each of the `count` items.
    Task {
        job: u64,
        target: Target,
        count: u32,
        items: &'a [u8],
    },
    /// Lock down under this (encoded) sandbox policy.
    Lock(&'a [u8]),
}

/// Where a worker's time on one chunk went, in nanoseconds: decoding the
/// arguments, running the task function, encoding the results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Timing {
    pub(crate) decode_ns: u64,
    pub(crate) run_ns: u64,
    pub(crate) encode_ns: u64,
}

/// A message from a worker.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FromWorker<'a> {
    Ready {
        protocol: u32,
        pid: u32,
    },
    Reject(&'a str),
    Done {
        job: u64,
        count: u32,
        timing: Timing,
        results: &'a [u8],
    },
    /// The results of the first `count` items job `job` still holds.
    Part {
        job: u64,
        count: u32,
        results: &'a [u8],
    },
    Fault(&'a str),
    /// The worker locked itself down; how far.
    Locked(&'a str),
    /// Job `job` panicked, and the worker is aborting.
    Panicked {
        job: u64,
        panic: RemotePanic,
    },
}

/// Begins a task frame in `buf`; append the items, then call [`finish_task`].
pub(crate) fn start_task(buf: &mut Vec<u8>) {
    frame::start(buf);
    buf.extend_from_slice(&[0; TASK_HEADER]);
}

/// Completes a task frame begun with [`start_task`]. On error, returns the
/// body size that exceeds `max_body`.
pub(crate) fn finish_task(
    buf: &mut [u8],
    job: u64,
    target: Target,
    count: u32,
    max_body: usize,
) -> Result<(), usize> {
    let h = frame::HEADER_LEN;
    buf[h..h + 8].copy_from_slice(&job.to_le_bytes());
    buf[h + 8..h + 16].copy_from_slice(&target.runner.to_le_bytes());
    buf[h + 16..h + 24].copy_from_slice(&target.func.to_le_bytes());
    buf[h + 24..h + 32].copy_from_slice(&target.signature.to_le_bytes());
    buf[h + 32..h + 36].copy_from_slice(&count.to_le_bytes());
    frame::finish(buf, TASK, max_body).map(drop)
}

/// Checks that `frame` is one whole, well-formed task frame of `count`
/// items (made by another process: a caller whose chunk a worker host
/// runs), and gives it the job id `job`.
#[cfg(feature = "redis")]
pub(crate) fn renumber_task(frame: &mut [u8], job: u64, count: u32) -> Result<(), ProtocolError> {
    let h = frame::HEADER_LEN;
    let header: &[u8; frame::HEADER_LEN] = frame
        .get(..h)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ProtocolError::new("a task shorter than its header".to_owned()))?;
    let (kind, len) = frame::parse_header(header, frame::DEFAULT_MAX_BODY)?;
    if kind != TASK || len != frame.len() - h {
        return Err(ProtocolError::new(format!(
            "not a whole task frame (kind {kind:#x}, {len} bytes)"
        )));
    }
    match ToWorker::decode(TASK, &frame[h..])? {
        ToWorker::Task { count: c, .. } if c == count => {}
        _ => {
            return Err(ProtocolError::new(format!(
                "a task frame that is not of {count} items"
            )));
        }
    }
    frame[h..h + 8].copy_from_slice(&job.to_le_bytes());
    Ok(())
}

/// Splits a whole task frame (made here, so well formed) after its first
/// `at` items: the first part keeps job id `head`, the rest becomes job
/// `tail`. `None` if `at` does not fall inside the task.
pub(crate) fn split_task(task: &[u8], at: u32, head: u64, tail: u64) -> Option<(Vec<u8>, Vec<u8>)> {
    let h = frame::HEADER_LEN;
    let Ok(ToWorker::Task {
        target, count, items, ..
    }) = ToWorker::decode(TASK, task.get(h..)?)
    else {
        return None;
    };
    if at == 0 || at >= count {
        return None;
    }
    // Whole items before the cut, then (when the cut falls inside a run)
    // the run's values on either side of it.
    let (mut offset, mut before) = (0, 0u32);
    let mut cut_run = None;
    for item in items::Items::new(items) {
        let (tag, body) = item.ok()?;
        let width = u32::try_from(items::width(tag, body, items::ARG_RUN).ok()?).ok()?;
        if before + width > at {
            let (size, values) = items::run_values(body).ok()?;
            let split = (at - before) as usize * size;
            cut_run = Some((size, values.split_at(split), offset + 5 + body.len()));
            break;
        }
        offset += 5 + body.len();
        before += width;
        if before == at {
            break;
        }
    }
    let part = |job, count, pieces: &[&[u8]]| {
        let len = pieces.iter().map(|p| p.len()).sum::<usize>();
        let mut buf = Vec::with_capacity(h + TASK_HEADER + len + 12);
        start_task(&mut buf);
        for piece in pieces {
            buf.extend_from_slice(piece);
        }
        // Each part is about the size of the whole, which passed the limit.
        finish_task(&mut buf, job, target, count, usize::MAX).expect("a part of a sendable task");
        buf
    };
    let run = |size: usize, values: &[u8]| {
        let mut item = Vec::with_capacity(6 + values.len());
        items::push_run(&mut item, items::ARG_RUN, size, values.len() / size, |b| {
            b.extend_from_slice(values);
        });
        item
    };
    Some(match cut_run {
        None => (
            part(head, at, &[items.get(..offset)?]),
            part(tail, count - at, &[items.get(offset..)?]),
        ),
        Some((size, (left, right), end)) => (
            part(head, at, &[items.get(..offset)?, &run(size, left)]),
            part(tail, count - at, &[&run(size, right), items.get(end..)?]),
        ),
    })
}

/// Begins a done frame in `buf`; append the results, then [`finish_done`].
pub(crate) fn start_done(buf: &mut Vec<u8>) {
    frame::start(buf);
    buf.extend_from_slice(&[0; DONE_HEADER]);
}

/// Completes a done frame begun with [`start_done`].
pub(crate) fn finish_done(
    buf: &mut [u8],
    job: u64,
    count: u32,
    timing: Timing,
    max_body: usize,
) -> Result<(), usize> {
    fill_done(buf, job, count, timing);
    frame::finish(buf, DONE, max_body).map(drop)
}

/// The results of a task as a worker makes them: a `DONE` frame being
/// filled, whose first results go out as `PART` frames (through `send`)
/// once they reach [`PART_BYTES`]. The last result always stays for the
/// `DONE`, so a task's frames are one or more parts and one done.
pub(crate) struct Results<'a> {
    buf: &'a mut Vec<u8>,
    job: u64,
    /// Results in `buf`.
    held: u32,
    /// Results already sent in parts.
    sent: u32,
    send: &'a mut dyn FnMut(&[u8]),
}

impl<'a> Results<'a> {
    /// Begins the results of job `job` in `buf`.
    pub(crate) fn start(buf: &'a mut Vec<u8>, job: u64, send: &'a mut dyn FnMut(&[u8])) -> Self {
        start_done(buf);
        Results {
            buf,
            job,
            held: 0,
            sent: 0,
            send,
        }
    }

    /// Appends one result item, which `write` appends to the buffer.
    pub(crate) fn push(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        self.push_items(1, write);
    }

    /// Appends the result item (a run, see [`items`](super::items)) that
    /// stands for the results of `count` items, which `write` appends.
    pub(crate) fn push_items(&mut self, count: u32, write: impl FnOnce(&mut Vec<u8>)) {
        if self.held > 0 && done_body_len(self.buf) >= PART_BYTES {
            self.send_part();
        }
        let at = self.buf.len();
        let before = self.held;
        write(self.buf);
        self.held += count;
        if before > 0 && done_body_len(self.buf) > frame::DEFAULT_MAX_BODY {
            // This result would take the frame past the limit: the ones
            // before it go first.
            let last = self.buf.split_off(at);
            self.held = before;
            self.send_part();
            self.buf.extend_from_slice(&last);
            self.held = count;
        }
    }

    /// How many results went out in parts.
    pub(crate) fn sent(&self) -> u32 {
        self.sent
    }

    /// How many results the `DONE` frame holds.
    pub(crate) fn held(&self) -> u32 {
        self.held
    }

    fn send_part(&mut self) {
        fill_done(self.buf, self.job, self.held, Timing::default());
        frame::finish(self.buf, PART, usize::MAX).expect("a part is below the limit");
        (self.send)(self.buf);
        self.sent += self.held;
        self.buf.clear();
        start_done(self.buf);
        self.held = 0;
    }
}

impl std::fmt::Debug for Results<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Results")
            .field("job", &self.job)
            .field("held", &self.held)
            .field("bytes", &self.buf.len())
            .finish()
    }
}

/// The body size of a frame begun with [`start_done`] so far.
fn done_body_len(buf: &[u8]) -> usize {
    buf.len() - frame::HEADER_LEN
}

fn fill_done(buf: &mut [u8], job: u64, count: u32, timing: Timing) {
    let h = frame::HEADER_LEN;
    buf[h..h + 8].copy_from_slice(&job.to_le_bytes());
    buf[h + 8..h + 12].copy_from_slice(&count.to_le_bytes());
    buf[h + 12..h + 20].copy_from_slice(&timing.decode_ns.to_le_bytes());
    buf[h + 20..h + 28].copy_from_slice(&timing.run_ns.to_le_bytes());
    buf[h + 28..h + 36].copy_from_slice(&timing.encode_ns.to_le_bytes());
}

/// A whole `MARK` frame (the descriptor travels beside it).
pub(crate) fn mark_frame() -> Vec<u8> {
    let mut buf = Vec::new();
    frame::start(&mut buf);
    frame::finish(&mut buf, MARK, 0).expect("empty frame");
    buf
}

/// A whole `READY` frame.
pub(crate) fn ready_frame(pid: u32) -> Vec<u8> {
    let mut buf = Vec::new();
    frame::start(&mut buf);
    buf.extend_from_slice(&super::PROTOCOL_VERSION.to_le_bytes());
    buf.extend_from_slice(&pid.to_le_bytes());
    frame::finish(&mut buf, READY, usize::MAX).expect("tiny frame");
    buf
}

/// A whole `PANIC` frame for job `job`. A panic too large for a frame
/// (a message of a gigabyte) is sent as its location and size.
pub(crate) fn panic_frame(job: u64, panic: &RemotePanic) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut encode = |panic: &RemotePanic| {
        frame::start(&mut buf);
        buf.extend_from_slice(&job.to_le_bytes());
        codec::encode(panic, &mut buf).and_then(|()| {
            frame::finish(&mut buf, PANIC, frame::DEFAULT_MAX_BODY)
                .map(drop)
                .map_err(|size| format!("{size} bytes"))
        })
    };
    if let Err(e) = encode(panic) {
        let message = format!("(the panic could not be sent to the parent: {e})");
        let short = RemotePanic::new(message, panic.location().cloned(), None);
        encode(&short).expect("a short panic fits a frame");
    }
    buf
}

/// A whole `REJECT`, `FAULT` or `LOCKED` frame carrying `text` (cut to
/// 64 KiB).
pub(crate) fn text_frame(kind: u8, text: &str) -> Vec<u8> {
    let mut end = text.len().min(64 * 1024);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    bytes_frame(kind, &text.as_bytes()[..end])
}

/// A whole frame of `kind` carrying `body` (a `LOCK`).
pub(crate) fn bytes_frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    frame::start(&mut buf);
    buf.extend_from_slice(body);
    frame::finish(&mut buf, kind, usize::MAX).expect("a frame within the limit");
    buf
}

fn u32_at(body: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(body[at..at + 4].try_into().expect("length checked"))
}

fn u64_at(body: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(body[at..at + 8].try_into().expect("length checked"))
}

fn need(body: &[u8], len: usize, what: &str) -> Result<(), ProtocolError> {
    if body.len() < len {
        return Err(ProtocolError::new(format!(
            "{what} message of {} bytes is shorter than its {len}-byte header",
            body.len()
        )));
    }
    Ok(())
}

fn text<'a>(body: &'a [u8], what: &str) -> Result<&'a str, ProtocolError> {
    std::str::from_utf8(body).map_err(|_| ProtocolError::new(format!("{what} text is not UTF-8")))
}

impl<'a> ToWorker<'a> {
    /// Decodes the body of a frame of `kind` sent by the parent.
    pub(crate) fn decode(kind: u8, body: &'a [u8]) -> Result<Self, ProtocolError> {
        match kind {
            TASK => {
                need(body, TASK_HEADER, "task")?;
                Ok(ToWorker::Task {
                    job: u64_at(body, 0),
                    target: Target {
                        runner: u64_at(body, 8),
                        func: u64_at(body, 16),
                        signature: u64_at(body, 24),
                    },
                    count: u32_at(body, 32),
                    items: &body[TASK_HEADER..],
                })
            }
            LOCK => Ok(ToWorker::Lock(body)),
            other => Err(ProtocolError::new(format!(
                "unknown message kind {other:#04x} from the parent"
            ))),
        }
    }
}

impl<'a> FromWorker<'a> {
    /// Decodes the body of a frame of `kind` sent by a worker.
    pub(crate) fn decode(kind: u8, body: &'a [u8]) -> Result<Self, ProtocolError> {
        match kind {
            READY => {
                if body.len() != 8 {
                    return Err(ProtocolError::new(format!(
                        "ready message of {} bytes, expected 8",
                        body.len()
                    )));
                }
                Ok(FromWorker::Ready {
                    protocol: u32_at(body, 0),
                    pid: u32_at(body, 4),
                })
            }
            REJECT => Ok(FromWorker::Reject(text(body, "reject")?)),
            PANIC => {
                need(body, 8, "panic")?;
                let panic = codec::decode(&body[8..])
                    .map_err(|e| ProtocolError::new(format!("panic message: {e}")))?;
                Ok(FromWorker::Panicked {
                    job: u64_at(body, 0),
                    panic,
                })
            }
            FAULT => Ok(FromWorker::Fault(text(body, "fault")?)),
            DONE => {
                need(body, DONE_HEADER, "done")?;
                Ok(FromWorker::Done {
                    job: u64_at(body, 0),
                    count: u32_at(body, 8),
                    timing: Timing {
                        decode_ns: u64_at(body, 12),
                        run_ns: u64_at(body, 20),
                        encode_ns: u64_at(body, 28),
                    },
                    results: &body[DONE_HEADER..],
                })
            }
            LOCKED => Ok(FromWorker::Locked(text(body, "locked")?)),
            PART => {
                need(body, DONE_HEADER, "part")?;
                Ok(FromWorker::Part {
                    job: u64_at(body, 0),
                    count: u32_at(body, 8),
                    results: &body[DONE_HEADER..],
                })
            }
            other => Err(ProtocolError::new(format!(
                "unknown message kind {other:#04x} from a worker"
            ))),
        }
    }
}

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;
