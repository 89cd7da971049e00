//! The worker's stack-overflow handler.
//!
//! A Rust program's `main` thread reports a stack overflow ("thread 'main'
//! has overflowed its stack") because the runtime's start-up code, before
//! `main`, installs a SIGSEGV/SIGBUS handler on an alternate signal stack.
//! A worker never gets there: its loop runs from a constructor before
//! `main` (see `worker::boot`), so an overflowing task would just die of
//! SIGSEGV. [`report_stack_overflow`] installs the same kind of handler in
//! the worker. When a fault lands where the main thread's stack overflows,
//! the handler records it in the marker page the parent reads after the
//! worker died, and says so on stderr; then, overflow or not, it hands the
//! signal to the action it replaced (by default: the process ends with the
//! signal), so the death itself is unchanged.
//!
//! The handler only does what a signal handler may: atomic loads and
//! stores, `write`, `sigaction` and `raise`.

use std::io;
use std::ops::Range;
use std::sync::OnceLock;

use super::shm::Marker;

/// What the handler needs, set once before it is installed.
struct Watch {
    /// A fault at an address in this range is the main thread's stack
    /// overflowing.
    guard: Range<usize>,
    /// Where the overflow is recorded for the parent.
    marker: &'static Marker,
    /// The actions the handler replaced, for SIGSEGV and SIGBUS.
    previous: [libc::sigaction; 2],
}

/// Read by the handler: `OnceLock::get` is one atomic load, and the value
/// never changes once set.
static WATCH: OnceLock<Watch> = OnceLock::new();

const SIGNALS: [libc::c_int; 2] = [libc::SIGSEGV, libc::SIGBUS];

/// The handler's own stack: room for the kernel's signal frame (a few KiB
/// with large vector registers) and the handler's few calls.
const ALT_STACK: usize = 64 * 1024;

/// How many pages the kernel keeps free below a growing stack
/// (`stack_guard_gap`, 256 pages by default): faults this far around the
/// lowest address the stack may reach are its overflow.
const GUARD_PAGES: usize = 256;

/// What the handler writes on stderr: the standard library's words, so
/// that the overflow reads the same as in any Rust program.
const MESSAGE: &[u8] = b"\nthread 'main' has overflowed its stack\nfatal runtime error: stack overflow\n";

/// Installs the stack-overflow handler for the calling thread's stack,
/// which must be the process's main thread (the one that runs tasks), and
/// records overflows in `marker`. Call it once, before any other thread
/// starts; a second call does nothing.
///
/// # Errors
///
/// When the main thread's stack cannot be found or the handler cannot be
/// installed; the worker then works as before, its overflows reported as
/// plain SIGSEGV.
pub(crate) fn report_stack_overflow(marker: &'static Marker) -> io::Result<()> {
    if WATCH.get().is_some() {
        return Ok(());
    }
    let guard = main_stack_guard()?;
    let previous = [current_action(SIGNALS[0])?, current_action(SIGNALS[1])?];
    if WATCH
        .set(Watch {
            guard,
            marker,
            previous,
        })
        .is_err()
    {
        return Ok(());
    }
    alternate_stack()?;
    for signal in SIGNALS {
        // SAFETY: all-zero is a valid `sigaction` (no flags, empty mask),
        // filled in below.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_fault as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        // SAFETY: `sigemptyset` writes the mask we own; `sigaction` reads
        // our action. The handler it installs is async-signal-safe (see
        // `on_fault`) and reads `WATCH`, which is set above.
        let failed = unsafe {
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut()) != 0
        };
        if failed {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The action installed for `signal` now.
fn current_action(signal: libc::c_int) -> io::Result<libc::sigaction> {
    // SAFETY: all-zero is a valid `sigaction`; `sigaction` with a null new
    // action only writes the current one into ours.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(signal, std::ptr::null(), &mut action) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(action)
    }
}

/// Gives this thread an alternate signal stack, unless it has one: the
/// handler cannot run on the stack that just overflowed.
fn alternate_stack() -> io::Result<()> {
    // SAFETY: all-zero is a valid `stack_t`; with a null new stack,
    // `sigaltstack` only writes the current one into ours.
    let mut current: libc::stack_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::sigaltstack(std::ptr::null(), &mut current) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if current.ss_flags & libc::SS_DISABLE == 0 {
        return Ok(());
    }
    let page = page_size();
    let size = ALT_STACK.max(libc::SIGSTKSZ) + page;
    // SAFETY: a fresh private anonymous mapping at an address the kernel
    // picks: nothing of ours is overwritten. It is never unmapped: the
    // worker's main thread uses it until the process ends.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the first page of the mapping just made, which nothing uses:
    // a guard, so that a handler overflowing this stack faults instead of
    // writing below it.
    if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let stack = libc::stack_t {
        // SAFETY: `page` is inside the mapping of `size > page` bytes.
        ss_sp: unsafe { base.cast::<u8>().add(page) }.cast(),
        ss_flags: 0,
        ss_size: size - page,
    };
    // SAFETY: the stack is the rest of the mapping, writable and never
    // unmapped.
    if unsafe { libc::sigaltstack(&stack, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn page_size() -> usize {
    // SAFETY: `sysconf` takes an integer and touches no memory of ours.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

/// Where a fault means the main thread's stack overflowed.
fn main_stack_guard() -> io::Result<Range<usize>> {
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let (below, top) =
        stack_bounds(&maps).ok_or_else(|| io::Error::other("no [stack] in /proc/self/maps"))?;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes the limit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_STACK, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let limit = (limit.rlim_cur != libc::RLIM_INFINITY)
        .then(|| usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX));
    Ok(guard_range(below, top, limit, GUARD_PAGES * page_size()))
}

/// The end of the mapping below the main thread's stack (0 if none), and
/// the stack's top, from the text of `/proc/self/maps`.
fn stack_bounds(maps: &str) -> Option<(usize, usize)> {
    let mut below = 0;
    for line in maps.lines() {
        let (_, end) = line.split_whitespace().next()?.split_once('-')?;
        let end = usize::from_str_radix(end, 16).ok()?;
        if line.ends_with("[stack]") {
            return Some((below, end));
        }
        below = end;
    }
    None
}

/// The range around the lowest address a stack that ends at `top` may grow
/// to: `limit` (`RLIMIT_STACK`, `None` if unlimited) below its top, but no
/// lower than the mapping below it, which ends at `below`. Growing past
/// that, the stack faults within `gap` below it (or, when the mapping below
/// stops it, within `gap` above that mapping).
fn guard_range(below: usize, top: usize, limit: Option<usize>, gap: usize) -> Range<usize> {
    let lowest = match limit {
        Some(limit) => top.saturating_sub(limit).max(below),
        None => below,
    };
    lowest.saturating_sub(gap).max(below)..lowest.saturating_add(gap).min(top)
}

/// The handler. Async-signal-safe: atomic loads and stores, `write`,
/// `send`, `sigaction` and `raise`; no allocation, no locks.
extern "C" fn on_fault(signal: libc::c_int, info: *mut libc::siginfo_t, _context: *mut libc::c_void) {
    let Some(watch) = WATCH.get() else {
        return;
    };
    // SAFETY: with `SA_SIGINFO` the kernel passes a valid `siginfo_t`; for
    // SIGSEGV and SIGBUS its address field is the faulting address.
    let (code, address) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    // A positive code: the kernel raised it for a fault. Zero or less: some
    // process sent it (`kill`, `raise`), and the address means nothing.
    let fault = code > 0;
    if fault && watch.guard.contains(&address) {
        // SAFETY: `getpid` is async-signal-safe and cannot fail.
        let pid = unsafe { libc::getpid() };
        watch.marker.set_stack_overflow(pid as u32);
        // The results finished before this task go first.
        super::held::send();
        // SAFETY: `write` is async-signal-safe; it reads `MESSAGE`, a
        // static. What it returns does not matter: the process is ending.
        let _ = unsafe { libc::write(libc::STDERR_FILENO, MESSAGE.as_ptr().cast(), MESSAGE.len()) };
    }
    let previous = if signal == SIGNALS[0] {
        &watch.previous[0]
    } else {
        &watch.previous[1]
    };
    // SAFETY: `sigaction` is async-signal-safe and reads the action saved
    // before this handler was installed. A fault then happens again when
    // the handler returns (the faulting instruction runs again) and goes to
    // that action; a signal that was sent is raised again for it (it stays
    // pending until the handler returns, being blocked in it).
    unsafe {
        libc::sigaction(signal, previous, std::ptr::null_mut());
        if !fault {
            libc::raise(signal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stack_is_found_with_the_mapping_below_it() {
        let maps = "\
55d0c0000000-55d0c0001000 r--p 00000000 08:01 123 /usr/bin/prog
7f0000000000-7f0000100000 rw-p 00000000 00:00 0
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
7ffd001fe000-7ffd00200000 r-xp 00000000 00:00 0                          [vdso]
";
        assert_eq!(stack_bounds(maps), Some((0x7f00_0010_0000, 0x7ffd_0002_1000)));
        assert_eq!(stack_bounds("7f0000000000-7f0000100000 rw-p 0 00:00 0\n"), None);
        assert!(stack_bounds(&std::fs::read_to_string("/proc/self/maps").unwrap()).is_some());
    }

    #[test]
    fn the_guard_surrounds_the_lowest_address_the_stack_may_reach() {
        let gap = 1 << 20;
        let (below, top) = (0x1000_0000, 0x8000_0000);
        // Limited: `limit` below the top.
        let lowest = top - (8 << 20);
        assert_eq!(
            guard_range(below, top, Some(8 << 20), gap),
            lowest - gap..lowest + gap
        );
        // Unlimited, or limited beyond the mapping below: that mapping stops it.
        assert_eq!(guard_range(below, top, None, gap), below..below + gap);
        assert_eq!(guard_range(below, top, Some(usize::MAX), gap), below..below + gap);
        // Never above the stack's top.
        assert_eq!(guard_range(0, 0x1000, Some(0x800), gap), 0..0x1000);
    }
}
