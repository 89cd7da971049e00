//! Cutting worker output into lines: which bytes are complete lines, how to
//! cut them into writes that do not splice, and the standard library's
//! report of a failed allocation.

/// A partial line longer than this is passed on as it is.
pub(super) const MAX_PARTIAL: usize = 64 * 1024;

/// The most a write to a pipe may hold and stay in one piece (`PIPE_BUF`).
pub(super) const ATOMIC_WRITE: usize = 4096;

/// How many bytes at the front of `partial` to pass on: its complete lines
/// (all of it with `rest`, or when it has grown past [`MAX_PARTIAL`]). An
/// unfinished line passed on gets a newline, so that nothing splices onto
/// it.
pub(super) fn complete_lines(partial: &mut Vec<u8>, rest: bool) -> usize {
    let mut complete = if rest || partial.len() > MAX_PARTIAL {
        partial.len()
    } else {
        partial.iter().rposition(|&b| b == b'\n').map_or(0, |at| at + 1)
    };
    if complete > 0 && partial[complete - 1] != b'\n' {
        partial.insert(complete, b'\n');
        complete += 1;
    }
    complete
}

/// How much of `lines` the next write takes: all of it if it fits in an
/// atomic write, else the whole lines that do, else the first line. Each
/// write then holds whole lines and at most [`ATOMIC_WRITE`] bytes where it
/// can, so that lines from several workers (and the parent's own) never
/// splice into each other on a pipe; only a line longer than that goes
/// alone, in pieces.
pub(super) fn next_write(lines: &[u8]) -> usize {
    if lines.len() <= ATOMIC_WRITE {
        return lines.len();
    }
    match lines[..ATOMIC_WRITE].iter().rposition(|&b| b == b'\n') {
        Some(at) => at + 1,
        None => lines
            .iter()
            .position(|&b| b == b'\n')
            .map_or(lines.len(), |at| at + 1),
    }
}

/// The size in a line that is exactly `memory allocation of N bytes
/// failed`, the standard library's report before it aborts.
pub(super) fn failed_allocation(lines: &[u8]) -> Option<u64> {
    lines.split(|&b| b == b'\n').find_map(|line| {
        let digits = line
            .strip_prefix(b"memory allocation of ")?
            .strip_suffix(b" bytes failed")?;
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_allocation_failure_report_is_recognised() {
        assert_eq!(
            failed_allocation(b"x\nmemory allocation of 1073741824 bytes failed\n"),
            Some(1 << 30)
        );
        assert_eq!(
            failed_allocation(b"memory allocation of many bytes failed\n"),
            None
        );
        assert_eq!(failed_allocation(b"memory allocation of 12 bytes\n"), None);
        assert_eq!(
            failed_allocation(b"note: memory allocation of 5 bytes failed\n"),
            None
        );
    }

    #[test]
    fn long_batches_are_cut_at_line_ends_into_atomic_writes() {
        let line = [b'x'; 99];
        let mut batch = Vec::new();
        for _ in 0..100 {
            batch.extend_from_slice(&line);
            batch.push(b'\n');
        }
        let mut rest = &batch[..];
        let mut writes = 0;
        while !rest.is_empty() {
            let cut = next_write(rest);
            assert!(cut <= ATOMIC_WRITE && rest[cut - 1] == b'\n', "cut at {cut}");
            rest = &rest[cut..];
            writes += 1;
        }
        assert_eq!(writes, 3, "10,000 bytes of 100-byte lines: 40 + 40 + 20 lines");
        // A line longer than an atomic write goes alone, whole.
        let mut long = vec![b'y'; 5000];
        long.extend_from_slice(b"\nshort\n");
        assert_eq!(next_write(&long), 5001);
        assert_eq!(next_write(b"ab\ncd"), 5);
    }

    #[test]
    fn only_whole_lines_pass_unless_told() {
        let mut partial = b"one\ntwo".to_vec();
        assert_eq!(complete_lines(&mut partial, false), 4);
        assert_eq!(complete_lines(&mut partial, true), 8);
        assert_eq!(partial, b"one\ntwo\n");
    }
}
