//! What the entries of a Redis-fed pool say. Each entry has three fields:
//! `h`, a small MessagePack header (below); `b`, its bytes (a `TASK`
//! frame, or results); and `s`, its [seal](super::seal).

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::seal::{Kind, SEAL_LEN, Sealer};
use crate::error::{DataKind, Error, ExitCause, RemotePanic};

/// A chunk of one call, for any host of the build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TaskHeader {
    /// The caller's name: where the results go, whose liveness to check.
    pub(crate) caller: String,
    /// The call, for cancelling it.
    pub(crate) call: u64,
    /// The caller's id of the chunk.
    pub(crate) job: u64,
    pub(crate) count: u32,
    pub(crate) timeout_ns: Option<u64>,
    pub(crate) retries: u32,
    /// Deliveries allowed before the task is dead-lettered.
    pub(crate) deliveries: u32,
}

/// A duration in whole nanoseconds, saturated.
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl TaskHeader {
    pub(crate) fn timeout(&self) -> Option<Duration> {
        self.timeout_ns.map(Duration::from_nanos)
    }
}

/// How a part of a chunk ended, in the chunk's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Segment {
    /// `count` result items, `len` bytes of the body.
    Results { count: u32, len: u64 },
    /// `count` items failed together (their worker died, timed out...).
    Failed { count: u32, error: WireError },
}

impl Segment {
    pub(crate) fn count(&self) -> u32 {
        match self {
            Segment::Results { count, .. } | Segment::Failed { count, .. } => *count,
        }
    }
}

/// A chunk's outcome, from the host that ran it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ReplyHeader {
    pub(crate) job: u64,
    pub(crate) host: String,
    pub(crate) segments: Vec<Segment>,
}

/// A message to every host of a queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Control {
    /// Stop the call's tasks: drop queued ones, kill running ones.
    Cancel { caller: String, call: u64 },
    /// The caller is gone (terminated): stop all its tasks.
    CallerGone { caller: String },
}

/// What a host says about itself, renewed with its liveness key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HostInfo {
    pub(crate) host: String,
    pub(crate) build: String,
    pub(crate) processes: u32,
    pub(crate) pid: u32,
    pub(crate) tasks: u64,
    pub(crate) draining: bool,
}

/// The errors a host reports for a whole segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum WireError {
    Panicked {
        panic: RemotePanic,
    },
    WorkerDied {
        pid: u32,
        cause: ExitCause,
        attempts: u32,
    },
    TimedOut {
        pid: u32,
        after_ns: u64,
    },
    Cancelled,
    MemoryLimit {
        pid: u32,
        limit: u64,
        requested: Option<u64>,
    },
    SandboxViolation {
        pid: u32,
        syscall: String,
    },
    Encode {
        what: DataKind,
        message: String,
    },
    Decode {
        what: DataKind,
        message: String,
    },
    TooLarge {
        what: DataKind,
        size: u64,
        limit: u64,
    },
    /// Anything else, as the host printed it.
    Other {
        message: String,
    },
}

impl WireError {
    pub(crate) fn from_error(error: &Error) -> WireError {
        match error.clone() {
            Error::Panicked { panic, .. } => WireError::Panicked { panic },
            Error::WorkerDied {
                pid, cause, attempts, ..
            } => WireError::WorkerDied { pid, cause, attempts },
            Error::TimedOut { pid, after, .. } => WireError::TimedOut {
                pid,
                after_ns: nanos(after),
            },
            Error::Cancelled => WireError::Cancelled,
            Error::MemoryLimit {
                pid,
                limit,
                requested,
                ..
            } => WireError::MemoryLimit {
                pid,
                limit,
                requested,
            },
            Error::SandboxViolation { pid, syscall, .. } => WireError::SandboxViolation { pid, syscall },
            Error::Encode { what, message, .. } => WireError::Encode { what, message },
            Error::Decode { what, message, .. } => WireError::Decode { what, message },
            Error::TooLarge {
                what, size, limit, ..
            } => WireError::TooLarge {
                what,
                size: size as u64,
                limit: limit as u64,
            },
            other => WireError::Other {
                message: other.to_string(),
            },
        }
    }

    pub(crate) fn into_error(self, host: &str) -> Error {
        match self {
            WireError::Panicked { panic } => Error::Panicked { index: None, panic },
            WireError::WorkerDied { pid, cause, attempts } => Error::WorkerDied {
                index: None,
                pid,
                cause,
                attempts,
            },
            WireError::TimedOut { pid, after_ns } => Error::TimedOut {
                index: None,
                pid,
                after: Duration::from_nanos(after_ns),
            },
            WireError::Cancelled => Error::Cancelled,
            WireError::MemoryLimit {
                pid,
                limit,
                requested,
            } => Error::MemoryLimit {
                index: None,
                pid,
                limit,
                requested,
            },
            WireError::SandboxViolation { pid, syscall } => Error::SandboxViolation {
                index: None,
                pid,
                syscall,
            },
            WireError::Encode { what, message } => Error::Encode {
                index: None,
                what,
                message,
            },
            WireError::Decode { what, message } => Error::Decode {
                index: None,
                what,
                message,
            },
            WireError::TooLarge { what, size, limit } => Error::TooLarge {
                index: None,
                what,
                size: usize::try_from(size).unwrap_or(usize::MAX),
                limit: usize::try_from(limit).unwrap_or(usize::MAX),
            },
            WireError::Other { message } => Error::WorkerStart {
                pid: 0,
                reason: format!("worker host {host} could not run the task: {message}"),
            },
        }
    }
}

/// An entry's three fields, as read from a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Fields {
    pub(crate) header: Vec<u8>,
    pub(crate) body: Vec<u8>,
    pub(crate) seal: Vec<u8>,
}

/// Why an entry was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rejected {
    /// Its seal is missing or wrong: forged, altered, or for another queue.
    Seal,
    /// Sealed, but its header does not decode (a bug, or another version).
    Header(String),
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejected::Seal => {
                f.write_str("bad seal (forged, altered, or sealed for another queue or secret)")
            }
            Rejected::Header(e) => write!(f, "undecodable header: {e}"),
        }
    }
}

impl Fields {
    /// Seals a header and body as an entry of `kind`.
    pub(crate) fn sealed<H: Serialize>(sealer: &Sealer, kind: Kind, header: &H, body: Vec<u8>) -> Fields {
        let header = rmp_serde::to_vec(header).expect("headers always encode");
        let seal = sealer.seal(kind, &header, &body).to_vec();
        Fields { header, body, seal }
    }

    /// The fields as one value (for a plain key): `[header length: u32 LE]
    /// [header][seal][body]`.
    pub(crate) fn pack(&self) -> Vec<u8> {
        let mut value = Vec::with_capacity(4 + self.header.len() + self.seal.len() + self.body.len());
        value.extend_from_slice(&(self.header.len() as u32).to_le_bytes());
        value.extend_from_slice(&self.header);
        value.extend_from_slice(&self.seal);
        value.extend_from_slice(&self.body);
        value
    }

    /// The fields of a [`pack`](Self::pack)ed value; a malformed one gives
    /// fields whose seal fails.
    pub(crate) fn unpack(value: &[u8]) -> Fields {
        let parts = value.get(..4).and_then(|len| {
            let len = u32::from_le_bytes(len.try_into().ok()?) as usize;
            let rest = value.get(4..)?;
            let header = rest.get(..len)?;
            let seal = rest.get(len..len.checked_add(SEAL_LEN)?)?;
            Some((header, seal, &rest[len + SEAL_LEN..]))
        });
        match parts {
            Some((header, seal, body)) => Fields {
                header: header.to_vec(),
                body: body.to_vec(),
                seal: seal.to_vec(),
            },
            None => Fields::default(),
        }
    }

    /// Checks the seal, then decodes the header.
    pub(crate) fn open<H: DeserializeOwned>(&self, sealer: &Sealer, kind: Kind) -> Result<H, Rejected> {
        if self.seal.len() != SEAL_LEN || !sealer.check(kind, &self.header, &self.body, &self.seal) {
            return Err(Rejected::Seal);
        }
        rmp_serde::from_slice(&self.header).map_err(|e| Rejected::Header(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> Sealer {
        Sealer::new(b"a secret of twenty bytes", "q").unwrap()
    }

    #[test]
    fn a_sealed_entry_opens_as_what_it_was_and_nothing_else() {
        let header = TaskHeader {
            caller: "c".into(),
            call: 7,
            job: 9,
            count: 3,
            timeout_ns: Some(5),
            retries: 1,
            deliveries: 3,
        };
        let fields = Fields::sealed(&sealer(), Kind::Task, &header, b"frame".to_vec());
        assert_eq!(fields.open::<TaskHeader>(&sealer(), Kind::Task).unwrap(), header);
        assert_eq!(
            fields.open::<TaskHeader>(&sealer(), Kind::Reply).unwrap_err(),
            Rejected::Seal
        );
        let mut altered = fields.clone();
        altered.body[0] ^= 1;
        assert_eq!(
            altered.open::<TaskHeader>(&sealer(), Kind::Task).unwrap_err(),
            Rejected::Seal
        );
        assert_eq!(Fields::unpack(&fields.pack()), fields);
        assert_eq!(Fields::unpack(&fields.pack()[..10]), Fields::default());
        let unsealed = Fields {
            seal: Vec::new(),
            ..fields
        };
        assert_eq!(
            unsealed.open::<TaskHeader>(&sealer(), Kind::Task).unwrap_err(),
            Rejected::Seal
        );
    }

    #[test]
    fn errors_cross_as_themselves() {
        let errors = [
            Error::Cancelled,
            Error::WorkerDied {
                index: None,
                pid: 4,
                cause: ExitCause::Signaled {
                    signal: 9,
                    core_dumped: false,
                },
                attempts: 2,
            },
            Error::TimedOut {
                index: None,
                pid: 5,
                after: Duration::from_millis(30),
            },
            Error::MemoryLimit {
                index: None,
                pid: 6,
                limit: 1 << 20,
                requested: Some(4096),
            },
        ];
        for error in errors {
            let wire: WireError =
                rmp_serde::from_slice(&rmp_serde::to_vec(&WireError::from_error(&error)).unwrap()).unwrap();
            assert_eq!(wire.into_error("h").to_string(), error.to_string());
        }
        let other = WireError::from_error(&Error::Terminated).into_error("h1");
        assert!(other.to_string().contains("worker host h1"), "{other}");
    }
}
