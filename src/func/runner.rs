//! Task runners: the one kind of function a `TASK` frame may start.
//!
//! A frame does not name a runner's code: it names a [`Runner`], a small
//! constant record (magic words, then the runner function) that the
//! compiler places in the image's read-only data. A worker calls a runner
//! only after finding that record where the id points: in a read-only,
//! non-executable mapping of its image, aligned, with both magic words,
//! and with a function pointer into the image's code. An id that names
//! anything else (code, a string, a function that is not a runner) fails
//! closed: the worker refuses the frame and stops.

use super::id::FunctionId;
use super::image::Image;

/// A runner function: checks the target's signature, runs the task
/// function on each item of `items`, appends one result item per item to
/// `out`, and returns the count and where the time went.
pub(crate) type RunFn = fn(
    target: crate::protocol::message::Target,
    image: &Image,
    items: &[u8],
    out: &mut crate::protocol::message::Results<'_>,
)
    -> Result<(u32, crate::protocol::message::Timing), crate::protocol::ProtocolError>;

/// Two words that mark a [`Runner`] record. They are written only by
/// [`Runner::new`], which runs in `const` contexts only, so they occur in
/// the image only inside runner records. [`Runner::find`] does not compare
/// with them directly (the compiler could then keep a copy among the
/// constants) but with [`mix`] of them.
const MAGIC: [u64; 2] = [0x7072_6f63_706f_6f6c, 0x72_756e_6e65_7221];

/// A one-way mix of the magic words, so that `MAGIC` itself never appears
/// as a constant that the checking code compares with.
const fn mix(words: [u64; 2]) -> u64 {
    let a = (words[0] ^ (words[0] >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let b = (words[1] ^ (words[1] >> 31)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (a ^ (a >> 32)) ^ b.rotate_left(17)
}

/// A runner record; see the [module docs](self).
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub(crate) struct Runner {
    magic: [u64; 2],
    run: RunFn,
}

impl Runner {
    /// The record for `run`; use it as `const { &Runner::new(f) }`, so that
    /// it lives in the image's read-only data.
    pub(crate) const fn new(run: RunFn) -> Runner {
        Runner { magic: MAGIC, run }
    }

    /// The record's id, to send to a worker.
    pub(crate) fn id(&'static self) -> FunctionId {
        FunctionId::of_address(std::ptr::from_ref(self) as usize)
    }

    /// The runner function that `id` names, or `None` if `id` names no
    /// runner record of this image.
    pub(crate) fn find(id: FunctionId, image: &Image) -> Option<RunFn> {
        let address = id.address();
        if !address.is_multiple_of(align_of::<Runner>()) || !image.in_readonly(address, size_of::<Runner>()) {
            return None;
        }
        let record = address as *const Runner;
        // SAFETY: the record's bytes lie, aligned, in a read-only mapping of
        // this image (checked above), which stays mapped and unchanged for
        // the life of the process; reading them as integers is valid for any
        // bytes.
        let magic = unsafe { (&raw const (*record).magic).read() };
        if mix(magic) != const { mix(MAGIC) } {
            return None;
        }
        // SAFETY: as above, for the next word; it is read as an integer
        // first, since any bytes are a valid `usize`.
        let run = unsafe { (&raw const (*record).run).cast::<usize>().read() };
        if !image.in_code(run) {
            return None;
        }
        // SAFETY: the magic words are there (up to a 64-bit hash), in
        // read-only data, so this is a `Runner` made by `Runner::new` (see
        // `MAGIC`: nothing else in the image carries them), whose second field is a
        // `RunFn` into this image's code (checked above).
        Some(unsafe { (&raw const (*record).run).read() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ProtocolError;
    use crate::protocol::message::{Results, Target, Timing};

    fn counts(
        _: Target,
        _: &Image,
        items: &[u8],
        _: &mut Results<'_>,
    ) -> Result<(u32, Timing), ProtocolError> {
        Ok((items.len() as u32, Timing::default()))
    }

    fn runner() -> &'static Runner {
        const { &Runner::new(counts) }
    }

    #[test]
    fn a_runner_record_is_found_by_its_id() {
        let image = Image::current().unwrap();
        let run = Runner::find(runner().id(), image).expect("the record is found");
        let target = Target {
            runner: 0,
            func: 0,
            signature: 0,
        };
        let (mut buf, mut send) = (Vec::new(), |_: &[u8]| {});
        let mut out = Results::start(&mut buf, 1, &mut send);
        assert_eq!(run(target, image, &[1, 2, 3], &mut out).unwrap().0, 3);
    }

    #[test]
    fn ids_of_anything_but_a_runner_record_fail_closed() {
        let image = Image::current().unwrap();
        let id = runner().id();
        let code = FunctionId::of_address(counts as RunFn as usize);
        let text = FunctionId::of_address("procpool".as_ptr() as usize);
        let heap = Box::new(*runner());
        let on_heap = FunctionId::of_address(std::ptr::from_ref(&*heap) as usize);
        for (what, bad) in [
            ("a function", code),
            ("a string constant", text),
            ("a record on the heap", on_heap),
            ("inside a record", FunctionId(id.0 + 8)),
            ("misaligned", FunctionId(id.0 + 1)),
            ("far away", FunctionId(id.0.wrapping_add(1 << 44))),
        ] {
            assert!(Runner::find(bad, image).is_none(), "{what}");
        }
    }
}
