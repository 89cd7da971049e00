//! Framing: an 8-byte header, then the body.
//!
//! ```text
//! 0      4      5        8
//! +------+------+--------+----------------+
//! | len  | kind | 0 0 0  | body (len)     |
//! +------+------+--------+----------------+
//! len: u32 little endian, the body's length; kind: the message kind.
//! ```
//!
//! The reserved bytes must be zero, which catches a peer that writes
//! something else than frames (say, text on the wrong descriptor) early.

use std::io::{self, Read};

use super::ProtocolError;

/// Length of a frame header.
pub(crate) const HEADER_LEN: usize = 8;

/// The default limit on a frame body: 1 GiB.
pub(crate) const DEFAULT_MAX_BODY: usize = 1 << 30;

/// Writes the header for a body of `len` bytes into `out[..HEADER_LEN]`.
pub(crate) fn put_header(out: &mut [u8], kind: u8, len: usize) {
    let len = u32::try_from(len).expect("frame body length checked against the limit");
    out[..4].copy_from_slice(&len.to_le_bytes());
    out[4] = kind;
    out[5..HEADER_LEN].fill(0);
}

/// Starts a frame in `buf` (cleared): reserves the header, to be filled in
/// by [`finish`] once the body is written after it.
pub(crate) fn start(buf: &mut Vec<u8>) {
    buf.clear();
    buf.extend_from_slice(&[0; HEADER_LEN]);
}

/// Fills in the header of a frame begun with [`start`].
///
/// Returns the body length, or an error when it exceeds `max_body`.
pub(crate) fn finish(buf: &mut [u8], kind: u8, max_body: usize) -> Result<usize, usize> {
    let len = buf.len() - HEADER_LEN;
    if len > max_body || u32::try_from(len).is_err() {
        return Err(len);
    }
    put_header(buf, kind, len);
    Ok(len)
}

/// Decodes a header: `(kind, body length)`.
pub(crate) fn parse_header(header: &[u8; HEADER_LEN], max_body: usize) -> Result<(u8, usize), ProtocolError> {
    if header[5..] != [0, 0, 0] {
        return Err(ProtocolError::new(format!(
            "bad frame header {header:02x?} (reserved bytes are not zero)"
        )));
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if len > max_body {
        return Err(ProtocolError::new(format!(
            "frame of {len} bytes exceeds the limit of {max_body} bytes"
        )));
    }
    Ok((header[4], len))
}

/// Whether `buffered` (bytes read ahead from a channel) begins with a
/// whole frame, so that reading it will not wait. A bad header counts as
/// not whole: reading it reports the error.
pub(crate) fn begins_with_whole_frame(buffered: &[u8]) -> bool {
    let Some(header) = buffered.first_chunk::<HEADER_LEN>() else {
        return false;
    };
    parse_header(header, usize::MAX).is_ok_and(|(_, len)| buffered.len() - HEADER_LEN >= len)
}

/// Why no frame could be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The peer closed the channel between frames.
    Closed,
    /// The peer closed the channel in the middle of a frame.
    Truncated,
    /// The bytes are not a frame.
    Protocol(ProtocolError),
    /// The channel failed.
    Io(io::Error),
}

/// Reads one frame into `body` (replacing its contents); returns its kind.
pub(crate) fn read_frame<R: Read>(
    reader: &mut R,
    body: &mut Vec<u8>,
    max_body: usize,
) -> Result<u8, ReadError> {
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match reader.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Err(ReadError::Closed),
            Ok(0) => return Err(ReadError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Err(ReadError::Closed),
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
    let (kind, len) = parse_header(&header, max_body).map_err(ReadError::Protocol)?;
    body.clear();
    body.try_reserve_exact(len).map_err(|_| {
        ReadError::Protocol(ProtocolError::new(format!(
            "no memory for a frame of {len} bytes"
        )))
    })?;
    let read = reader
        .take(len as u64)
        .read_to_end(body)
        .map_err(|e| match e.kind() {
            io::ErrorKind::ConnectionReset => ReadError::Truncated,
            _ => ReadError::Io(e),
        })?;
    if read < len {
        return Err(ReadError::Truncated);
    }
    Ok(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut buf = Vec::new();
        start(&mut buf);
        buf.extend_from_slice(body);
        finish(&mut buf, kind, DEFAULT_MAX_BODY).unwrap();
        buf
    }

    #[test]
    fn round_trip_several_frames() {
        let mut wire = frame(7, b"hello");
        wire.extend(frame(9, b""));
        let mut r = &wire[..];
        let mut body = Vec::new();
        assert_eq!(read_frame(&mut r, &mut body, 100).unwrap(), 7);
        assert_eq!(body, b"hello");
        assert_eq!(read_frame(&mut r, &mut body, 100).unwrap(), 9);
        assert!(body.is_empty());
        assert!(matches!(
            read_frame(&mut r, &mut body, 100),
            Err(ReadError::Closed)
        ));
    }

    #[test]
    fn truncated_header_and_body_are_reported() {
        let wire = frame(1, b"abcdef");
        let mut body = Vec::new();
        for cut in 1..wire.len() {
            let mut r = &wire[..cut];
            assert!(
                matches!(read_frame(&mut r, &mut body, 100), Err(ReadError::Truncated)),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn oversized_and_garbage_headers_are_refused() {
        let wire = frame(1, &[0; 64]);
        let mut body = Vec::new();
        assert!(matches!(
            read_frame(&mut &wire[..], &mut body, 63),
            Err(ReadError::Protocol(_))
        ));
        let text = b"hello world, this is not a frame";
        assert!(matches!(
            read_frame(&mut &text[..], &mut body, DEFAULT_MAX_BODY),
            Err(ReadError::Protocol(_))
        ));
    }

    #[test]
    fn a_whole_frame_is_told_from_a_part_of_one() {
        let wire = frame(3, b"abc");
        assert!(begins_with_whole_frame(&wire));
        let mut two = wire.clone();
        two.extend_from_slice(&wire[..4]);
        assert!(begins_with_whole_frame(&two));
        for cut in 0..wire.len() {
            assert!(!begins_with_whole_frame(&wire[..cut]), "cut at {cut}");
        }
        assert!(!begins_with_whole_frame(b"not a frame at all"));
    }

    #[test]
    fn finish_refuses_bodies_over_the_limit() {
        let mut buf = Vec::new();
        start(&mut buf);
        buf.extend_from_slice(&[1; 10]);
        assert_eq!(finish(&mut buf, 1, 9), Err(10));
        assert_eq!(finish(&mut buf, 1, 10), Ok(10));
    }
}
