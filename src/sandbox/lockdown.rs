//! The worker's side: lock the process down, in the order of the module
//! docs. Each step either holds, or (best effort) is skipped and said so;
//! under [`Enforcement::Strict`] a step that fails refuses the worker.

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus, Scope, path_beneath_rules,
};

use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use super::report::LANDLOCK_ABI;
use super::{Enforcement, Policy, filter};
use crate::sys;
use crate::sys::shm::Marker;

/// This worker's scratch directory, once made.
pub(super) static SCRATCH: OnceLock<PathBuf> = OnceLock::new();

/// The variables kept in a cleared environment: whether panics carry
/// backtraces (the standard library reads them at the first panic).
const KEPT: [&str; 2] = ["RUST_BACKTRACE", "RUST_LIB_BACKTRACE"];

/// Locks this worker down under `policy`. `initialized`: an initializer
/// ran (and may have started threads). Returns a summary of what holds,
/// or why the worker must not serve.
pub(crate) fn lock_down(
    policy: &Policy,
    marker: &'static Marker,
    initialized: bool,
) -> Result<String, String> {
    let strict = policy.enforcement == Enforcement::Strict;
    // The filter refuses `memfd_create`: results are copied instead.
    sys::region::forbid_new();
    let mut notes = Vec::new();
    let scratch = match &policy.scratch {
        Some(dir) => {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("cannot make the scratch directory {}: {e}", dir.display()))?;
            let _ = SCRATCH.set(dir.clone());
            Some(dir)
        }
        None => None,
    };
    // The initializer may have left threads that read the environment:
    // clearing it under them is not safe. (A worker starts none itself.)
    let threads = match initialized {
        true => sys::confine::thread_count(),
        false => Ok(1),
    };
    match threads {
        Ok(1) => {
            let kept: Vec<_> = KEPT
                .iter()
                .filter_map(|k| Some((k, std::env::var_os(k)?)))
                .collect();
            // SAFETY: this is the only thread of the process.
            unsafe { sys::confine::clear_environment() };
            for (key, value) in kept {
                // SAFETY: as above.
                unsafe { std::env::set_var(key, value) };
            }
            if let Some(dir) = scratch {
                // SAFETY: as above.
                unsafe { std::env::set_var("TMPDIR", dir) };
            }
        }
        Ok(n) => notes.push(format!(
            "environment kept: the initializer left {n} threads, which could be reading it"
        )),
        Err(e) => notes.push(format!("environment kept: cannot count threads: {e}")),
    }
    let io = |r: std::io::Result<()>| r.map_err(|e| e.to_string());
    let mut step = |what: &str, result: Result<(), String>| -> Result<(), String> {
        match result {
            Ok(()) => Ok(()),
            Err(e) if strict => Err(format!("{what}: {e}")),
            Err(e) => {
                notes.push(format!("{what} skipped: {e}"));
                Ok(())
            }
        }
    };
    step("no core files", io(sys::confine::limit(libc::RLIMIT_CORE, 0)))?;
    step(
        "EFBIG past the file-size limit",
        io(sys::process::ignore(nix::sys::signal::Signal::SIGXFSZ)),
    )?;
    step(
        "file-size limit",
        io(sys::confine::limit(libc::RLIMIT_FSIZE, policy.max_file_size)),
    )?;
    step("non-dumpable", io(sys::confine::not_dumpable()))?;
    step("no_new_privs", io(sys::confine::no_new_privs()))?;
    step("no capabilities", io(sys::confine::drop_capabilities()))?;
    let partial = landlock(policy, strict);
    step("Landlock", partial.as_ref().map(drop).map_err(Clone::clone))?;
    step(
        "descriptor limit",
        io(sys::confine::limit(libc::RLIMIT_NOFILE, policy.max_open_files)),
    )?;
    step("SIGSYS handler", io(sys::confine::report_violations(marker)))?;
    step("system call filter", seccomp(policy))?;
    if let Ok(Some(note)) = partial {
        notes.push(note);
    }
    if notes.is_empty() {
        Ok("locked down in full".to_owned())
    } else {
        Ok(notes.join("; "))
    }
}

/// Applies the Landlock rules; returns a note when they hold only in part.
fn landlock(policy: &Policy, strict: bool) -> Result<Option<String>, String> {
    let abi = ABI::V6;
    const _: () = assert!(LANDLOCK_ABI == 6);
    let level = match strict {
        true => CompatLevel::HardRequirement,
        false => CompatLevel::BestEffort,
    };
    let mut ruleset = Ruleset::default()
        .set_compatibility(level)
        .handle_access(AccessFs::from_all(abi))
        .map_err(|e| e.to_string())?;
    if !policy.network {
        ruleset = ruleset
            .handle_access(AccessNet::from_all(abi))
            .map_err(|e| e.to_string())?;
    }
    let ruleset = ruleset.scope(Scope::from_all(abi)).map_err(|e| e.to_string())?;
    let status = ruleset
        .create()
        .and_then(|r| {
            r.add_rules(path_beneath_rules(
                &policy.program_files,
                AccessFs::from_read(abi),
            ))
        })
        .and_then(|r| r.add_rules(path_beneath_rules(&policy.read, AccessFs::from_read(abi))))
        .and_then(|r| r.add_rules(path_beneath_rules(&policy.write, AccessFs::from_all(abi))))
        .and_then(|r| r.add_rules(path_beneath_rules(&policy.scratch, AccessFs::from_all(abi))))
        .and_then(|r| r.restrict_self())
        .map_err(|e| e.to_string())?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => None,
        RulesetStatus::PartiallyEnforced => Some("Landlock enforced in part (older kernel)".to_owned()),
        RulesetStatus::NotEnforced => Some("Landlock not enforced (kernel without it)".to_owned()),
    })
}

/// The files the program runs from (its executable and shared libraries),
/// which a backtrace reads for symbols: read by the parent, which runs
/// the same executable, once for all its workers.
pub(super) fn program_files() -> Vec<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    // The path is the rest of the line after five fields (it may hold
    // spaces); a file deleted since it was mapped is not granted under its
    // old name, and only regular files are (not `/dev/zero`).
    let mut files: Vec<PathBuf> = maps
        .lines()
        .filter_map(|line| line.splitn(6, ' ').nth(5).map(str::trim_start))
        .filter(|path| path.starts_with('/') && !path.ends_with(" (deleted)"))
        .filter(|path| std::fs::metadata(path).is_ok_and(|m| m.is_file()))
        .map(PathBuf::from)
        .collect();
    files.sort();
    files.dedup();
    files
}

/// Installs the filter on every thread.
fn seccomp(policy: &Policy) -> Result<(), String> {
    let program = filter::program(policy, std::process::id())?;
    sys::confine::install_filter(&program).map_err(|e| e.to_string())
}
