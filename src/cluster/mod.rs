//! What a caller and the worker hosts of a Redis-fed pool share: the names
//! of the keys they use ([`keys`]), how every message is signed
//! ([`seal`]), what the messages say ([`wire`]), and the connection that
//! rides out a restart of the server ([`link`]).
//!
//! # How work flows
//!
//! ```text
//!  caller (Pool::builder().redis(..))            worker hosts (PROCPOOL_REDIS=..)
//!  ──────────────────────────────────            ────────────────────────────────
//!  XADD procpool:{q}:{build}:tasks  ───────────▶ XREADGROUP GROUP hosts <host>
//!                                                 run in the host's local workers
//!  XREAD procpool:{q}:reply:{caller} ◀────────── XADD reply; XACK + XDEL the task
//! ```
//!
//! - The task stream is named after the queue *and the build* (a hash of
//!   the executable's build id): a host of another build never sees it.
//! - A host holds the tasks it reads in the consumer group's pending list.
//!   While one runs, the host renews its claim (`XCLAIM ... JUSTID`), so a
//!   long task stays with it. A host that dies or hangs stops renewing;
//!   after the lease, another host takes the task over (`XAUTOCLAIM`),
//!   which counts one more delivery. A task delivered more than its
//!   allowed times is not run again: it is moved to the dead-letter
//!   stream and fails with [`ExitCause::HostLost`](crate::ExitCause::HostLost).
//! - The caller keeps each task's ticket until its first result arrives;
//!   a later one (a resumed host, a redelivery) finds no ticket and is
//!   dropped. That is what makes results exactly-once while execution is
//!   at-least-once.
//! - Every entry is signed with HMAC-SHA256 under the shared secret, over
//!   its kind, its queue and its bytes; a host checks the seal before it
//!   decodes anything.

pub(crate) mod keys;
pub(crate) mod link;
pub(crate) mod seal;
pub(crate) mod wire;

use std::time::Duration;

/// The default lease: how long a silent host keeps its tasks, and a silent
/// caller its place.
pub(crate) const DEFAULT_LEASE: Duration = Duration::from_secs(10);

/// The default number of deliveries of one task before it is dead-lettered.
pub(crate) const DEFAULT_DELIVERIES: u32 = 3;

/// How long a Redis server may be unreachable before outstanding work fails.
pub(crate) const DEFAULT_OUTAGE: Duration = Duration::from_secs(60);

/// This build, as hosts and tasks name it: the hash of the image's build id
/// (see `func::image`), in hex.
pub(crate) fn build_name() -> Result<String, String> {
    crate::func::Image::current().map(|image| format!("{:016x}", image.identity.build))
}
