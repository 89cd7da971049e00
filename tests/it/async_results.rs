//! `AsyncResult` is a `Future` and `imap` results are a `Stream`: awaiting
//! them never blocks the executor's thread (tested on tokio's
//! single-threaded runtime, where a blocked thread would stall everything).

use crate::common;

use futures::StreamExt;
use procpool::{Error, Pool};

fn held(path: String) -> u32 {
    common::hold(&path)
}

fn square(x: u64) -> u64 {
    x * x
}

/// Lets the first task that reaches `gate` through, from the executor's own
/// thread (yielding until one arrives); returns its pid.
async fn release_first(gate: &common::Gate) -> u32 {
    loop {
        if let Some(held) = gate.try_next() {
            let pid = held.pid;
            held.release();
            return pid;
        }
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn awaiting_a_result_leaves_the_executor_free() {
    let pool = Pool::new(1).unwrap();
    let gate = common::Gate::new();
    let task = pool.apply_async(held, gate.path()).unwrap();
    // The task waits at the gate until another task on this same thread
    // lets it through: if awaiting blocked the thread, it never would.
    let (result, released) = tokio::join!(task, release_first(&gate));
    assert_eq!(result.unwrap(), released);
}

#[tokio::test(flavor = "current_thread")]
async fn map_async_and_errors_arrive_through_await() {
    let pool = Pool::new(2).unwrap();
    assert_eq!(
        pool.map_async(square, 0..5).unwrap().await.unwrap(),
        [0, 1, 4, 9, 16]
    );
    let err = pool
        .apply_async(|_: ()| -> u8 { panic!("async boom") }, ())
        .unwrap()
        .await
        .unwrap_err();
    assert!(matches!(&err, Error::Panicked { panic, .. } if panic.message() == "async boom"));
}

#[tokio::test(flavor = "current_thread")]
async fn imap_streams_in_order_and_unordered_streams_everything() {
    let pool = Pool::new(2).unwrap();
    let ordered: Vec<u64> = pool
        .with_chunksize(3)
        .imap(square, 0..50)
        .unwrap()
        .into_stream()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(ordered, (0..50).map(square).collect::<Vec<_>>());
    let mut any: Vec<u64> = pool
        .imap_unordered(square, 0..50)
        .unwrap()
        .into_stream()
        .map(Result::unwrap)
        .collect()
        .await;
    any.sort();
    assert_eq!(any, ordered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_results_awaited_concurrently() {
    let pool = std::sync::Arc::new(Pool::new(2).unwrap());
    let handles: Vec<_> = (0..200).map(|i| pool.apply_async(square, i).unwrap()).collect();
    let tasks: Vec<_> = handles.into_iter().map(tokio::spawn).collect();
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.unwrap().unwrap(), (i * i) as u64);
    }
}

fn held_then(path: String) -> u32 {
    common::hold(&path)
}

#[tokio::test(flavor = "current_thread")]
async fn polling_a_stream_leaves_the_executor_free() {
    let pool = Pool::new(1).unwrap();
    let gate = common::Gate::new();
    let mut stream = pool.imap(held_then, [gate.path()]).unwrap().into_stream();
    // As for a result: the task waits at a gate that another task on this
    // same thread opens.
    let (first, released) = tokio::join!(stream.next(), release_first(&gate));
    assert_eq!(first.unwrap().unwrap(), released);
    assert!(stream.next().await.is_none());
}
