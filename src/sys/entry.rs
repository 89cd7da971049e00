//! Turning a [`FunctionId`] back into a function, and conjuring a task
//! function's zero-sized value in the worker.

use std::fs;

use crate::protocol::function::{FunctionId, anchor_address};

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

    pub(crate) fn contains(&self, address: usize) -> bool {
        (self.start..self.end).contains(&address)
    }
}

/// The function of type `P` (a fn pointer type) that `id` names, or `None`
/// if it points outside this executable's code.
///
/// # Safety
///
/// `id` must have been made by [`FunctionId::of`] from a function pointer
/// of type `P`, in a process running the same executable as this one. The
/// bootstrap handshake checks the executable; the private channel and the
/// call's type signature check where ids come from (see
/// `protocol::function` for the whole argument).
pub(crate) unsafe fn resolve<P: Copy>(id: FunctionId, code: &CodeRange) -> Option<P> {
    const {
        assert!(
            size_of::<P>() == size_of::<usize>(),
            "only fn pointer types can be resolved"
        )
    };
    let address = id.address();
    if !code.contains(address) {
        return None;
    }
    // SAFETY: by this function's contract the parent computed `id` from a
    // real `P` in the same executable, so `address` is that function's
    // entry point in this process too (the image moves as a whole), and `P`
    // is a fn pointer type of the same size as `usize` (checked above). The
    // range check keeps a corrupt id from naming data or another library.
    Some(unsafe { std::mem::transmute_copy::<usize, P>(&address) })
}

/// Whether `F` is a fn item type: the name of one function (or of a tuple
/// struct or variant constructor), which has no state. Closures, whose
/// captures cannot be seen from a generic context, are refused.
///
/// The test reads the type's name, which is diagnostic output: closures are
/// named `…::{{closure}}`, constructors `…::{{constructor}}`, functions by
/// their path. It fails closed: any other brace refuses the type.
pub(crate) fn is_fn_item<F>() -> bool {
    size_of::<F>() == 0
        && !std::any::type_name::<F>()
            .replace("::{{constructor}}", "")
            .contains('{')
}

/// The value of the fn item type `F`, or `None` if `F` is not a fn item
/// type ([`is_fn_item`]).
pub(crate) fn fn_item<F: Copy>() -> Option<F> {
    if !is_fn_item::<F>() {
        return None;
    }
    // SAFETY: `F` is zero-sized, so reading one touches no memory, and a
    // dangling pointer is non-null and aligned, which is all a zero-sized
    // read needs. `F` is a fn item type, as far as its name tells (checked
    // above): it names one function and has exactly one value, with no state
    // and no invariant, so this is that value. The name is the only evidence
    // available in generic code; on stable Rust only closures and fn items
    // are zero-sized `Fn` types (a named type can implement `Fn` only with
    // the nightly `fn_traits` feature), and closures are named as such.
    Some(unsafe { std::ptr::NonNull::<F>::dangling().as_ptr().read() })
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
        fn triple(x: u32) -> u32 {
            x * 3
        }
        let code = CodeRange::of_this_crate().unwrap();
        let id = FunctionId::of(triple as fn(u32) -> u32 as usize).unwrap();
        // SAFETY: `id` was made by `FunctionId::of` from a `fn(u32) -> u32`
        // in this very process.
        let f = unsafe { resolve::<fn(u32) -> u32>(id, &code) }.unwrap();
        assert_eq!(f(5), 15);
        let far = FunctionId(id.0.wrapping_add(1 << 40));
        // SAFETY: an id outside the code range is refused before any use.
        assert!(unsafe { resolve::<fn(u32) -> u32>(far, &code) }.is_none());
    }

    #[test]
    fn only_fn_items_count_as_fn_items() {
        fn item(x: u8) -> u8 {
            x
        }
        fn check<F: Copy>(_: F) -> bool {
            is_fn_item::<F>()
        }
        assert!(check(item));
        assert!(check(u8::pow));
        assert!(!check(|x: u8| x), "a closure");
        let token = ();
        assert!(!check(move |x: u8| {
            let () = token;
            x
        }));
        assert!(!check(item as fn(u8) -> u8), "a fn pointer");
        #[derive(Clone, Copy)]
        struct Wrapper(#[allow(dead_code)] u8);
        assert!(check(Wrapper), "a tuple struct constructor");
        assert!(check(Some::<u8>), "a variant constructor");
        fn get<F: Copy + Fn(u8) -> u8>(_: F) -> Option<u8> {
            fn_item::<F>().map(|f| f(9))
        }
        assert_eq!(get(item), Some(9));
        assert_eq!(get(|x| x + 1), None);
    }
}
