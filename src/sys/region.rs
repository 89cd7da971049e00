//! Sealed memory regions: a memfd written once, sealed against any change
//! (`F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW`), and mapped read-only.
//!
//! Sealing is what makes a region safe to share with another process: no
//! one, the maker included, can write to it or change its size any more,
//! so a peer can neither change data it was handed nor truncate a region
//! under a mapping (which would raise SIGBUS on the next read). A region
//! received from a peer is checked for those seals before it is mapped
//! ([`Sealed::check`]).
//!
//! A worker locked down by a sandbox may not call `memfd_create` (its
//! filter would kill it): [`forbid_new`] turns [`Region::copy_of`] and
//! [`Draft::new`] into errors before the filter is installed, and
//! callers fall back to ordinary memory.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// The seals every shared region carries.
const SEALS: libc::c_int = libc::F_SEAL_WRITE | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;

/// Set once this process may no longer make regions.
static FORBIDDEN: AtomicBool = AtomicBool::new(false);

/// From now on, this process makes no new region (a sandboxed worker,
/// before its system call filter refuses `memfd_create`).
pub(crate) fn forbid_new() {
    FORBIDDEN.store(true, Ordering::Relaxed);
}

/// A memfd that carries [`SEALS`]: its size and contents never change.
#[derive(Debug)]
pub(crate) struct Sealed {
    fd: OwnedFd,
    size: usize,
    inode: u64,
}

impl Sealed {
    /// Checks that `fd` is a memfd sealed against writes and size changes,
    /// and takes it. A peer's descriptor that is anything else is refused.
    pub(crate) fn check(fd: OwnedFd) -> Result<Sealed, String> {
        // SAFETY: `fcntl(F_GET_SEALS)` on a descriptor we own; no memory.
        let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
        if seals < 0 {
            return Err(format!(
                "a descriptor that is not a memfd ({})",
                io::Error::last_os_error()
            ));
        }
        if seals & SEALS != SEALS {
            return Err(format!("a memfd without the seals it needs (it has {seals:#x})"));
        }
        let stat = nix::sys::stat::fstat(fd.as_fd()).map_err(|e| format!("fstat of a memfd: {e}"))?;
        let size = usize::try_from(stat.st_size).map_err(|_| "a memfd of negative size".to_owned())?;
        Ok(Sealed {
            fd,
            size,
            inode: stat.st_ino,
        })
    }

    /// The memfd's inode number: the name a region has in a message.
    pub(crate) fn inode(&self) -> u64 {
        self.inode
    }

    /// The descriptor, to send to a peer.
    pub(crate) fn fd(&self) -> &OwnedFd {
        &self.fd
    }
}

/// The first `len` (> 0) bytes of a [`Sealed`] memfd, mapped read-only
/// (at once, or when first read), and unmapped on drop. The memfd itself
/// lives while a mapping or a descriptor of it does, in any process.
#[derive(Debug)]
pub(crate) struct Region {
    sealed: Arc<Sealed>,
    len: usize,
    view: OnceLock<View>,
}

/// Where a region is mapped.
#[derive(Debug)]
struct View(NonNull<u8>);

// SAFETY: the mapping is read-only and its memfd sealed against writes, so
// its bytes never change: sharing `&[u8]` views of it between threads is
// as safe as sharing any immutable slice. It is unmapped only when the
// `Region` that holds it drops.
unsafe impl Send for View {}
// SAFETY: as above.
unsafe impl Sync for View {}

impl Region {
    /// A new region holding a copy of `data` (not empty).
    pub(crate) fn copy_of(data: &[u8]) -> io::Result<Region> {
        let fd = new_memfd()?;
        // Written through the descriptor: one copy, into pages the kernel
        // allocates (and need not zero first).
        let file = std::fs::File::from(fd);
        std::os::unix::fs::FileExt::write_all_at(&file, data, 0)?;
        let sealed = seal(OwnedFd::from(file))?;
        // Mapped when first read: the maker of a region often only sends
        // it, and a mapping costs a page table entry per page, twice.
        Ok(Region::unmapped(Arc::new(sealed), data.len()))
    }

    fn unmapped(sealed: Arc<Sealed>, len: usize) -> Region {
        Region {
            sealed,
            len,
            view: OnceLock::new(),
        }
    }

    /// Maps the first `len` bytes of `sealed` (`0 < len <= size`).
    pub(crate) fn map(sealed: Arc<Sealed>, len: usize) -> io::Result<Region> {
        if len == 0 || len > sealed.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{len} bytes of a region of {}", sealed.size),
            ));
        }
        let region = Region::unmapped(sealed, len);
        region.view()?;
        Ok(region)
    }

    /// The mapping, made now if it is not yet.
    fn view(&self) -> io::Result<&View> {
        if let Some(view) = self.view.get() {
            return Ok(view);
        }
        let mapping = Mapping::new(&self.sealed.fd, self.len, libc::PROT_READ, libc::MAP_POPULATE)?;
        let ptr = mapping.ptr;
        std::mem::forget(mapping);
        if let Err(View(ours)) = self.view.set(View(ptr)) {
            // Another thread mapped it first.
            drop(Mapping {
                ptr: ours,
                len: self.len,
            });
        }
        Ok(self.view.get().expect("set above"))
    }

    /// The bytes.
    ///
    /// # Panics
    ///
    /// If the region was not mapped yet and cannot be (the process is out
    /// of memory or address space).
    pub(crate) fn as_slice(&self) -> &[u8] {
        let view = match self.view() {
            Ok(view) => view,
            Err(e) => panic!("procpool cannot map a shared region of {} bytes: {e}", self.len),
        };
        // SAFETY: the view maps `len` readable bytes until `self` drops;
        // the memfd is sealed, so they never change and cannot be cut off.
        unsafe { std::slice::from_raw_parts(view.0.as_ptr(), self.len) }
    }

    /// The sealed memfd behind the mapping.
    pub(crate) fn sealed(&self) -> &Arc<Sealed> {
        &self.sealed
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        if let Some(View(ptr)) = self.view.take() {
            // The mapping made in `view`, with its length; no slice of it
            // outlives `self` (they borrow it).
            drop(Mapping { ptr, len: self.len });
        }
    }
}

/// A region being written: a memfd of its own, mapped writable, not yet
/// shared with anyone.
pub(crate) struct Draft {
    fd: OwnedFd,
    writable: Mapping,
}

impl Draft {
    /// A new draft of `len` bytes (not zero), zeroed.
    pub(crate) fn new(len: usize) -> io::Result<Draft> {
        let fd = new_memfd()?;
        let size = libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `ftruncate` on a descriptor we own; no memory involved.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let writable = Mapping::new(&fd, len, libc::PROT_READ | libc::PROT_WRITE, 0)?;
        Ok(Draft { fd, writable })
    }

    /// The bytes, to write.
    pub(crate) fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is `len` bytes, readable and writable, and
        // private to this draft (the memfd is not shared yet); the slice
        // borrows `self`, so it ends before the mapping does.
        unsafe { std::slice::from_raw_parts_mut(self.writable.ptr.as_ptr(), self.writable.len) }
    }

    /// Seals the draft and maps it read-only. If that fails, the bytes
    /// written, as plain memory.
    pub(crate) fn seal(self) -> Result<Region, Vec<u8>> {
        let Draft { fd, writable } = self;
        let len = writable.len;
        // The writable mapping must go before the write seal is added.
        drop(writable);
        let sealed = match fd.try_clone().and_then(seal) {
            Ok(sealed) => sealed,
            Err(_) => return Err(read_back(&fd, len)),
        };
        Ok(Region::unmapped(Arc::new(sealed), len))
    }
}

impl std::fmt::Debug for Draft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Draft").field("len", &self.writable.len).finish()
    }
}

/// The first `len` bytes of the memfd `fd` (for a draft that could not be
/// sealed: zeros where they cannot be read).
fn read_back(fd: &OwnedFd, len: usize) -> Vec<u8> {
    let mut data = vec![0; len];
    if let Ok(fd) = fd.try_clone() {
        let _ = std::os::unix::fs::FileExt::read_exact_at(&std::fs::File::from(fd), &mut data, 0);
    }
    data
}

/// A mapping unmapped on drop (a draft's writable one, and a read-only one
/// until `map` hands it to a `Region`).
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(fd: &OwnedFd, len: usize, prot: libc::c_int, flags: libc::c_int) -> io::Result<Mapping> {
        // SAFETY: a new shared mapping of `len` bytes of a memfd at least
        // that long (checked by the callers); the kernel picks the
        // address, so nothing of ours is overwritten.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED | flags,
                fd.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(addr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(Mapping { ptr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, with its length.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

fn new_memfd() -> io::Result<OwnedFd> {
    if FORBIDDEN.load(Ordering::Relaxed) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "this worker's sandbox makes no memfd",
        ));
    }
    // SAFETY: `memfd_create` reads the NUL-terminated name we pass and
    // returns a new descriptor or -1.
    let raw = unsafe {
        libc::memfd_create(
            c"procpool-bytes".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` was just created for us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Adds [`SEALS`] to a memfd of ours that no writable mapping holds.
fn seal(fd: OwnedFd) -> io::Result<Sealed> {
    // SAFETY: `fcntl(F_ADD_SEALS)` on a descriptor we own; no memory.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, SEALS | libc::F_SEAL_SEAL) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Sealed::check(fd).map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_reads_back_and_cannot_be_written() {
        let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let region = Region::copy_of(&data).unwrap();
        assert_eq!(region.as_slice(), &data[..]);
        let file = std::fs::File::from(region.sealed().fd().try_clone().unwrap());
        let err = std::os::unix::fs::FileExt::write_at(&file, b"x", 0).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
        assert!(file.set_len(10).is_err(), "the size is sealed");
        let writable = Mapping::new(region.sealed().fd(), 4096, libc::PROT_WRITE, 0);
        assert!(writable.is_err(), "no writable shared mapping");
        // A second mapping of the same memfd sees the same bytes.
        let again = Region::map(Arc::clone(region.sealed()), 10).unwrap();
        assert_eq!(again.as_slice(), &data[..10]);
        assert!(Region::map(Arc::clone(region.sealed()), data.len() + 1).is_err());
    }

    #[test]
    fn a_draft_is_written_in_place() {
        let mut draft = Draft::new(10_000).unwrap();
        draft.as_mut()[9_999] = 7;
        let region = draft.seal().unwrap();
        assert_eq!(region.as_slice().len(), 10_000);
        assert_eq!(region.as_slice()[9_999], 7);
        assert!(region.as_slice()[..9_999].iter().all(|&b| b == 0));
    }

    #[test]
    fn only_sealed_memfds_pass_the_check() {
        let file = tempfile::tempfile().unwrap();
        let err = Sealed::check(OwnedFd::from(file)).unwrap_err();
        assert!(err.contains("not a memfd"), "{err}");
        // SAFETY: as in `new_memfd`.
        let raw =
            unsafe { libc::memfd_create(c"unsealed".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
        assert!(raw >= 0);
        // SAFETY: just created, ours alone.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let err = Sealed::check(fd).unwrap_err();
        assert!(err.contains("without the seals"), "{err}");
    }
}
