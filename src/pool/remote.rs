//! The caller's end of a pool whose workers are on other machines
//! ([`PoolBuilder::redis`](crate::PoolBuilder::redis)): the same jobs as a
//! local pool's, sent to worker hosts through Redis Streams instead of to
//! local workers through sockets. See [`cluster`](crate::cluster) for the
//! keys, the seals and the delivery rules.
//!
//! Two threads: the *sender* moves submitted jobs into the task stream,
//! never more than a window of them at once (so that Redis holds a bounded
//! part of a long `map`), and keeps their tickets; the *reader* takes
//! results from this caller's reply stream, completes the first result of
//! each job and drops any later one, deletes what it read, renews the
//! caller's liveness key, and fails the work when no host is left.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::cluster::keys::{self, GROUP, Keys};
use crate::cluster::link::{self, Link};
use crate::cluster::seal::{Kind, Sealer};
use crate::cluster::wire::{Control, Fields, HostInfo, ReplyHeader, Segment, TaskHeader};
use crate::error::Error;
use crate::pool::job::{Job, Ticket};
use crate::pool::stats::Stats;
use crate::result::callbacks::CallToken;
use crate::result::pending::Pending;
use crate::result::sink::{ChunkOutcome, validate};

/// What a Redis-fed pool is made with.
#[derive(Clone)]
pub(crate) struct RemoteConfig {
    pub(crate) url: String,
    pub(crate) queue: String,
    pub(crate) secret: Option<Vec<u8>>,
    pub(crate) lease: Duration,
    pub(crate) deliveries: u32,
    pub(crate) outage: Duration,
}

impl std::fmt::Debug for RemoteConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteConfig")
            .field("url", &link::redacted(&self.url))
            .field("queue", &self.queue)
            .field("lease", &self.lease)
            .field("deliveries", &self.deliveries)
            .finish_non_exhaustive()
    }
}

/// The most entries one pipeline carries.
const BATCH: usize = 256;

/// A pipeline of tasks ends once its bodies reach this size.
const BATCH_BYTES: usize = 1 << 20;

/// The id a call has on the wire: its token's address, unique while any
/// of its jobs lives (each holds the token).
pub(crate) fn call_id(token: &Arc<CallToken>) -> u64 {
    Arc::as_ptr(token) as usize as u64
}

#[derive(Debug, Default)]
struct State {
    /// Submitted, not yet in Redis.
    waiting: VecDeque<Job>,
    /// In Redis (or running on a host): their tickets, by job id.
    outstanding: HashMap<u64, Ticket>,
    /// When a result last came (or work was first sent after none).
    heard: Option<Instant>,
}

/// The caller's end.
pub(crate) struct Remote {
    keys: Keys,
    caller: String,
    sealer: Sealer,
    config: RemoteConfig,
    start_timeout: Duration,
    window: usize,
    stats: Arc<Stats>,
    pending: Arc<Pending>,
    state: Mutex<State>,
    wake: Condvar,
    /// Set when the pool stops; its links then give up on an outage.
    stop: Arc<AtomicBool>,
    /// For cancels and the end, from the caller's threads.
    control: Mutex<Link>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("queue", &self.keys.queue)
            .field("caller", &self.caller)
            .finish_non_exhaustive()
    }
}

/// What `Remote::start` found.
pub(crate) struct Started {
    pub(crate) remote: Arc<Remote>,
    /// The worker processes of the live hosts.
    pub(crate) processes: usize,
    pub(crate) threads: Vec<JoinHandle<()>>,
}

impl Remote {
    /// Connects, waits (up to `start_timeout`) for a live host of this
    /// build, and starts the sender and reader threads.
    pub(crate) fn start(
        config: RemoteConfig,
        start_timeout: Duration,
        stats: Arc<Stats>,
        pending: Arc<Pending>,
    ) -> Result<Started, Error> {
        let secret = config.secret.as_deref().ok_or_else(|| {
            Error::InvalidArgument(
                "a Redis pool needs the hosts' shared secret: call PoolBuilder::secret(key) with the \
                 key the hosts have in PROCPOOL_SECRET or PROCPOOL_SECRET_FILE"
                    .into(),
            )
        })?;
        let sealer = Sealer::new(secret, &config.queue).map_err(Error::InvalidArgument)?;
        let build = crate::cluster::build_name()
            .map_err(|e| Error::InvalidArgument(format!("this program's build cannot be named: {e}")))?;
        let keys = Keys::new(&config.queue, &build);
        let mut link = Link::open(&config.url, config.outage)?;
        create_group(&mut link, &keys)?;
        let processes = wait_for_hosts(&mut link, &keys, &sealer, start_timeout)?;
        let caller = keys::unique_name();
        link.query::<()>(
            redis::cmd("SET")
                .arg(keys.caller(&caller))
                .arg(1)
                .arg("PX")
                .arg(millis(config.lease)),
        )?;
        let stopping = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stopping);
        link.abort_when(Arc::new(move || flag.load(Ordering::SeqCst)));
        let sender_link = link.another()?;
        let reader_link = link.another()?;
        let remote = Arc::new(Remote {
            window: (8 * processes).max(64),
            keys,
            caller,
            sealer,
            config,
            start_timeout,
            stats,
            pending,
            state: Mutex::default(),
            wake: Condvar::new(),
            stop: stopping,
            control: Mutex::new(link),
        });
        let spawn = |name: &str, body: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(body)
                .map_err(Error::spawn)
        };
        let (sender, reader) = (Arc::clone(&remote), Arc::clone(&remote));
        let threads = vec![
            spawn(
                "procpool-redis-send",
                Box::new(move || sender.send_loop(sender_link)),
            )?,
            spawn(
                "procpool-redis-read",
                Box::new(move || reader.read_loop(reader_link)),
            )?,
        ];
        Ok(Started {
            remote,
            processes,
            threads,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes an admitted job: it goes to Redis when the window has room.
    pub(crate) fn submit(&self, job: Job) {
        let mut state = self.lock();
        if self.stop.load(Ordering::SeqCst) {
            drop(state);
            job.fail(Error::Terminated);
            return;
        }
        state.waiting.push_back(job);
        self.wake.notify_all();
    }

    /// Fails the call's waiting and outstanding jobs with
    /// [`Error::Cancelled`] and tells the hosts to stop its running tasks.
    pub(crate) fn cancel(&self, token: &Arc<CallToken>) -> bool {
        let (jobs, tickets) = {
            let mut state = self.lock();
            let (jobs, kept): (VecDeque<Job>, VecDeque<Job>) = std::mem::take(&mut state.waiting)
                .into_iter()
                .partition(|job| Arc::ptr_eq(&job.ticket.call, token));
            state.waiting = kept;
            let ids: Vec<u64> = state
                .outstanding
                .iter()
                .filter(|(_, t)| Arc::ptr_eq(&t.call, token))
                .map(|(id, _)| *id)
                .collect();
            let tickets: Vec<Ticket> = ids.iter().filter_map(|id| state.outstanding.remove(id)).collect();
            self.wake.notify_all();
            (jobs, tickets)
        };
        let found = !jobs.is_empty() || !tickets.is_empty();
        if !tickets.is_empty() {
            self.tell_hosts(&Control::Cancel {
                caller: self.caller.clone(),
                call: call_id(token),
            });
        }
        for job in jobs {
            job.fail(Error::Cancelled);
        }
        for ticket in tickets {
            ticket.complete(ChunkOutcome::Failed(Error::Cancelled));
        }
        found
    }

    fn tell_hosts(&self, control: &Control) {
        let fields = Fields::sealed(&self.sealer, Kind::Control, control, Vec::new());
        let mut pipe = redis::pipe();
        link::xadd(&mut pipe, &self.keys.control(), Some(1000), &fields);
        let mut link = self.control.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = link.pipe::<()>(&pipe) {
            tracing::warn!(error = %e, "could not tell the hosts of queue {:?}", self.keys.queue);
        }
    }

    /// Stops the threads (after `join`: nothing is outstanding) and removes
    /// this caller's keys.
    pub(crate) fn finish(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake.notify_all();
        let mut link = self.control.lock().unwrap_or_else(|e| e.into_inner());
        let _ = link.query::<()>(
            redis::cmd("DEL")
                .arg(self.keys.caller(&self.caller))
                .arg(self.keys.reply(&self.caller)),
        );
    }

    /// Fails everything with [`Error::Terminated`], tells the hosts to stop
    /// this caller's tasks, and stops.
    pub(crate) fn terminate(&self) {
        if self.stop.swap(true, Ordering::SeqCst) {
            return;
        }
        self.fail_all(&Error::Terminated);
        self.tell_hosts(&Control::CallerGone {
            caller: self.caller.clone(),
        });
        self.finish();
    }

    fn fail_all(&self, error: &Error) {
        let (jobs, tickets) = {
            let mut state = self.lock();
            let tickets: Vec<Ticket> = state.outstanding.drain().map(|(_, t)| t).collect();
            (std::mem::take(&mut state.waiting), tickets)
        };
        for job in jobs {
            job.fail(error.clone());
        }
        for ticket in tickets {
            ticket.complete(ChunkOutcome::Failed(error.clone()));
        }
    }

    /// Moves waiting jobs into the task stream, a window at most.
    fn send_loop(&self, mut link: Link) {
        let tasks = self.keys.tasks();
        loop {
            let batch: Vec<Job> = {
                let mut state = self.lock();
                loop {
                    if self.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let room = self.window.saturating_sub(state.outstanding.len());
                    if room > 0 && !state.waiting.is_empty() {
                        // A batch ends at BATCH_BYTES too: hosts start on
                        // the first chunks of a large call while the rest
                        // is sealed and sent.
                        let (mut take, mut bytes) = (0, 0);
                        for job in state.waiting.iter().take(room.min(BATCH)) {
                            if take > 0 && bytes + job.frame.len() > BATCH_BYTES {
                                break;
                            }
                            take += 1;
                            bytes += job.frame.len();
                        }
                        break state.waiting.drain(..take).collect();
                    }
                    state = self.wake.wait(state).unwrap_or_else(|e| e.into_inner());
                }
            };
            let mut pipe = redis::pipe();
            let mut sent = Vec::with_capacity(batch.len());
            for job in batch {
                if job.ticket.call.is_cancelled() {
                    job.fail(Error::Cancelled);
                    continue;
                }
                let header = TaskHeader {
                    caller: self.caller.clone(),
                    call: call_id(&job.ticket.call),
                    job: job.ticket.id,
                    count: job.ticket.meta.count,
                    timeout_ns: job.ticket.policy.timeout.map(crate::cluster::wire::nanos),
                    retries: job.ticket.policy.retries,
                    deliveries: self.config.deliveries,
                };
                let Job { frame, ticket, .. } = job;
                let fields = Fields::sealed(&self.sealer, Kind::Task, &header, frame.bytes);
                link::xadd(&mut pipe, &tasks, None, &fields);
                sent.push(ticket);
            }
            if sent.is_empty() {
                continue;
            }
            let ids: Vec<u64> = sent.iter().map(|t| t.id).collect();
            {
                let mut state = self.lock();
                if state.outstanding.is_empty() {
                    state.heard = Some(Instant::now());
                }
                for ticket in sent {
                    state.outstanding.insert(ticket.id, ticket);
                }
            }
            if let Err(error) = link.pipe::<()>(&pipe) {
                let lost: Vec<Ticket> = {
                    let mut state = self.lock();
                    ids.iter().filter_map(|id| state.outstanding.remove(id)).collect()
                };
                for ticket in lost {
                    ticket.complete(ChunkOutcome::Failed(error.clone()));
                }
            }
        }
    }

    /// Takes results, renews the caller's key, watches for hosts.
    fn read_loop(&self, mut link: Link) {
        let reply = self.keys.reply(&self.caller);
        let mut last = "0-0".to_owned();
        let mut renewed = Instant::now();
        while !self.stop.load(Ordering::SeqCst) {
            if renewed.elapsed() >= self.config.lease / 3 {
                renewed = Instant::now();
                let renew = redis::cmd("SET")
                    .arg(self.keys.caller(&self.caller))
                    .arg(1)
                    .arg("PX")
                    .arg(millis(self.config.lease))
                    .clone();
                if let Err(error) = link.query::<()>(&renew) {
                    self.fail_all(&error);
                    continue;
                }
            }
            let read = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(BATCH)
                .arg("BLOCK")
                .arg(millis(link::BLOCK))
                .arg("STREAMS")
                .arg(&reply)
                .arg(&last)
                .clone();
            let value: redis::Value = match link.query(&read) {
                Ok(value) => value,
                Err(error) => {
                    self.fail_all(&error);
                    continue;
                }
            };
            let entries = link::read_entries(value);
            if entries.is_empty() {
                self.watch_hosts(&mut link);
                continue;
            }
            let mut del = redis::cmd("XDEL");
            del.arg(&reply);
            for entry in &entries {
                del.arg(&entry.id);
                self.deliver(&entry.fields);
            }
            last = entries.last().map(|e| e.id.clone()).unwrap_or(last);
            if let Err(error) = link.query::<()>(&del) {
                tracing::warn!(error = %error, "could not delete read results");
            }
        }
    }

    /// Delivers one reply entry: the first for its job, or dropped.
    fn deliver(&self, fields: &Fields) {
        let header: ReplyHeader = match fields.open(&self.sealer, Kind::Reply) {
            Ok(header) => header,
            Err(why) => {
                tracing::warn!(%why, "rejected a result entry");
                return;
            }
        };
        let ticket = {
            let mut state = self.lock();
            state.heard = Some(Instant::now());
            let ticket = state.outstanding.remove(&header.job);
            self.wake.notify_all();
            ticket
        };
        let Some(ticket) = ticket else {
            tracing::debug!(job = header.job, host = %header.host, "dropped a second result");
            return;
        };
        complete(ticket, &header, &fields.body, &self.stats, &self.pending);
    }

    /// Fails the outstanding work when no live host has been seen for the
    /// start timeout while results were awaited.
    fn watch_hosts(&self, link: &mut Link) {
        let silent = {
            let state = self.lock();
            match state.heard {
                Some(heard) if !state.outstanding.is_empty() => heard.elapsed() >= self.start_timeout,
                _ => false,
            }
        };
        if !silent {
            return;
        }
        match find_hosts(link, &self.keys, &self.sealer) {
            Ok((live, _)) if live > 0 => self.lock().heard = Some(Instant::now()),
            Ok((_, seen)) => self.fail_all(&no_host(&self.keys, seen)),
            Err(error) => self.fail_all(&error),
        }
    }
}

/// Completes a ticket with a reply's segments, splitting it where they
/// split the chunk.
fn complete(ticket: Ticket, header: &ReplyHeader, body: &[u8], stats: &Stats, pending: &Arc<Pending>) {
    let total: u64 = header.segments.iter().map(|s| u64::from(s.count())).sum();
    let lengths: u64 = header
        .segments
        .iter()
        .map(|s| match s {
            Segment::Results { len, .. } => *len,
            Segment::Failed { .. } => 0,
        })
        .sum();
    if total != u64::from(ticket.meta.count)
        || lengths != body.len() as u64
        || header.segments.iter().any(|s| s.count() == 0)
    {
        let message = format!(
            "worker host {} sent {total} results for {} items",
            header.host, ticket.meta.count
        );
        ticket.complete(ChunkOutcome::Failed(Error::Protocol { pid: 0, message }));
        return;
    }
    let mut offset = 0usize;
    let last = header.segments.len() - 1;
    let mut rest = Some(ticket);
    for (i, segment) in header.segments.iter().enumerate() {
        let part = match rest.as_mut() {
            Some(ticket) if i < last => ticket.split_head(segment.count(), ticket.id, pending.token()),
            _ => match rest.take() {
                Some(ticket) => ticket,
                None => return,
            },
        };
        let cancelled = part.call.is_cancelled();
        match segment {
            _ if cancelled => part.complete(ChunkOutcome::Failed(Error::Cancelled)),
            Segment::Results { count, len } => {
                let bytes = &body[offset..offset + *len as usize];
                offset += *len as usize;
                match validate(bytes, *count) {
                    Ok(ok) => {
                        stats.host_done(&header.host, ok, count - ok, *count);
                        part.complete(ChunkOutcome::Results(bytes));
                    }
                    Err(e) => part.complete(ChunkOutcome::Failed(Error::Protocol {
                        pid: 0,
                        message: format!("worker host {}: {}", header.host, e.0),
                    })),
                }
            }
            Segment::Failed { count, error } => {
                stats.host_done(&header.host, 0, 0, *count);
                part.complete(ChunkOutcome::Failed(error.clone().into_error(&header.host)));
            }
        }
    }
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Creates the consumer group of the task stream (and the stream), unless
/// it exists.
pub(crate) fn create_group(link: &mut Link, keys: &Keys) -> Result<(), Error> {
    let create = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(keys.tasks())
        .arg(GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .clone();
    match link.query::<()>(&create) {
        Err(Error::Redis { message, .. }) if message.contains("BUSYGROUP") => Ok(()),
        other => other,
    }
}

/// The worker processes of the live hosts of this build, and a list of
/// the hosts seen (for an error).
pub(crate) fn find_hosts(
    link: &mut Link,
    keys: &Keys,
    sealer: &Sealer,
) -> Result<(usize, Vec<String>), Error> {
    let mut cursor = 0u64;
    let mut names: Vec<String> = Vec::new();
    loop {
        let (next, found): (u64, Vec<String>) = link.query(
            redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(keys.hosts_pattern())
                .arg("COUNT")
                .arg(1000),
        )?;
        names.extend(found);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    let (mut live, mut seen) = (0usize, Vec::new());
    if names.is_empty() {
        return Ok((0, seen));
    }
    let values: Vec<Option<Vec<u8>>> = link.query(redis::cmd("MGET").arg(&names))?;
    for value in values.into_iter().flatten() {
        let fields = Fields::unpack(&value);
        let Ok(info) = fields.open::<HostInfo>(sealer, Kind::Host) else {
            seen.push("a host whose key is not sealed with this secret".to_owned());
            continue;
        };
        if info.build == keys.build && !info.draining {
            live += info.processes as usize;
        } else {
            seen.push(format!(
                "{} (build {}, {} processes{})",
                info.host,
                info.build,
                info.processes,
                if info.draining { ", draining" } else { "" }
            ));
        }
    }
    Ok((live, seen))
}

fn no_host(keys: &Keys, seen: Vec<String>) -> Error {
    Error::NoHost {
        queue: keys.queue.clone(),
        build: keys.build.clone(),
        seen: if seen.is_empty() {
            "none".to_owned()
        } else {
            seen.join(", ")
        },
    }
}

fn wait_for_hosts(link: &mut Link, keys: &Keys, sealer: &Sealer, timeout: Duration) -> Result<usize, Error> {
    let deadline = Instant::now() + timeout;
    loop {
        let (live, seen) = find_hosts(link, keys, sealer)?;
        if live > 0 {
            return Ok(live);
        }
        if Instant::now() >= deadline {
            return Err(no_host(keys, seen));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
