//! The floor of workload (g): two bare processes ping-ponging one stream
//! entry through the same `redis-server`, with no pool, no seal, no serde,
//! no threads.
//!
//! The echo side is a copy of this program started as `<this executable>
//! --raw-redis-echo <url>` and checked for in `main` before anything else
//! (procpool's constructors have already returned: they only act on their
//! own environment variables). Each round trip:
//!
//! 1. the parent `XADD`s `x` to the ping stream, then waits in
//!    `XREADGROUP … BLOCK` on the pong stream;
//! 2. the echo, waiting in `XREADGROUP … BLOCK` on the ping stream, reads
//!    `x` and `XADD`s [`inc`]`(x)` to the pong stream.
//!
//! Both read with `NOACK` (no pending-entries list to acknowledge, the
//! least a consumer group can do) and add with `MAXLEN ~ 1000` (the
//! streams stay small). The echo returns when it reads a `stop` entry, or
//! when its parent is gone.

use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Duration;

use crate::harness::{Fallible, check_eq, wait_for_exit};
use crate::server::{Redis, kill_tree};
use crate::tasks::inc;

const ECHO_ARG: &str = "--raw-redis-echo";
const PING: &str = "cluster-bench:raw:ping";
const PONG: &str = "cluster-bench:raw:pong";
/// The group on each stream (each has one reader).
const GROUP: &str = "raw";
/// How long one blocking read waits: the echo checks for its parent
/// between reads; the parent fails the run after this.
const BLOCK_MS: u64 = 10_000;

/// A stream entry as read raw: its id and its flat field list.
type RawEntry = (String, Vec<Vec<u8>>);

/// An `XREADGROUP` answer: per stream, its name and entries; nil on a
/// timeout.
type ReadAnswer = Option<Vec<(String, Vec<RawEntry>)>>;

/// In a copy started as the raw echo, serves and returns the exit status;
/// `None` in any other process.
pub(crate) fn child_mode() -> Option<ExitCode> {
    let mut args = std::env::args().skip(1);
    if args.next()? != ECHO_ARG {
        return None;
    }
    let served = match args.next() {
        Some(url) => serve_echo(&url),
        None => Err(format!("{ECHO_ARG} needs the server's URL").into()),
    };
    Some(match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cluster {ECHO_ARG}: {e}");
            ExitCode::FAILURE
        }
    })
}

/// One blocking read of one entry from `stream`; its flat fields, or
/// `None` on a timeout.
fn read_one(con: &mut redis::Connection, stream: &str, block_ms: u64) -> Fallible<Option<Vec<Vec<u8>>>> {
    let answer: ReadAnswer = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(GROUP)
        .arg("reader")
        .arg("COUNT")
        .arg(1)
        .arg("BLOCK")
        .arg(block_ms)
        .arg("NOACK")
        .arg("STREAMS")
        .arg(stream)
        .arg(">")
        .query(con)?;
    Ok(answer
        .and_then(|streams| streams.into_iter().next())
        .and_then(|(_, entries)| entries.into_iter().next())
        .map(|(_, fields)| fields))
}

/// Adds one entry `field value` to `stream`.
fn add(con: &mut redis::Connection, stream: &str, field: &str, value: u64) -> Fallible {
    let _: String = redis::cmd("XADD")
        .arg(stream)
        .arg("MAXLEN")
        .arg("~")
        .arg(1000)
        .arg("*")
        .arg(field)
        .arg(value)
        .query(con)?;
    Ok(())
}

/// The value of field `x` in a flat field list.
fn field_x(fields: &[Vec<u8>]) -> Fallible<Option<u64>> {
    match fields {
        [name, value] if name == b"x" => Ok(Some(std::str::from_utf8(value)?.parse()?)),
        [name, _] if name == b"stop" => Ok(None),
        other => Err(format!("unexpected entry fields {other:?}").into()),
    }
}

fn serve_echo(url: &str) -> Fallible {
    let parent = std::os::unix::process::parent_id();
    let mut con = redis::Client::open(url)?.get_connection()?;
    loop {
        let Some(fields) = read_one(&mut con, PING, 1000)? else {
            if std::os::unix::process::parent_id() != parent {
                return Ok(());
            }
            continue;
        };
        match field_x(&fields)? {
            Some(x) => add(&mut con, PONG, "x", inc(x))?,
            None => return Ok(()),
        }
    }
}

/// A running raw echo and the parent's connection.
pub(crate) struct RawEcho {
    child: Child,
    con: redis::Connection,
}

impl std::fmt::Debug for RawEcho {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawEcho")
            .field("pid", &self.child.id())
            .finish_non_exhaustive()
    }
}

impl RawEcho {
    /// Makes the two streams and their groups, and starts the echo.
    pub(crate) fn start(redis: &Redis) -> Fallible<RawEcho> {
        let mut con = redis.con()?;
        let _: () = redis::cmd("DEL").arg(PING).arg(PONG).query(&mut con)?;
        for stream in [PING, PONG] {
            let _: () = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(stream)
                .arg(GROUP)
                .arg("$")
                .arg("MKSTREAM")
                .query(&mut con)?;
        }
        let child = Command::new(std::env::current_exe()?)
            .arg(ECHO_ARG)
            .arg(redis.url())
            .stdin(Stdio::null())
            .spawn()?;
        Ok(RawEcho { child, con })
    }

    /// One round trip of `x`, the answer checked.
    pub(crate) fn round_trip(&mut self, x: u64) -> Fallible {
        add(&mut self.con, PING, "x", x)?;
        let fields = read_one(&mut self.con, PONG, BLOCK_MS)?
            .ok_or_else(|| format!("the raw echo did not answer within {BLOCK_MS} ms"))?;
        check_eq("the raw Redis echo", field_x(&fields)?, Some(inc(x)))
    }

    /// Tells the echo to stop and checks that it exited cleanly.
    pub(crate) fn finish(mut self) -> Fallible {
        add(&mut self.con, PING, "stop", 1)?;
        match wait_for_exit(&mut self.child, Duration::from_secs(10))? {
            Some(status) if status.success() => Ok(()),
            Some(status) => Err(format!("the raw echo exited with {status}").into()),
            None => {
                kill_tree(&mut self.child);
                Err("the raw echo did not stop; killed".into())
            }
        }
    }
}

impl Drop for RawEcho {
    fn drop(&mut self) {
        kill_tree(&mut self.child);
    }
}
