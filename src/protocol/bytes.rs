//! [`Bytes`]: a byte payload that crosses to a worker and back through
//! shared memory instead of the channel.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use super::attach;
use crate::sys::region::{Draft, Region};

/// The smallest payload kept in shared memory: smaller ones are copied
/// through the channel, which costs less than making a region.
const SHARED_MIN: usize = 64 * 1024;

/// The key of a region's handle in procpool's encoding.
const HANDLE_KEY: &str = "\0procpool:region";

/// An immutable byte payload for large data: it crosses to a worker (and a
/// result back to the parent) through shared memory, without being copied
/// through the channel.
///
/// `Bytes` derefs to `[u8]`. A payload of 64 KiB or more is written once
/// into a sealed memory region (a memfd); when procpool sends it to a
/// worker, the region's descriptor goes beside the task and the worker
/// maps it read-only: the task reads the parent's pages, with no copy.
/// Results of type `Bytes` come back the same way. Cloning a `Bytes` is
/// cheap (the region is shared), and the region is freed when the last
/// `Bytes` (in any process) that uses it is dropped; a worker's mappings
/// go when it exits or dies, and a task's arguments go when its call is
/// done with them (after its retries).
///
/// Neither the parent nor a worker can change a region once made: it is
/// sealed against writes and size changes, and the parent checks the seals
/// of every region a worker sends before it maps it.
///
/// Outside procpool, `Bytes` serializes as a plain byte string (like
/// `serde_bytes::ByteBuf`), so it works with any serde format.
///
/// # Examples
///
/// ```
/// use procpool::{Bytes, Pool};
///
/// fn checksum(data: Bytes) -> u64 {
///     data.iter().map(|&b| u64::from(b)).sum()
/// }
///
/// fn doubled(data: Bytes) -> Bytes {
///     Bytes::from_fn(data.len() * 2, |out| {
///         out[..data.len()].copy_from_slice(&data);
///         out[data.len()..].copy_from_slice(&data);
///     })
/// }
///
/// let pool = Pool::new(2)?;
/// let big = Bytes::from(vec![1u8; 1 << 20]);
/// assert!(big.is_shared());
/// assert_eq!(pool.apply(checksum, big.clone())?, 1 << 20);
/// let back = pool.apply(doubled, big)?;
/// assert_eq!(back.len(), 2 << 20);
/// assert!(back.iter().all(|&b| b == 1));
/// # Ok::<(), procpool::Error>(())
/// ```
///
/// # Caveats
///
/// * Each shared `Bytes` holds a descriptor open (and a mapping) while it
///   lives: many thousands of large payloads alive at once can exhaust the
///   process's descriptor limit (`ulimit -n`); smaller payloads are plain
///   memory.
/// * A worker in a [sandboxed](crate::Sandbox) pool cannot make regions:
///   the `Bytes` it returns are copied through the channel (arguments
///   still arrive shared).
/// * Each region that comes with a task is a descriptor the worker holds
///   while it runs the chunk, so a chunk ends early once its items name 16
///   regions, whatever the chunk size. A sandboxed worker may hold only
///   [`max_open_files`](crate::Sandbox::max_open_files) descriptors (64 by
///   default): a single argument that names more shared `Bytes` than that
///   fails its chunk there.
/// * Nested inside a value that serde buffers (an untagged enum, a
///   flattened field), a `Bytes` is copied through the channel.
#[derive(Clone)]
pub struct Bytes {
    repr: Repr,
}

#[derive(Clone)]
enum Repr {
    Heap(Arc<[u8]>),
    Shared(Arc<Region>),
}

impl Bytes {
    /// An empty payload.
    ///
    /// ```
    /// assert!(procpool::Bytes::new().is_empty());
    /// ```
    pub fn new() -> Bytes {
        Bytes {
            repr: Repr::Heap(Arc::new([])),
        }
    }

    /// A payload holding a copy of `data`.
    ///
    /// ```
    /// let b = procpool::Bytes::copy_from_slice(b"hello");
    /// assert_eq!(&b[..], b"hello");
    /// ```
    pub fn copy_from_slice(data: &[u8]) -> Bytes {
        if data.len() >= SHARED_MIN
            && let Ok(region) = Region::copy_of(data)
        {
            return Bytes::shared(region);
        }
        Bytes {
            repr: Repr::Heap(data.into()),
        }
    }

    /// A payload of `len` bytes, zeroed, that `fill` writes in place
    /// (large payloads straight into their shared region, with no copy).
    ///
    /// ```
    /// let b = procpool::Bytes::from_fn(1 << 20, |out| out.fill(3));
    /// assert_eq!(b.len(), 1 << 20);
    /// assert!(b.iter().all(|&x| x == 3));
    /// ```
    pub fn from_fn(len: usize, fill: impl FnOnce(&mut [u8])) -> Bytes {
        if len >= SHARED_MIN
            && let Ok(mut draft) = Draft::new(len)
        {
            fill(draft.as_mut());
            return match draft.seal() {
                Ok(region) => Bytes::shared(region),
                Err(data) => Bytes {
                    repr: Repr::Heap(data.into()),
                },
            };
        }
        let mut data = vec![0; len];
        fill(&mut data);
        Bytes {
            repr: Repr::Heap(data.into()),
        }
    }

    /// Whether the payload lives in a shared memory region (and so
    /// crosses to workers without a copy).
    ///
    /// ```
    /// assert!(procpool::Bytes::from(vec![0u8; 1 << 20]).is_shared());
    /// assert!(!procpool::Bytes::from(vec![0u8; 10]).is_shared());
    /// ```
    pub fn is_shared(&self) -> bool {
        matches!(self.repr, Repr::Shared(_))
    }

    /// The bytes, as a slice (also through `Deref`).
    ///
    /// ```
    /// assert_eq!(procpool::Bytes::from(&b"ab"[..]).as_slice(), b"ab");
    /// ```
    pub fn as_slice(&self) -> &[u8] {
        match &self.repr {
            Repr::Heap(data) => data,
            Repr::Shared(region) => region.as_slice(),
        }
    }

    fn shared(region: Region) -> Bytes {
        Bytes {
            repr: Repr::Shared(Arc::new(region)),
        }
    }
}

impl Default for Bytes {
    fn default() -> Bytes {
        Bytes::new()
    }
}

impl Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(data: Vec<u8>) -> Bytes {
        if data.len() >= SHARED_MIN {
            return Bytes::copy_from_slice(&data);
        }
        Bytes {
            repr: Repr::Heap(data.into()),
        }
    }
}

impl From<&[u8]> for Bytes {
    fn from(data: &[u8]) -> Bytes {
        Bytes::copy_from_slice(data)
    }
}

impl PartialEq for Bytes {
    fn eq(&self, other: &Bytes) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Bytes {}

impl std::hash::Hash for Bytes {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bytes")
            .field("len", &self.len())
            .field("shared", &self.is_shared())
            .finish()
    }
}

/// Whether `T` is procpool's own codec (rmp-serde): only there may a
/// region's handle stand for the bytes.
fn is_procpool_codec<T>() -> bool {
    let name = std::any::type_name::<T>();
    name.starts_with("&mut rmp_serde::encode::Serializer<")
        || name.starts_with("&mut rmp_serde::decode::Deserializer<")
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if let Repr::Shared(region) = &self.repr
            && is_procpool_codec::<S>()
            && attach::offer(region.sealed())
        {
            let mut map = serializer.serialize_map(Some(1))?;
            map.serialize_entry(HANDLE_KEY, &(region.sealed().inode(), self.len() as u64))?;
            return map.end();
        }
        serializer.serialize_bytes(self.as_slice())
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
        if is_procpool_codec::<D>() {
            deserializer.deserialize_any(BytesVisitor)
        } else {
            deserializer.deserialize_byte_buf(BytesVisitor)
        }
    }
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Bytes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
        Ok(Bytes::copy_from_slice(v))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
        Ok(Bytes::from(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Bytes, E> {
        Ok(Bytes::copy_from_slice(v.as_bytes()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
        let mut data = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(b) = seq.next_element::<u8>()? {
            data.push(b);
        }
        Ok(Bytes::from(data))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Bytes, A::Error> {
        let key: String = map
            .next_key()?
            .ok_or_else(|| de::Error::custom("an empty map is not bytes"))?;
        if key != HANDLE_KEY {
            return Err(de::Error::custom("a map is not bytes"));
        }
        let (inode, len): (u64, u64) = map.next_value()?;
        if map.next_key::<de::IgnoredAny>()?.is_some() {
            return Err(de::Error::custom("a region handle with more than one entry"));
        }
        let sealed = attach::lookup(inode)
            .ok_or_else(|| de::Error::custom(format!("region {inode} did not come with the message")))?;
        let len = usize::try_from(len).map_err(de::Error::custom)?;
        let region = Region::map(sealed, len)
            .map_err(|e| de::Error::custom(format!("cannot map region {inode}: {e}")))?;
        Ok(Bytes::shared(region))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::codec;

    #[test]
    fn outside_procpool_it_is_a_plain_byte_string() {
        let big = Bytes::from(vec![7u8; SHARED_MIN]);
        assert!(big.is_shared());
        let json = serde_json::to_string(&Bytes::from(&b"\x01\x02"[..])).unwrap();
        assert_eq!(json, "[1,2]");
        let back: Bytes = serde_json::from_str(&serde_json::to_string(&big).unwrap()).unwrap();
        assert_eq!(back, big);
        // The codec without a collector: the bytes in full.
        let mut buf = Vec::new();
        codec::encode(&big, &mut buf).unwrap();
        assert!(buf.len() > SHARED_MIN);
        let back: Bytes = codec::decode(&buf).unwrap();
        assert_eq!(back, big);
        assert!(back.is_shared(), "large decoded bytes are shared again");
    }

    #[test]
    fn collected_regions_cross_as_handles() {
        let big = Bytes::from_fn(SHARED_MIN * 2, |b| b[5] = 9);
        let collect = attach::Collect::start();
        let mut buf = Vec::new();
        codec::encode(&(1u8, big.clone()), &mut buf).unwrap();
        let attached = collect.finish();
        assert!(!attached.is_empty());
        assert!(buf.len() < 100, "a handle, not the bytes: {} bytes", buf.len());
        // Not delivered on this thread: the handle names nothing.
        let err = codec::decode::<(u8, Bytes)>(&buf).unwrap_err();
        assert!(err.contains("did not come with the message"), "{err}");
        // A forged handle is an error too, not a crash.
        let mut forged = Vec::new();
        rmp_serde::encode::write_named(
            &mut forged,
            &std::collections::BTreeMap::from([(HANDLE_KEY, (1u64, 2u64))]),
        )
        .unwrap();
        assert!(codec::decode::<Bytes>(&forged).is_err());
    }

    #[test]
    fn empty_and_small_payloads_are_plain_memory() {
        assert!(Bytes::new().is_empty());
        assert!(!Bytes::from(Vec::new()).is_shared());
        assert!(!Bytes::from_fn(0, |_| {}).is_shared());
        assert_eq!(&Bytes::from_fn(3, |b| b.fill(1))[..], &[1, 1, 1]);
        assert_eq!(format!("{:?}", Bytes::new()), "Bytes { len: 0, shared: false }");
    }

    #[test]
    fn bytes_is_send_and_sync() {
        fn both<T: Send + Sync>() {}
        both::<Bytes>();
    }
}
