//! `imap` and `imap_unordered` stay lazy on an input of known length:
//! they read only a bounded window ahead of the results taken, in items
//! and in bytes, and the first result comes as soon as its own task is
//! done (chunks start at one item). Each test failed before the window
//! learned to do this, when a known length gave CPython's `map` chunk size
//! and the whole input was read at once.
use crate::common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use crossbeam_channel::{Receiver, Sender, unbounded};
use procpool::{Error, Pool};
use serde_bytes::ByteBuf;

fn double(x: u64) -> u64 {
    x * 2
}

/// The results of `imap` (`ordered`) or `imap_unordered`, as one type.
fn lazy<'a, A, R, I>(
    pool: &Pool,
    f: fn(A) -> R,
    items: I,
    ordered: bool,
) -> Box<dyn Iterator<Item = Result<R, Error>> + Send + 'a>
where
    A: serde::Serialize + serde::de::DeserializeOwned + 'static,
    R: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    I: IntoIterator<Item = A>,
    I::IntoIter: Send + 'a,
{
    match ordered {
        true => Box::new(pool.imap(f, items).unwrap()),
        false => Box::new(pool.imap_unordered(f, items).unwrap()),
    }
}

/// An input of known length that counts the items read from it.
fn counted<T>(
    n: usize,
    mut make: impl FnMut(usize) -> T + Send,
) -> (Arc<AtomicUsize>, impl ExactSizeIterator<Item = T> + Send) {
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&pulled);
    let items = (0..n).map(move |i| {
        counter.fetch_add(1, SeqCst);
        make(i)
    });
    (pulled, items)
}

/// The window holds at most 2^18 items; the input is eight times that.
const INPUT: usize = 1 << 21;
const WINDOW_CAP: usize = 1 << 18;

fn items_pulled_after_a_few_results(ordered: bool) {
    let pool = Pool::new(2).unwrap();
    let (pulled, items) = counted(INPUT, |i| i as u64);
    assert_eq!(items.len(), INPUT, "the input's length is known");
    let mut results = lazy(&pool, double, items, ordered);
    const TAKEN: usize = 1000;
    let mut sum = 0;
    for _ in 0..TAKEN {
        sum += results.next().expect("a result").unwrap();
    }
    if ordered {
        assert_eq!(sum, (0..TAKEN as u64).map(double).sum::<u64>());
    }
    let read = pulled.load(SeqCst);
    assert!(
        read <= TAKEN + WINDOW_CAP,
        "{read} of {INPUT} items read after {TAKEN} results (the window is at most {WINDOW_CAP})"
    );
    // The rest still comes, all of it.
    assert_eq!(results.count(), INPUT - TAKEN);
    assert_eq!(pulled.load(SeqCst), INPUT);
}

#[test]
fn imap_reads_a_bounded_window_of_a_long_input() {
    items_pulled_after_a_few_results(true);
}

#[test]
fn imap_unordered_reads_a_bounded_window_of_a_long_input() {
    items_pulled_after_a_few_results(false);
}

/// What the test sees: a task reaching the gate (its item, and the
/// connection that lets it through), or a result.
enum Event {
    Arrived(u32, UnixStream),
    Result(Result<u32, Error>),
}

/// A gate like [`common::Gate`] whose tasks say which item they run, and
/// whose arrivals come on the same channel as the results.
fn open_gate(events: Sender<Event>) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gate.sock");
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut item = [0u8; 4];
            if stream.read_exact(&mut item).is_ok()
                && events
                    .send(Event::Arrived(u32::from_le_bytes(item), stream))
                    .is_err()
            {
                return;
            }
        }
    });
    let path = path.to_str().unwrap().to_owned();
    (dir, path)
}

/// Task side of the gate: says its item, waits to be let through.
fn held((path, item): (String, u32)) -> u32 {
    let mut stream = UnixStream::connect(path).unwrap();
    stream.write_all(&item.to_le_bytes()).unwrap();
    stream.set_read_timeout(Some(common::HANG)).unwrap();
    let mut go = [0u8; 2];
    stream.read_exact(&mut go).unwrap();
    item
}

fn next(events: &Receiver<Event>) -> Event {
    events
        .recv_timeout(common::HANG)
        .expect("no task reached the gate and no result came")
}

fn first_result_after_one_release(ordered: bool) {
    let pool = Pool::new(2).unwrap();
    let (to_test, events) = unbounded();
    let (_dir, path) = open_gate(to_test.clone());
    let items = (0..1000u32).map(move |i| (path.clone(), i));
    let results = lazy(&pool, held, items, ordered);
    std::thread::spawn(move || {
        for result in results {
            if to_test.send(Event::Result(result)).is_err() {
                return;
            }
        }
    });
    // Both workers wait at the gate, each with a task.
    let mut waiting = HashMap::new();
    while waiting.len() < 2 {
        match next(&events) {
            Event::Arrived(item, stream) => waiting.insert(item, stream),
            Event::Result(r) => panic!("a result before any task was let through: {r:?}"),
        };
    }
    let mut running: Vec<_> = waiting.keys().copied().collect();
    running.sort();
    let mut zero = waiting
        .remove(&0)
        .unwrap_or_else(|| panic!("item 0 is not running; items {running:?} are"));
    zero.write_all(b"go").unwrap();
    // Only item 0's task may finish; its result must come. Its worker going
    // on to item 1, which was not running, means item 1 is in item 0's
    // chunk, and the result waits for it.
    loop {
        match next(&events) {
            Event::Result(r) => {
                assert_eq!(r.unwrap(), 0);
                break;
            }
            Event::Arrived(1, _) if !waiting.contains_key(&1) => panic!(
                "item 0's worker went on to item 1 without a result: they share a chunk \
                 (items {running:?} were running)"
            ),
            Event::Arrived(item, stream) => {
                waiting.insert(item, stream);
            }
        }
    }
    // Tasks still held give up when their connection closes.
    drop(waiting);
    pool.terminate();
}

#[test]
fn imap_gives_its_first_result_once_the_first_task_is_done() {
    first_result_after_one_release(true);
}

#[test]
fn imap_unordered_gives_its_first_result_once_a_task_is_done() {
    first_result_after_one_release(false);
}

const MIB: usize = 1 << 20;

/// Each argument is 4 MiB: the byte budget (8 MiB per worker) binds
/// before the count of items does.
const ITEM_MIB: usize = 4;

/// Task side of the gate for a large argument: its length.
fn held_len((bytes, path, item): (ByteBuf, String, u32)) -> usize {
    held((path, item));
    bytes.len()
}

fn bytes_read_ahead_of_held_tasks(ordered: bool) {
    let pool = Pool::new(2).unwrap();
    let (to_test, events) = unbounded();
    let (_dir, path) = open_gate(to_test);
    let (pulled, items) = counted(2000, move |i| {
        (ByteBuf::from(vec![7u8; ITEM_MIB * MIB]), path.clone(), i as u32)
    });
    let mut results = lazy(&pool, held_len, items, ordered);
    // No task can finish: all that was read is held, as arguments on their
    // way to a worker. 8 MiB per worker, and a chunk over.
    let read = pulled.load(SeqCst) * ITEM_MIB;
    assert!(
        read <= 16 + ITEM_MIB,
        "{read} MiB of arguments read while no task can finish, on 2 workers"
    );
    let mut waiting = HashMap::new();
    while !waiting.contains_key(&0) {
        match next(&events) {
            Event::Arrived(item, stream) => waiting.insert(item, stream),
            Event::Result(r) => panic!("a result no test sent: {r:?}"),
        };
    }
    waiting.remove(&0).unwrap().write_all(b"go").unwrap();
    // Item 0 is done: the window reads about as much as it frees.
    assert_eq!(results.next().expect("a result").unwrap(), ITEM_MIB * MIB);
    let now = pulled.load(SeqCst) * ITEM_MIB;
    assert!(
        now <= read + ITEM_MIB,
        "{now} MiB of arguments read after one result, {read} MiB before"
    );
    drop(waiting);
    pool.terminate();
}

#[test]
fn imap_reads_a_bounded_number_of_bytes_ahead() {
    bytes_read_ahead_of_held_tasks(true);
}

#[test]
fn imap_unordered_reads_a_bounded_number_of_bytes_ahead() {
    bytes_read_ahead_of_held_tasks(false);
}
