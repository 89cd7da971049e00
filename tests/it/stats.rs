//! `Pool::stats`: tasks completed and failed, respawns, time in tasks
//! versus (de)serialisation, and each worker's share.

use std::time::Duration;

use procpool::Pool;

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn big(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("item number {i}")).collect()
}

#[test]
fn counts_add_up_and_time_lands_where_it_was_spent() {
    let pool = Pool::new(2).unwrap();
    let fresh = pool.stats();
    assert_eq!(
        (fresh.tasks_completed, fresh.tasks_failed, fresh.respawns),
        (0, 0, 0)
    );
    assert_eq!(fresh.workers.len(), 2);

    // 20 tasks of 10 ms: at least 200 ms in task functions.
    pool.with_chunksize(1).map(sleep_ms, [10; 20]).unwrap();
    // Large results: serialisation time on both sides.
    pool.map(big, [20_000; 4]).unwrap();
    let stats = pool.stats();
    assert_eq!(stats.tasks_completed, 24);
    assert_eq!(stats.tasks_failed, 0);
    assert!(stats.task_time >= Duration::from_millis(200), "{stats}");
    assert!(stats.worker_codec_time > Duration::ZERO, "{stats}");
    assert!(stats.parent_codec_time > Duration::ZERO, "{stats}");
    assert_eq!(stats.workers.iter().map(|w| w.tasks).sum::<u64>(), 24);
    // A worker is busy running tasks or (de)serialising, and nothing else.
    let busy: Duration = stats.workers.iter().map(|w| w.busy).sum();
    assert_eq!(busy, stats.task_time + stats.worker_codec_time, "{stats}");
    assert_eq!(
        stats.workers.iter().map(|w| w.pid.unwrap()).collect::<Vec<_>>(),
        pool.worker_pids()
    );
}

#[test]
fn failures_and_respawns_are_counted() {
    let pool = Pool::new(1).unwrap();
    let _ = pool.apply(|_: ()| -> u8 { panic!("no") }, ());
    let _ = pool.apply(|_: ()| -> u8 { std::process::exit(1) }, ());
    let _ = pool
        .with_timeout(Duration::from_millis(50))
        .apply(sleep_ms, 60_000);
    let _ = pool.with_chunksize(2).map(|x: u8| 10 / x, [1, 0, 2, 5]);
    let stats = pool.stats();
    assert_eq!(stats.tasks_failed, 1 + 1 + 1 + 1, "{stats}");
    assert_eq!(stats.tasks_completed, 3, "{stats}");
    assert_eq!(stats.respawns, 2, "{stats}");
    assert!(
        stats
            .to_string()
            .contains("3 tasks completed, 4 failed, 2 workers respawned"),
        "{stats}"
    );
}
