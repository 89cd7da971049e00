//! The worker's side: check who started it, take over the channel, check
//! the executable, then serve tasks until the parent closes the channel.

use std::ffi::OsString;
use std::io::BufReader;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::bootstrap::{self, EXIT_BAD_SETUP, EXIT_PROTOCOL, EXIT_REJECTED, WorkerEnv};
use crate::func::{FunctionId, Image, Runner};
use crate::protocol::frame::{self, DEFAULT_MAX_BODY, ReadError};
use crate::protocol::message::{self, ToWorker};
use crate::protocol::{PROTOCOL_VERSION, attach, codec, items};
use crate::sandbox::{self, Policy};
use crate::sys;
use crate::sys::fd::FdReader;
use crate::sys::shm::Marker;
use crate::task::panics;

use super::replies::{Replies, flush_output};

/// The worker's `main`: never returns.
pub(crate) fn run(value: OsString) -> ! {
    sys::process::ignore_sigpipe();
    if sys::process::secure_execution() {
        // Touch nothing the caller handed over: not even the channel.
        refused("secure-execution mode (setuid, setgid or file capabilities)");
    }
    let env = match value
        .to_str()
        .ok_or("not UTF-8")
        .map_err(str::to_owned)
        .and_then(WorkerEnv::parse)
    {
        Ok(env) => env,
        Err(e) => setup_failed(&e),
    };
    if env.fd != 0 {
        setup_failed(&format!("the channel must be stdin, not descriptor {}", env.fd));
    }
    let channel = match sys::fd::adopt_channel() {
        Ok(channel) => channel,
        Err(e) => setup_failed(&format!("cannot use the channel to the parent: {e}")),
    };
    let parent = sys::process::parent_pid();
    if let Err(reason) = bootstrap::check_channel(&channel, parent) {
        refused(&reason);
    }
    take_parent_name(parent);
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
    let image = match Image::current() {
        Ok(image) => image,
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
        // Kept until the process ends, for the handlers below.
        Ok(marker) => &*Box::leak(Box::new(marker)),
        // The parent is gone, or is not procpool.
        Err(e) => sys::process::exit_now(fault(
            &channel,
            &mut Replies::default(),
            &format!("no marker page from the parent: {e}"),
        )),
    };
    last_words(&channel, marker);
    let exit_code = serve(&channel, image, marker, env.sandboxed);
    flush_output();
    sys::process::exit_now(exit_code)
}

fn setup_failed(reason: &str) -> ! {
    eprintln!("procpool worker {}: {reason}", std::process::id());
    sys::process::exit_now(EXIT_BAD_SETUP)
}

/// Refuses worker mode, saying why on stderr (not on the channel, whose
/// other end is not trusted).
fn refused(reason: &str) -> ! {
    eprintln!(
        "procpool worker {}: refusing worker mode: {reason}",
        std::process::id()
    );
    sys::process::exit_now(EXIT_REJECTED)
}

/// Takes the parent's process name: the worker was started from the
/// program's file (often through `/proc/self/exe`, which would name it
/// `exe`), and `ps`, `top` and `pgrep` should show it as the program.
fn take_parent_name(parent: u32) {
    if let Ok(name) = std::fs::read_to_string(format!("/proc/{parent}/comm")) {
        sys::process::set_thread_name(name.trim_end_matches('\n'));
    }
}

/// Whether this worker may serve the parent described by `env`.
fn check(env: &WorkerEnv) -> Result<(), String> {
    if env.protocol != PROTOCOL_VERSION {
        return Err(format!(
            "the parent speaks procpool protocol {}, this worker {PROTOCOL_VERSION}",
            env.protocol
        ));
    }
    let me = Image::current().map_err(|e| format!("cannot identify the worker's executable: {e}"))?;
    match me.identity.mismatch(&env.parent) {
        Some(reason) => Err(reason),
        None => Ok(()),
    }
}

/// Prepares the worker to tell the parent why it dies, when a task kills
/// it in a way the parent could not tell from a crash: a stack overflow,
/// and (under `panic = "abort"`) a panic. Neither is retried.
fn last_words(channel: &UnixStream, marker: &'static Marker) {
    // Tasks run on this thread, before `main` (which would have installed
    // the standard library's handler): install ours.
    if let Err(e) = sys::signal::report_stack_overflow(marker) {
        eprintln!(
            "procpool worker {}: a stack overflow will show as SIGSEGV: {e}",
            std::process::id()
        );
    }
    if !cfg!(panic = "abort") {
        return;
    }
    match channel.try_clone() {
        Ok(channel) => panics::report_aborting_panics(move |panic| {
            // What the task printed comes first, then the results held
            // back; this task's outcome follows.
            flush_output();
            sys::held::send();
            let _ = sys::fd::send_all(&channel, &message::panic_frame(marker.get(), panic));
        }),
        Err(e) => eprintln!(
            "procpool worker {}: a panic will show as SIGABRT: {e}",
            std::process::id()
        ),
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

/// Serves tasks until the channel closes; returns the exit code. A worker
/// of a sandboxed pool (`sandboxed`) runs no task but its initializer
/// before it has locked itself down.
fn serve(channel: &UnixStream, image: &Image, marker: &'static Marker, sandboxed: bool) -> i32 {
    let mut locked = !sandboxed;
    let mut initialized = false;
    // Shared regions come beside the tasks, and go back beside results.
    attach::send_results_through(channel, marker);
    let mut reader = BufReader::with_capacity(64 * 1024, FdReader::new(channel));
    let mut inbox = attach::Inbox::default();
    let mut body = Vec::new();
    let mut out = Vec::new();
    let mut replies = Replies::default();
    loop {
        let read = attach::read_frame(
            &mut reader,
            &mut inbox,
            &mut body,
            DEFAULT_MAX_BODY,
            attach::DESCS_TO_WORKER,
        );
        let message = match read {
            Ok(kind) => ToWorker::decode(kind, &body),
            Err(ReadError::Closed) => {
                let _ = replies.flush(channel);
                return 0;
            }
            Err(ReadError::Truncated) => {
                return fault(channel, &mut replies, "the parent's frame was cut short");
            }
            Err(ReadError::Protocol(e)) => return fault(channel, &mut replies, &e.0),
            Err(ReadError::Io(e)) => {
                return fault(channel, &mut replies, &format!("reading from the parent: {e}"));
            }
        };
        // Results held back go out before anything but a task (which only
        // follows them at once if it was read whole before).
        if !matches!(message, Ok(ToWorker::Task { .. })) && replies.flush(channel).is_err() {
            return 0;
        }
        let (job, target, count, items) = match message {
            Ok(ToWorker::Task {
                job,
                target,
                count,
                items,
            }) => (job, target, count, items),
            Ok(ToWorker::Lock(policy)) => match lock_down(channel, policy, marker, initialized) {
                Ok(()) => {
                    locked = true;
                    continue;
                }
                Err(code) => return code,
            },
            Err(e) => return fault(channel, &mut replies, &e.0),
        };
        if !locked && job != message::INIT_JOB {
            return fault(
                channel,
                &mut replies,
                &format!("task {job} came before the sandbox's lockdown"),
            );
        }
        initialized |= job == message::INIT_JOB;
        // Only a real runner record is called (see `func::runner`).
        let Some(run) = Runner::find(FunctionId(target.runner), image) else {
            return fault(
                channel,
                &mut replies,
                &format!(
                    "runner id {:#x} names no task runner of this executable",
                    target.runner
                ),
            );
        };
        // From here on the job counts as started if the worker dies.
        marker.set(job);
        let mut send_part = |part: &[u8]| {
            // What the items printed, and the results held back, come
            // before these results.
            if replies.flush(channel).is_err() {
                sys::process::exit_now(0);
            }
            flush_output();
            if sys::fd::send_all(channel, part).is_err() {
                // The parent is gone.
                sys::process::exit_now(0);
            }
        };
        let mut results = message::Results::start(&mut out, job, &mut send_part);
        let outcome = run(target, image, items, &mut results);
        let held = results.held();
        let timing = match outcome {
            Ok((n, timing)) if n == count => timing,
            Ok((n, _)) => {
                return fault(
                    channel,
                    &mut replies,
                    &format!("task {job} announced {count} items but holds {n}"),
                );
            }
            Err(e) => return fault(channel, &mut replies, &format!("task {job}: {e}")),
        };
        if let Err(size) = message::finish_done(&mut out, job, held, timing, DEFAULT_MAX_BODY) {
            too_large(&mut out, job, held, size);
        }
        let took = Duration::from_nanos(timing.decode_ns + timing.run_ns + timing.encode_ns);
        let next_in_hand = frame::begins_with_whole_frame(reader.buffer());
        if replies
            .finished(channel, &out, (count, took), next_in_hand)
            .is_err()
        {
            return 0;
        }
    }
}

/// Locks the worker down under the encoded `policy`, and tells the parent
/// how far; the exit code if it must not serve.
fn lock_down(
    channel: &UnixStream,
    policy: &[u8],
    marker: &'static Marker,
    initialized: bool,
) -> Result<(), i32> {
    let outcome = codec::decode::<Policy>(policy)
        .map_err(|e| format!("the sandbox policy is malformed: {e}"))
        .and_then(|policy| sandbox::lockdown::lock_down(&policy, marker, initialized));
    let reply = match &outcome {
        Ok(summary) => message::text_frame(message::LOCKED, summary),
        Err(reason) => message::text_frame(message::REJECT, &format!("cannot lock down: {reason}")),
    };
    let sent = sys::fd::send_all(channel, &reply);
    match (outcome, sent) {
        (Ok(_), Ok(())) => Ok(()),
        (Ok(_), Err(_)) => Err(0),
        (Err(_), _) => Err(EXIT_REJECTED),
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

/// Tells the parent why this worker stops, after the results it held
/// back, and returns the exit code.
fn fault(channel: &UnixStream, replies: &mut Replies, reason: &str) -> i32 {
    let _ = replies.flush(channel);
    let _ = sys::fd::send_all(channel, &message::text_frame(message::FAULT, reason));
    EXIT_PROTOCOL
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::message::Target;
    use std::io::Write;

    /// Sends one task for job 1 to `serve`, and returns its exit code and
    /// what it answered.
    fn serve_one_task(sandboxed: bool) -> (i32, String) {
        let (parent, worker) = UnixStream::pair().unwrap();
        let marker: &'static Marker = Box::leak(Box::new(Marker::create().unwrap().0));
        let target = Target {
            runner: 0,
            func: 0,
            signature: 0,
        };
        let mut task = Vec::new();
        message::start_task(&mut task);
        message::finish_task(&mut task, 1, target, 0, DEFAULT_MAX_BODY).unwrap();
        (&parent).write_all(&task).unwrap();
        let code = serve(&worker, Image::current().unwrap(), marker, sandboxed);
        let mut body = Vec::new();
        let kind = frame::read_frame(&mut &parent, &mut body, DEFAULT_MAX_BODY).unwrap();
        assert_eq!(kind, message::FAULT);
        (code, String::from_utf8(body).unwrap())
    }

    fn plus_one(x: u64) -> u64 {
        x + 1
    }

    /// A whole `TASK` frame for `plus_one(x)`, job `job`, with `target`.
    fn plus_one_task(job: u64, target: Target, x: u64) -> Vec<u8> {
        use crate::protocol::items;
        let mut task = Vec::new();
        message::start_task(&mut task);
        items::push_run(&mut task, items::ARG_RUN, 8, 1, |b| {
            b.extend_from_slice(&x.to_ne_bytes())
        });
        message::finish_task(&mut task, job, target, 1, DEFAULT_MAX_BODY).unwrap();
        task
    }

    #[test]
    fn results_held_back_go_out_before_a_fault() {
        use crate::task::{Kernel, Unary};
        let (parent, worker) = UnixStream::pair().unwrap();
        let marker: &'static Marker = Box::leak(Box::new(Marker::create().unwrap().0));
        let image = Image::current().unwrap();
        let good = Unary::<u64, u64>::target_for(plus_one, image).unwrap();
        let bad = Target { runner: 0, ..good };
        // Both frames in one write: the first task's result may wait for
        // the second, which is refused.
        let mut both = plus_one_task(1, good, 41);
        both.extend(plus_one_task(2, bad, 0));
        (&parent).write_all(&both).unwrap();
        assert_eq!(serve(&worker, image, marker, false), EXIT_PROTOCOL);
        let mut body = Vec::new();
        let kind = frame::read_frame(&mut &parent, &mut body, DEFAULT_MAX_BODY).unwrap();
        assert_eq!(kind, message::DONE, "the first task's result comes first");
        let kind = frame::read_frame(&mut &parent, &mut body, DEFAULT_MAX_BODY).unwrap();
        assert_eq!(kind, message::FAULT);
    }

    #[test]
    fn a_sandboxed_worker_runs_no_task_before_its_lockdown() {
        let (code, fault) = serve_one_task(true);
        assert_eq!(code, EXIT_PROTOCOL);
        assert!(fault.contains("before the sandbox's lockdown"), "{fault}");
        // The control: without a sandbox, the same task gets as far as its
        // runner (which is no runner at all).
        let (_, fault) = serve_one_task(false);
        assert!(fault.contains("names no task runner"), "{fault}");
    }
}
