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

use super::ProtocolError;

pub(crate) const ARG_VALUE: u8 = 0;
pub(crate) const ARG_HOLE: u8 = 1;

pub(crate) const RES_OK: u8 = 0;
pub(crate) const RES_PANIC: u8 = 1;
pub(crate) const RES_ARG_DECODE: u8 = 2;
pub(crate) const RES_RESULT_ENCODE: u8 = 3;
pub(crate) const RES_SKIPPED: u8 = 4;
/// The result encoded fine but is larger than a frame may carry; the body
/// is its size, a u64.
pub(crate) const RES_TOO_LARGE: u8 = 5;

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
