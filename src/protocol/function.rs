//! Which function a task runs: the [`FunctionId`] in every `TASK` frame.
//!
//! procpool needs no registration of task functions. For a task function
//! `F` with argument `A` and result `R`, the parent takes the address of
//! `worker::entry::run_chunk::<K>` (the chunk runner monomorphised for that
//! `F`, `A`, `R`) and sends its distance from [`anchor`], a fixed function
//! of this crate. A worker adds the distance to its own `anchor`.
//!
//! # The invariant that makes this sound
//!
//! The distance between two functions of one executable is the same in
//! every process that runs that executable, wherever the loader put it
//! (ASLR moves the whole image, not single functions). So the address the
//! worker computes is the entry point the parent named, **provided** the
//! worker runs the same executable as the parent. Three things hold that:
//!
//! 1. the parent starts workers from `/proc/self/exe`, its own image;
//! 2. the worker refuses to serve unless its executable's device and inode,
//!    and the distance between two crate functions, match the parent's
//!    (`bootstrap`, checked before the first task);
//! 3. the ids come only from the parent, over a private socket pair that no
//!    other process holds, and only from [`FunctionId::of`] applied to a
//!    real [`EntryFn`].
//!
//! As a last line against a corrupt frame, the worker also checks that the
//! address lies in its executable's code before it calls it (`sys`).
//!
//! A future multi-machine transport can keep the same wire field and map
//! ids through a table instead; nothing else in the protocol depends on
//! what the number means.

use super::ProtocolError;

/// The signature of every chunk runner: runs the function on each item of
/// `items`, appends one result item per item to `out`, returns the count.
pub(crate) type EntryFn = fn(items: &[u8], out: &mut Vec<u8>) -> Result<u32, ProtocolError>;

/// Names a chunk runner; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FunctionId(pub(crate) u64);

impl FunctionId {
    /// The id of `entry` in this executable.
    pub(crate) fn of(entry: EntryFn) -> Self {
        FunctionId((entry as usize).wrapping_sub(anchor_address()) as u64)
    }

    /// The address this id names in this process.
    pub(crate) fn address(self) -> usize {
        anchor_address().wrapping_add(self.0 as usize)
    }
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

    fn runner_a(_: &[u8], _: &mut Vec<u8>) -> Result<u32, ProtocolError> {
        Ok(1)
    }
    fn runner_b(_: &[u8], _: &mut Vec<u8>) -> Result<u32, ProtocolError> {
        Ok(2)
    }

    #[test]
    fn ids_point_back_at_their_function() {
        let a = FunctionId::of(runner_a);
        let b = FunctionId::of(runner_b);
        assert_ne!(a, b);
        assert_eq!(a.address(), runner_a as EntryFn as usize);
        assert_eq!(b.address(), runner_b as EntryFn as usize);
    }
}
