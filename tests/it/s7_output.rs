//! S7: `print` inside a worker shows on the console. Worker stdout and
//! stderr reach the parent's terminal, whole lines at a time.
//!
//! The test runs a child program (this test binary, running the ignored
//! test `child_prints_from_workers`) with its output captured, as a
//! terminal would see it.

use crate::common;

use std::collections::BTreeSet;

use procpool::Pool;

const CHILD: &str = "s7_output::child_prints_from_workers";
const LINES: u32 = 400;

fn shout(i: u32) -> u32 {
    // A long line, so that interleaving would show.
    println!("hello {i} from {} {}", std::process::id(), "x".repeat(200));
    eprintln!("warning {i}");
    i
}

#[test]
#[ignore = "run by worker_output_reaches_the_parents_terminal in a child process"]
fn child_prints_from_workers() {
    if std::env::var_os("PROCPOOL_TEST_S7").is_none() {
        return;
    }
    let pool = Pool::new(5).unwrap();
    // (The test harness has already printed "test ... " on this line.)
    println!("parent {}", std::process::id());
    let values = pool.with_chunksize(1).map(shout, 0..LINES).unwrap();
    assert_eq!(values.len(), LINES as usize);
    // What a task prints comes before its result reaches the caller.
    for i in 0..20 {
        pool.apply(|i: u32| println!("step {i} in the worker"), i)
            .unwrap();
        println!("result {i} in the parent");
    }
    // A worker's last words before a crash are not lost.
    let crashed = pool.apply(
        |_: ()| -> u8 {
            eprint!("last ");
            eprintln!("words");
            std::process::abort()
        },
        (),
    );
    assert!(crashed.unwrap_err().is_worker_died());
    pool.close();
    pool.join().unwrap();
}

#[test]
fn worker_output_reaches_the_parents_terminal() {
    let out = common::run_child_test(CHILD, &[("PROCPOOL_TEST_S7", "1")]);
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let parent: u32 = stdout
        .lines()
        .find_map(|l| l.split_once("parent ").map(|(_, p)| p.trim().parse().unwrap()))
        .expect("the child printed its pid");
    let tail = format!(" {}", "x".repeat(200));
    let mut seen = BTreeSet::new();
    let mut pids = BTreeSet::new();
    for line in stdout.lines().filter(|l| l.starts_with("hello ")) {
        // Every line whole: "hello <i> from <pid> xxx...x", nothing spliced in.
        let body = line
            .strip_suffix(&tail)
            .unwrap_or_else(|| panic!("mangled line {line:?}"));
        let mut words = body.split(' ');
        assert_eq!(words.next(), Some("hello"));
        let i: u32 = words
            .next()
            .unwrap()
            .parse()
            .unwrap_or_else(|_| panic!("mangled line {line:?}"));
        assert_eq!(words.next(), Some("from"), "mangled line {line:?}");
        let pid: u32 = words
            .next()
            .unwrap()
            .parse()
            .unwrap_or_else(|_| panic!("mangled line {line:?}"));
        assert_eq!(words.next(), None, "mangled line {line:?}");
        assert!(seen.insert(i), "line {i} printed twice");
        pids.insert(pid);
    }
    assert_eq!(
        seen,
        (0..LINES).collect(),
        "lines missing from the parent's stdout"
    );
    assert!(!pids.contains(&parent), "printed by the parent, not by workers");
    assert!(pids.len() > 1, "expected several workers to print, saw {pids:?}");

    let steps: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("step ") || l.starts_with("result "))
        .collect();
    let expected: Vec<String> = (0..20)
        .flat_map(|i| {
            [
                format!("step {i} in the worker"),
                format!("result {i} in the parent"),
            ]
        })
        .collect();
    assert_eq!(
        steps, expected,
        "worker output came after the result it belongs to"
    );

    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.lines().any(|l| l == "last words"),
        "a crashing worker's output was lost"
    );
    let warnings: BTreeSet<u32> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("warning "))
        .map(|n| n.parse().unwrap_or_else(|_| panic!("mangled stderr line {n:?}")))
        .collect();
    assert_eq!(warnings, (0..LINES).collect(), "stderr lines missing");
}

#[test]
#[ignore = "run by a_line_without_a_newline_comes_before_the_result in a child process"]
fn child_prints_without_a_newline() {
    if std::env::var_os("PROCPOOL_TEST_S7_PARTIAL").is_none() {
        return;
    }
    // One worker: both tasks print into the same pipe.
    let pool = Pool::new(1).unwrap();
    println!();
    pool.apply(|_: ()| print!("partial"), ()).unwrap();
    println!("partial result in the parent");
    pool.apply(|_: ()| println!("next task"), ()).unwrap();
    println!("next result in the parent");
    pool.apply(|_: ()| eprint!("partial on stderr"), ()).unwrap();
    eprintln!("stderr result in the parent");
    pool.apply(|_: ()| eprintln!("next on stderr"), ()).unwrap();
    pool.close();
    pool.join().unwrap();
}

#[test]
fn a_line_without_a_newline_comes_before_the_result() {
    let out = common::run_child_test(
        "s7_output::child_prints_without_a_newline",
        &[("PROCPOOL_TEST_S7_PARTIAL", "1")],
    );
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("partial") || l.contains("next"))
        .collect();
    assert_eq!(
        lines,
        [
            "partial",
            "partial result in the parent",
            "next task",
            "next result in the parent"
        ],
        "a task's unfinished line was held back or glued to the next task's text"
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("stderr")).collect();
    assert_eq!(
        lines,
        [
            "partial on stderr",
            "stderr result in the parent",
            "next on stderr"
        ],
        "an unfinished line on stderr was held back or glued to the next task's text"
    );
}

#[test]
fn a_parent_holding_the_stdout_lock_still_gets_its_results() {
    // The relay writes to descriptor 1 directly, never through the lock
    // that the parent's own `print!`s take.
    let pool = Pool::new(1).unwrap();
    let lock = std::io::stdout().lock();
    let h = pool
        .apply_async(
            |i: u32| println!("printed by task {i} while the parent holds the lock"),
            1,
        )
        .unwrap();
    assert!(
        h.get_timeout(common::HANG).is_ok(),
        "the result waited for the stdout lock"
    );
    // Dropping the pool while still holding it must not block either.
    drop(pool);
    drop(lock);
}
