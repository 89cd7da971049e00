//! A host's outgoing side: each chunk's outcome gathered ([`HostSink`]) and
//! sent to its caller, the task entry then acknowledged and deleted
//! ([`send_loop`]); and the keeper ([`keep_loop`]) that renews the host's
//! liveness key and its claims on the tasks it holds, and cancels the
//! tasks of callers that are gone or asked for it ([`control_loop`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::cluster::keys::{GROUP, Keys};
use crate::cluster::link::{self, Link};
use crate::cluster::seal::{Kind, Sealer};
use crate::cluster::wire::{Control, Fields, HostInfo, ReplyHeader, Segment, WireError};
use crate::pool::Pool;
use crate::pool::remote::millis;
use crate::result::callbacks::CallToken;
use crate::result::sink::{ChunkMeta, ChunkOutcome, Sink};

/// What the sender thread writes to Redis.
#[derive(Debug)]
pub(super) enum Outgoing {
    /// A chunk's outcome for its caller; then the task entry is done.
    Reply {
        id: String,
        caller: String,
        fields: Fields,
    },
    /// An entry refused or given up: to the dead-letter stream (and, when
    /// given up, the failure to its caller); then it is done.
    Dead {
        id: String,
        reason: String,
        fields: Fields,
        reply: Option<(String, Fields)>,
    },
    /// An entry not to run (its caller is gone, or cancelled it).
    Drop { id: String },
}

/// A task entry the host holds.
#[derive(Debug)]
pub(super) struct Held {
    pub(super) caller: String,
    pub(super) call: u64,
    pub(super) token: Arc<CallToken>,
}

#[derive(Debug, Default)]
pub(super) struct Holding {
    /// By entry id.
    pub(super) entries: HashMap<String, Held>,
    /// Calls cancelled, and callers gone: their later entries are dropped.
    pub(super) cancelled: HashSet<(String, u64)>,
    pub(super) gone: HashSet<String>,
}

/// What a host's threads share.
#[derive(Debug)]
pub(super) struct HostState {
    pub(super) name: String,
    pub(super) keys: Keys,
    pub(super) sealer: Sealer,
    pub(super) lease: Duration,
    pub(super) processes: usize,
    pub(super) pool: Pool,
    pub(super) holding: Mutex<Holding>,
    pub(super) changed: Condvar,
    pub(super) stop: AtomicBool,
    pub(super) draining: AtomicBool,
    pub(super) done: AtomicU64,
    pub(super) rejected: AtomicU64,
}

impl HostState {
    pub(super) fn lock(&self) -> MutexGuard<'_, Holding> {
        self.holding.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The token of a call, shared by its entries on this host.
    pub(super) fn token(holding: &Holding, caller: &str, call: u64) -> Arc<CallToken> {
        holding
            .entries
            .values()
            .find(|h| h.caller == caller && h.call == call)
            .map_or_else(Arc::default, |h| Arc::clone(&h.token))
    }

    /// Cancels the held tasks `which` picks (in the local pool: queued
    /// ones fail, running ones are killed with their worker).
    fn cancel_where(&self, which: impl Fn(&Held) -> bool) {
        let tokens: Vec<Arc<CallToken>> = self
            .lock()
            .entries
            .values()
            .filter(|h| which(h))
            .map(|h| Arc::clone(&h.token))
            .collect();
        for token in tokens {
            if !token.is_cancelled() {
                self.pool.shared.cancel(&token);
            }
        }
    }

    fn finished(&self, ids: &[String]) {
        let mut holding = self.lock();
        for id in ids {
            holding.entries.remove(id);
        }
        self.changed.notify_all();
    }
}

/// Gathers one chunk's outcome (the local pool may deliver it in parts)
/// and hands the whole to the sender thread.
pub(super) struct HostSink {
    pub(super) id: String,
    pub(super) caller: String,
    pub(super) job: u64,
    pub(super) count: u32,
    pub(super) host: String,
    pub(super) sealer: Sealer,
    pub(super) parts: Mutex<Vec<(usize, Segment, Vec<u8>)>>,
    pub(super) out: Sender<Outgoing>,
}

impl Sink for HostSink {
    fn complete(&self, meta: &ChunkMeta, outcome: ChunkOutcome<'_>) {
        let (segment, bytes) = match outcome {
            ChunkOutcome::Results(bytes) => (
                Segment::Results {
                    count: meta.count,
                    len: bytes.len() as u64,
                },
                bytes.to_vec(),
            ),
            ChunkOutcome::Failed(error) => (
                Segment::Failed {
                    count: meta.count,
                    error: WireError::from_error(&error),
                },
                Vec::new(),
            ),
        };
        let mut parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        parts.push((meta.first, segment, bytes));
        let total: u64 = parts.iter().map(|(_, s, _)| u64::from(s.count())).sum();
        if total < u64::from(self.count) {
            return;
        }
        parts.sort_by_key(|(first, _, _)| *first);
        let (body, segments) = if parts.len() == 1 {
            // The usual case: one part, whose bytes are the body as they are.
            let (_, segment, bytes) = parts.pop().expect("one part");
            (bytes, vec![segment])
        } else {
            let mut body = Vec::with_capacity(parts.iter().map(|(_, _, b)| b.len()).sum());
            let mut segments = Vec::with_capacity(parts.len());
            for (_, segment, bytes) in parts.drain(..) {
                body.extend_from_slice(&bytes);
                segments.push(segment);
            }
            (body, segments)
        };
        let header = ReplyHeader {
            job: self.job,
            host: self.host.clone(),
            segments,
        };
        let fields = Fields::sealed(&self.sealer, Kind::Reply, &header, body);
        let _ = self.out.send(Outgoing::Reply {
            id: self.id.clone(),
            caller: self.caller.clone(),
            fields,
        });
    }
}

/// How long a reply stream lives after its last result, when its caller
/// no longer reads it.
const REPLY_TTL: Duration = Duration::from_secs(600);

/// Writes outcomes, dead letters and acknowledgements, a batch per round
/// trip, until the host stops and nothing is left.
pub(super) fn send_loop(state: &HostState, out: &Receiver<Outgoing>, mut link: Link) {
    let tasks = state.keys.tasks();
    loop {
        let first = match out.recv_timeout(link::BLOCK) {
            Ok(first) => first,
            Err(RecvTimeoutError::Timeout) if !state.stop.load(Ordering::SeqCst) => continue,
            Err(_) => return,
        };
        let batch: Vec<Outgoing> = std::iter::once(first).chain(out.try_iter().take(255)).collect();
        let mut pipe = redis::pipe();
        let mut ids = Vec::with_capacity(batch.len());
        let mut replied = 0u64;
        for outgoing in batch {
            match outgoing {
                Outgoing::Reply { id, caller, fields } => {
                    let reply = state.keys.reply(&caller);
                    link::xadd(&mut pipe, &reply, Some(100_000), &fields);
                    pipe.cmd("PEXPIRE").arg(&reply).arg(millis(REPLY_TTL)).ignore();
                    replied += 1;
                    ids.push(id);
                }
                Outgoing::Dead {
                    id,
                    reason,
                    fields,
                    reply,
                } => {
                    let notes = [("reason", reason.as_str()), ("entry", id.as_str())];
                    link::xadd_noted(&mut pipe, &state.keys.dead(), Some(10_000), &notes, &fields);
                    if let Some((caller, fields)) = reply {
                        link::xadd(&mut pipe, &state.keys.reply(&caller), Some(100_000), &fields);
                    }
                    ids.push(id);
                }
                Outgoing::Drop { id } => ids.push(id),
            }
        }
        pipe.cmd("XACK").arg(&tasks).arg(GROUP).arg(&ids);
        pipe.cmd("XDEL").arg(&tasks).arg(&ids);
        match link.pipe::<redis::Value>(&pipe) {
            Ok(_) => {
                state.done.fetch_add(replied, Ordering::Relaxed);
            }
            // The entries stay pending: after the lease another host (or
            // this one) runs them again, and the caller drops a second
            // result.
            Err(error) => tracing::warn!(%error, "could not send results; their tasks will run again"),
        }
        state.finished(&ids);
    }
}

/// Renews the host's key and its claims, and cancels the tasks of gone
/// callers, every third of the lease.
pub(super) fn keep_loop(state: &HostState, mut link: Link) {
    let tasks = state.keys.tasks();
    while !state.stop.load(Ordering::SeqCst) {
        let info = HostInfo {
            host: state.name.clone(),
            build: state.keys.build.clone(),
            processes: state.processes as u32,
            pid: std::process::id(),
            tasks: state.done.load(Ordering::Relaxed),
            draining: state.draining.load(Ordering::SeqCst),
        };
        let fields = Fields::sealed(&state.sealer, Kind::Host, &info, Vec::new());
        let renew = redis::cmd("SET")
            .arg(state.keys.host(&state.name))
            .arg(fields.pack())
            .arg("PX")
            .arg(millis(state.lease))
            .clone();
        if let Err(error) = link.query::<()>(&renew) {
            tracing::warn!(%error, "could not renew the host's key");
        }
        let held: Vec<(String, String)> = state
            .lock()
            .entries
            .iter()
            .map(|(id, h)| (id.clone(), h.caller.clone()))
            .collect();
        if !held.is_empty() {
            renew_claims(state, &mut link, &tasks, &held);
        }
        let mut holding = state.lock();
        let wait = state.lease / 3;
        holding = state
            .changed
            .wait_timeout_while(holding, wait, |_| !state.stop.load(Ordering::SeqCst))
            .map_or_else(|e| e.into_inner().0, |r| r.0);
        drop(holding);
    }
}

/// Renews the claims on the entries this host still owns (one another
/// host took over after a pause stays with it), and cancels the tasks of
/// callers whose key expired.
fn renew_claims(state: &HostState, link: &mut Link, tasks: &str, held: &[(String, String)]) {
    let pending: redis::Value = match link.query(
        redis::cmd("XPENDING")
            .arg(tasks)
            .arg(GROUP)
            .arg("-")
            .arg("+")
            .arg(10_000)
            .arg(&state.name),
    ) {
        Ok(value) => value,
        Err(error) => {
            tracing::warn!(%error, "could not read the host's pending tasks");
            return;
        }
    };
    // Each pending entry is `[id, consumer, idle, deliveries]`.
    let owned: HashSet<String> = match pending {
        redis::Value::Array(list) => list
            .iter()
            .filter_map(|e| match e {
                redis::Value::Array(parts) => parts.first().and_then(link::text),
                _ => None,
            })
            .collect(),
        _ => HashSet::new(),
    };
    let ids: Vec<&String> = held
        .iter()
        .map(|(id, _)| id)
        .filter(|id| owned.contains(*id))
        .collect();
    let callers: Vec<&String> = {
        let mut seen: Vec<&String> = held.iter().map(|(_, c)| c).collect();
        seen.sort();
        seen.dedup();
        seen
    };
    let mut pipe = redis::pipe();
    if !ids.is_empty() {
        pipe.cmd("XCLAIM")
            .arg(tasks)
            .arg(GROUP)
            .arg(&state.name)
            .arg(0)
            .arg(&ids)
            .arg("JUSTID")
            .ignore();
    }
    for caller in &callers {
        pipe.cmd("EXISTS").arg(state.keys.caller(caller));
    }
    match link.pipe::<Vec<i64>>(&pipe) {
        Ok(alive) => {
            let gone: HashSet<String> = callers
                .iter()
                .zip(alive)
                .filter(|(_, n)| *n == 0)
                .map(|(c, _)| (*c).clone())
                .collect();
            if !gone.is_empty() {
                tracing::info!(callers = ?gone, "callers gone: stopping their tasks");
                state.lock().gone.extend(gone.iter().cloned());
                state.cancel_where(|h| gone.contains(&h.caller));
            }
        }
        Err(error) => tracing::warn!(%error, "could not renew the host's claims"),
    }
}

/// Applies cancels and callers' ends from the queue's control stream.
pub(super) fn control_loop(state: &HostState, mut link: Link) {
    let control = state.keys.control();
    let mut last = "$".to_owned();
    while !state.stop.load(Ordering::SeqCst) {
        let read = redis::cmd("XREAD")
            .arg("BLOCK")
            .arg(millis(link::BLOCK))
            .arg("STREAMS")
            .arg(&control)
            .arg(&last)
            .clone();
        let entries = match link.query::<redis::Value>(&read) {
            Ok(value) => link::read_entries(value),
            Err(error) => {
                tracing::warn!(%error, "could not read the control stream");
                continue;
            }
        };
        for entry in entries {
            last = entry.id.clone();
            match entry.fields.open::<Control>(&state.sealer, Kind::Control) {
                Ok(Control::Cancel { caller, call }) => {
                    state.lock().cancelled.insert((caller.clone(), call));
                    state.cancel_where(|h| h.caller == caller && h.call == call);
                }
                Ok(Control::CallerGone { caller }) => {
                    state.lock().gone.insert(caller.clone());
                    state.cancel_where(|h| h.caller == caller);
                }
                Err(why) => {
                    state.rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(entry = %entry.id, %why, "rejected a control entry");
                }
            }
        }
    }
}
