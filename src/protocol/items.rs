//! The items of a chunk: each one `[tag u8][len u32 LE][len bytes]`.
//!
//! Each item is encoded on its own, so an item that fails to encode or
//! decode fails alone and the others of its chunk still run.
//!
//! In a `TASK`, the tag is [`ARG_VALUE`] (the bytes are the argument) or
//! [`ARG_HOLE`] (the parent could not encode this argument; the worker only
//! echoes [`RES_SKIPPED`]). In a `DONE`, the tag says how the item ended and
//! the bytes carry its value, panic or error message (or, for
//! [`RES_TOO_LARGE`], the result's size).
//!
//! A *run* ([`ARG_RUN`], [`RES_RUN`]) stands for many items at once: values
//! of a plain type (see [`plain`](super::plain)) as their native bytes,
//! `[size u8][padding][size bytes per value]` (see [`push_run`]). A task of
//! a plain argument type sends its arguments as runs only; a worker sends
//! the results of a plain type that ran to their end as runs, and every
//! failure as an item of its own.

use super::ProtocolError;

pub(crate) const ARG_VALUE: u8 = 0;
pub(crate) const ARG_HOLE: u8 = 1;
/// A run of plain arguments.
pub(crate) const ARG_RUN: u8 = 2;

pub(crate) const RES_OK: u8 = 0;
pub(crate) const RES_PANIC: u8 = 1;
pub(crate) const RES_ARG_DECODE: u8 = 2;
pub(crate) const RES_RESULT_ENCODE: u8 = 3;
pub(crate) const RES_SKIPPED: u8 = 4;
/// The result encoded fine but is larger than a frame may carry; the body
/// is its size, a u64.
pub(crate) const RES_TOO_LARGE: u8 = 5;
/// A run of plain results, each a value.
pub(crate) const RES_RUN: u8 = 6;

/// The most values one run item holds (so its body stays far below the
/// 4 GiB item limit).
pub(crate) const MAX_RUN: usize = 1 << 20;

const ITEM_HEADER: usize = 5;

/// Why an item could not be appended.
#[derive(Debug)]
pub(crate) enum PushError<E> {
    /// The body writer failed; nothing was appended.
    Body(E),
    /// The body is longer than an item can be (4 GiB).
    TooLarge(usize),
}

/// Appends one item whose body `write` appends to the buffer. On failure the
/// buffer is left as it was.
pub(crate) fn push_with<E>(
    buf: &mut Vec<u8>,
    tag: u8,
    write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<(), PushError<E>> {
    let start = buf.len();
    buf.push(tag);
    buf.extend_from_slice(&[0; 4]);
    if let Err(e) = write(buf) {
        buf.truncate(start);
        return Err(PushError::Body(e));
    }
    let len = buf.len() - start - ITEM_HEADER;
    let Ok(len32) = u32::try_from(len) else {
        buf.truncate(start);
        return Err(PushError::TooLarge(len));
    };
    buf[start + 1..start + ITEM_HEADER].copy_from_slice(&len32.to_le_bytes());
    Ok(())
}

/// Appends one item with the given body (cut to 4 GiB, which only a message
/// could reach; messages are far shorter).
pub(crate) fn push_bytes(buf: &mut Vec<u8>, tag: u8, body: &[u8]) {
    let body = &body[..body.len().min(u32::MAX as usize)];
    buf.push(tag);
    buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
    buf.extend_from_slice(body);
}

/// Appends one run item of `count` plain values of `size` bytes each, whose
/// native bytes `write` appends (`count` at most [`MAX_RUN`]).
///
/// The body is `[size u8][pad u8][pad zero bytes][values]`: the padding puts
/// the values at a multiple of 16 bytes from the start of the frame body,
/// when `buf` holds a frame from its header on, so that the reader can copy
/// them as a whole (it reads them value by value otherwise).
pub(crate) fn push_run(
    buf: &mut Vec<u8>,
    tag: u8,
    size: usize,
    count: usize,
    write: impl FnOnce(&mut Vec<u8>),
) {
    debug_assert!(count <= MAX_RUN && size <= 16);
    let values_at = (buf.len() + ITEM_HEADER + 2).wrapping_sub(super::frame::HEADER_LEN);
    let pad = values_at.wrapping_neg() % 16;
    let len = 2 + pad + size * count;
    buf.reserve(ITEM_HEADER + len);
    buf.push(tag);
    buf.extend_from_slice(&(len as u32).to_le_bytes());
    buf.extend_from_slice(&[size as u8, pad as u8]);
    buf.resize(buf.len() + pad, 0);
    let at = buf.len();
    write(buf);
    debug_assert_eq!(buf.len() - at, size * count);
}

/// The values of a run item's `body`: their size and their bytes.
///
/// # Errors
///
/// When the body is not a whole number of values of a plain type's size.
pub(crate) fn run_values(body: &[u8]) -> Result<(usize, &[u8]), ProtocolError> {
    let (size, values) = match body {
        [size, pad, rest @ ..] if usize::from(*pad) <= rest.len() && *pad < 16 => {
            (*size, &rest[usize::from(*pad)..])
        }
        _ => {
            return Err(ProtocolError::new(
                "a run item without its value size and padding",
            ));
        }
    };
    let size = usize::from(size);
    if !matches!(size, 1 | 2 | 4 | 8 | 16) || !values.len().is_multiple_of(size) {
        return Err(ProtocolError::new(format!(
            "a run item of {} bytes of {size}-byte values",
            values.len()
        )));
    }
    Ok((size, values))
}

/// How many items the item `(tag, body)` stands for: the values of a run
/// (tag `run`), else one.
///
/// # Errors
///
/// A malformed run (see [`run_values`]).
pub(crate) fn width(tag: u8, body: &[u8], run: u8) -> Result<usize, ProtocolError> {
    if tag != run {
        return Ok(1);
    }
    let (size, values) = run_values(body)?;
    Ok(values.len() / size)
}

/// Walks the items of a chunk, checking every length.
#[derive(Debug, Clone)]
pub(crate) struct Items<'a> {
    rest: &'a [u8],
}

impl<'a> Items<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Items { rest: bytes }
    }
}

impl<'a> Iterator for Items<'a> {
    type Item = Result<(u8, &'a [u8]), ProtocolError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        if self.rest.len() < ITEM_HEADER {
            let n = self.rest.len();
            self.rest = &[];
            return Some(Err(ProtocolError::new(format!(
                "item header cut short ({n} of {ITEM_HEADER} bytes)"
            ))));
        }
        let tag = self.rest[0];
        let len = u32::from_le_bytes(self.rest[1..ITEM_HEADER].try_into().expect("4 bytes")) as usize;
        let body = &self.rest[ITEM_HEADER..];
        if body.len() < len {
            let n = body.len();
            self.rest = &[];
            return Some(Err(ProtocolError::new(format!(
                "item of {len} bytes cut short ({n} bytes left)"
            ))));
        }
        self.rest = &body[len..];
        Some(Ok((tag, &body[..len])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip_and_failed_pushes_leave_no_trace() {
        let mut buf = Vec::new();
        push_bytes(&mut buf, ARG_VALUE, b"one");
        let failed: Result<(), PushError<&str>> = push_with(&mut buf, ARG_VALUE, |b| {
            b.extend_from_slice(b"partial");
            Err("nope")
        });
        assert!(matches!(failed, Err(PushError::Body("nope"))));
        push_with::<()>(&mut buf, ARG_HOLE, |_| Ok(())).unwrap();
        push_with::<()>(&mut buf, RES_PANIC, |b| {
            b.extend_from_slice(b"xyz");
            Ok(())
        })
        .unwrap();
        let items: Vec<_> = Items::new(&buf).map(Result::unwrap).collect();
        assert_eq!(
            items,
            vec![
                (ARG_VALUE, &b"one"[..]),
                (ARG_HOLE, &b""[..]),
                (RES_PANIC, &b"xyz"[..])
            ]
        );
    }

    #[test]
    fn runs_say_how_many_items_they_hold() {
        let mut buf = Vec::new();
        push_run(&mut buf, ARG_RUN, 4, 3, |b| b.extend_from_slice(&[7; 12]));
        push_bytes(&mut buf, ARG_VALUE, b"x");
        let items: Vec<_> = Items::new(&buf).map(Result::unwrap).collect();
        assert_eq!(items[0].0, ARG_RUN);
        assert_eq!(width(items[0].0, items[0].1, ARG_RUN).unwrap(), 3);
        assert_eq!(run_values(items[0].1).unwrap(), (4, &[7u8; 12][..]));
        assert_eq!(width(items[1].0, items[1].1, ARG_RUN).unwrap(), 1);
        for bad in [
            &[][..],
            &[8][..],
            &[3, 0, 0, 0, 0][..],
            &[8, 0, 0, 0, 0, 0][..],
            &[0, 0][..],
            &[8, 3, 0, 0][..],
            &[8, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0][..],
        ] {
            assert!(width(ARG_RUN, bad, ARG_RUN).is_err(), "{bad:?}");
        }
        assert_eq!(width(ARG_RUN, &[8, 0], ARG_RUN).unwrap(), 0);
        assert_eq!(width(ARG_RUN, &[2, 1, 0, 5, 5], ARG_RUN).unwrap(), 1);
    }

    #[test]
    fn cut_items_are_errors_not_panics() {
        let mut buf = Vec::new();
        push_bytes(&mut buf, ARG_VALUE, b"abcdef");
        for cut in 1..buf.len() {
            let mut it = Items::new(&buf[..cut]);
            assert!(it.next().unwrap().is_err(), "cut at {cut}");
            assert!(it.next().is_none());
        }
    }
}
