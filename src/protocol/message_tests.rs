//! Unit tests of `message`: each message round trips; task frames split.

use super::*;
use crate::protocol::frame::{DEFAULT_MAX_BODY, HEADER_LEN, parse_header};

fn split(frame: &[u8]) -> (u8, &[u8]) {
    let header: [u8; HEADER_LEN] = frame[..HEADER_LEN].try_into().unwrap();
    let (kind, len) = parse_header(&header, DEFAULT_MAX_BODY).unwrap();
    assert_eq!(len, frame.len() - HEADER_LEN);
    (kind, &frame[HEADER_LEN..])
}

#[test]
fn task_round_trip() {
    let mut buf = Vec::new();
    start_task(&mut buf);
    buf.extend_from_slice(b"items");
    let target = Target {
        runner: 0xdead,
        func: 0xbeef,
        signature: 7,
    };
    finish_task(&mut buf, 42, target, 3, DEFAULT_MAX_BODY).unwrap();
    let (kind, body) = split(&buf);
    assert_eq!(
        ToWorker::decode(kind, body).unwrap(),
        ToWorker::Task {
            job: 42,
            target,
            count: 3,
            items: b"items"
        }
    );
}

/// The target of the tasks that tests split.
const SPLIT_TARGET: Target = Target {
    runner: 1,
    func: 2,
    signature: 3,
};

#[test]
fn a_task_splits_at_an_item_boundary() {
    use crate::protocol::items::{self, Items};
    let target = SPLIT_TARGET;
    let mut buf = Vec::new();
    start_task(&mut buf);
    for word in ["a", "bb", "ccc"] {
        items::push_bytes(&mut buf, items::ARG_VALUE, word.as_bytes());
    }
    finish_task(&mut buf, 9, target, 3, DEFAULT_MAX_BODY).unwrap();
    let (head, tail) = split_task(&buf, 2, 9, 10).unwrap();
    let bodies = |frame: &[u8]| {
        let (kind, body) = split(frame);
        let Ok(ToWorker::Task {
            job,
            target: c,
            count,
            items,
        }) = ToWorker::decode(kind, body)
        else {
            panic!("not a task");
        };
        assert_eq!(c, target);
        let words: Vec<Vec<u8>> = Items::new(items).map(|i| i.unwrap().1.to_vec()).collect();
        assert_eq!(words.len(), count as usize);
        (job, words)
    };
    assert_eq!(bodies(&head), (9, vec![b"a".to_vec(), b"bb".to_vec()]));
    assert_eq!(bodies(&tail), (10, vec![b"ccc".to_vec()]));
    assert!(split_task(&buf, 0, 9, 10).is_none());
    assert!(split_task(&buf, 3, 9, 10).is_none());
}

#[test]
fn worker_messages_round_trip() {
    let ready = ready_frame(1234);
    let (kind, body) = split(&ready);
    assert_eq!(
        FromWorker::decode(kind, body).unwrap(),
        FromWorker::Ready {
            protocol: crate::protocol::PROTOCOL_VERSION,
            pid: 1234
        }
    );
    let f = text_frame(REJECT, "not the same executable");
    let (kind, body) = split(&f);
    assert_eq!(
        FromWorker::decode(kind, body).unwrap(),
        FromWorker::Reject("not the same executable")
    );
    let mut buf = Vec::new();
    start_done(&mut buf);
    buf.push(9);
    let timing = Timing {
        decode_ns: 1,
        run_ns: 2,
        encode_ns: 3,
    };
    finish_done(&mut buf, 7, 1, timing, DEFAULT_MAX_BODY).unwrap();
    let (kind, body) = split(&buf);
    assert_eq!(
        FromWorker::decode(kind, body).unwrap(),
        FromWorker::Done {
            job: 7,
            count: 1,
            timing,
            results: &[9]
        }
    );
}

#[test]
fn a_panic_round_trips() {
    let location = crate::error::PanicLocation::new("src/a.rs".into(), 3, 9);
    let panic = RemotePanic::new("boom".into(), Some(location), Some("bt".into()));
    let f = panic_frame(11, &panic);
    let (kind, body) = split(&f);
    assert_eq!(
        FromWorker::decode(kind, body).unwrap(),
        FromWorker::Panicked { job: 11, panic }
    );
    assert!(FromWorker::decode(PANIC, &[0; 7]).is_err());
    assert!(FromWorker::decode(PANIC, &[0; 9]).is_err());
}

#[test]
fn short_and_unknown_messages_are_errors() {
    assert!(FromWorker::decode(DONE, &[0; 35]).is_err());
    assert!(FromWorker::decode(READY, &[0; 9]).is_err());
    assert!(FromWorker::decode(0x55, &[]).is_err());
    assert!(FromWorker::decode(FAULT, &[0xff, 0xfe]).is_err());
    assert!(ToWorker::decode(TASK, &[0; 35]).is_err());
    assert!(ToWorker::decode(DONE, &[0; 40]).is_err());
}

#[test]
fn text_frames_cut_long_text_on_a_char_boundary() {
    let long = "é".repeat(40_000);
    let f = text_frame(FAULT, &long);
    let (_, body) = split(&f);
    assert!(std::str::from_utf8(body).is_ok());
    assert!(body.len() <= 64 * 1024);
}

#[test]
fn large_results_go_out_in_parts_and_the_last_stays_for_the_done() {
    use crate::protocol::items::{self, Items};
    let mut sent: Vec<(u8, u64, u32, usize)> = Vec::new();
    let mut buf = Vec::new();
    let mut send = |frame: &[u8]| {
        let (kind, body) = split(frame);
        let Ok(FromWorker::Part { job, count, results }) = FromWorker::decode(kind, body) else {
            panic!("not a part");
        };
        sent.push((kind, job, count, Items::new(results).count()));
    };
    let mut results = Results::start(&mut buf, 7, &mut send);
    let item = vec![1u8; 40 << 20];
    for _ in 0..5 {
        results.push(|b| items::push_bytes(b, items::RES_OK, &item));
    }
    let held = results.held();
    // 40 + 40 MiB reach PART_BYTES: two parts of two, one left.
    assert_eq!(sent, vec![(PART, 7, 2, 2), (PART, 7, 2, 2)]);
    assert_eq!(held, 1);
    finish_done(&mut buf, 7, held, Timing::default(), DEFAULT_MAX_BODY).unwrap();
    let (kind, body) = split(&buf);
    let Ok(FromWorker::Done { count, results, .. }) = FromWorker::decode(kind, body) else {
        panic!("not a done");
    };
    assert_eq!((count, Items::new(results).count()), (1, 1));
}

#[test]
fn a_task_of_runs_splits_inside_a_run_and_between_runs() {
    use crate::protocol::items::{self, Items};
    let target = SPLIT_TARGET;
    // Two runs of u16: [1, 2, 3] and [4, 5].
    let mut buf = Vec::new();
    start_task(&mut buf);
    for run in [&[1u16, 2, 3][..], &[4, 5][..]] {
        items::push_run(&mut buf, items::ARG_RUN, 2, run.len(), |b| {
            b.extend(run.iter().flat_map(|v| v.to_ne_bytes()));
        });
    }
    finish_task(&mut buf, 9, target, 5, DEFAULT_MAX_BODY).unwrap();
    let values = |frame: &[u8]| {
        let (kind, body) = split(frame);
        let Ok(ToWorker::Task { count, items, .. }) = ToWorker::decode(kind, body) else {
            panic!("not a task");
        };
        let mut all = Vec::new();
        for item in Items::new(items) {
            let (tag, body) = item.unwrap();
            assert_eq!(tag, items::ARG_RUN);
            let (size, bytes) = items::run_values(body).unwrap();
            assert_eq!(size, 2);
            all.extend(bytes.chunks(2).map(|b| u16::from_ne_bytes([b[0], b[1]])));
        }
        assert_eq!(all.len(), count as usize);
        all
    };
    for (at, head, tail) in [
        (1, vec![1], vec![2, 3, 4, 5]),
        (2, vec![1, 2], vec![3, 4, 5]),
        (3, vec![1, 2, 3], vec![4, 5]),
        (4, vec![1, 2, 3, 4], vec![5]),
    ] {
        let (h, t) = split_task(&buf, at, 9, 10).unwrap();
        assert_eq!((values(&h), values(&t)), (head, tail), "split at {at}");
    }
    assert!(split_task(&buf, 5, 9, 10).is_none());
}
