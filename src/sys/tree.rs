//! Removing a directory tree that someone else built: a sandboxed worker's
//! scratch directory, after the worker is gone.
//!
//! `std::fs::remove_dir_all` recurses once per level and holds a
//! descriptor per level: a hostile worker that nests directories 15,000
//! deep overflows the stack of the parent's thread (and aborts the parent)
//! or runs it out of descriptors. [`remove_tree`] walks with one open
//! directory and a list of names on the heap, climbing back with `..`. It
//! follows no symbolic link, and makes each directory it enters
//! searchable and writable first, so that a directory left with mode 0
//! cannot keep it out.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Removes the directory `root` and everything in it.
///
/// # Errors
///
/// The first error of the walk (the tree is then left in part).
pub(crate) fn remove_tree(root: &Path) -> io::Result<()> {
    let path = CString::new(root.as_os_str().as_bytes())?;
    let mut current = open_dir(libc::AT_FDCWD, &path)?;
    // The names from `root` down to `current`.
    let mut names: Vec<CString> = Vec::new();
    loop {
        match first_entry(&current)? {
            Some((name, true)) => {
                let child = open_dir(current.as_raw_fd(), &name)?;
                names.push(name);
                current = child;
            }
            Some((name, false)) => unlink(&current, &name, 0)?,
            None => match names.pop() {
                Some(name) => {
                    let parent = open_dir(current.as_raw_fd(), c"..")?;
                    current = parent;
                    unlink(&current, &name, libc::AT_REMOVEDIR)?;
                }
                None => {
                    drop(current);
                    return std::fs::remove_dir(root);
                }
            },
        }
    }
}

/// Opens the directory `name` under `at`, without following a link, after
/// giving its owner (us) the right to list and change it.
fn open_dir(at: RawFd, name: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: `fchmodat` reads the NUL-terminated name; it fails harmlessly
    // when the entry is not ours (then the open below says why).
    unsafe { libc::fchmodat(at, name.as_ptr(), 0o700, 0) };
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: as above; `openat` returns a new descriptor or -1.
    let fd = unsafe { libc::openat(at, name.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened for us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn unlink(dir: &OwnedFd, name: &CStr, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: `unlinkat` reads the NUL-terminated name.
    match unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// The first entry of `dir` but `.` and `..`, and whether it is a
/// directory (not a link to one).
fn first_entry(dir: &OwnedFd) -> io::Result<Option<(CString, bool)>> {
    // `fdopendir` takes the descriptor it is given: give it a copy, read
    // from the start.
    // SAFETY: `dup` of a descriptor we hold; -1 on failure.
    let copy = unsafe { libc::dup(dir.as_raw_fd()) };
    if copy < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `copy` is ours; on success the stream owns it.
    let stream = unsafe { libc::fdopendir(copy) };
    if stream.is_null() {
        let e = io::Error::last_os_error();
        // SAFETY: the stream did not take it.
        unsafe { libc::close(copy) };
        return Err(e);
    }
    // SAFETY: a fresh stream; rewinding makes it start at the first entry
    // whatever the shared offset of the descriptor.
    unsafe { libc::rewinddir(stream) };
    let found = loop {
        // SAFETY: `readdir` returns an entry valid until the next call on
        // this stream, or null at the end.
        let entry = unsafe { libc::readdir(stream) };
        if entry.is_null() {
            break None;
        }
        // SAFETY: a non-null entry from `readdir`, its name NUL-terminated.
        let (name, kind) = unsafe { (CStr::from_ptr((*entry).d_name.as_ptr()), (*entry).d_type) };
        if name == c"." || name == c".." {
            continue;
        }
        let is_dir = match kind {
            libc::DT_DIR => true,
            libc::DT_UNKNOWN => is_real_dir(dir, name),
            _ => false,
        };
        break Some((name.to_owned(), is_dir));
    };
    // SAFETY: closes the stream and its copy of the descriptor.
    unsafe { libc::closedir(stream) };
    Ok(found)
}

/// For file systems that do not say an entry's type in the listing.
fn is_real_dir(dir: &OwnedFd, name: &CStr) -> bool {
    // SAFETY: all-zero is a valid `stat`; `fstatat` writes into it and
    // reads the NUL-terminated name.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstatat(dir.as_raw_fd(), name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) == 0
            && st.st_mode & libc::S_IFMT == libc::S_IFDIR
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Makes `depth` nested directories under `root`, each with a file and
    /// a link to `/`, the deepest with mode 0.
    fn deep_tree(root: &Path, depth: usize) {
        let mut dir = open_dir(
            libc::AT_FDCWD,
            &CString::new(root.as_os_str().as_bytes()).unwrap(),
        )
        .unwrap();
        for level in 0..depth {
            // SAFETY: calls on a directory we hold, with NUL-terminated
            // names.
            unsafe {
                assert_eq!(libc::mkdirat(dir.as_raw_fd(), c"d".as_ptr(), 0o700), 0);
                let file = libc::openat(
                    dir.as_raw_fd(),
                    c"f".as_ptr(),
                    libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                    0o600,
                );
                assert!(file >= 0);
                libc::close(file);
                assert_eq!(libc::symlinkat(c"/".as_ptr(), dir.as_raw_fd(), c"up".as_ptr()), 0);
                if level + 1 == depth {
                    assert_eq!(libc::fchmodat(dir.as_raw_fd(), c"d".as_ptr(), 0, 0), 0);
                }
            }
            if level + 1 < depth {
                dir = open_dir(dir.as_raw_fd(), c"d").unwrap();
            }
        }
    }

    #[test]
    fn a_tree_deeper_than_a_small_stack_allows_is_removed() {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("scratch");
        std::fs::create_dir(&root).unwrap();
        deep_tree(&root, 3000);
        let target = root.clone();
        // 64 KiB of stack: far too little for a recursion 3000 deep.
        let removed = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || remove_tree(&target))
            .unwrap()
            .join()
            .unwrap();
        removed.unwrap();
        assert!(!root.exists());
        // The links were removed, not followed.
        assert!(Path::new("/etc").exists());
    }

    #[test]
    fn a_missing_tree_is_an_error() {
        let err = remove_tree(Path::new("/no/such/procpool/tree")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
