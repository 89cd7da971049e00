//! Shared regions beside the frames: how a [`Bytes`](super::bytes::Bytes)
//! crosses a channel without its bytes.
//!
//! A region travels as its sealed memfd, in a `DESCS` frame (either way)
//! sent before the frame naming it: the body says for which job (u64) and
//! how many descriptors come with it (u32), and holds one byte for each
//! (so that every `sendmsg` carries some); the descriptors ride along with
//! its bytes. Values name each region by its memfd's inode number. The
//! reader keeps received descriptors in order ([`sys::fd::FdReader`]),
//! checks each one (a sealed memfd: see [`sys::region`]) when the `DESCS`
//! frame is read, and hands them to the frame they are for ([`Inbox`]): a
//! worker's next `TASK`; the parent's `PART`s and `DONE` of that job (a
//! worker may hold a `DONE` back and send it after the next job's regions).
//! A frame's regions are dropped when the reader waits for the next one,
//! and a job's once its `DONE` is read.
//!
//! Which regions a value names is collected while it is encoded, on that
//! thread ([`Collect`] for the parent's tasks, [`send_results_through`] for
//! a worker's results, sent at once).

use std::cell::RefCell;
use std::io::{self, BufReader};
use std::ops::Deref;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use super::ProtocolError;
use super::frame::{self, ReadError};
use crate::sys;
use crate::sys::fd::FdReader;
use crate::sys::region::Sealed;
use crate::sys::shm::Marker;

/// The frame kind of a batch of descriptors, parent → worker.
pub(crate) const DESCS_TO_WORKER: u8 = 0x04;
/// The frame kind of a batch of descriptors, worker → parent.
pub(crate) const DESCS_TO_PARENT: u8 = 0x88;

/// The most regions received and not yet claimed by their frame.
const MAX_PENDING: usize = 4096;

/// Reads the next frame other than a `DESCS` frame of kind `descs` into
/// `body`, as a worker does (the parent reads its way in
/// `worker::handle`): the regions that came before it are delivered to
/// this thread, those of the frame read before are dropped first.
pub(crate) fn read_frame<S: std::borrow::Borrow<UnixStream>>(
    reader: &mut BufReader<FdReader<S>>,
    inbox: &mut Inbox,
    body: &mut Vec<u8>,
    max_body: usize,
    descs: u8,
) -> Result<u8, ReadError> {
    inbox.clear();
    loop {
        let kind = frame::read_frame(reader, body, max_body).map_err(|e| match e {
            ReadError::Io(e) if e.kind() == io::ErrorKind::InvalidData => {
                ReadError::Protocol(ProtocolError::new(e.to_string()))
            }
            e => e,
        })?;
        if kind == descs {
            inbox
                .receive(reader.get_mut(), body)
                .map_err(ReadError::Protocol)?;
            continue;
        }
        let buffered = reader.buffer().len();
        inbox
            .deliver(reader.get_mut(), buffered)
            .map_err(ReadError::Protocol)?;
        return Ok(kind);
    }
}

/// Where the encoding of values on this thread puts the regions they name.
enum Outbox {
    /// Nowhere: values are written out in full.
    Off,
    /// Kept, for a parent's task frame.
    Collect(Vec<Arc<Sealed>>),
    /// Sent to the parent at once (a worker's results), through the
    /// worker's channel, which stays open as long as the process runs (so
    /// its number, checked to be a socket at each use, names it), for the
    /// job the marker says runs.
    Send(RawFd, &'static Marker),
}

thread_local! {
    static OUTBOX: RefCell<Outbox> = const { RefCell::new(Outbox::Off) };
    static INBOX: RefCell<Vec<Arc<Sealed>>> = const { RefCell::new(Vec::new()) };
    static PENDING: RefCell<Vec<(u64, Arc<Sealed>)>> = const { RefCell::new(Vec::new()) };
    static LATER: RefCell<Vec<Arc<TaskFrame>>> = const { RefCell::new(Vec::new()) };
}

/// Keeps the frame of a finished job until this thread's reader next
/// waits for a message ([`Inbox::clear`]): freeing a large frame, or the
/// last handle on its regions, then delays neither the worker's next job
/// nor the job's result.
pub(crate) fn drop_later(frame: Arc<TaskFrame>) {
    LATER.with_borrow_mut(|later| later.push(frame));
}

/// Offers `sealed` to the encoding in progress on this thread: `true` if it
/// goes beside the frame (and the value may name it), `false` if the value
/// must be written out in full.
pub(crate) fn offer(sealed: &Arc<Sealed>) -> bool {
    OUTBOX.with_borrow_mut(|outbox| match outbox {
        Outbox::Off => false,
        Outbox::Collect(list) => {
            if !list.iter().any(|s| s.inode() == sealed.inode()) {
                list.push(Arc::clone(sealed));
            }
            true
        }
        Outbox::Send(channel, marker) => sys::fd::with_socket(*channel, |channel| {
            send_descs(channel, DESCS_TO_PARENT, marker.get(), &[sealed.fd().as_raw_fd()])
        })
        .is_ok_and(|sent| sent.is_ok()),
    })
}

/// How many regions the collection in progress on this thread holds (0
/// when none is).
pub(crate) fn collected() -> usize {
    OUTBOX.with_borrow(|outbox| match outbox {
        Outbox::Collect(list) => list.len(),
        _ => 0,
    })
}

/// The region named `inode` among those that came with the frame being
/// decoded on this thread.
pub(crate) fn lookup(inode: u64) -> Option<Arc<Sealed>> {
    INBOX.with_borrow(|inbox| inbox.iter().find(|s| s.inode() == inode).cloned())
}

/// Collects the regions named by the values encoded on this thread until
/// [`finish`](Self::finish) (or drop), then puts back what was collecting
/// before (a call made while another one encodes, from its items'
/// iterator).
#[must_use]
pub(crate) struct Collect {
    outer: Option<Outbox>,
}

impl Collect {
    /// Starts collecting.
    pub(crate) fn start() -> Collect {
        Collect {
            outer: Some(OUTBOX.replace(Outbox::Collect(Vec::new()))),
        }
    }

    /// The regions the values named.
    pub(crate) fn finish(mut self) -> Attached {
        let outer = self.outer.take().unwrap_or(Outbox::Off);
        match OUTBOX.replace(outer) {
            Outbox::Collect(list) if !list.is_empty() => Attached(Some(list.into())),
            _ => Attached(None),
        }
    }
}

impl Drop for Collect {
    fn drop(&mut self) {
        if let Some(outer) = self.outer.take() {
            OUTBOX.set(outer);
        }
    }
}

impl std::fmt::Debug for Collect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Collect")
    }
}

/// From now on, the regions a value encoded on this thread names go to the
/// parent at once, through `channel`, for the job `marker` says runs (a
/// worker's serving thread; the channel must stay open until the process
/// ends).
pub(crate) fn send_results_through(channel: &UnixStream, marker: &'static Marker) {
    OUTBOX.set(Outbox::Send(channel.as_raw_fd(), marker));
}

/// The regions a task frame names, kept with it (for a retry too).
#[derive(Debug, Clone, Default)]
pub(crate) struct Attached(Option<Arc<[Arc<Sealed>]>>);

impl Attached {
    /// Whether there are none.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

/// A task frame and the regions that go with it.
#[derive(Debug, Clone, Default)]
pub(crate) struct TaskFrame {
    /// The frame's bytes.
    pub(crate) bytes: Vec<u8>,
    /// The regions it names.
    pub(crate) attached: Attached,
}

impl TaskFrame {
    /// `bytes` with the regions of `attached`.
    pub(crate) fn new(bytes: Vec<u8>, attached: Attached) -> TaskFrame {
        TaskFrame { bytes, attached }
    }

    /// Another frame (a part of this one) with the same regions.
    pub(crate) fn with_bytes(&self, bytes: Vec<u8>) -> TaskFrame {
        TaskFrame {
            bytes,
            attached: self.attached.clone(),
        }
    }

    /// Sends the regions, if any, then the frame.
    pub(crate) fn send(&self, channel: &UnixStream) -> io::Result<()> {
        if let Some(list) = &self.attached.0 {
            let fds: Vec<RawFd> = list.iter().map(|s| s.fd().as_raw_fd()).collect();
            // A task frame's job id comes right after its header.
            let h = frame::HEADER_LEN;
            let job = self
                .bytes
                .get(h..h + 8)
                .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("eight bytes")));
            send_descs(channel, DESCS_TO_WORKER, job, &fds)?;
        }
        sys::fd::send_all(channel, &self.bytes)
    }
}

impl Deref for TaskFrame {
    type Target = Vec<u8>;

    fn deref(&self) -> &Vec<u8> {
        &self.bytes
    }
}

impl From<Vec<u8>> for TaskFrame {
    fn from(bytes: Vec<u8>) -> TaskFrame {
        TaskFrame::new(bytes, Attached::default())
    }
}

/// Sends one `DESCS` frame of kind `kind` carrying `fds` for job `job`.
fn send_descs(channel: &UnixStream, kind: u8, job: u64, fds: &[RawFd]) -> io::Result<()> {
    let count = u32::try_from(fds.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut buf = Vec::with_capacity(frame::HEADER_LEN + 12 + fds.len());
    frame::start(&mut buf);
    buf.extend_from_slice(&job.to_le_bytes());
    buf.extend_from_slice(&count.to_le_bytes());
    buf.resize(buf.len() + fds.len(), 0);
    frame::finish(&mut buf, kind, usize::MAX).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // The descriptors go with the body's bytes (the header's first byte
    // may end a read that began in an earlier frame).
    sys::fd::send_all(channel, &buf[..frame::HEADER_LEN])?;
    sys::fd::send_with_fds(channel, &buf[frame::HEADER_LEN..], fds)
}

/// The descriptors of this thread's reader: those announced by `DESCS`
/// frames, checked, wait (on this thread) for the frame that names them.
/// One reader per thread.
#[derive(Debug, Default)]
pub(crate) struct Inbox(());

impl Inbox {
    /// Drops the regions of the frame decoded last, and the frames kept by
    /// [`drop_later`] (call before waiting for the next one).
    pub(crate) fn clear(&mut self) {
        INBOX.with_borrow_mut(Vec::clear);
        let later = LATER.take();
        drop(later);
    }

    /// Takes the descriptors a `DESCS` frame with `body` announced from
    /// `reader`, and checks them. An error breaks the protocol.
    pub(crate) fn receive<S: std::borrow::Borrow<UnixStream>>(
        &mut self,
        reader: &mut FdReader<S>,
        body: &[u8],
    ) -> Result<(), ProtocolError> {
        let (job, count) = body
            .get(..12)
            .map(|b| {
                let job = u64::from_le_bytes(b[..8].try_into().expect("eight bytes"));
                (
                    job,
                    u32::from_le_bytes(b[8..].try_into().expect("four bytes")) as usize,
                )
            })
            .filter(|&(_, n)| body.len() == 12 + n)
            .ok_or_else(|| ProtocolError::new("a malformed descriptor frame"))?;
        if PENDING.with_borrow(Vec::len) + count > MAX_PENDING {
            return Err(ProtocolError::new(format!(
                "more than {MAX_PENDING} regions sent and not yet claimed"
            )));
        }
        let fds: Vec<OwnedFd> = reader.take(count).ok_or_else(|| {
            ProtocolError::new(format!(
                "a descriptor frame announced {count} descriptors, {} came",
                reader.held()
            ))
        })?;
        for fd in fds {
            let sealed = Sealed::check(fd).map_err(|e| ProtocolError::new(format!("it sent {e}")))?;
            PENDING.with_borrow_mut(|pending| pending.push((job, Arc::new(sealed))));
        }
        Ok(())
    }

    /// A frame other than `DESCS` was read (a worker's side): the regions
    /// announced since the last one are its. Descriptors that came without
    /// a `DESCS` frame (none may wait when nothing more is buffered) break
    /// the protocol.
    pub(crate) fn deliver<S: std::borrow::Borrow<UnixStream>>(
        &mut self,
        reader: &mut FdReader<S>,
        buffered: usize,
    ) -> Result<(), ProtocolError> {
        let pending = PENDING.take();
        INBOX.set(pending.into_iter().map(|(_, sealed)| sealed).collect());
        Inbox::strays(reader, buffered)
    }

    /// A frame other than `DESCS` was read (the parent's side): the
    /// regions of job `job` are its, if it is a `PART` or `DONE` of one
    /// (`done`: the job's last frame, after which its regions go).
    /// Descriptors that came without a `DESCS` frame break the protocol.
    pub(crate) fn deliver_for<S: std::borrow::Borrow<UnixStream>>(
        &mut self,
        reader: &mut FdReader<S>,
        buffered: usize,
        job: Option<(u64, bool)>,
    ) -> Result<(), ProtocolError> {
        if let Some((job, done)) = job {
            let regions = PENDING.with_borrow_mut(|pending| {
                let regions: Vec<Arc<Sealed>> = pending
                    .iter()
                    .filter(|(j, _)| *j == job)
                    .map(|(_, sealed)| Arc::clone(sealed))
                    .collect();
                if done {
                    pending.retain(|(j, _)| *j != job);
                }
                regions
            });
            INBOX.set(regions);
        }
        Inbox::strays(reader, buffered)
    }

    /// Forgets every region not yet delivered (the worker is gone).
    pub(crate) fn forget(&mut self) {
        PENDING.with_borrow_mut(Vec::clear);
    }

    fn strays<S: std::borrow::Borrow<UnixStream>>(
        reader: &mut FdReader<S>,
        buffered: usize,
    ) -> Result<(), ProtocolError> {
        if buffered == 0 && reader.held() > 0 {
            let n = reader.held();
            reader.discard();
            return Err(ProtocolError::new(format!(
                "{n} descriptors came without a descriptor frame"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::region::Region;

    fn region(byte: u8) -> Region {
        Region::copy_of(&[byte; 5000]).unwrap()
    }

    /// Reads frames as the parent or a worker does, until a frame other
    /// than `DESCS`; returns its kind and the regions delivered with it.
    fn read_one(reader: &mut BufReader<FdReader>, inbox: &mut Inbox, descs: u8) -> Result<u8, ProtocolError> {
        let mut body = Vec::new();
        read_frame(reader, inbox, &mut body, 1 << 20, descs).map_err(|e| match e {
            ReadError::Protocol(e) => e,
            e => ProtocolError::new(format!("{e:?}")),
        })
    }

    fn text(kind: u8) -> Vec<u8> {
        let mut buf = Vec::new();
        frame::start(&mut buf);
        buf.extend_from_slice(b"next");
        frame::finish(&mut buf, kind, 100).unwrap();
        buf
    }

    #[test]
    fn regions_come_with_the_next_frame_and_go_with_the_one_after() {
        let (a, b) = UnixStream::pair().unwrap();
        let (one, two) = (region(1), region(2));
        let collect = Collect::start();
        assert!(offer(one.sealed()));
        assert!(offer(two.sealed()));
        assert!(offer(one.sealed()), "offered twice, sent once");
        let attached = collect.finish();
        assert!(!offer(one.sealed()), "no longer collecting");
        // Nested collections keep to their own regions.
        let outer = Collect::start();
        assert!(offer(one.sealed()));
        let inner = Collect::start();
        assert!(offer(two.sealed()));
        assert_eq!(inner.finish().0.map_or(0, |l| l.len()), 1);
        assert_eq!(outer.finish().0.map_or(0, |l| l.len()), 1);
        let task = TaskFrame::new(text(0x01), attached);
        task.send(&a).unwrap();
        TaskFrame::from(text(0x01)).send(&a).unwrap();
        let mut reader = BufReader::new(FdReader::new(b));
        let mut inbox = Inbox::default();
        assert_eq!(read_one(&mut reader, &mut inbox, DESCS_TO_WORKER).unwrap(), 0x01);
        let got = lookup(two.sealed().inode()).expect("delivered");
        assert_eq!(Region::map(got, 5000).unwrap().as_slice(), two.as_slice());
        assert!(lookup(one.sealed().inode()).is_some());
        assert_eq!(read_one(&mut reader, &mut inbox, DESCS_TO_WORKER).unwrap(), 0x01);
        assert!(lookup(one.sealed().inode()).is_none(), "the next frame has none");
    }

    /// Reads as the parent does: a frame's regions are those of the job
    /// its body starts with.
    fn parent_reads_one(reader: &mut BufReader<FdReader>, inbox: &mut Inbox) -> u64 {
        let mut body = Vec::new();
        inbox.clear();
        loop {
            let kind = frame::read_frame(reader, &mut body, 1 << 20).unwrap();
            if kind == DESCS_TO_PARENT {
                inbox.receive(reader.get_mut(), &body).unwrap();
                continue;
            }
            let job = u64::from_le_bytes(body[..8].try_into().unwrap());
            let buffered = reader.buffer().len();
            inbox
                .deliver_for(reader.get_mut(), buffered, Some((job, true)))
                .unwrap();
            return job;
        }
    }

    fn done(job: u64) -> Vec<u8> {
        let mut buf = Vec::new();
        frame::start(&mut buf);
        buf.extend_from_slice(&job.to_le_bytes());
        frame::finish(&mut buf, 0x83, 100).unwrap();
        buf
    }

    #[test]
    fn a_result_held_back_gets_its_own_jobs_regions() {
        // Job 2's region comes before job 1's held-back result.
        let (a, b) = UnixStream::pair().unwrap();
        let (one, two) = (region(1), region(2));
        send_descs(&a, DESCS_TO_PARENT, 1, &[one.sealed().fd().as_raw_fd()]).unwrap();
        send_descs(&a, DESCS_TO_PARENT, 2, &[two.sealed().fd().as_raw_fd()]).unwrap();
        sys::fd::send_all(&a, &done(1)).unwrap();
        sys::fd::send_all(&a, &done(2)).unwrap();
        let mut reader = BufReader::new(FdReader::new(b));
        let mut inbox = Inbox::default();
        assert_eq!(parent_reads_one(&mut reader, &mut inbox), 1);
        assert!(lookup(one.sealed().inode()).is_some());
        assert!(
            lookup(two.sealed().inode()).is_none(),
            "job 2's region waits for job 2"
        );
        assert_eq!(parent_reads_one(&mut reader, &mut inbox), 2);
        assert!(lookup(two.sealed().inode()).is_some());
        assert!(lookup(one.sealed().inode()).is_none(), "job 1 is done with");
        inbox.clear();
        assert_eq!(PENDING.with_borrow(Vec::len), 0, "nothing left waiting");
    }

    #[test]
    fn forged_descriptors_break_the_protocol() {
        // Not a memfd.
        let (a, b) = UnixStream::pair().unwrap();
        let file = tempfile::tempfile().unwrap();
        send_descs(&a, DESCS_TO_PARENT, 1, &[file.as_raw_fd()]).unwrap();
        let mut reader = BufReader::new(FdReader::new(b));
        let err = read_one(&mut reader, &mut Inbox::default(), DESCS_TO_PARENT).unwrap_err();
        assert!(err.0.contains("not a memfd"), "{err}");

        // A descriptor without a `DESCS` frame.
        let (a, b) = UnixStream::pair().unwrap();
        let one = region(1);
        sys::fd::send_with_fds(&a, &text(0x83), &[one.sealed().fd().as_raw_fd()]).unwrap();
        let mut reader = BufReader::new(FdReader::new(b));
        let err = read_one(&mut reader, &mut Inbox::default(), DESCS_TO_PARENT).unwrap_err();
        assert!(err.0.contains("without a descriptor frame"), "{err}");

        // A `DESCS` frame announcing more than came.
        let (a, b) = UnixStream::pair().unwrap();
        let mut buf = Vec::new();
        frame::start(&mut buf);
        buf.extend_from_slice(&1u64.to_le_bytes());
        buf.extend_from_slice(&2u32.to_le_bytes());
        buf.extend_from_slice(&[0, 0]);
        frame::finish(&mut buf, DESCS_TO_PARENT, 100).unwrap();
        sys::fd::send_with_fds(&a, &buf, &[one.sealed().fd().as_raw_fd()]).unwrap();
        let mut reader = BufReader::new(FdReader::new(b));
        let err = read_one(&mut reader, &mut Inbox::default(), DESCS_TO_PARENT).unwrap_err();
        assert!(err.0.contains("announced 2 descriptors, 1 came"), "{err}");

        // An unsealed memfd.
        let (a, b) = UnixStream::pair().unwrap();
        // SAFETY: as in `sys::region`; a memfd made without
        // MFD_ALLOW_SEALING carries only F_SEAL_SEAL.
        let raw = unsafe { libc::memfd_create(c"unsealed".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(raw >= 0);
        // SAFETY: just created, ours alone.
        let unsealed = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
        send_descs(&a, DESCS_TO_PARENT, 1, &[unsealed.as_raw_fd()]).unwrap();
        let mut reader = BufReader::new(FdReader::new(b));
        let err = read_one(&mut reader, &mut Inbox::default(), DESCS_TO_PARENT).unwrap_err();
        assert!(err.0.contains("without the seals"), "{err}");
    }

    #[test]
    fn hundreds_of_descriptors_cross_in_one_frame() {
        let (a, b) = UnixStream::pair().unwrap();
        let regions: Vec<Region> = (0..600)
            .map(|i| Region::copy_of(&[i as u8; 10]).unwrap())
            .collect();
        let fds: Vec<RawFd> = regions.iter().map(|r| r.sealed().fd().as_raw_fd()).collect();
        let sender = std::thread::spawn(move || {
            send_descs(&a, DESCS_TO_WORKER, 1, &fds).unwrap();
            sys::fd::send_all(&a, &text(0x01)).unwrap();
        });
        let mut reader = BufReader::new(FdReader::new(b));
        assert_eq!(
            read_one(&mut reader, &mut Inbox::default(), DESCS_TO_WORKER).unwrap(),
            0x01
        );
        sender.join().unwrap();
        for r in &regions {
            assert!(lookup(r.sealed().inode()).is_some());
        }
    }
}
