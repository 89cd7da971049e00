//! `starmap`'s functions: fn item types, whose one value the worker makes.

/// Whether `F` is a fn item type: the name of one function (or of a tuple
/// struct or variant constructor), which has no state. Closures, whose
/// captures cannot be seen from a generic context, are refused.
///
/// The test reads the type's name, which is diagnostic output that rustc
/// does not promise to keep: today closures are named `…::{{closure}}`,
/// constructors `…::{{constructor}}`, functions by their path. So procpool
/// does not assume it: its build script (`build.rs`) runs this same test
/// with the compiler that builds procpool on fn items, closures (capturing
/// and not), fn pointers and unit structs, and sets `procpool_fn_item_names`
/// only if every answer is right. Without it this returns `false` for
/// every type, and `starmap` does not compile (`task::assert_stateless`).
/// The test fails closed too: any brace but a constructor's refuses the
/// type.
pub(crate) fn is_fn_item<F>() -> bool {
    cfg!(procpool_fn_item_names)
        && size_of::<F>() == 0
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
