//! Which function a task runs: the [`Call`] in every `TASK` frame.
//!
//! procpool needs no registration of task functions. A `Call` names two
//! functions by [`FunctionId`] and carries a type signature:
//!
//! * `entry`: the chunk runner `worker::entry::run_chunk::<K>`, monomorphised
//!   for the task's kernel `K` (its argument and result types, and for
//!   `starmap` the function item);
//! * `func`: the task function itself, when it travels as a fn pointer
//!   (`apply`, `map`, `imap`...); `0` when the kernel's type already names it
//!   (`starmap`, whose function is a fn item);
//! * `signature`: a hash of `K`'s type name. The runner compares it with its
//!   own before it touches anything, so an entry and a function of
//!   mismatched types are refused instead of called.
//!
//! A `FunctionId` is a function's distance in bytes from [`anchor`], a
//! fixed function of this crate; a worker adds its own `anchor`'s address.
//!
//! # The invariant that makes this sound
//!
//! The distance between two functions of one executable image is the same
//! in every process that runs that executable, wherever the loader put it
//! (ASLR moves the whole image, not single functions). So the address the
//! worker computes is the function the parent named, **provided** the
//! worker runs the same executable as the parent and both functions lie in
//! the image that holds `anchor`. These hold because:
//!
//! 1. the parent starts workers from `/proc/self/exe`, its own image;
//! 2. the worker refuses to serve unless its executable's device and inode,
//!    and the distance between two crate functions, match the parent's
//!    (`bootstrap`, checked before the first task);
//! 3. the parent makes ids only with [`FunctionId::of`] from real function
//!    pointers, and refuses one that lies outside the mapping that holds
//!    `anchor` (a function in a shared library);
//! 4. ids reach the worker only from the parent, over a private socket pair
//!    that no other process holds.
//!
//! As a last line against a corrupt frame, the worker checks that both
//! addresses lie in its executable's code, and the runner checks the
//! signature, before anything is called.
//!
//! A future multi-machine transport can keep the same wire fields and map
//! ids through a table instead; nothing else in the protocol depends on
//! what the numbers mean.

use std::sync::OnceLock;

use super::ProtocolError;
use crate::sys::entry::CodeRange;

/// The signature of every chunk runner: checks `call.signature`, runs the
/// task function on each item of `items`, appends one result item per item
/// to `out`, and returns the count and where the time went.
pub(crate) type EntryFn = fn(
    call: Call,
    code: &CodeRange,
    items: &[u8],
    out: &mut Vec<u8>,
) -> Result<(u32, crate::protocol::message::Timing), ProtocolError>;

/// Names a function of this executable; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FunctionId(pub(crate) u64);

/// What a `TASK` runs; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Call {
    pub(crate) entry: FunctionId,
    pub(crate) func: FunctionId,
    pub(crate) signature: u64,
}

impl FunctionId {
    /// The id of the function at `address`, if it lies in the image that
    /// holds this crate (always, unless it comes from a shared library).
    pub(crate) fn of(address: usize) -> Option<FunctionId> {
        let code = parent_code()?;
        code.contains(address)
            .then(|| FunctionId((address.wrapping_sub(anchor_address())) as u64))
    }

    /// The address this id names in this process.
    pub(crate) fn address(self) -> usize {
        anchor_address().wrapping_add(self.0 as usize)
    }
}

/// This process's code range, read once it can be read.
fn parent_code() -> Option<&'static CodeRange> {
    static CODE: OnceLock<CodeRange> = OnceLock::new();
    if let Some(code) = CODE.get() {
        return Some(code);
    }
    // A failure (say, no descriptor free) is not remembered: the next call
    // reads again.
    let code = CodeRange::of_this_crate().ok()?;
    Some(CODE.get_or_init(|| code))
}

/// A stable 64-bit hash of a type name (FNV-1a), for [`Call::signature`].
pub(crate) fn signature_of(type_name: &str) -> u64 {
    // FNV-1a over 8-byte words (it runs for every task, on long names),
    // then the last bytes and the length.
    let bytes = type_name.as_bytes();
    let mut words = bytes.chunks_exact(8);
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for word in &mut words {
        let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        hash = (hash ^ word).wrapping_mul(0x0000_0100_0000_01b3);
        hash ^= hash >> 29;
    }
    for &byte in words.remainder() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash ^ bytes.len() as u64).wrapping_mul(0x0000_0100_0000_01b3)
}

/// The fixed point that function ids are measured from.
#[inline(never)]
pub(crate) fn anchor() {
    std::hint::black_box(());
}

/// The address of [`anchor`] in this process.
pub(crate) fn anchor_address() -> usize {
    anchor as fn() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn double(x: u32) -> u32 {
        x * 2
    }

    #[test]
    fn ids_point_back_at_their_function() {
        let f = double as fn(u32) -> u32 as usize;
        let id = FunctionId::of(f).unwrap();
        assert_eq!(id.address(), f);
        let other = FunctionId::of(anchor_address()).unwrap();
        assert_eq!(other, FunctionId(0));
    }

    #[test]
    fn addresses_outside_this_image_have_no_id() {
        assert_eq!(FunctionId::of(0), None);
        let heap = Box::new(0u8);
        assert_eq!(FunctionId::of(&*heap as *const u8 as usize), None);
    }

    #[test]
    fn signatures_tell_types_apart() {
        assert_eq!(signature_of("a"), signature_of("a"));
        assert_ne!(
            signature_of("procpool::Unary<u32, u64>"),
            signature_of("procpool::Unary<u64, u32>")
        );
    }
}
