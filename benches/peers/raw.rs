//! The physical limits: the same exchanges with no pool, no framing and no
//! serde, between this program and a re-executed copy of itself.
//!
//! The copy is started as `<this executable> --raw-…` and checked for in
//! `main` before anything else (procpool's constructor has already
//! returned: it only acts on its own environment variable). Its stdin is
//! one end of a socketpair (or `/dev/null` for the reply mode):
//!
//! * `--raw-echo`: reads 8-byte little-endian `u64`s and answers each with
//!   [`inc`] of it (workload a's ping-pong);
//! * `--raw-sink`: reads an 8-byte length then that many bytes, answers
//!   their [`checksum`] (workload f's bandwidth);
//! * `--raw-reply`: writes [`inc`]`(41)` to stdout and exits (workload e's
//!   fork+exec).
//!
//! Each mode returns when its stdin reaches end of file.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};

use crate::harness::{Fallible, check_eq, timed};
use crate::tasks::{checksum, inc};

const ECHO_ARG: &str = "--raw-echo";
const SINK_ARG: &str = "--raw-sink";
const REPLY_ARG: &str = "--raw-reply";

/// In a copy started as a raw peer, serves its mode and returns the exit
/// status; `None` in any other process.
pub(crate) fn child_mode() -> Option<ExitCode> {
    let arg = std::env::args_os().nth(1)?;
    let serve: fn() -> io::Result<()> = match arg.to_str()? {
        ECHO_ARG => serve_echo,
        SINK_ARG => serve_sink,
        REPLY_ARG => serve_reply,
        _ => return None,
    };
    Some(match serve() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("peers {arg:?}: {e}");
            ExitCode::FAILURE
        }
    })
}

/// This process's stdin as the socket it is.
fn stdin_socket() -> io::Result<UnixStream> {
    Ok(UnixStream::from(io::stdin().as_fd().try_clone_to_owned()?))
}

/// Reads exactly `buf.len()` bytes; `Ok(false)` at a clean end of file.
fn read_or_eof(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    match r.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

fn serve_echo() -> io::Result<()> {
    let mut sock = stdin_socket()?;
    let mut word = [0u8; 8];
    while read_or_eof(&mut sock, &mut word)? {
        sock.write_all(&inc(u64::from_le_bytes(word)).to_le_bytes())?;
    }
    Ok(())
}

fn serve_sink() -> io::Result<()> {
    let mut sock = stdin_socket()?;
    let mut len = [0u8; 8];
    let mut buf = Vec::new();
    while read_or_eof(&mut sock, &mut len)? {
        buf.resize(u64::from_le_bytes(len) as usize, 0);
        sock.read_exact(&mut buf)?;
        sock.write_all(&checksum(&buf).to_le_bytes())?;
    }
    Ok(())
}

fn serve_reply() -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(&inc(41).to_le_bytes())?;
    out.flush()
}

fn current_exe() -> Fallible<PathBuf> {
    Ok(std::env::current_exe()?)
}

/// A running copy of this program in one socket mode.
#[derive(Debug)]
pub(crate) struct RawPeer {
    child: Child,
    sock: UnixStream,
}

impl RawPeer {
    fn start(mode: &str) -> Fallible<RawPeer> {
        let (sock, theirs) = UnixStream::pair()?;
        let child = Command::new(current_exe()?)
            .arg(mode)
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .spawn()?;
        Ok(RawPeer { child, sock })
    }

    /// An echo server (`--raw-echo`).
    pub(crate) fn echo() -> Fallible<RawPeer> {
        RawPeer::start(ECHO_ARG)
    }

    /// A checksum sink (`--raw-sink`).
    pub(crate) fn sink() -> Fallible<RawPeer> {
        RawPeer::start(SINK_ARG)
    }

    /// One ping-pong round trip of `x`, the answer checked.
    pub(crate) fn round_trip(&mut self, x: u64) -> Fallible {
        let mut word = [0u8; 8];
        self.sock.write_all(&x.to_le_bytes())?;
        self.sock.read_exact(&mut word)?;
        check_eq("the raw echo", u64::from_le_bytes(word), inc(x))
    }

    /// Streams each buffer (8-byte length, then the bytes) and reads its
    /// checksum back, one buffer at a time; checks each against `want`.
    pub(crate) fn stream(&mut self, bufs: &[Vec<u8>], want: &[u64]) -> Fallible {
        let mut word = [0u8; 8];
        for (buf, &want) in bufs.iter().zip(want) {
            self.sock.write_all(&(buf.len() as u64).to_le_bytes())?;
            self.sock.write_all(buf)?;
            self.sock.read_exact(&mut word)?;
            check_eq("the raw sink", u64::from_le_bytes(word), want)?;
        }
        Ok(())
    }

    /// Closes the socket and checks that the copy exited cleanly.
    pub(crate) fn finish(self) -> Fallible {
        drop(self.sock);
        let mut child = self.child;
        let status = child.wait()?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("a raw peer exited with {status}").into())
        }
    }
}

/// Starts `--raw-reply` and reads its answer: the milliseconds to the
/// answer and to the copy's exit.
pub(crate) fn fork_exec_reply() -> Fallible<(f64, f64)> {
    let exe = current_exe()?;
    let (answered, first) = timed(|| -> Fallible<(Child, [u8; 8])> {
        let mut child = Command::new(&exe)
            .arg(REPLY_ARG)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut word = [0u8; 8];
        child
            .stdout
            .as_mut()
            .ok_or("no stdout pipe")?
            .read_exact(&mut word)?;
        Ok((child, word))
    });
    let (mut child, word) = answered?;
    let (status, exit) = timed(|| child.wait());
    let status = status?;
    check_eq("the raw fork+exec reply", u64::from_le_bytes(word), inc(41))?;
    if !status.success() {
        return Err(format!("the raw reply peer exited with {status}").into());
    }
    Ok((first * 1e3, (first + exit) * 1e3))
}

/// In-process copy bandwidth: each buffer copied once into a scratch
/// buffer, checked by checksum; GB/s (10⁹ bytes per second).
pub(crate) fn memcpy_gbps(bufs: &[Vec<u8>], want: &[u64]) -> Fallible<f64> {
    let mut dst = vec![0u8; bufs.first().map_or(0, Vec::len)];
    let mut bytes = 0usize;
    let mut secs = 0.0;
    for (buf, &want) in bufs.iter().zip(want) {
        dst.resize(buf.len(), 0);
        let ((), s) = timed(|| dst.copy_from_slice(buf));
        secs += s;
        bytes += buf.len();
        check_eq("memcpy", checksum(&dst), want)?;
    }
    Ok(bytes as f64 / secs / 1e9)
}
