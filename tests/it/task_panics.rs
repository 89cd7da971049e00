//! A panic in a task becomes that task's error, with the panic's message
//! and location; the worker survives and keeps serving.

use procpool::{Error, Pool};

fn panics_on_odd(x: u32) -> u32 {
    if x % 2 == 1 {
        panic!("odd input {x}");
    }
    x
}

#[test]
fn a_panicking_task_keeps_its_worker() {
    let pool = Pool::new(1).unwrap();
    let worker = pool.worker_pids();
    for i in 0..20 {
        match pool.apply(panics_on_odd, i) {
            Ok(v) => assert_eq!(v, i),
            Err(Error::Panicked { index: None, panic }) => {
                assert_eq!(panic.message(), format!("odd input {i}"));
                let location = panic.location().expect("a location");
                assert!(location.file().ends_with("task_panics.rs"), "{location}");
                let line = include_str!("task_panics.rs")
                    .lines()
                    .nth(location.line() as usize - 1);
                assert_eq!(line.map(str::trim), Some("panic!(\"odd input {x}\");"));
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(pool.worker_pids(), worker, "a panic cost the worker");
}

#[test]
fn panics_with_any_payload_or_in_drop_are_reported() {
    struct LoudDrop;
    impl Drop for LoudDrop {
        fn drop(&mut self) {
            panic!("panic in drop");
        }
    }
    let pool = Pool::new(1).unwrap();
    let worker = pool.worker_pids();
    let err = pool
        .apply(|_: ()| -> u8 { std::panic::panic_any(42u64) }, ())
        .unwrap_err();
    assert!(
        matches!(&err, Error::Panicked { panic, .. } if panic.message().contains("not a string")),
        "{err:?}"
    );
    let err = pool
        .apply(
            |_: ()| {
                let _guard = LoudDrop;
                7u8
            },
            (),
        )
        .unwrap_err();
    assert!(
        matches!(&err, Error::Panicked { panic, .. } if panic.message() == "panic in drop"),
        "{err:?}"
    );
    assert_eq!(pool.apply(|x: u8| x, 3).unwrap(), 3);
    assert_eq!(pool.worker_pids(), worker);
}

#[test]
fn map_waits_for_every_item_and_reports_the_lowest_failing_index() {
    let pool = Pool::new(3).unwrap();
    for chunksize in [1, 3, 50] {
        let err = pool
            .with_chunksize(chunksize)
            .map(panics_on_odd, (0..50).rev())
            .unwrap_err();
        // Input position 0 holds 49: odd, so it fails, and it is the lowest.
        assert_eq!(err.index(), Some(0), "chunksize {chunksize}: {err}");
        assert!(err.to_string().contains("odd input 49"), "{err}");
        let err = pool
            .with_chunksize(chunksize)
            .map(panics_on_odd, [0, 2, 4, 5, 6, 7])
            .unwrap_err();
        assert_eq!(err.index(), Some(3), "chunksize {chunksize}: {err}");
    }
    // imap reports each item's own outcome.
    let outcomes: Vec<bool> = pool
        .imap(panics_on_odd, 0..10)
        .unwrap()
        .map(|r| r.is_ok())
        .collect();
    assert_eq!(outcomes, (0..10).map(|i| i % 2 == 0).collect::<Vec<_>>());
}

#[test]
fn the_backtrace_comes_along_when_asked_for() {
    // Workers inherit the parent's environment; RUST_BACKTRACE is read when
    // a worker starts, so set it for a child program rather than here.
    let pool = Pool::new(1).unwrap();
    let err = pool.apply(panics_on_odd, 1).unwrap_err();
    let Error::Panicked { panic, .. } = err else {
        unreachable!()
    };
    let wanted = std::env::var("RUST_BACKTRACE").is_ok_and(|v| v != "0");
    assert_eq!(
        panic.backtrace().is_some(),
        wanted,
        "backtrace: {:?}",
        panic.backtrace()
    );
}
