//! The progress bar of `map`-like calls (cargo feature `progress`): drawn
//! on a fake terminal here, it shows done/total, the rate and the ETA; on a
//! stderr that is not a terminal, nothing is drawn.
#![cfg(feature = "progress")]

use crate::common;

use indicatif::{InMemoryTerm, ProgressBar, ProgressDrawTarget};
use procpool::Pool;

fn square(x: u64) -> u64 {
    x * x
}

fn fake_terminal() -> (ProgressDrawTarget, InMemoryTerm) {
    let term = InMemoryTerm::new(4, 100);
    (ProgressDrawTarget::term_like(Box::new(term.clone())), term)
}

#[test]
fn map_shows_done_over_total_with_rate_and_eta() {
    let pool = Pool::new(2).unwrap();
    let (target, term) = fake_terminal();
    let out = pool
        .with_chunksize(10)
        .with_progress_to(target)
        .map(square, 0..500)
        .unwrap();
    assert_eq!(out.len(), 500);
    let screen = term.contents();
    assert!(screen.contains("500/500 tasks"), "{screen:?}");
    assert!(screen.contains("ETA"), "{screen:?}");
    assert!(screen.contains("/s"), "{screen:?}");
}

#[test]
fn every_map_like_call_advances_its_bar() {
    fn add(a: u64, b: u64) -> u64 {
        a + b
    }
    let pool = Pool::new(2).unwrap();
    let bar = ProgressBar::hidden();
    pool.with_progress_bar(bar.clone())
        .starmap(add, (0..40).map(|i| (i, i)))
        .unwrap();
    assert_eq!((bar.position(), bar.length()), (40, Some(40)));
    assert!(bar.is_finished());

    let bar = ProgressBar::hidden();
    let n = pool
        .with_progress_bar(bar.clone())
        .imap(square, 0..30)
        .unwrap()
        .count();
    assert_eq!((n, bar.position(), bar.length()), (30, 30, Some(30)));
    let (target, term) = fake_terminal();
    pool.with_progress_to(target)
        .imap(square, 0..30)
        .unwrap()
        .for_each(drop);
    assert!(term.contents().contains("30/30 tasks"), "{:?}", term.contents());

    // Unknown length: a count and a rate, no total.
    let evens = || (0..60u64).filter(|x| x % 2 == 0);
    let bar = ProgressBar::hidden();
    let n = pool
        .with_progress_bar(bar.clone())
        .imap_unordered(square, evens())
        .unwrap()
        .count();
    assert_eq!((n, bar.position(), bar.length()), (30, 30, None));
    let (target, term) = fake_terminal();
    pool.with_progress_to(target)
        .imap_unordered(square, evens())
        .unwrap()
        .for_each(drop);
    assert!(term.contents().contains("30 tasks"), "{:?}", term.contents());

    let bar = ProgressBar::hidden();
    let h = pool
        .with_progress_bar(bar.clone())
        .map_async(square, 0..25)
        .unwrap();
    h.wait();
    assert_eq!(bar.position(), 25);
}

#[test]
fn apply_refuses_a_progress_bar() {
    let pool = Pool::new(1).unwrap();
    let err = pool.with_progress().apply(square, 2).unwrap_err();
    assert!(matches!(err, procpool::Error::InvalidArgument(_)), "{err:?}");
}

/// A program whose stderr is a pipe, not a terminal.
#[test]
#[ignore = "run by the test below as a child program"]
fn child_program_with_a_progress_bar() {
    if std::env::var_os("PROCPOOL_TEST_PROGRESS").is_none() {
        return;
    }
    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.with_progress().map(square, 0..2000).unwrap().len(), 2000);
    println!("CHILD DONE");
}

#[test]
fn nothing_is_drawn_when_stderr_is_not_a_terminal() {
    let out = common::run_child_test(
        "progress::child_program_with_a_progress_bar",
        &[("PROCPOOL_TEST_PROGRESS", "1")],
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(stdout.contains("CHILD DONE"), "{stdout}\n{stderr}");
    assert!(
        !stderr.contains("tasks") && !stdout.contains("tasks"),
        "{stdout}\n{stderr}"
    );
}

#[test]
fn a_bar_of_your_own_keeps_its_style() {
    let term = InMemoryTerm::new(4, 100);
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::term_like(Box::new(term.clone())));
    bar.set_style(indicatif::ProgressStyle::with_template("MINE {pos}/{len}").unwrap());
    let pool = Pool::new(2).unwrap();
    pool.with_progress_bar(bar.clone()).map(square, 0..50).unwrap();
    let screen = term.contents();
    assert!(screen.contains("MINE 50/50"), "{screen:?}");
}

fn held(path: String) -> u32 {
    common::hold(&path)
}

#[test]
fn a_cancelled_call_stops_its_bar_where_it_was() {
    let pool = Pool::new(1).unwrap();
    let gate = common::Gate::new();
    let blocker = pool.apply_async(held, gate.path()).unwrap();
    let holder = gate.wait_for(1).pop().unwrap();
    let bar = ProgressBar::hidden();
    let all = pool
        .with_chunksize(1)
        .with_progress_bar(bar.clone())
        .map_async(square, 0..100)
        .unwrap();
    assert!(all.cancel());
    assert!(all.get().unwrap_err().is_cancelled());
    holder.release();
    blocker.get().unwrap();
    assert_eq!(bar.position(), 0, "none of the tasks ran");
    assert!(bar.is_finished(), "the bar was abandoned");
}

fn nap(ms: u64) -> u64 {
    std::thread::sleep(std::time::Duration::from_millis(ms));
    ms
}

#[test]
fn dropping_an_imap_stops_its_bar() {
    let pool = Pool::new(2).unwrap();
    let bar = ProgressBar::hidden();
    let mut results = pool
        .with_chunksize(1)
        .with_progress_bar(bar.clone())
        .imap(nap, [20u64; 100])
        .unwrap();
    results.next().unwrap().unwrap();
    drop(results);
    let at_drop = bar.position();
    // Every task already sent finishes before join returns; none may move
    // the bar.
    pool.close();
    pool.join().unwrap();
    assert_eq!(bar.position(), at_drop);
    assert!(bar.is_finished());
}
