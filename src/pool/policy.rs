//! What the pool does about a task's failures ([`TaskPolicy`]: timeout and
//! retries, per pool and per call), the limits of each worker process
//! ([`WorkerLimits`]), and the token that lets a caller cancel a call
//! ([`CallToken`]).

use std::time::Duration;

use crate::error::Error;

/// How one task is treated when it runs long or loses its worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TaskPolicy {
    /// Kill the task (with its worker) when it runs longer than this.
    pub(crate) timeout: Option<Duration>,
    /// Run the task again, up to this many times, when its worker dies.
    pub(crate) retries: u32,
}

impl TaskPolicy {
    /// Refuses a zero timeout, which no task could meet.
    pub(crate) fn check(&self) -> Result<(), Error> {
        match self.timeout {
            Some(t) if t.is_zero() => Err(Error::InvalidArgument(
                "a task timeout must be longer than zero".into(),
            )),
            _ => Ok(()),
        }
    }
}

/// Limits on every worker process of a pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct WorkerLimits {
    /// Replace a worker after it has run this many tasks.
    pub(crate) max_tasks: Option<u64>,
    /// The most memory (bytes of data segment) a worker may use.
    pub(crate) max_memory: Option<u64>,
}

/// Why the pool killed a worker on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Doom {
    /// Its task ran past this timeout.
    TimedOut(Duration),
    /// Its task was cancelled.
    Cancelled,
}
