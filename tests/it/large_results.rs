//! Results larger than a frame may carry: a chunk whose results add up past
//! the frame limit arrives in parts, and one result over the limit is
//! `Error::TooLarge`, naming the result.

use procpool::{DataKind, Error, Pool};
use serde_bytes::ByteBuf;

const MIB: usize = 1 << 20;

fn big(i: u8) -> ByteBuf {
    ByteBuf::from(vec![i; 110 * MIB])
}

fn check(results: impl IntoIterator<Item = Result<ByteBuf, Error>>) -> usize {
    let mut n = 0;
    for (i, result) in results.into_iter().enumerate() {
        let bytes = result.unwrap_or_else(|e| panic!("item {i}: {e}"));
        assert_eq!(bytes.len(), 110 * MIB, "item {i}");
        assert!(
            bytes.iter().step_by(4096).all(|&b| b == i as u8),
            "item {i}'s bytes"
        );
        n += 1;
    }
    n
}

#[test]
fn a_chunk_whose_results_pass_the_frame_limit_arrives_in_parts() {
    // Ten results of 110 MiB in one chunk: 1.1 GiB, past the 1 GiB frame
    // limit. They used to fail together as an encoding error.
    let pool = Pool::new(1).unwrap();
    let results = pool.with_chunksize(10).map(big, 0..10u8).unwrap();
    assert_eq!(check(results.into_iter().map(Ok)), 10);
    assert_eq!(pool.stats().tasks_completed, 10);
}

#[test]
fn imap_with_automatic_chunks_delivers_large_results() {
    let pool = Pool::new(2).unwrap();
    assert_eq!(check(pool.imap(big, 0..12u8).unwrap()), 12);
}

#[test]
fn one_result_over_the_frame_limit_is_too_large() {
    fn huge(_: ()) -> ByteBuf {
        ByteBuf::from(vec![7u8; 1100 * MIB])
    }
    let pool = Pool::new(1).unwrap();
    let err = pool.apply(huge, ()).unwrap_err();
    let Error::TooLarge {
        what, size, limit, ..
    } = err
    else {
        panic!("expected TooLarge, got {err:?}");
    };
    assert_eq!(what, DataKind::Result);
    assert!(size > 1100 * MIB && size > limit, "size {size}, limit {limit}");
    // The worker goes on.
    assert_eq!(pool.apply(|x: u8| x + 1, 1).unwrap(), 2);
}
