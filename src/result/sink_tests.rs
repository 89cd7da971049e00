//! Unit tests of `sink`: each result outcome maps to its error; `map`
//! collects chunks in place, in any order.

use super::*;
use crate::protocol::codec;

fn meta(first: usize, count: u32) -> ChunkMeta {
    ChunkMeta {
        first,
        count,
        holes: vec![(
            2,
            Error::Encode {
                index: None,
                what: DataKind::Argument,
                message: "nope".into(),
            },
        )],
    }
}

fn results() -> Vec<u8> {
    let mut buf = Vec::new();
    items::push_with(&mut buf, items::RES_OK, |b| codec::encode(&7u32, b)).unwrap();
    let panic = RemotePanic::new("boom".into(), None, None);
    items::push_with(&mut buf, items::RES_PANIC, |b| codec::encode(&panic, b)).unwrap();
    items::push_bytes(&mut buf, items::RES_SKIPPED, &[]);
    items::push_bytes(&mut buf, items::RES_ARG_DECODE, b"bad arg");
    items::push_bytes(&mut buf, items::RES_RESULT_ENCODE, b"bad result");
    items::push_bytes(&mut buf, items::RES_OK, &[0xff; 9]);
    buf
}

#[test]
fn every_item_outcome_maps_to_its_error() {
    let buf = results();
    assert_eq!(validate(&buf, 6).unwrap(), 2);
    let out = decode_chunk::<u32>(&meta(10, 6), ChunkOutcome::Results(&buf), true);
    assert_eq!(out[0].as_ref().unwrap(), &7);
    assert!(matches!(&out[1], Err(Error::Panicked { index: Some(11), panic }) if panic.message() == "boom"));
    assert!(matches!(
        &out[2],
        Err(Error::Encode {
            index: Some(12),
            what: DataKind::Argument,
            ..
        })
    ));
    assert!(matches!(
        &out[3],
        Err(Error::Decode {
            index: Some(13),
            what: DataKind::Argument,
            ..
        })
    ));
    assert!(matches!(
        &out[4],
        Err(Error::Encode {
            index: Some(14),
            what: DataKind::Result,
            ..
        })
    ));
    assert!(matches!(
        &out[5],
        Err(Error::Decode {
            index: Some(15),
            what: DataKind::Result,
            ..
        })
    ));
}

#[test]
fn validate_checks_count_and_tags() {
    let buf = results();
    assert!(validate(&buf, 5).is_err());
    let mut bad = Vec::new();
    items::push_bytes(&mut bad, 99, b"");
    assert!(validate(&bad, 1).is_err());
    assert!(validate(&buf[..buf.len() - 1], 6).is_err());
}

/// The results of a chunk of `values` as runs of plain `u32`s.
fn run_of(values: &[u32]) -> Vec<u8> {
    let mut buf = Vec::new();
    items::push_run(&mut buf, items::RES_RUN, 4, values.len(), |b| {
        b.extend(values.iter().flat_map(|v| v.to_ne_bytes()));
    });
    buf
}

#[test]
fn plain_values_land_in_place_in_any_order_of_chunks() {
    use crate::result::callbacks::CallbackThread;
    use crate::result::pending::Pending;
    use crate::result::slot::AsyncResult;
    let thread = CallbackThread::start().unwrap();
    let pending = Arc::new(Pending::default());
    for order in [[0, 1, 2, 3], [3, 1, 0, 2], [2, 3, 1, 0]] {
        let (slot, resolver) = Resolver::new(None, &thread.sender(), || pending.token());
        let collect = Collect::<u32>::new(resolver, None);
        for chunk in order {
            let first = chunk * 3;
            let values: Vec<u32> = (first as u32..first as u32 + 3).collect();
            let meta = ChunkMeta {
                first,
                count: 3,
                holes: Vec::new(),
            };
            collect.complete(&meta, ChunkOutcome::Results(&run_of(&values)));
        }
        collect.seal(12);
        let got = AsyncResult::new(slot, None).get().unwrap();
        assert_eq!(got, (0..12).collect::<Vec<u32>>(), "order {order:?}");
    }
    // A run of another type is an error for its first item.
    let (slot, resolver) = Resolver::new(None, &thread.sender(), || pending.token());
    let collect = Collect::<u64>::new(resolver, None);
    let meta = ChunkMeta {
        first: 0,
        count: 2,
        holes: Vec::new(),
    };
    collect.complete(&meta, ChunkOutcome::Results(&run_of(&[1, 2])));
    collect.seal(2);
    let err = AsyncResult::new(slot, None).get().unwrap_err();
    assert!(matches!(&err, Error::Decode { index: Some(0), .. }), "{err:?}");
}

#[test]
fn map_keeps_the_failure_at_the_lowest_position_even_without_an_index() {
    use crate::result::callbacks::CallbackThread;
    use crate::result::pending::Pending;
    use crate::result::slot::AsyncResult;
    let thread = CallbackThread::start().unwrap();
    let pending = Arc::new(Pending::default());
    let (slot, resolver) = Resolver::new(None, &thread.sender(), || pending.token());
    let collect = Collect::<u32>::new(resolver, None);
    let chunk = |first| ChunkMeta {
        first,
        count: 2,
        holes: Vec::new(),
    };
    // Chunk 1 (positions 2..4) fails first, with an error that carries
    // no index; chunk 0 (positions 0..2) then fails at position 1.
    let protocol = Error::Protocol {
        pid: 1,
        message: "garbage".into(),
    };
    collect.complete(&chunk(2), ChunkOutcome::Failed(protocol));
    let mut buf = Vec::new();
    items::push_with(&mut buf, items::RES_OK, |b| codec::encode(&1u32, b)).unwrap();
    let panic = RemotePanic::new("first".into(), None, None);
    items::push_with(&mut buf, items::RES_PANIC, |b| codec::encode(&panic, b)).unwrap();
    collect.complete(&chunk(0), ChunkOutcome::Results(&buf));
    collect.seal(4);
    let err = AsyncResult::new(slot, None).get().unwrap_err();
    assert!(matches!(&err, Error::Panicked { index: Some(1), .. }), "{err:?}");
}

#[test]
fn a_failed_chunk_fails_each_item_with_its_index() {
    let died = Error::WorkerDied {
        index: None,
        pid: 1,
        cause: crate::error::ExitCause::Exited(1),
        attempts: 1,
    };
    let out = decode_chunk::<u32>(&meta(4, 3), ChunkOutcome::Failed(died.clone()), true);
    let indexes: Vec<_> = out.iter().map(|r| r.as_ref().unwrap_err().index()).collect();
    assert_eq!(indexes, [Some(4), Some(5), Some(6)]);
    let single = decode_chunk::<u32>(&meta(0, 1), ChunkOutcome::Failed(died), false);
    assert_eq!(single[0].as_ref().unwrap_err().index(), None);
}
