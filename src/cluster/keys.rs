//! The Redis keys of one queue. Every key starts with `procpool:{queue}:`,
//! so that an ACL rule (`~procpool:{queue}:*`) can confine a user to one
//! queue.

/// The consumer group every host of a task stream reads in.
pub(crate) const GROUP: &str = "hosts";

/// The keys of one queue, as seen by one build.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    pub(crate) queue: String,
    pub(crate) build: String,
}

impl Keys {
    pub(crate) fn new(queue: &str, build: &str) -> Keys {
        Keys {
            queue: queue.to_owned(),
            build: build.to_owned(),
        }
    }

    fn key(&self, rest: &str) -> String {
        format!("procpool:{}:{rest}", self.queue)
    }

    /// The stream of tasks for this build's hosts.
    pub(crate) fn tasks(&self) -> String {
        self.key(&format!("{}:tasks", self.build))
    }

    /// Where entries that were refused (bad seal) or given up (too many
    /// deliveries) go, for a person to look at.
    pub(crate) fn dead(&self) -> String {
        self.key("dead")
    }

    /// Cancels and callers' ends, read by every host.
    pub(crate) fn control(&self) -> String {
        self.key("control")
    }

    /// The stream a caller reads its results from.
    pub(crate) fn reply(&self, caller: &str) -> String {
        self.key(&format!("reply:{caller}"))
    }

    /// A caller's liveness key (it expires when the caller stops renewing it).
    pub(crate) fn caller(&self, caller: &str) -> String {
        self.key(&format!("caller:{caller}"))
    }

    /// A host's liveness key, holding its signed description.
    pub(crate) fn host(&self, host: &str) -> String {
        self.key(&format!("host:{host}"))
    }

    /// The pattern of every host's key, any build.
    pub(crate) fn hosts_pattern(&self) -> String {
        self.key("host:*")
    }
}

/// A name unique to this process and moment: `hostname-pid-time-n`.
pub(crate) fn unique_name() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "{}-{}-{:x}-{n}",
        hostname(),
        std::process::id(),
        nanos & 0xffff_ffff_ffff
    )
}

/// This machine's name, or `"host"` when it has none that fits a key.
pub(crate) fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .filter(|name| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
        .unwrap_or_else(|| "host".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_a_queue_shares_its_prefix_and_tasks_name_the_build() {
        let keys = Keys::new("images", "00ff");
        for key in [
            keys.tasks(),
            keys.dead(),
            keys.control(),
            keys.reply("c"),
            keys.caller("c"),
            keys.host("h"),
        ] {
            assert!(key.starts_with("procpool:images:"), "{key}");
        }
        assert_eq!(keys.tasks(), "procpool:images:00ff:tasks");
        assert_ne!(Keys::new("images", "0100").tasks(), keys.tasks());
        assert_ne!(unique_name(), unique_name());
    }
}
