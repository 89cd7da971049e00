//! Ported from CPython's `multiprocessing.Pool` test suite:
//! `Lib/test/_test_multiprocessing.py`, class `_TestPoolWorkerErrors`, plus
//! the Rust twins of an unpicklable value: a result or argument that fails
//! to serialise or deserialise.

use crate::common;

use std::sync::mpsc;

use procpool::{DataKind, Error, Pool};
use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

fn raising(_: ()) -> u8 {
    panic!("KeyError: key")
}

#[test]
fn test_async_error_callback() {
    let p = Pool::new(2).unwrap();
    let (tx, rx) = mpsc::channel();
    let res = p
        .with_error_callback(move |e: &Error| tx.send(e.clone()).unwrap())
        .apply_async(raising, ())
        .unwrap();
    assert!(res.get().unwrap_err().is_panic());
    let seen = rx.recv_timeout(common::HANG).unwrap();
    assert!(
        matches!(&seen, Error::Panicked { panic, .. } if panic.message() == "KeyError: key"),
        "{seen:?}"
    );
    p.close();
    p.join().unwrap();
}

/// Serialises to an error (Python: a result that cannot be pickled).
#[derive(Debug)]
struct Unpicklable;

impl Serialize for Unpicklable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(S::Error::custom("Unpicklable cannot be serialised"))
    }
}

impl<'de> Deserialize<'de> for Unpicklable {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Ok(Unpicklable)
    }
}

/// Serialises fine but never deserialises (an unpicklable in reverse).
#[derive(Debug)]
struct OneWay;

impl Serialize for OneWay {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_unit()
    }
}

impl<'de> Deserialize<'de> for OneWay {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(D::Error::custom("OneWay cannot be deserialised"))
    }
}

fn unpickleable_result(_: ()) -> Unpicklable {
    Unpicklable
}

#[test]
fn test_unpickleable_result() {
    let p = Pool::new(2).unwrap();
    let workers = p.worker_pids();
    // Make sure we don't lose pool processes because of encoding errors.
    for _ in 0..20 {
        let (tx, rx) = mpsc::channel();
        let res = p
            .with_error_callback(move |e: &Error| tx.send(e.clone()).unwrap())
            .apply_async(unpickleable_result, ())
            .unwrap();
        let err = res.get().unwrap_err();
        assert!(
            matches!(&err, Error::Encode { what: DataKind::Result, message, .. } if message.contains("cannot be serialised")),
            "{err:?}"
        );
        assert!(
            rx.recv_timeout(common::HANG).is_ok(),
            "the error callback did not run"
        );
    }
    assert_eq!(p.worker_pids(), workers, "encoding errors cost workers");
    p.close();
    p.join().unwrap();
}

#[test]
fn undeserialisable_results_and_arguments_fail_alone() {
    let p = Pool::new(2).unwrap();
    let workers = p.worker_pids();
    // A result the parent cannot decode.
    let err = p.apply(|_: ()| OneWay, ()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Decode {
                what: DataKind::Result,
                ..
            }
        ),
        "{err:?}"
    );
    // An argument the worker cannot decode.
    let err = p.apply(|_: OneWay| 1u8, OneWay).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Decode {
                what: DataKind::Argument,
                ..
            }
        ),
        "{err:?}"
    );
    // An argument the parent cannot encode.
    let err = p.apply(|_: Unpicklable| 1u8, Unpicklable).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Encode {
                what: DataKind::Argument,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(p.worker_pids(), workers, "(de)serialisation errors cost workers");
}

#[derive(Debug, Serialize, Deserialize)]
enum Item {
    Fine(u32),
    #[serde(serialize_with = "refuse")]
    CannotSend(u32),
}

fn refuse<S: Serializer>(_: &u32, _: S) -> Result<S::Ok, S::Error> {
    Err(S::Error::custom("refused"))
}

fn unwrap_item(item: Item) -> u32 {
    match item {
        Item::Fine(x) | Item::CannotSend(x) => x,
    }
}

#[test]
fn a_bad_item_in_a_map_fails_alone_and_the_lowest_index_wins() {
    let p = Pool::new(2).unwrap();
    let items = || {
        (0..40).map(|i| {
            if i == 13 || i == 31 {
                Item::CannotSend(i)
            } else {
                Item::Fine(i)
            }
        })
    };
    let err = p.with_chunksize(4).map(unwrap_item, items()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Encode {
                index: Some(13),
                what: DataKind::Argument,
                ..
            }
        ),
        "{err:?}"
    );
    // imap shows each item's own outcome.
    let results: Vec<_> = p.with_chunksize(4).imap(unwrap_item, items()).unwrap().collect();
    for (i, r) in results.iter().enumerate() {
        match i {
            13 | 31 => assert!(
                matches!(r, Err(Error::Encode { index: Some(j), .. }) if *j == i),
                "{i}: {r:?}"
            ),
            _ => assert_eq!(r.as_ref().unwrap(), &(i as u32)),
        }
    }
}

#[test]
fn a_worker_killed_mid_task() {
    fn kill_self(_: ()) -> u8 {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        0
    }
    let p = Pool::new(2).unwrap();
    let (tx, rx) = mpsc::channel();
    let res = p
        .with_error_callback(move |e: &Error| tx.send(e.is_worker_died()).unwrap())
        .apply_async(kill_self, ())
        .unwrap();
    let err = res.get().unwrap_err();
    assert!(
        matches!(&err, Error::WorkerDied { cause, .. } if cause.signal() == Some(9)),
        "{err:?}"
    );
    assert!(rx.recv_timeout(common::HANG).unwrap());
    assert_eq!(p.map(|x: u8| x, 0..10).unwrap().len(), 10);
    assert_eq!(p.worker_pids().len(), 2);
}
