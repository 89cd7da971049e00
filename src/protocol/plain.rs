//! Plain values: the primitive numbers (`u8` to `u128`, `i8` to `i128`,
//! `usize`, `isize`, `f32`, `f64`) cross a chunk as their native bytes, one
//! after another, with no serde and no per-item header.
//!
//! Workers run the parent's own executable (checked at the handshake), so
//! both ends agree on the byte order and on the size of `usize`. Every bit
//! pattern is a valid value of these types, so decoding cannot fail.
//!
//! The types are told apart by [`TypeId`](std::any::TypeId): a task's
//! argument and result types are `'static`. Everything here is safe code:
//! a `Vec<T>` is downcast once per run of values, not per value, and its
//! bytes are copied as a whole ([`bytemuck`]'s casts between a slice of
//! numbers and a slice of bytes).

use std::any::{Any, TypeId};

/// Calls `$m!` with the list of plain types.
macro_rules! plain_types {
    ($m:ident) => {
        $m!(u8 u16 u32 u64 u128 usize i8 i16 i32 i64 i128 isize f32 f64)
    };
}

/// The size of one `T` on the wire if `T` is a plain type, else `None`.
pub(crate) fn size_of<T: 'static>() -> Option<usize> {
    let id = TypeId::of::<T>();
    macro_rules! find {
        ($($t:ty)*) => {
            $(
                if id == TypeId::of::<$t>() {
                    return Some(std::mem::size_of::<$t>());
                }
            )*
        };
    }
    plain_types!(find);
    None
}

/// Appends the native bytes of each value of `values`, a `Vec<T>` of a
/// plain `T`. Returns `false` (appending nothing) for anything else.
pub(crate) fn put_all(values: &dyn Any, out: &mut Vec<u8>) -> bool {
    macro_rules! put {
        ($($t:ty)*) => {
            $(
                if let Some(values) = values.downcast_ref::<Vec<$t>>() {
                    out.extend_from_slice(bytemuck::cast_slice::<$t, u8>(values));
                    return true;
                }
            )*
        };
    }
    plain_types!(put);
    false
}

/// Appends the native bytes of `value`, a plain value. Returns `false`
/// (appending nothing) for anything else.
pub(crate) fn put_one(value: &dyn Any, out: &mut Vec<u8>) -> bool {
    macro_rules! put {
        ($($t:ty)*) => {
            $(
                if let Some(value) = value.downcast_ref::<$t>() {
                    out.extend_from_slice(&value.to_ne_bytes());
                    return true;
                }
            )*
        };
    }
    plain_types!(put);
    false
}

/// Appends to `into`, a `Vec<T>` of a plain `T`, the values whose native
/// bytes `bytes` holds (a whole number of them; a cut value at the end is
/// ignored). Returns `false` (appending nothing) for anything else.
pub(crate) fn extend_from(into: &mut dyn Any, bytes: &[u8]) -> bool {
    macro_rules! get {
        ($($t:ty)*) => {
            $(
                if let Some(into) = into.downcast_mut::<Vec<$t>>() {
                    const N: usize = std::mem::size_of::<$t>();
                    let whole = &bytes[..bytes.len() / N * N];
                    match bytemuck::try_cast_slice::<u8, $t>(whole) {
                        Ok(values) => into.extend_from_slice(values),
                        // Not aligned for the type: value by value.
                        Err(_) => into.extend(whole.chunks_exact(N).map(|b| {
                            <$t>::from_ne_bytes(b.try_into().expect("chunks of the type's size"))
                        })),
                    }
                    return true;
                }
            )*
        };
    }
    plain_types!(get);
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Clone + PartialEq + std::fmt::Debug + 'static>(values: Vec<T>) {
        let mut bytes = vec![0xee];
        assert!(put_all(&values, &mut bytes));
        assert_eq!(bytes.len(), 1 + values.len() * size_of::<T>().unwrap());
        let mut back: Vec<T> = Vec::new();
        assert!(extend_from(&mut back, &bytes[1..]));
        assert_eq!(back, values);
    }

    #[test]
    fn plain_values_round_trip_as_their_bytes() {
        round_trip(vec![0u8, 1, 255]);
        round_trip(vec![u64::MAX, 0, 42]);
        round_trip(vec![i128::MIN, -1, i128::MAX]);
        round_trip(vec![usize::MAX, 7]);
        round_trip(vec![-0.5f32, f32::INFINITY]);
        round_trip(vec![f64::MIN_POSITIVE, -1e300]);
        round_trip(Vec::<i16>::new());
        let mut one = Vec::new();
        assert!(put_one(&-2i32, &mut one));
        assert_eq!(one, (-2i32).to_ne_bytes());
    }

    #[test]
    fn other_types_are_not_plain() {
        assert_eq!(size_of::<bool>(), None);
        assert_eq!(size_of::<char>(), None);
        assert_eq!(size_of::<(u64, u64)>(), None);
        assert_eq!(size_of::<String>(), None);
        let mut out = Vec::new();
        assert!(!put_all(&vec![true], &mut out));
        assert!(!put_one(&'x', &mut out));
        assert!(!put_all(&7u64, &mut out));
        assert!(out.is_empty());
        let mut strings: Vec<String> = Vec::new();
        assert!(!extend_from(&mut strings, &[0; 8]));
        assert!(strings.is_empty());
    }

    #[test]
    fn values_at_any_alignment_are_read() {
        let values = vec![1u64, u64::MAX, 3];
        let mut bytes = Vec::new();
        assert!(put_all(&values, &mut bytes));
        for skew in 0..8 {
            let mut buf = vec![0xaa; skew];
            buf.extend_from_slice(&bytes);
            let mut back: Vec<u64> = Vec::new();
            assert!(extend_from(&mut back, &buf[skew..]));
            assert_eq!(back, values, "skew {skew}");
        }
    }

    #[test]
    fn a_cut_value_at_the_end_is_ignored() {
        let mut back: Vec<u32> = Vec::new();
        assert!(extend_from(&mut back, &[1, 0, 0, 0, 9, 9]));
        assert_eq!(back, vec![1]);
    }
}
