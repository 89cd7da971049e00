//! What the parent tells a worker in its environment.

use std::fmt::Write as _;

use crate::func::Identity;
use crate::protocol::PROTOCOL_VERSION;

/// The value of `PROCPOOL_WORKER`: protocol version, channel descriptor and
/// the parent's executable identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WorkerEnv {
    pub(crate) protocol: u32,
    pub(crate) fd: i32,
    pub(crate) parent: Identity,
    /// The data segment cap the worker sets on itself, in bytes.
    pub(crate) max_memory: Option<u64>,
    /// Whether the pool locks the worker down (see `sandbox`) after its
    /// initializer: the worker then runs no task before it has.
    pub(crate) sandboxed: bool,
}

impl WorkerEnv {
    pub(crate) fn new(fd: i32, parent: Identity, max_memory: Option<u64>) -> Self {
        WorkerEnv {
            protocol: PROTOCOL_VERSION,
            fd,
            parent,
            max_memory,
            sandboxed: false,
        }
    }

    /// `v5;fd=0;dev=800000001;ino=1234;build=1f0e…`
    pub(crate) fn to_value(self) -> String {
        let mut s = format!("v{};fd={}", self.protocol, self.fd);
        let _ = write!(
            s,
            ";dev={:x};ino={};build={:x}",
            self.parent.dev, self.parent.ino, self.parent.build
        );
        if let Some(bytes) = self.max_memory {
            let _ = write!(s, ";mem={bytes}");
        }
        if self.sandboxed {
            s.push_str(";sandbox");
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
        let dev = field("dev", 16)?;
        let ino = field("ino", 10)?;
        let build = field("build", 16)?;
        let mut next = parts.next();
        let max_memory = match next.and_then(|part| part.strip_prefix("mem=")) {
            None => None,
            Some(bytes) => {
                next = parts.next();
                Some(bytes.parse().map_err(|_| bad())?)
            }
        };
        let sandboxed = match next {
            None => false,
            Some("sandbox") => true,
            Some(_) => return Err(bad()),
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(WorkerEnv {
            protocol,
            fd,
            parent: Identity { dev, ino, build },
            max_memory,
            sandboxed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_value_round_trips() {
        let env = WorkerEnv::new(7, crate::func::Image::current().unwrap().identity, None);
        assert_eq!(WorkerEnv::parse(&env.to_value()), Ok(env));
        let capped = WorkerEnv::new(0, crate::func::Image::current().unwrap().identity, Some(1 << 30));
        assert_eq!(WorkerEnv::parse(&capped.to_value()), Ok(capped));
        let locked = WorkerEnv {
            sandboxed: true,
            ..capped
        };
        assert_eq!(WorkerEnv::parse(&locked.to_value()), Ok(locked));
        let locked = WorkerEnv {
            sandboxed: true,
            ..env
        };
        assert_eq!(WorkerEnv::parse(&locked.to_value()), Ok(locked));
    }

    #[test]
    fn malformed_values_are_refused() {
        for bad in [
            "",
            "v1",
            "v1;fd=x;dev=1;ino=2;build=3",
            "v1;fd=3;dev=1;ino=2",
            "v1;fd=3;dev=1;ino=2;build=3;extra",
            "v1;fd=3;dev=1;ino=2;build=3;mem=x",
            "v1;fd=3;dev=1;ino=2;build=3;mem=1;extra",
            "v1;fd=3;dev=1;ino=2;build=3;mem=1;sandbox;extra",
            "v1;fd=3;dev=1;ino=2;build=3;sandbox;mem=1",
            "1;fd=3;dev=1;ino=2;build=3",
            "v1;fd=99999999999;dev=1;ino=2;build=3",
        ] {
            assert!(WorkerEnv::parse(bad).is_err(), "{bad:?}");
        }
    }
}
