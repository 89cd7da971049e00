//! S6: `apply_async(func, args, callback=cb)`: `cb` receives the return
//! value and runs in the main process. Callbacks (and error callbacks) run
//! in the parent, on a pool-owned thread, before the result reports ready.

use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use procpool::{AsyncResult, Error, Pool};

use crate::common;

fn func(index: u32) -> (u32, u32) {
    (index, std::process::id())
}

#[test]
fn the_callback_runs_in_the_parent_with_the_value() {
    let main_pid = std::process::id();
    let pool = Pool::new(5).unwrap();
    let (tx, rx) = mpsc::channel();
    let h = pool
        .with_callback(move |v: &(u32, u32)| {
            tx.send((
                *v,
                std::process::id(),
                std::thread::current().name().map(str::to_owned),
            ))
            .unwrap();
        })
        .apply_async(func, 1)
        .unwrap();
    pool.close();
    pool.join().unwrap();
    let ((value, func_pid), callback_pid, thread) =
        rx.try_recv().expect("join returned before the callback ran");
    assert_eq!(value, 1);
    assert_ne!(func_pid, main_pid, "the task ran in the parent");
    assert_eq!(callback_pid, main_pid, "the callback ran outside the parent");
    assert_eq!(
        thread.as_deref(),
        Some("procpool-callbacks"),
        "callbacks run on the pool's thread"
    );
    // The callback saw a reference: the value is still there.
    assert_eq!(h.get().unwrap(), (1, func_pid));
}

#[test]
fn the_result_is_not_ready_until_its_callback_has_run() {
    let pool = Pool::new(1).unwrap();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (entered_tx, entered_rx) = mpsc::channel::<()>();
    let h = pool
        .with_callback(move |_: &u32| {
            entered_tx.send(()).unwrap();
            release_rx.recv_timeout(common::HANG).unwrap();
        })
        .apply_async(|x: u32| x, 5)
        .unwrap();
    entered_rx.recv_timeout(common::HANG).expect("callback never ran");
    // The worker is done, the callback is running: still not ready.
    assert!(!h.ready());
    assert!(!h.wait_timeout(Duration::from_millis(20)));
    release_tx.send(()).unwrap();
    assert_eq!(h.get().unwrap(), 5);
}

#[test]
fn error_callbacks_receive_the_error() {
    let pool = Pool::new(2).unwrap();
    let (tx, rx) = mpsc::channel();
    let ok_tx = tx.clone();
    let h = pool
        .with_callback(move |_: &u8| ok_tx.send("success".to_string()).unwrap())
        .with_error_callback(move |e: &Error| tx.send(e.to_string()).unwrap())
        .apply_async(|_: u8| -> u8 { panic!("broken task") }, 0)
        .unwrap();
    assert!(h.get().unwrap_err().is_panic());
    let seen = rx.recv_timeout(common::HANG).unwrap();
    assert!(seen.contains("broken task"), "{seen}");
    assert!(rx.try_recv().is_err(), "both callbacks ran");
}

#[test]
fn map_async_callback_receives_the_whole_list() {
    let pool = Pool::new(2).unwrap();
    let (tx, rx) = mpsc::channel();
    let h = pool
        .with_callback(move |v: &Vec<u32>| tx.send(v.clone()).unwrap())
        .map_async(|x: u32| x + 1, 0..5)
        .unwrap();
    assert_eq!(h.get().unwrap(), [1, 2, 3, 4, 5]);
    assert_eq!(rx.recv_timeout(common::HANG).unwrap(), [1, 2, 3, 4, 5]);
}

#[test]
fn a_panicking_callback_does_not_break_the_pool() {
    let pool = Pool::new(2).unwrap();
    let h = pool
        .with_callback(|_: &u32| panic!("callback exploded"))
        .apply_async(|x: u32| x * 3, 3)
        .unwrap();
    assert_eq!(h.get().unwrap(), 9, "the result still arrives");
    // The callback thread survived: another callback runs.
    let (tx, rx) = mpsc::channel();
    pool.with_callback(move |v: &u32| tx.send(*v).unwrap())
        .apply_async(|x: u32| x, 4)
        .unwrap();
    assert_eq!(rx.recv_timeout(common::HANG).unwrap(), 4);
    assert_eq!(pool.map(|x: u32| x, 0..10).unwrap().len(), 10);
    pool.close();
    pool.join().unwrap();
}

#[test]
fn get_on_the_same_result_inside_its_callback_does_not_deadlock() {
    let pool = Pool::new(1).unwrap();
    let cell: Arc<Mutex<Option<AsyncResult<u32>>>> = Arc::new(Mutex::new(None));
    let (tx, rx) = mpsc::channel();
    let inside = Arc::clone(&cell);
    // Hold the task until the handle is stored, so the callback finds it.
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let gate = pool
        .with_callback(move |_: &u32| {
            go_rx.recv_timeout(common::HANG).unwrap();
        })
        .apply_async(|x: u32| x, 0)
        .unwrap();
    let h = pool
        .with_callback(move |_: &u32| {
            let guard = inside.lock().unwrap();
            let own = guard.as_ref().unwrap();
            let got = own.get();
            let waited = own.wait_timeout(Duration::from_secs(1));
            tx.send((got, waited, own.ready())).unwrap();
        })
        .apply_async(|x: u32| x + 100, 1)
        .unwrap();
    *cell.lock().unwrap() = Some(h);
    go_tx.send(()).unwrap();
    gate.get().unwrap();
    let (got, waited, ready) = rx.recv_timeout(common::HANG).expect("the callback deadlocked");
    assert!(matches!(got, Err(Error::WaitInCallback)), "{got:?}");
    assert!(!waited && !ready);
    // Outside the callback the value is there.
    let h = cell.lock().unwrap().take().unwrap();
    assert_eq!(h.get().unwrap(), 101);
}

#[test]
fn join_inside_a_callback_is_an_error_not_a_deadlock() {
    let pool = Arc::new(Pool::new(1).unwrap());
    let (tx, rx) = mpsc::channel();
    let inner = Arc::clone(&pool);
    pool.with_callback(move |_: &u8| {
        inner.close();
        tx.send(inner.join()).unwrap();
    })
    .apply_async(|x: u8| x, 1)
    .unwrap();
    let joined = rx.recv_timeout(common::HANG).expect("join in a callback hung");
    assert!(matches!(joined, Err(Error::WaitInCallback)), "{joined:?}");
    pool.join().unwrap();
}
