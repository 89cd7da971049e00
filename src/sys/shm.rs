//! The started-job marker: one page shared by the parent and one worker.
//! The worker writes the id of each job before it runs any of the job's
//! code; after the worker died, the parent reads it to tell a job that had
//! started from one that never reached it (a worker killed while idle, just
//! as a job was handed to it).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

const PAGE: usize = 4096;

/// A shared page holding the id of the job the worker last started.
#[derive(Debug)]
pub(crate) struct Marker {
    page: NonNull<AtomicU64>,
}

// SAFETY: the page is only accessed through the `AtomicU64` at its start,
// which is `Sync`; the mapping lives until `drop`, which needs `&mut self`.
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
        let page =
            NonNull::new(addr.cast::<AtomicU64>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(Marker { page })
    }

    fn cell(&self) -> &AtomicU64 {
        // SAFETY: the page is mapped (until drop), page-aligned, zeroed by
        // the kernel, and only ever accessed as this one atomic, by any
        // number of processes: a valid `AtomicU64` for `&self`'s lifetime.
        unsafe { self.page.as_ref() }
    }

    /// Records that job `job` starts now.
    pub(crate) fn set(&self, job: u64) {
        self.cell().store(job, Ordering::Release);
    }

    /// The job the worker last started (0 before any task).
    pub(crate) fn get(&self) -> u64 {
        self.cell().load(Ordering::Acquire)
    }
}

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
    }
}
