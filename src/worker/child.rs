//! The worker's side: take over the channel, check the executable, then
//! serve tasks until the parent closes the channel.

use std::ffi::OsString;
use std::io::{BufReader, Write};
use std::os::unix::net::UnixStream;

use crate::bootstrap::{EXIT_BAD_SETUP, EXIT_PROTOCOL, EXIT_REJECTED, Identity, WorkerEnv};
use crate::protocol::frame::{self, DEFAULT_MAX_BODY, ReadError};
use crate::protocol::function::EntryFn;
use crate::protocol::message::{self, ToWorker};
use crate::protocol::{PROTOCOL_VERSION, items};
use crate::sys;
use crate::sys::entry::CodeRange;
use crate::sys::shm::Marker;
use crate::worker::panics;

/// The worker's `main`: never returns.
pub(crate) fn run(value: OsString) -> ! {
    sys::process::ignore_sigpipe();
    let env = match value
        .to_str()
        .ok_or("not UTF-8")
        .map_err(str::to_owned)
        .and_then(WorkerEnv::parse)
    {
        Ok(env) => env,
        Err(e) => setup_failed(&e),
    };
    let channel = match sys::fd::adopt_channel(env.fd) {
        Ok(channel) => channel,
        Err(e) => setup_failed(&format!("cannot use the channel to the parent: {e}")),
    };
    if let Some(bytes) = env.max_memory
        && let Err(e) = sys::process::limit_memory(bytes)
    {
        let reason = format!("cannot set the memory limit of {bytes} bytes: {e}");
        let _ = sys::fd::send_all(&channel, &message::text_frame(message::REJECT, &reason));
        sys::process::exit_now(EXIT_REJECTED);
    }
    if let Err(reason) = check(&env) {
        let _ = sys::fd::send_all(&channel, &message::text_frame(message::REJECT, &reason));
        sys::process::exit_now(EXIT_REJECTED);
    }
    let code = match CodeRange::of_this_crate() {
        Ok(code) => code,
        Err(reason) => {
            let _ = sys::fd::send_all(&channel, &message::text_frame(message::REJECT, &reason));
            sys::process::exit_now(EXIT_REJECTED);
        }
    };
    panics::install_hook();
    if sys::process::die_with_parent(&channel).is_err() {
        // The parent is already gone.
        sys::process::exit_now(0);
    }
    if sys::fd::send_all(&channel, &message::ready_frame(std::process::id())).is_err() {
        sys::process::exit_now(0);
    }
    let marker = match receive_marker(&channel) {
        Ok(marker) => marker,
        // The parent is gone, or is not procpool.
        Err(e) => sys::process::exit_now(fault(&channel, &format!("no marker page from the parent: {e}"))),
    };
    let exit_code = serve(&channel, &code, &marker);
    flush_output();
    sys::process::exit_now(exit_code)
}

fn setup_failed(reason: &str) -> ! {
    eprintln!("procpool worker {}: {reason}", std::process::id());
    sys::process::exit_now(EXIT_BAD_SETUP)
}

/// Whether this worker may serve the parent described by `env`.
fn check(env: &WorkerEnv) -> Result<(), String> {
    if env.protocol != PROTOCOL_VERSION {
        return Err(format!(
            "the parent speaks procpool protocol {}, this worker {PROTOCOL_VERSION}",
            env.protocol
        ));
    }
    let me = Identity::current().map_err(|e| format!("cannot identify the worker's executable: {e}"))?;
    match me.mismatch(&env.parent) {
        Some(reason) => Err(reason),
        None => Ok(()),
    }
}

/// Receives the `MARK` frame and the page it carries.
fn receive_marker(channel: &UnixStream) -> Result<Marker, String> {
    let mut header = [0u8; frame::HEADER_LEN];
    let fd = sys::fd::recv_with_fd(channel, &mut header).map_err(|e| e.to_string())?;
    match frame::parse_header(&header, 0) {
        Ok((message::MARK, 0)) => {}
        Ok((kind, len)) => return Err(format!("expected MARK, got kind {kind:#04x} of {len} bytes")),
        Err(e) => return Err(e.0),
    }
    let fd = fd.ok_or("the MARK frame came without a descriptor")?;
    Marker::adopt(&fd).map_err(|e| e.to_string())
}

/// Serves tasks until the channel closes; returns the exit code.
fn serve(channel: &UnixStream, code: &CodeRange, marker: &Marker) -> i32 {
    let mut reader = BufReader::with_capacity(64 * 1024, channel);
    let mut body = Vec::new();
    let mut out = Vec::new();
    loop {
        let kind = match frame::read_frame(&mut reader, &mut body, DEFAULT_MAX_BODY) {
            Ok(kind) => kind,
            Err(ReadError::Closed) => return 0,
            Err(ReadError::Truncated) => return fault(channel, "the parent's frame was cut short"),
            Err(ReadError::Protocol(e)) => return fault(channel, &e.0),
            Err(ReadError::Io(e)) => return fault(channel, &format!("reading from the parent: {e}")),
        };
        let (job, call, count, items) = match ToWorker::decode(kind, &body) {
            Ok(ToWorker::Task {
                job,
                call,
                count,
                items,
            }) => (job, call, count, items),
            Err(e) => return fault(channel, &e.0),
        };
        // SAFETY: `call.entry` comes from the parent over the private
        // channel, made from a real `EntryFn` in this same executable
        // (checked by `check` before `READY`); see `protocol::function`.
        let Some(entry) = (unsafe { sys::entry::resolve::<EntryFn>(call.entry, code) }) else {
            return fault(
                channel,
                &format!("entry id {:#x} is outside this executable's code", call.entry.0),
            );
        };
        // From here on the job counts as started if the worker dies.
        marker.set(job);
        message::start_done(&mut out);
        let timing = match entry(call, code, items, &mut out) {
            Ok((n, timing)) if n == count => timing,
            Ok((n, _)) => {
                return fault(
                    channel,
                    &format!("task {job} announced {count} items but holds {n}"),
                );
            }
            Err(e) => return fault(channel, &format!("task {job}: {e}")),
        };
        if let Err(size) = message::finish_done(&mut out, job, count, timing, DEFAULT_MAX_BODY) {
            too_large(&mut out, job, count, size);
        }
        flush_output();
        if sys::fd::send_all(channel, &out).is_err() {
            return 0;
        }
    }
}

/// Replaces the results in `out` with one error per item, when together
/// they exceed the frame limit.
fn too_large(out: &mut Vec<u8>, job: u64, count: u32, size: usize) {
    let text = format!(
        "the results of this chunk are {size} bytes in all, more than the limit of \
         {DEFAULT_MAX_BODY} bytes (use a smaller chunk size)"
    );
    message::start_done(out);
    for _ in 0..count {
        items::push_bytes(out, items::RES_RESULT_ENCODE, text.as_bytes());
    }
    message::finish_done(out, job, count, message::Timing::default(), DEFAULT_MAX_BODY)
        .expect("error items are small");
}

/// Tells the parent why this worker stops, and returns the exit code.
fn fault(channel: &UnixStream, reason: &str) -> i32 {
    let _ = sys::fd::send_all(channel, &message::text_frame(message::FAULT, reason));
    EXIT_PROTOCOL
}

/// Task output must reach the terminal before the result reaches the
/// parent, and must not be lost when the worker is later killed.
fn flush_output() {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
}
