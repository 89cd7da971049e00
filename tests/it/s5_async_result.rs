//! S5: `result.get()` blocks for that task's value; calling it right after
//! each submit serialises the work; keeping the results and calling `get`
//! after `join` gives the values in submission order. Plus the rest of
//! `AsyncResult`: a timeout variant, `wait`, `ready`, `successful`.

use crate::common;

use std::time::Duration;

use procpool::{Error, Pool};

fn echo(i: u32) -> u32 {
    i
}

fn wait_for_all(path: String) -> bool {
    common::arrive(&path)
}

#[test]
fn get_right_after_each_submit_serialises_the_work() {
    let pool = Pool::new(5).unwrap();
    for i in 0..5 {
        let h = pool.apply_async(echo, i).unwrap();
        assert_eq!(h.get().unwrap(), i);
    }
    pool.close();
    pool.join().unwrap();
}

#[test]
fn results_kept_until_after_join_come_back_in_submission_order() {
    let pool = Pool::new(5).unwrap();
    let handles: Vec<_> = (0..5).map(|i| pool.apply_async(echo, i).unwrap()).collect();
    pool.close();
    pool.join().unwrap();
    let values: Vec<u32> = handles.iter().map(|h| h.get().unwrap()).collect();
    assert_eq!(values, [0, 1, 2, 3, 4]);
}

#[test]
fn ready_wait_and_timeouts_follow_the_task() {
    let pool = Pool::new(1).unwrap();
    let barrier = common::Barrier::new(2);
    let h = pool.apply_async(wait_for_all, barrier.path()).unwrap();
    // Held at the barrier: not ready, and the timeouts say so without
    // disturbing the task.
    assert!(!h.ready());
    assert_eq!(h.successful(), None);
    assert!(!h.wait_timeout(Duration::from_millis(20)));
    let err = h.get_timeout(Duration::from_millis(20)).unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(matches!(err, Error::Timeout(d) if d == Duration::from_millis(20)));
    // Release it.
    assert!(common::arrive(&barrier.path()));
    h.wait();
    assert!(h.ready());
    assert_eq!(h.successful(), Some(true));
    assert!(h.wait_timeout(Duration::ZERO));
    assert!(h.get_timeout(common::HANG).unwrap());
}

#[test]
fn the_value_is_handed_out_once_an_error_every_time() {
    let pool = Pool::new(1).unwrap();
    let ok = pool.apply_async(echo, 3).unwrap();
    assert_eq!(ok.get().unwrap(), 3);
    assert!(matches!(ok.get(), Err(Error::ResultTaken)));
    assert_eq!(ok.successful(), Some(true));

    let bad = pool.apply_async(|_: u8| -> u8 { panic!("always") }, 0).unwrap();
    for _ in 0..3 {
        assert!(bad.get().unwrap_err().is_panic());
    }
    assert_eq!(bad.successful(), Some(false));
}

#[test]
fn a_result_outlives_its_pool() {
    let h = {
        let pool = Pool::new(1).unwrap();
        let h = pool.apply_async(echo, 9).unwrap();
        h.wait();
        h
    };
    assert_eq!(h.get().unwrap(), 9);
}

#[test]
fn get_in_order_while_results_finish_out_of_order() {
    // procspawn's pool can deadlock when results are joined out of order;
    // here every result is independent.
    let pool = Pool::new(2).unwrap();
    let handles: Vec<_> = (0..20).map(|i| pool.apply_async(echo, i).unwrap()).collect();
    for (i, h) in handles.iter().enumerate().rev() {
        assert_eq!(h.get_timeout(common::HANG).unwrap(), i as u32);
    }
}
