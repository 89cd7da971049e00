//! S1: `Pool(5)` is five long-lived worker processes; 100 tasks run in
//! exactly those five, none of them the parent.

use std::collections::BTreeSet;

use procpool::Pool;

fn pid_of(_: u32) -> u32 {
    std::process::id()
}

#[test]
fn hundred_tasks_run_in_exactly_five_worker_processes() {
    let pool = Pool::new(5).unwrap();
    let before: BTreeSet<u32> = pool.worker_pids().into_iter().collect();
    assert_eq!(before.len(), 5, "five distinct workers: {before:?}");

    let pids: BTreeSet<u32> = pool.map(pid_of, 0..100).unwrap().into_iter().collect();
    assert_eq!(pids.len(), 5, "map used {pids:?}");
    assert!(!pids.contains(&std::process::id()), "a task ran in the parent");
    assert_eq!(
        pids, before,
        "tasks ran in processes that are not the pool's workers"
    );

    // Finished tasks give their process back: more tasks, same processes.
    let handles: Vec<_> = (0..100).map(|i| pool.apply_async(pid_of, i).unwrap()).collect();
    let again: BTreeSet<u32> = handles.iter().map(|h| h.get().unwrap()).collect();
    assert!(again.is_subset(&before), "{again:?} not within {before:?}");
    assert_eq!(pool.worker_pids().into_iter().collect::<BTreeSet<_>>(), before);
}

#[test]
fn workers_are_processes_not_threads() {
    let pool = Pool::new(2).unwrap();
    let parent = std::process::id();
    for pid in pool.worker_pids() {
        assert_ne!(pid, parent);
        // Their parent is us.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        let ppid: u32 = after_name.split(' ').nth(1).unwrap().parse().unwrap();
        assert_eq!(ppid, parent);
    }
}
