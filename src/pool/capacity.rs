//! How many workers this process can hold: each costs the parent
//! descriptors, threads and memory mappings, and running out of those in
//! the middle of starting a pool ends in an abort inside the standard
//! library (a thread that cannot map its guard page), not an error.

use crate::error::Error;
use crate::sys;

/// Descriptors the parent holds per worker: the channel (two handles), the
/// stdout and stderr pipes, the pidfd, and one while starting it.
const FDS_PER_WORKER: u64 = 6;
/// Descriptors left for the rest of the program.
const FDS_SPARE: u64 = 64;
/// Memory mappings per worker: two threads (supervisor and output relay),
/// each a stack, a guard page and a signal stack with its guard, and the
/// worker's marker page, with room to spare.
const MAPS_PER_WORKER: u64 = 12;
/// Mappings left for the rest of the program.
const MAPS_SPARE: u64 = 4096;

/// Fails when `processes` workers would not fit in this process's limits.
///
/// # Errors
///
/// [`Error::InvalidArgument`] naming the limit and the largest pool that
/// fits it.
pub(crate) fn check(processes: usize) -> Result<(), Error> {
    let limits = Limits {
        descriptors: sys::process::descriptor_limit(),
        mappings: read_number("/proc/sys/vm/max_map_count"),
        threads: read_number("/proc/sys/kernel/threads-max"),
    };
    limits.check(processes as u64)
}

fn read_number(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The limits that bound a pool's size; `None` where unknown.
#[derive(Debug, Clone, Copy)]
struct Limits {
    descriptors: Option<u64>,
    mappings: Option<u64>,
    threads: Option<u64>,
}

impl Limits {
    fn check(&self, processes: u64) -> Result<(), Error> {
        let bounds = [
            (
                self.descriptors
                    .map(|n| n.saturating_sub(FDS_SPARE) / FDS_PER_WORKER),
                "open descriptors (`ulimit -n`)",
                self.descriptors,
            ),
            (
                self.mappings
                    .map(|n| n.saturating_sub(MAPS_SPARE) / MAPS_PER_WORKER),
                "memory mappings (vm.max_map_count)",
                self.mappings,
            ),
            (
                self.threads.map(|n| n / 4),
                "threads (kernel.threads-max)",
                self.threads,
            ),
        ];
        for (most, what, limit) in bounds {
            if let (Some(most), Some(limit)) = (most, limit)
                && processes > most
            {
                return Err(Error::InvalidArgument(format!(
                    "a pool of {processes} workers does not fit this process's limit of {limit} \
                     {what}: each worker takes some in the parent; at most {most} fit"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_limit_bounds_the_pool() {
        let roomy = Limits {
            descriptors: Some(1 << 20),
            mappings: Some(1 << 20),
            threads: Some(1 << 20),
        };
        assert!(roomy.check(1000).is_ok());
        let few_fds = Limits {
            descriptors: Some(1024),
            ..roomy
        };
        assert!(few_fds.check(150).is_ok());
        let err = few_fds.check(100_000).unwrap_err().to_string();
        assert!(err.contains("limit of 1024 open descriptors"), "{err}");
        assert!(err.contains("at most 160 fit"), "{err}");
        let few_maps = Limits {
            mappings: Some(65530),
            ..roomy
        };
        assert!(
            few_maps
                .check(100_000)
                .unwrap_err()
                .to_string()
                .contains("vm.max_map_count")
        );
        let unknown = Limits {
            descriptors: None,
            mappings: None,
            threads: None,
        };
        assert!(unknown.check(100_000).is_ok(), "nothing known, nothing refused");
    }
}
