//! The options of a pool fed through Redis ([`PoolBuilder::redis`] and
//! the methods beside it), and how such a pool is built.

use std::sync::Arc;
use std::time::Duration;

use crate::cluster::{DEFAULT_DELIVERIES, DEFAULT_LEASE, DEFAULT_OUTAGE};
use crate::error::Error;
use crate::pool::Pool;
use crate::pool::builder::PoolBuilder;
use crate::pool::policy::{TaskPolicy, WorkerLimits};
use crate::pool::remote::{Remote, RemoteConfig};
use crate::pool::shared::{Options, Shared};
use crate::pool::stats::Stats;
use crate::worker::handle::StartConfig;

/// The largest chunk sent through Redis (its own limit for one value is
/// 512 MB).
const MAX_ENTRY: usize = 256 << 20;

/// What [`PoolBuilder`] holds for a pool fed through Redis.
#[derive(Clone, Default)]
pub(crate) struct ClusterOptions {
    url: Option<String>,
    queue: Option<String>,
    secret: Option<Vec<u8>>,
    lease: Option<Duration>,
    deliveries: Option<u32>,
    outage: Option<Duration>,
}

impl std::fmt::Debug for ClusterOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterOptions")
            .field("url", &self.url.as_deref().map(crate::cluster::link::redacted))
            .field("queue", &self.queue)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

impl ClusterOptions {
    /// Whether any of these options was set.
    pub(crate) fn is_set(&self) -> bool {
        self.url.is_some()
            || self.queue.is_some()
            || self.secret.is_some()
            || self.lease.is_some()
            || self.deliveries.is_some()
            || self.outage.is_some()
    }
}

impl PoolBuilder {
    /// Runs this pool's tasks on **worker hosts on other machines**, fed
    /// through the Redis server at `url` (Redis Streams with a consumer
    /// group): `redis://[user:password@]host:port[/db]`, `rediss://` for
    /// TLS, or `unix:///path/to/redis.sock`. Every call works as on a local
    /// pool. Needs [`secret`](Self::secret); see [`queue`](Self::queue).
    ///
    /// A worker host is this same executable, started on any machine with
    /// `PROCPOOL_REDIS=<url>` and `PROCPOOL_SECRET=<key>` (or
    /// `PROCPOOL_SECRET_FILE=<path>`), and optionally `PROCPOOL_QUEUE` and
    /// `PROCPOOL_PROCESSES`: it becomes a host before `main` runs and runs
    /// tasks in its own local workers. A task runs only on a host of the
    /// very same build. The README's "Across machines" section has the
    /// recipe, the delivery guarantees and the threat model.
    ///
    /// For such a pool, [`Pool::processes`] is the number of worker
    /// processes the live hosts had when it was built (it sizes default
    /// chunks), and [`Pool::worker_pids`] is empty: the workers are on
    /// other machines. [`Pool::stats`] counts items per host.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let pool = procpool::Pool::builder()
    ///     .redis("redis://127.0.0.1:6379")
    ///     .queue("images")
    ///     .secret(std::fs::read("/etc/procpool/secret")?)
    ///     .build()?;
    /// let squares = pool.map(|x: u64| x * x, 0..1000)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn redis(mut self, url: impl Into<String>) -> Self {
        self.cluster.url = Some(url.into());
        self
    }

    /// The queue whose hosts run this pool's tasks (default `"default"`):
    /// hosts serve the queue in their `PROCPOOL_QUEUE`. Letters, digits,
    /// `-`, `_` and `.` only.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let pool = procpool::Pool::builder().redis("redis://db:6379").queue("gpu").secret("0123456789abcdef").build()?;
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn queue(mut self, name: impl Into<String>) -> Self {
        self.cluster.queue = Some(name.into());
        self
    }

    /// The secret shared with the hosts (at least 16 bytes): every entry is
    /// signed with it (HMAC-SHA256), and a host runs nothing whose
    /// signature does not check. Required for [`redis`](Self::redis).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let key = std::env::var("PROCPOOL_SECRET").expect("a secret");
    /// let pool = procpool::Pool::builder().redis("redis://db:6379").secret(key).build()?;
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn secret(mut self, key: impl AsRef<[u8]>) -> Self {
        self.cluster.secret = Some(key.as_ref().to_vec());
        self
    }

    /// How long this caller may go silent before hosts drop its tasks as
    /// the work of a dead caller (default 10 s). Hosts have their own lease
    /// (`PROCPOOL_LEASE_MS`): how long a silent host keeps its tasks before
    /// other hosts take them over.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let pool = procpool::Pool::builder()
    ///     .redis("redis://db:6379").secret("0123456789abcdef").lease(Duration::from_secs(5)).build()?;
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn lease(mut self, lease: Duration) -> Self {
        self.cluster.lease = Some(lease);
        self
    }

    /// How many times a task may be delivered to a host (each earlier
    /// delivery lost its host) before it is given up with
    /// [`Error::WorkerDied`] and moved to the queue's dead-letter stream
    /// (default 3).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let pool = procpool::Pool::builder()
    ///     .redis("redis://db:6379").secret("0123456789abcdef").max_deliveries(5).build()?;
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn max_deliveries(mut self, deliveries: u32) -> Self {
        self.cluster.deliveries = Some(deliveries);
        self
    }

    /// How long the Redis server may be unreachable (a restart, a network
    /// cut) before outstanding results fail with [`Error::Redis`] (default
    /// 60 s). Shorter outages are ridden out: the pool reconnects.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let pool = procpool::Pool::builder()
    ///     .redis("redis://db:6379").secret("0123456789abcdef").redis_outage(Duration::from_secs(5)).build()?;
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn redis_outage(mut self, outage: Duration) -> Self {
        self.cluster.outage = Some(outage);
        self
    }
}

/// Checks a queue name: it becomes part of Redis keys.
pub(crate) fn check_queue(queue: &str) -> Result<(), String> {
    if queue.is_empty()
        || queue.len() > 100
        || !queue
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(format!(
            "the queue name {queue:?} must be 1 to 100 letters, digits, '-', '_' or '.'"
        ));
    }
    Ok(())
}

/// Builds a pool fed through Redis.
pub(crate) fn build(
    options: ClusterOptions,
    start_timeout: Duration,
    policy: TaskPolicy,
    local_only: Option<&str>,
) -> Result<Pool, Error> {
    let url = options.url.ok_or_else(|| {
        Error::InvalidArgument(
            "queue, secret, lease, max_deliveries and redis_outage need PoolBuilder::redis(url)".into(),
        )
    })?;
    if let Some(option) = local_only {
        return Err(Error::InvalidArgument(format!(
            "{option} applies to local workers; a Redis pool's workers are its hosts' (set it there)"
        )));
    }
    let queue = options.queue.unwrap_or_else(|| "default".to_owned());
    check_queue(&queue).map_err(Error::InvalidArgument)?;
    let lease = options.lease.unwrap_or(DEFAULT_LEASE);
    let deliveries = options.deliveries.unwrap_or(DEFAULT_DELIVERIES);
    let outage = options.outage.unwrap_or(DEFAULT_OUTAGE);
    if lease < Duration::from_millis(100) || deliveries == 0 || outage.is_zero() {
        return Err(Error::InvalidArgument(
            "the lease must be at least 100 ms, max_deliveries at least 1 and redis_outage longer than zero"
                .into(),
        ));
    }
    let config = RemoteConfig {
        url,
        queue,
        secret: options.secret,
        lease,
        deliveries,
        outage,
    };
    let stats = Arc::new(Stats::new(0));
    let pending = Arc::default();
    let started = Remote::start(config, start_timeout, Arc::clone(&stats), Arc::clone(&pending))?;
    let remote = Arc::clone(&started.remote);
    let made = StartConfig::new(start_timeout).and_then(|mut start| {
        start.max_body = MAX_ENTRY;
        let options = Options {
            start,
            policy,
            limits: WorkerLimits::default(),
            init: None,
            remote: Some(Arc::clone(&started.remote)),
        };
        Shared::with_stats(started.processes, options, stats, pending).map_err(Error::spawn)
    });
    match made {
        Ok(shared) => {
            for thread in started.threads {
                shared.add_thread(thread);
            }
            Ok(Pool { shared })
        }
        Err(e) => {
            remote.terminate();
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_are_what_a_key_can_hold() {
        assert!(check_queue("images-2.v1_x").is_ok());
        for bad in ["", "a b", "a:b", "a*", &"x".repeat(101)] {
            assert!(check_queue(bad).is_err(), "{bad:?}");
        }
    }
}
