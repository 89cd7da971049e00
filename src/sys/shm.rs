//! The started-job marker: one page shared by the parent and one worker.
//! The worker writes the id of each job before it runs any of the job's
//! code; after the worker died, the parent reads it to tell a job that had
//! started from one that never reached it (a worker killed while idle, just
//! as a job was handed to it). A worker dying of a stack overflow also
//! says so here, from its signal handler (see `signal`): a store to shared
//! memory is all a handler may safely do, and the page outlives the worker.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

const PAGE: usize = 4096;

/// Which item of the running job is being run, counted from the first
/// result not yet sent to the parent (`u32::MAX`: none). Process-local: the
/// runner stores it for each item, and a handler that records a death
/// (a stack overflow, a refused system call) copies it to the marker page,
/// so that the parent can fail that item alone.
pub(crate) static RUNNING_ITEM: AtomicU32 = AtomicU32::new(u32::MAX);

/// What the page holds, at its start.
#[repr(C)]
struct Page {
    /// The id of the job the worker last started (0 before any).
    job: AtomicU64,
    /// The pid of the process whose stack overflowed, or 0: the worker,
    /// unless a process it forked (which shares the page) overflowed.
    overflowed: AtomicU64,
    /// The pid of the process the sandbox's system call filter stopped,
    /// in the high half, and the number of the system call it refused,
    /// plus one, in the low half (0: none).
    violation: AtomicU64,
    /// [`RUNNING_ITEM`] plus one when the worker recorded its death (0:
    /// not known).
    item: AtomicU64,
}

/// A shared page holding the id of the job the worker last started, and
/// whether it is dying of a stack overflow.
#[derive(Debug)]
pub(crate) struct Marker {
    page: NonNull<Page>,
}

// SAFETY: the page is only accessed through the atomics of `Page`, which
// are `Sync`; the mapping lives until `drop`, which needs `&mut self`.
unsafe impl Send for Marker {}
// SAFETY: as above.
unsafe impl Sync for Marker {}

impl Marker {
    /// Makes a new page (the parent's side); returns it and the descriptor
    /// to hand to the worker.
    pub(crate) fn create() -> io::Result<(Marker, OwnedFd)> {
        // SAFETY: `memfd_create` reads the NUL-terminated name we pass and
        // returns a new descriptor or -1.
        let raw = unsafe { libc::memfd_create(c"procpool-marker".as_ptr(), libc::MFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` was just created for us and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: `ftruncate` on a descriptor we own; no memory involved.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), PAGE as libc::off_t) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let marker = Marker::map(&fd)?;
        Ok((marker, fd))
    }

    /// Maps the page the parent sent (the worker's side).
    pub(crate) fn adopt(fd: &OwnedFd) -> io::Result<Marker> {
        Marker::map(fd)
    }

    fn map(fd: &OwnedFd) -> io::Result<Marker> {
        // SAFETY: a fresh shared mapping of one page of a memfd that is at
        // least that long; the kernel picks the address, so nothing of ours
        // is overwritten. It stays mapped after `fd` is closed.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let page = NonNull::new(addr.cast::<Page>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(Marker { page })
    }

    fn page(&self) -> &Page {
        // SAFETY: the page is mapped (until drop), page-aligned, zeroed by
        // the kernel (all zeros is a valid `Page`), larger than `Page`, and
        // only ever accessed through its atomics, by any number of
        // processes: a valid `Page` for `&self`'s lifetime.
        unsafe { self.page.as_ref() }
    }

    /// Records that job `job` starts now.
    pub(crate) fn set(&self, job: u64) {
        self.page().job.store(job, Ordering::Release);
    }

    /// The job the worker last started (0 before any task).
    pub(crate) fn get(&self) -> u64 {
        self.page().job.load(Ordering::Acquire)
    }

    /// Records that process `pid` is dying of a stack overflow. One store
    /// to a lock-free atomic: safe in a signal handler.
    pub(crate) fn set_stack_overflow(&self, pid: u32) {
        self.record_item();
        self.page().overflowed.store(u64::from(pid), Ordering::Release);
    }

    /// Whether process `pid` said it is dying of a stack overflow.
    pub(crate) fn stack_overflowed(&self, pid: u32) -> bool {
        self.page().overflowed.load(Ordering::Acquire) == u64::from(pid)
    }
}

impl Marker {
    /// Records that process `pid` is dying because the sandbox refused
    /// system call `syscall`. One store to a lock-free atomic: safe in a
    /// signal handler.
    pub(crate) fn set_violation(&self, pid: u32, syscall: u32) {
        self.record_item();
        let packed = (u64::from(pid) << 32) | u64::from(syscall.wrapping_add(1));
        self.page().violation.store(packed, Ordering::Release);
    }

    /// Copies [`RUNNING_ITEM`] to the page. One load and one store.
    fn record_item(&self) {
        let item = RUNNING_ITEM.load(Ordering::Relaxed);
        let recorded = if item == u32::MAX { 0 } else { u64::from(item) + 1 };
        self.page().item.store(recorded, Ordering::Release);
    }

    /// The item that was running when the worker recorded its death, if
    /// it was running one (see [`RUNNING_ITEM`]).
    pub(crate) fn failed_item(&self) -> Option<u32> {
        let item = self.page().item.load(Ordering::Acquire);
        (item != 0).then(|| (item - 1) as u32)
    }

    /// The system call the sandbox refused to process `pid`, if it said so.
    pub(crate) fn violation(&self, pid: u32) -> Option<u32> {
        let packed = self.page().violation.load(Ordering::Acquire);
        let low = packed as u32;
        ((packed >> 32) as u32 == pid && low != 0).then(|| low - 1)
    }
}

const _: () = assert!(std::mem::size_of::<Page>() <= PAGE);

impl Drop for Marker {
    fn drop(&mut self) {
        // SAFETY: the page was mapped by `map` with this size, and `&mut
        // self` means no reference from `cell` is alive.
        unsafe {
            libc::munmap(self.page.as_ptr().cast(), PAGE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_mappings_see_the_same_value() {
        let (parent, fd) = Marker::create().unwrap();
        let worker = Marker::adopt(&fd).unwrap();
        drop(fd);
        assert_eq!(parent.get(), 0);
        worker.set(42);
        assert_eq!(parent.get(), 42);
        assert!(!parent.stack_overflowed(7));
        worker.set_stack_overflow(7);
        assert!(parent.stack_overflowed(7));
        assert!(!parent.stack_overflowed(8));
        assert_eq!(parent.violation(7), None);
        worker.set_violation(7, 0);
        assert_eq!(parent.violation(7), Some(0));
        assert_eq!(parent.violation(8), None);
        worker.set_violation(9, 41);
        assert_eq!(parent.violation(9), Some(41));
        assert_eq!(parent.failed_item(), None, "no item was running");
        RUNNING_ITEM.store(5, Ordering::Relaxed);
        worker.set_violation(9, 41);
        assert_eq!(parent.failed_item(), Some(5));
        RUNNING_ITEM.store(u32::MAX, Ordering::Relaxed);
        assert_eq!(parent.get(), 42);
    }
}
