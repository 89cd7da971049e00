//! The seal on every entry: HMAC-SHA256 under the shared secret, over the
//! entry's kind, its queue, its header and its body. A host checks it
//! before it decodes anything, so that only holders of the secret can make
//! a host run a function; binding the queue and the kind stops an entry
//! from being replayed into another queue or read as another kind.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The length of a seal.
pub(crate) const SEAL_LEN: usize = 32;

/// The shortest secret accepted: 16 bytes (128 bits).
pub(crate) const MIN_SECRET: usize = 16;

/// What an entry is; part of what its seal covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    Task = 1,
    Reply = 2,
    Control = 3,
    Host = 4,
}

/// Signs and checks entries of one queue.
#[derive(Clone)]
pub(crate) struct Sealer {
    mac: HmacSha256,
    queue: String,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Sealer")
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// A sealer for `queue` under `secret`.
    ///
    /// # Errors
    ///
    /// A message saying how to give a secret when `secret` is shorter than
    /// [`MIN_SECRET`] bytes.
    pub(crate) fn new(secret: &[u8], queue: &str) -> Result<Sealer, String> {
        if secret.len() < MIN_SECRET {
            return Err(format!(
                "the shared secret is {} bytes; it must be at least {MIN_SECRET} (make one with \
                 `head -c 32 /dev/urandom | base64` and give the same to the pool, \
                 PoolBuilder::secret, and to every host, PROCPOOL_SECRET or PROCPOOL_SECRET_FILE)",
                secret.len()
            ));
        }
        let mac = HmacSha256::new_from_slice(secret).map_err(|e| e.to_string())?;
        Ok(Sealer {
            mac,
            queue: queue.to_owned(),
        })
    }

    fn keyed(&self, kind: Kind, header: &[u8], body: &[u8]) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(b"procpool/1");
        mac.update(&[kind as u8]);
        for part in [self.queue.as_bytes(), header] {
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part);
        }
        mac.update(body);
        mac
    }

    /// The seal of an entry.
    pub(crate) fn seal(&self, kind: Kind, header: &[u8], body: &[u8]) -> [u8; SEAL_LEN] {
        self.keyed(kind, header, body).finalize().into_bytes().into()
    }

    /// Whether `seal` is the seal of this entry (in constant time).
    pub(crate) fn check(&self, kind: Kind, header: &[u8], body: &[u8], seal: &[u8]) -> bool {
        self.keyed(kind, header, body).verify_slice(seal).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123";

    #[test]
    fn a_seal_checks_only_for_its_own_secret_queue_kind_and_bytes() {
        let sealer = Sealer::new(SECRET, "q").unwrap();
        let seal = sealer.seal(Kind::Task, b"head", b"body");
        assert!(sealer.check(Kind::Task, b"head", b"body", &seal));
        assert!(!sealer.check(Kind::Task, b"head", b"bodx", &seal));
        assert!(
            !sealer.check(Kind::Task, b"hea", b"dbody", &seal),
            "header and body are kept apart"
        );
        assert!(!sealer.check(Kind::Reply, b"head", b"body", &seal));
        assert!(!sealer.check(Kind::Task, b"head", b"body", &seal[..31]));
        let other_queue = Sealer::new(SECRET, "r").unwrap();
        assert!(!other_queue.check(Kind::Task, b"head", b"body", &seal));
        let other_secret = Sealer::new(b"0123456789abcdef0124", "q").unwrap();
        assert!(!other_secret.check(Kind::Task, b"head", b"body", &seal));
    }

    #[test]
    fn a_short_secret_is_refused_with_a_way_to_make_one() {
        let err = Sealer::new(b"short", "q").unwrap_err();
        assert!(
            err.contains("at least 16") && err.contains("PROCPOOL_SECRET"),
            "{err}"
        );
        assert!(!format!("{:?}", Sealer::new(SECRET, "q").unwrap()).contains("0123"));
    }
}
