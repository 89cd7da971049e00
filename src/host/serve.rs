//! A host's intake: task entries read from the consumer group (and taken
//! over from silent hosts), checked, and submitted to the local pool.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::reply::{self, Held, HostSink, HostState, Outgoing};
use super::{HostConfig, failed};
use crate::cluster::keys::{self, GROUP, Keys};
use crate::cluster::link::{self, Entry, Link};
use crate::cluster::seal::{Kind, Sealer};
use crate::cluster::wire::{Fields, ReplyHeader, Segment, TaskHeader, WireError};
use crate::error::{Error, ExitCause};
use crate::pool::Pool;
use crate::pool::job::{Job, Ticket};
use crate::pool::policy::TaskPolicy;
use crate::pool::remote::{create_group, millis};
use crate::pool::shared::Admission;
use crate::protocol::attach::{Attached, TaskFrame};
use crate::protocol::message;
use crate::sys::terminate;

/// Tasks a host holds per worker besides those the local pool would send
/// ahead: the running one and two to cover a round trip to Redis.
const HELD_PER_WORKER: usize = 3;

/// A running host.
pub(super) struct Host {
    state: Arc<HostState>,
    link: Link,
    out: Sender<Outgoing>,
    threads: Vec<JoinHandle<()>>,
    /// Callers recently seen alive, and when.
    alive: HashMap<String, Instant>,
}

impl Host {
    /// Connects, starts the local pool and the host's threads.
    pub(super) fn start(config: HostConfig) -> Result<Host, Error> {
        let sealer = Sealer::new(&config.secret, &config.queue).map_err(failed)?;
        let build = crate::cluster::build_name().map_err(failed)?;
        let keys = Keys::new(&config.queue, &build);
        let mut link = Link::open(&config.url, crate::cluster::DEFAULT_OUTAGE)?;
        // A host asked to stop does not wait for a server that is gone.
        link.abort_when(Arc::new(terminate::asked));
        create_group(&mut link, &keys)?;
        terminate::catch().map_err(Error::spawn)?;
        let pool = Pool::builder().processes(config.processes).build()?;
        let (out, replies) = crossbeam_channel::unbounded();
        let state = Arc::new(HostState {
            name: keys::unique_name(),
            keys,
            sealer,
            lease: config.lease,
            processes: config.processes,
            pool,
            holding: Mutex::default(),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            done: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        });
        let mut threads = Vec::new();
        let spawn = |name: &str, body: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(body)
                .map_err(Error::spawn)
        };
        let (s, l) = (Arc::clone(&state), link.another()?);
        threads.push(spawn(
            "procpool-host-send",
            Box::new(move || reply::send_loop(&s, &replies, l)),
        )?);
        let (s, l) = (Arc::clone(&state), link.another()?);
        threads.push(spawn(
            "procpool-host-keep",
            Box::new(move || reply::keep_loop(&s, l)),
        )?);
        let (s, l) = (Arc::clone(&state), link.another()?);
        threads.push(spawn(
            "procpool-host-control",
            Box::new(move || reply::control_loop(&s, l)),
        )?);
        tracing::info!(
            host = %state.name,
            queue = %state.keys.queue,
            build = %state.keys.build,
            processes = config.processes,
            redis = %link.url(),
            "worker host started"
        );
        Ok(Host {
            state,
            link,
            out,
            threads,
            alive: HashMap::new(),
        })
    }

    /// Serves until SIGTERM or SIGINT, then drains.
    pub(super) fn serve(mut self) -> Result<(), Error> {
        let state = Arc::clone(&self.state);
        let tasks = state.keys.tasks();
        let mut reclaimed = Instant::now()
            .checked_sub(state.lease)
            .unwrap_or_else(Instant::now);
        while !terminate::asked() {
            // Each worker gets the task it runs, the next ones for while a
            // round trip to Redis goes on, and as many more as the local
            // pool would send it ahead (many of quick tasks). Not more:
            // what a host holds, other hosts cannot run.
            let capacity = state.processes * (HELD_PER_WORKER + state.pool.shared.stats.depth());
            let free = capacity.saturating_sub(state.lock().entries.len());
            if free == 0 {
                let holding = state.lock();
                let _ = state.changed.wait_timeout(holding, Duration::from_millis(100));
                continue;
            }
            if reclaimed.elapsed() >= state.lease / 2 {
                reclaimed = Instant::now();
                if let Err(error) = self.reclaim(free) {
                    tracing::warn!(%error, "could not take over silent hosts' tasks");
                }
                continue;
            }
            let read = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg(&state.name)
                .arg("COUNT")
                .arg(free)
                .arg("BLOCK")
                .arg(millis(link::BLOCK))
                .arg("STREAMS")
                .arg(&tasks)
                .arg(">")
                .clone();
            match self.link.query::<redis::Value>(&read) {
                Ok(value) => {
                    let entries = link::read_entries(value);
                    self.take_all(entries.into_iter().map(|e| (e, 1)).collect());
                }
                Err(error) => {
                    tracing::warn!(%error, "could not read tasks");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
        self.drain();
        Ok(())
    }

    /// Finishes the tasks held, then stops.
    fn drain(mut self) {
        let state = Arc::clone(&self.state);
        state.draining.store(true, Ordering::SeqCst);
        state.changed.notify_all();
        tracing::info!(host = %state.name, held = state.lock().entries.len(), "draining: finishing the tasks held, taking no new ones");
        let mut holding = state.lock();
        while !holding.entries.is_empty() {
            holding = state.changed.wait(holding).unwrap_or_else(|e| e.into_inner());
        }
        drop(holding);
        state.pool.close();
        let _ = state.pool.join();
        state.stop.store(true, Ordering::SeqCst);
        state.changed.notify_all();
        drop(self.out);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        let _ = self
            .link
            .query::<()>(redis::cmd("DEL").arg(state.keys.host(&state.name)));
        tracing::info!(
            host = %state.name,
            tasks = state.done.load(Ordering::Relaxed),
            rejected = state.rejected.load(Ordering::Relaxed),
            "worker host stopped"
        );
    }

    /// Takes over the entries that other hosts left silent past the lease.
    fn reclaim(&mut self, free: usize) -> Result<(), Error> {
        let tasks = self.state.keys.tasks();
        let claim = redis::cmd("XAUTOCLAIM")
            .arg(&tasks)
            .arg(GROUP)
            .arg(&self.state.name)
            .arg(millis(self.state.lease))
            .arg("0-0")
            .arg("COUNT")
            .arg(free)
            .clone();
        let value: redis::Value = self.link.query(&claim)?;
        let redis::Value::Array(parts) = value else {
            return Ok(());
        };
        let deleted = parts.get(2).map(link::ids).unwrap_or_default();
        let entries = parts.into_iter().nth(1).map(link::entries).unwrap_or_default();
        if !deleted.is_empty() {
            self.link
                .query::<()>(redis::cmd("XACK").arg(&tasks).arg(GROUP).arg(&deleted))?;
        }
        if entries.is_empty() {
            return Ok(());
        }
        // How many times each was delivered, this time included.
        let mut pipe = redis::pipe();
        for entry in &entries {
            pipe.cmd("XPENDING")
                .arg(&tasks)
                .arg(GROUP)
                .arg(&entry.id)
                .arg(&entry.id)
                .arg(1);
        }
        let counts: Vec<redis::Value> = self.link.pipe(&pipe)?;
        let counted: Vec<(Entry, u32)> = entries
            .into_iter()
            .zip(counts)
            .map(|(entry, count)| (entry, delivery_count(&count)))
            .collect();
        tracing::info!(host = %self.state.name, tasks = counted.len(), "took over tasks of a silent host");
        self.take_all(counted);
        Ok(())
    }

    /// Checks entries (seal, deliveries, caller) and runs the good ones.
    fn take_all(&mut self, entries: Vec<(Entry, u32)>) {
        let mut opened = Vec::with_capacity(entries.len());
        for (entry, delivered) in entries {
            match entry.fields.open::<TaskHeader>(&self.state.sealer, Kind::Task) {
                Ok(header) => opened.push((entry, header, delivered)),
                Err(why) => self.reject(entry, &why.to_string()),
            }
        }
        if opened.is_empty() {
            return;
        }
        let gone = self.gone_callers(&opened);
        for (entry, header, delivered) in opened {
            let dropped = {
                let holding = self.state.lock();
                gone.contains(&header.caller)
                    || holding.gone.contains(&header.caller)
                    || holding.cancelled.contains(&(header.caller.clone(), header.call))
            };
            if dropped {
                let _ = self.out.send(Outgoing::Drop { id: entry.id });
            } else if delivered > header.deliveries {
                self.give_up(entry, &header, delivered);
            } else {
                self.run(entry, header);
            }
        }
    }

    /// The callers among `opened` whose liveness key has expired.
    fn gone_callers(&mut self, opened: &[(Entry, TaskHeader, u32)]) -> Vec<String> {
        // A caller seen alive within a third of the lease is not asked
        // about again: an `apply` then costs no round trip for it.
        let fresh = self.state.lease / 3;
        self.alive.retain(|_, seen| seen.elapsed() < fresh);
        let mut callers: Vec<&String> = opened
            .iter()
            .map(|(_, h, _)| &h.caller)
            .filter(|caller| !self.alive.contains_key(*caller))
            .collect();
        callers.sort();
        callers.dedup();
        if callers.is_empty() {
            return Vec::new();
        }
        let mut pipe = redis::pipe();
        for caller in &callers {
            pipe.cmd("EXISTS").arg(self.state.keys.caller(caller));
        }
        let alive = match self.link.pipe::<Vec<i64>>(&pipe) {
            Ok(alive) => alive,
            Err(_) => return Vec::new(),
        };
        let mut gone = Vec::new();
        for (caller, n) in callers.into_iter().zip(alive) {
            if n == 0 {
                gone.push(caller.clone());
            } else {
                self.alive.insert(caller.clone(), Instant::now());
            }
        }
        gone
    }

    fn reject(&mut self, entry: Entry, why: &str) {
        self.state.rejected.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(entry = %entry.id, %why, "rejected a task entry: nothing of it runs; moved to the dead-letter stream");
        let _ = self.out.send(Outgoing::Dead {
            id: entry.id,
            reason: format!("rejected: {why}"),
            fields: entry.fields,
            reply: None,
        });
    }

    /// A task delivered more times than allowed: every host it reached was
    /// lost. It fails, and goes to the dead-letter stream.
    fn give_up(&mut self, entry: Entry, header: &TaskHeader, delivered: u32) {
        let attempts = delivered - 1;
        tracing::warn!(entry = %entry.id, attempts, "gave up a task whose hosts were lost {attempts} times; moved to the dead-letter stream");
        let error = Error::WorkerDied {
            index: None,
            pid: 0,
            cause: ExitCause::HostLost,
            attempts,
        };
        let reply = ReplyHeader {
            job: header.job,
            host: self.state.name.clone(),
            segments: vec![Segment::Failed {
                count: header.count,
                error: WireError::from_error(&error),
            }],
        };
        let fields = Fields::sealed(&self.state.sealer, Kind::Reply, &reply, Vec::new());
        let _ = self.out.send(Outgoing::Dead {
            id: entry.id,
            reason: format!("gave up after {attempts} lost deliveries"),
            fields: entry.fields,
            reply: Some((header.caller.clone(), fields)),
        });
    }

    /// Submits a checked entry to the local pool.
    fn run(&mut self, entry: Entry, header: TaskHeader) {
        let shared = &self.state.pool.shared;
        let job = shared.next_job_id();
        let Entry { id, mut fields } = entry;
        // Checked in place: a refused frame is left as it came.
        if let Err(e) = message::renumber_task(&mut fields.body, job, header.count) {
            return self.reject(
                Entry { id, fields },
                &format!("sealed but malformed task: {}", e.0),
            );
        }
        let frame = fields.body;
        let token = {
            let mut holding = self.state.lock();
            let token = HostState::token(&holding, &header.caller, header.call);
            holding.entries.insert(
                id.clone(),
                Held {
                    caller: header.caller.clone(),
                    call: header.call,
                    token: Arc::clone(&token),
                },
            );
            token
        };
        let sink = Arc::new(HostSink {
            id,
            caller: header.caller.clone(),
            job: header.job,
            count: header.count,
            host: self.state.name.clone(),
            sealer: self.state.sealer.clone(),
            parts: Mutex::default(),
            out: self.out.clone(),
        });
        let policy = TaskPolicy {
            timeout: header.timeout(),
            retries: header.retries,
        };
        let ticket = Ticket::new(job, header.count, policy, token, shared, sink);
        let job = Job {
            frame: TaskFrame::new(frame, Attached::default()),
            ticket,
            unsendable: None,
        };
        if let Err(refused) = shared.submit(job, Admission::New) {
            refused.fail();
        }
    }
}

/// The delivery count in an `XPENDING key group id id 1` answer.
fn delivery_count(value: &redis::Value) -> u32 {
    let redis::Value::Array(list) = value else {
        return 1;
    };
    let Some(redis::Value::Array(parts)) = list.first() else {
        return 1;
    };
    match parts.get(3) {
        Some(redis::Value::Int(n)) => u32::try_from(*n).unwrap_or(u32::MAX),
        _ => 1,
    }
}
