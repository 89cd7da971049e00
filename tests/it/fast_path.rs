//! The whole-chunk fast path: arguments and results of a plain type
//! (integers and floats) cross as runs of native bytes. Every value must
//! come back in its place, and an item that fails in the middle of a run
//! must still fail alone, with its own index.

use procpool::{Error, Pool};

fn check_every<T>(pool: &Pool, f: fn(T) -> T, items: Vec<T>)
where
    T: serde::Serialize + serde::de::DeserializeOwned + Copy + PartialEq + std::fmt::Debug + Send + 'static,
{
    let want: Vec<T> = items.iter().map(|&x| f(x)).collect();
    assert_eq!(pool.map(f, items.clone()).unwrap(), want);
    for size in [1, 7, 4096, 5000] {
        assert_eq!(
            pool.with_chunksize(size).map(f, items.clone()).unwrap(),
            want,
            "chunksize {size}"
        );
    }
    let mut unordered: Vec<(usize, T)> = pool
        .imap_unordered(f, items.clone())
        .unwrap()
        .map(Result::unwrap)
        .map(|v| (want.iter().position(|w| *w == v).unwrap(), v))
        .collect();
    unordered.sort_by_key(|(at, _)| *at);
    assert_eq!(unordered.into_iter().map(|(_, v)| v).collect::<Vec<_>>(), want);
}

#[test]
fn every_plain_type_comes_back_in_its_place() {
    let pool = Pool::new(2).unwrap();
    check_every(&pool, |x: u8| x.wrapping_mul(3), (0..=255).collect());
    check_every(&pool, |x: i16| x.wrapping_neg(), (-3000..3000).collect());
    check_every(&pool, |x: u32| x ^ 0xdead_beef, (0..10_000).collect());
    check_every(
        &pool,
        |x: u64| x.rotate_left(13),
        (0..20_000).map(|x| x * 0x9e37_79b9).collect(),
    );
    check_every(
        &pool,
        |x: i128| x * -3,
        (0..3000).map(|x| i128::from(x) << 90).collect(),
    );
    check_every(&pool, |x: u128| !x, (0..3000).collect());
    check_every(&pool, |x: usize| x + 1, (0..9000).collect());
    check_every(&pool, |x: isize| x - 1, (-4000..4000).collect());
    check_every(
        &pool,
        |x: f32| x * 0.5,
        (0..5000).map(|x| x as f32 + 0.25).collect(),
    );
    check_every(
        &pool,
        |x: f64| -x,
        (0..5000).map(|x| f64::from(x) / 7.0).collect(),
    );
    // An empty input, and one item.
    assert_eq!(
        pool.map(|x: u64| x, Vec::<u64>::new()).unwrap(),
        Vec::<u64>::new()
    );
    assert_eq!(pool.apply(|x: f64| x * 2.0, 1.5).unwrap(), 3.0);
}

#[test]
fn plain_arguments_with_other_results_and_the_other_way_round() {
    let pool = Pool::new(2).unwrap();
    let items: Vec<u64> = (0..10_000).collect();
    let text = pool.map(|x: u64| format!("<{x}>"), items.clone()).unwrap();
    assert_eq!(text, items.iter().map(|x| format!("<{x}>")).collect::<Vec<_>>());
    let back = pool.map(|s: String| s.len() as u64, text).unwrap();
    assert_eq!(
        back,
        items
            .iter()
            .map(|x| x.to_string().len() as u64 + 2)
            .collect::<Vec<_>>()
    );
}

/// Items at the start and the end of each thousand, and one more.
fn refuses(x: u64) -> bool {
    x.is_multiple_of(1000) || x % 1000 == 999 || x == 4321
}

fn panics_on_some(x: u64) -> u64 {
    if refuses(x) {
        panic!("item {x} refuses");
    }
    x * 2
}

fn panics_on_some_as_text(x: u64) -> String {
    panics_on_some(x).to_string()
}

fn assert_fails_alone<R: std::fmt::Debug + PartialEq>(
    results: Vec<Result<R, Error>>,
    value: impl Fn(u64) -> R,
) {
    assert_eq!(results.len(), 10_000);
    for (i, result) in results.into_iter().enumerate() {
        let x = i as u64;
        if refuses(x) {
            match result {
                Err(Error::Panicked { index, panic }) => {
                    assert_eq!(index, Some(i), "item {i}");
                    assert_eq!(panic.message(), format!("item {x} refuses"));
                }
                other => panic!("item {i}: {other:?}"),
            }
        } else {
            assert_eq!(result.unwrap(), value(x), "item {i}");
        }
    }
}

#[test]
fn a_panic_in_the_middle_of_a_plain_chunk_fails_only_its_item() {
    let pool = Pool::new(2).unwrap();
    // Panics at the start, in the middle and at the end of each chunk of
    // 1000 items, and of the batches a worker runs at once (4096 items).
    for size in [1000, 4096, 10_000] {
        let results: Vec<_> = pool
            .with_chunksize(size)
            .imap(panics_on_some, 0..10_000u64)
            .unwrap()
            .collect();
        assert_fails_alone(results, |x| x * 2);
        let results: Vec<_> = pool
            .with_chunksize(size)
            .imap(panics_on_some_as_text, 0..10_000u64)
            .unwrap()
            .collect();
        assert_fails_alone(results, |x| (x * 2).to_string());
    }
    // `map` reports the lowest failing index.
    match pool.map(panics_on_some, 1..10_000u64) {
        Err(Error::Panicked { index, .. }) => assert_eq!(index, Some(998)),
        other => panic!("{other:?}"),
    }
    // The workers are the same ones, and serve on.
    assert_eq!(pool.map(|x: u64| x + 1, 0..3u64).unwrap(), vec![1, 2, 3]);
}

/// Aborts its worker at item 500, the first time only (a file in the
/// temporary directory, named after the test process, says it happened).
fn aborts_once_at_500(x: u64) -> u64 {
    if x == 500 {
        let flag = std::env::temp_dir().join(format!(
            "procpool-fast-path-abort-{}",
            std::os::unix::process::parent_id()
        ));
        if std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(flag)
            .is_ok()
        {
            std::process::abort();
        }
    }
    x + 1
}

#[test]
fn a_worker_that_dies_in_the_middle_of_a_plain_chunk() {
    let flag = std::env::temp_dir().join(format!("procpool-fast-path-abort-{}", std::process::id()));
    let _ = std::fs::remove_file(&flag);
    let pool = Pool::new(2).unwrap();
    // Without retries: the chunk's items fail with the death, the others
    // come back.
    let results: Vec<_> = pool
        .with_chunksize(1000)
        .imap(aborts_once_at_500, 0..3000u64)
        .unwrap()
        .collect();
    for (i, result) in results.iter().enumerate() {
        match (i, result) {
            (0..1000, Err(Error::WorkerDied { index, .. })) => assert_eq!(*index, Some(i)),
            (1000.., Ok(v)) => assert_eq!(*v, i as u64 + 1),
            other => panic!("{other:?}"),
        }
    }
    // With a retry: every value, once.
    std::fs::remove_file(&flag).unwrap();
    let values = pool
        .with_chunksize(1000)
        .with_retries(1)
        .map(aborts_once_at_500, 0..3000u64)
        .unwrap();
    assert_eq!(values, (1..=3000).collect::<Vec<u64>>());
    assert!(flag.exists(), "the worker did not die");
    std::fs::remove_file(&flag).unwrap();
}
