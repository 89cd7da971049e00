//! What the parent tells a worker in its environment, and how the worker
//! checks that it is the same executable as the parent.

use std::fmt::Write as _;
use std::io;
use std::os::unix::fs::MetadataExt;

use crate::protocol::PROTOCOL_VERSION;
use crate::protocol::function::anchor_address;

/// Which executable a process runs: the file's device and inode, and the
/// distance between two functions of this crate (which differs between
/// builds even when a file is replaced in place).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    pub(crate) layout: u64,
}

#[inline(never)]
fn layout_probe() {
    std::hint::black_box(());
}

impl Identity {
    /// The identity of this process's executable.
    pub(crate) fn current() -> io::Result<Identity> {
        let meta = std::fs::metadata("/proc/self/exe")?;
        Ok(Identity {
            dev: meta.dev(),
            ino: meta.ino(),
            layout: (layout_probe as fn() as usize).wrapping_sub(anchor_address()) as u64,
        })
    }

    /// Why `self` (the worker) is not the same executable as `parent`.
    pub(crate) fn mismatch(&self, parent: &Identity) -> Option<String> {
        if (self.dev, self.ino) != (parent.dev, parent.ino) {
            Some(format!(
                "the worker runs another executable file (device {}, inode {}) than the parent \
                 (device {}, inode {})",
                self.dev, self.ino, parent.dev, parent.ino
            ))
        } else if self.layout != parent.layout {
            Some("the worker's executable is another build of the program than the parent's".to_owned())
        } else {
            None
        }
    }
}

/// The value of `PROCPOOL_WORKER`: protocol version, channel descriptor and
/// the parent's executable identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WorkerEnv {
    pub(crate) protocol: u32,
    pub(crate) fd: i32,
    pub(crate) parent: Identity,
    /// The data segment cap the worker sets on itself, in bytes.
    pub(crate) max_memory: Option<u64>,
}

impl WorkerEnv {
    pub(crate) fn new(fd: i32, parent: Identity, max_memory: Option<u64>) -> Self {
        WorkerEnv {
            protocol: PROTOCOL_VERSION,
            fd,
            parent,
            max_memory,
        }
    }

    /// `v1;fd=5;dev=2049;ino=1234;layout=1f0`
    pub(crate) fn to_value(self) -> String {
        let mut s = format!("v{};fd={}", self.protocol, self.fd);
        let _ = write!(
            s,
            ";dev={};ino={};layout={:x}",
            self.parent.dev, self.parent.ino, self.parent.layout
        );
        if let Some(bytes) = self.max_memory {
            let _ = write!(s, ";mem={bytes}");
        }
        s
    }

    pub(crate) fn parse(value: &str) -> Result<WorkerEnv, String> {
        let bad = || format!("malformed PROCPOOL_WORKER value {value:?}");
        let mut parts = value.split(';');
        let protocol = parts
            .next()
            .and_then(|v| v.strip_prefix('v'))
            .and_then(|v| v.parse().ok())
            .ok_or_else(bad)?;
        let mut field = |name: &str, radix: u32| {
            parts
                .next()
                .and_then(|p| p.strip_prefix(name))
                .and_then(|p| p.strip_prefix('='))
                .and_then(|p| u64::from_str_radix(p, radix).ok())
                .ok_or_else(bad)
        };
        let fd = i32::try_from(field("fd", 10)?).map_err(|_| bad())?;
        let dev = field("dev", 10)?;
        let ino = field("ino", 10)?;
        let layout = field("layout", 16)?;
        let max_memory = match parts.next() {
            None => None,
            Some(part) => Some(
                part.strip_prefix("mem=")
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(bad)?,
            ),
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(WorkerEnv {
            protocol,
            fd,
            parent: Identity { dev, ino, layout },
            max_memory,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_value_round_trips() {
        let env = WorkerEnv::new(7, Identity::current().unwrap(), None);
        assert_eq!(WorkerEnv::parse(&env.to_value()), Ok(env));
        let capped = WorkerEnv::new(0, Identity::current().unwrap(), Some(1 << 30));
        assert_eq!(WorkerEnv::parse(&capped.to_value()), Ok(capped));
    }

    #[test]
    fn malformed_values_are_refused() {
        for bad in [
            "",
            "v1",
            "v1;fd=x;dev=1;ino=2;layout=3",
            "v1;fd=3;dev=1;ino=2",
            "v1;fd=3;dev=1;ino=2;layout=3;extra",
            "v1;fd=3;dev=1;ino=2;layout=3;mem=x",
            "v1;fd=3;dev=1;ino=2;layout=3;mem=1;extra",
            "1;fd=3;dev=1;ino=2;layout=3",
            "v1;fd=99999999999;dev=1;ino=2;layout=3",
        ] {
            assert!(WorkerEnv::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn identity_mismatch_names_the_difference() {
        let me = Identity::current().unwrap();
        assert_eq!(me.mismatch(&me), None);
        let other_file = Identity {
            ino: me.ino + 1,
            ..me
        };
        assert!(
            me.mismatch(&other_file)
                .unwrap()
                .contains("another executable file")
        );
        let other_build = Identity {
            layout: me.layout ^ 1,
            ..me
        };
        assert!(me.mismatch(&other_build).unwrap().contains("another build"));
    }
}
