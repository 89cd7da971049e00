//! Worker hosts: the same executable, started with `PROCPOOL_REDIS` (and a
//! secret), becomes a host before `main` runs ([`boot`]) and runs the
//! tasks of a queue's callers in its own local pool, so that every
//! isolation feature of a local pool (a panic, a crash, a timeout fails
//! its task only; the worker is replaced) holds on every machine.
//!
//! - [`serve`]: takes task entries (new ones, and those whose host went
//!   silent past the lease), checks their seal before anything else, and
//!   submits them to the local pool;
//! - [`reply`]: gathers each chunk's outcome and sends it to its caller,
//!   then acknowledges and deletes the task entry; keeps the host's leases
//!   and its liveness key; applies cancels.
//!
//! A host drains on SIGTERM or SIGINT: it takes no new task, finishes
//! those it holds, and exits.

mod boot;
mod reply;
mod serve;

use std::time::Duration;

use crate::error::Error;

/// The environment variables a host reads (and removes before its workers
/// start, so that tasks never see the secret).
pub(crate) const VARS: [&str; 7] = [
    "PROCPOOL_REDIS",
    "PROCPOOL_SECRET",
    "PROCPOOL_SECRET_FILE",
    "PROCPOOL_QUEUE",
    "PROCPOOL_PROCESSES",
    "PROCPOOL_LEASE_MS",
    "PROCPOOL_LOG",
];

/// What a host is started with.
#[derive(Clone)]
pub(crate) struct HostConfig {
    pub(crate) url: String,
    pub(crate) secret: Vec<u8>,
    pub(crate) queue: String,
    pub(crate) processes: usize,
    pub(crate) lease: Duration,
}

impl std::fmt::Debug for HostConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostConfig")
            .field("url", &crate::cluster::link::redacted(&self.url))
            .field("queue", &self.queue)
            .field("processes", &self.processes)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl HostConfig {
    /// Reads the configuration from `get` (the environment).
    ///
    /// # Errors
    ///
    /// What is missing or malformed, and how to give it.
    pub(crate) fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<HostConfig, String> {
        let url = get("PROCPOOL_REDIS").ok_or("PROCPOOL_REDIS is not set")?;
        let secret = match (get("PROCPOOL_SECRET"), get("PROCPOOL_SECRET_FILE")) {
            (Some(secret), _) => secret.into_bytes(),
            (None, Some(path)) => {
                let mut bytes =
                    std::fs::read(&path).map_err(|e| format!("PROCPOOL_SECRET_FILE={path}: {e}"))?;
                while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
                    bytes.pop();
                }
                bytes
            }
            (None, None) => {
                return Err(
                    "a worker host needs the pool's shared secret: set PROCPOOL_SECRET=<key> or \
                            PROCPOOL_SECRET_FILE=<path> (the key given to PoolBuilder::secret)"
                        .to_owned(),
                );
            }
        };
        let queue = get("PROCPOOL_QUEUE").unwrap_or_else(|| "default".to_owned());
        crate::pool::check_queue(&queue)?;
        let processes =
            match get("PROCPOOL_PROCESSES") {
                Some(n) => n.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    format!("PROCPOOL_PROCESSES={n} is not a number of processes (1 or more)")
                })?,
                None => std::thread::available_parallelism().map_or(1, |n| n.get()),
            };
        let lease = match get("PROCPOOL_LEASE_MS") {
            Some(ms) => ms
                .parse::<u64>()
                .ok()
                .filter(|ms| *ms >= 100)
                .map(Duration::from_millis)
                .ok_or_else(|| {
                    format!("PROCPOOL_LEASE_MS={ms} is not a lease in milliseconds (100 or more)")
                })?,
            None => crate::cluster::DEFAULT_LEASE,
        };
        Ok(HostConfig {
            url,
            secret,
            queue,
            processes,
            lease,
        })
    }
}

/// Runs a host until it is drained; returns its exit code.
pub(crate) fn run(config: HostConfig) -> i32 {
    match serve::Host::start(config).and_then(|host| host.serve()) {
        Ok(()) => 0,
        Err(error) => {
            tracing::error!(%error, "worker host stopped");
            eprintln!("procpool worker host: {error}");
            2
        }
    }
}

/// Makes a host's error from a message.
fn failed(message: impl Into<String>) -> Error {
    Error::InvalidArgument(message.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn a_host_reads_its_environment_and_refuses_to_start_without_a_secret() {
        let config = HostConfig::from_vars(vars(&[
            ("PROCPOOL_REDIS", "redis://h"),
            ("PROCPOOL_SECRET", "0123456789abcdef"),
            ("PROCPOOL_PROCESSES", "3"),
            ("PROCPOOL_QUEUE", "q1"),
        ]))
        .unwrap();
        assert_eq!(
            (config.processes, config.queue.as_str(), config.lease),
            (3, "q1", crate::cluster::DEFAULT_LEASE)
        );
        let err = HostConfig::from_vars(vars(&[("PROCPOOL_REDIS", "redis://h")])).unwrap_err();
        assert!(
            err.contains("PROCPOOL_SECRET=") && err.contains("PROCPOOL_SECRET_FILE"),
            "{err}"
        );
        let err = HostConfig::from_vars(vars(&[
            ("PROCPOOL_REDIS", "r"),
            ("PROCPOOL_SECRET", "k"),
            ("PROCPOOL_PROCESSES", "0"),
        ]))
        .unwrap_err();
        assert!(err.contains("PROCPOOL_PROCESSES=0"), "{err}");
        assert!(!format!("{config:?}").contains("0123456789abcdef"));
    }
}
