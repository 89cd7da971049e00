//! Turning a [`FunctionId`] back into a function, and conjuring a task
//! function's zero-sized value in the worker.

use std::fs;

use crate::protocol::function::{EntryFn, FunctionId, anchor_address};

/// The address range of the executable mapping that holds this crate's
/// code, read from `/proc/self/maps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CodeRange {
    start: usize,
    end: usize,
}

impl CodeRange {
    /// The executable mapping that contains [`anchor`](crate::protocol::function::anchor).
    pub(crate) fn of_this_crate() -> Result<CodeRange, String> {
        let maps =
            fs::read_to_string("/proc/self/maps").map_err(|e| format!("cannot read /proc/self/maps: {e}"))?;
        Self::containing(&maps, anchor_address())
            .ok_or_else(|| "no executable mapping holds procpool's code".to_owned())
    }

    /// The executable mapping of `maps` (in `/proc/<pid>/maps` format) that
    /// contains `address`.
    fn containing(maps: &str, address: usize) -> Option<CodeRange> {
        maps.lines().find_map(|line| {
            let mut fields = line.split_ascii_whitespace();
            let (start, end) = fields.next()?.split_once('-')?;
            let perms = fields.next()?;
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            (perms.contains('x') && (start..end).contains(&address)).then_some(CodeRange { start, end })
        })
    }

    fn contains(&self, address: usize) -> bool {
        (self.start..self.end).contains(&address)
    }
}

/// The chunk runner that `id` names, or `None` if it points outside this
/// executable's code.
///
/// # Safety
///
/// `id` must have been made by [`FunctionId::of`] in a process running the
/// same executable as this one. The bootstrap handshake checks the
/// executable; the private channel guarantees where ids come from (see
/// `protocol::function` for the whole argument).
pub(crate) unsafe fn resolve(id: FunctionId, code: &CodeRange) -> Option<EntryFn> {
    let address = id.address();
    if !code.contains(address) {
        return None;
    }
    // SAFETY: by this function's contract the parent computed `id` from a
    // real `EntryFn` in the same executable, so `address` is that function's
    // entry point in this process too (the image moves as a whole). The
    // range check above keeps a corrupt id from naming data or another
    // library; a non-null, in-code address is all a fn pointer needs.
    Some(unsafe { std::mem::transmute::<usize, EntryFn>(address) })
}

/// A value of the zero-sized task function type `F`.
///
/// A non-capturing closure or fn item has no bytes. The parent held a value
/// of `F` when it submitted the task (the type is inhabited), and `F: Copy`,
/// so making one here is exactly what copying the caller's value would do.
pub(crate) fn conjure<F: Copy>() -> F {
    const { assert!(size_of::<F>() == 0, "only zero-sized functions can be conjured") };
    // SAFETY: `F` is zero-sized (checked at compile time above), so reading
    // one touches no memory, and a dangling pointer is non-null and aligned,
    // which is all a zero-sized read needs. `F` is inhabited and `Copy` (see
    // above), so no invariant of `F` is broken by producing another copy.
    unsafe { std::ptr::NonNull::<F>::dangling().as_ptr().read() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_mapping_around_an_address() {
        let maps = "\
55d0a0000000-55d0a0001000 r--p 00000000 08:01 42 /bin/x
55d0a0001000-55d0a0080000 r-xp 00001000 08:01 42 /bin/x
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
";
        let r = CodeRange::containing(maps, 0x55d0a0002000).unwrap();
        assert!(r.contains(0x55d0a0001000));
        assert!(!r.contains(0x55d0a0080000));
        assert_eq!(
            CodeRange::containing(maps, 0x55d0a0000010),
            None,
            "not executable"
        );
        assert_eq!(CodeRange::containing(maps, 0x10), None);
    }

    #[test]
    fn resolves_ids_inside_the_code_and_refuses_others() {
        fn runner(_: &[u8], out: &mut Vec<u8>) -> Result<u32, crate::protocol::ProtocolError> {
            out.push(1);
            Ok(5)
        }
        let code = CodeRange::of_this_crate().unwrap();
        let id = FunctionId::of(runner);
        // SAFETY: `id` was made by `FunctionId::of` in this very process.
        let f = unsafe { resolve(id, &code) }.unwrap();
        let mut out = Vec::new();
        assert_eq!(f(&[], &mut out), Ok(5));
        assert_eq!(out, [1]);
        let far = FunctionId(id.0.wrapping_add(1 << 40));
        // SAFETY: an id outside the code range is refused before any call.
        assert!(unsafe { resolve(far, &code) }.is_none());
    }

    #[test]
    fn conjured_closures_behave_like_the_original() {
        fn make() -> impl Fn(u32) -> u32 + Copy {
            |x| x * 3
        }
        fn call_conjured<F: Fn(u32) -> u32 + Copy>(_: F) -> u32 {
            conjure::<F>()(7)
        }
        assert_eq!(call_conjured(make()), 21);
    }
}
