//! A flag raised by SIGTERM and SIGINT: how a worker host learns it should
//! drain (finish what it runs, take nothing new, exit).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

static ASKED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    ASKED.store(true, Ordering::SeqCst);
}

/// From now on, SIGTERM and SIGINT raise the flag [`asked`] reads instead
/// of ending the process.
pub(crate) fn catch() -> io::Result<()> {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: all-zero is a valid `sigaction` (no flags, empty mask);
        // the handler only stores to an atomic, which a signal handler may;
        // `sigaction` reads the action we own.
        let failed = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut()) != 0
        };
        if failed {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether SIGTERM or SIGINT came since [`catch`].
pub(crate) fn asked() -> bool {
    ASKED.load(Ordering::SeqCst)
}
