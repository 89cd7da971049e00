//! The image that holds procpool's code: where it is mapped in this
//! process, and which build it is.

use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use super::id::anchor_address;
use crate::sys;

/// Which build of which file a process runs procpool's code from: the
/// file's device and inode, and a hash of the image's build id (or, if the
/// linker wrote none, of its code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    pub(crate) build: u64,
}

impl Identity {
    /// Why `self` (the worker) does not run the build `parent` runs.
    pub(crate) fn mismatch(&self, parent: &Identity) -> Option<String> {
        if (self.dev, self.ino) != (parent.dev, parent.ino) {
            Some(format!(
                "the worker runs another executable file (device {:#x}, inode {}) than the parent \
                 (device {:#x}, inode {})",
                self.dev, self.ino, parent.dev, parent.ino
            ))
        } else if self.build != parent.build {
            Some(format!(
                "the worker's executable is another build of the program (build {:016x}) than the \
                 parent's ({:016x}): was it rebuilt in place while the pool ran?",
                self.build, parent.build
            ))
        } else {
            None
        }
    }
}

/// The mappings of the image that holds procpool's code, in this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Image {
    /// The executable mapping that holds [`anchor`](super::id::anchor).
    code: Range<usize>,
    /// The image's read-only, non-executable mappings (constants, and
    /// relocated read-only data), where task runners are described.
    readonly: Vec<Range<usize>>,
    /// The image's file, as the kernel names it.
    pub(crate) path: PathBuf,
    pub(crate) identity: Identity,
    /// The image is the program itself, not a shared library.
    pub(crate) is_main: bool,
}

impl Image {
    /// This process's image, read once (a failure is not remembered).
    pub(crate) fn current() -> Result<&'static Image, String> {
        static IMAGE: OnceLock<Image> = OnceLock::new();
        if let Some(image) = IMAGE.get() {
            return Ok(image);
        }
        let maps = std::fs::read_to_string("/proc/self/maps")
            .map_err(|e| format!("cannot read /proc/self/maps: {e}"))?;
        let found = Mappings::parse(&maps, anchor_address())?;
        let object = sys::image::object_of(anchor_address())
            .ok_or("the dynamic loader does not list the object that holds procpool's code")?;
        let build = match &object.build_id {
            Some(id) => hash_bytes(id),
            // SAFETY: `found.code` is a readable mapping of this process's
            // image (from /proc/self/maps), which stays mapped for the life
            // of the process, and nothing writes to code.
            None => hash_bytes(unsafe {
                std::slice::from_raw_parts(found.code.start as *const u8, found.code.len())
            }),
        };
        let image = Image {
            identity: Identity {
                dev: found.dev,
                ino: found.ino,
                build,
            },
            code: found.code,
            readonly: found.readonly,
            path: found.path,
            is_main: object.is_main,
        };
        Ok(IMAGE.get_or_init(|| image))
    }

    /// Whether `address` lies in the image's code.
    pub(crate) fn in_code(&self, address: usize) -> bool {
        self.code.contains(&address)
    }

    /// Whether `len` bytes at `address` lie in one of the image's
    /// read-only data mappings.
    pub(crate) fn in_readonly(&self, address: usize, len: usize) -> bool {
        let Some(end) = address.checked_add(len) else {
            return false;
        };
        self.readonly.iter().any(|r| r.start <= address && end <= r.end)
    }

    /// The program a worker is started from: this process's executable
    /// (`/proc/self/exe`) when it holds procpool's code, the image's file
    /// when the executable is something else that runs it (the dynamic
    /// loader, as in `ld.so ./program`).
    ///
    /// # Errors
    ///
    /// A description of the problem when procpool's code lies in a shared
    /// library: workers re-run the program, whose own image would not hold
    /// the functions the parent names.
    pub(crate) fn worker_program(&self) -> Result<PathBuf, String> {
        let exe = std::fs::metadata("/proc/self/exe")
            .map_err(|e| format!("cannot read this process's executable (/proc/self/exe): {e}"))?;
        if (device_number(exe.dev()), exe.ino()) == (self.identity.dev, self.identity.ino) {
            return Ok(PathBuf::from("/proc/self/exe"));
        }
        let path = self.path.display();
        if !self.is_main {
            return Err(format!(
                "procpool is linked into the shared library {path}, not into the program's \
                 executable; workers re-run the executable, which does not hold that library's \
                 task functions at known places. Link procpool (and the task functions) into \
                 the executable itself"
            ));
        }
        if self.path.is_relative() || self.path.to_string_lossy().ends_with(" (deleted)") {
            return Err(format!(
                "this program runs through another executable (the dynamic loader?) and its own \
                 file {path} cannot be started again"
            ));
        }
        Ok(self.path.clone())
    }
}

/// A device number as `/proc/<pid>/maps` shows it (major and minor), from a
/// `stat` device number.
fn device_number(dev: u64) -> u64 {
    (nix::sys::stat::major(dev) << 32) | nix::sys::stat::minor(dev)
}

/// What `/proc/self/maps` says of the image that holds an address.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mappings {
    code: Range<usize>,
    readonly: Vec<Range<usize>>,
    dev: u64,
    ino: u64,
    path: PathBuf,
}

impl Mappings {
    /// The image that holds `address` (which must be code), in `maps`
    /// (`/proc/<pid>/maps` format).
    fn parse(maps: &str, address: usize) -> Result<Mappings, String> {
        let lines: Vec<MapLine<'_>> = maps.lines().filter_map(MapLine::parse).collect();
        let code = lines
            .iter()
            .find(|l| l.range.contains(&address))
            .ok_or("no mapping holds procpool's code")?;
        if !code.perms.contains('x') || code.ino == 0 {
            return Err("procpool's code is not in an executable file mapping".into());
        }
        let readonly = lines
            .iter()
            .filter(|l| (l.dev, l.ino) == (code.dev, code.ino) && l.perms.starts_with("r--"))
            .map(|l| l.range.clone())
            .collect();
        Ok(Mappings {
            code: code.range.clone(),
            readonly,
            dev: code.dev,
            ino: code.ino,
            path: PathBuf::from(code.path),
        })
    }
}

/// One line of `/proc/<pid>/maps`.
struct MapLine<'a> {
    range: Range<usize>,
    perms: &'a str,
    dev: u64,
    ino: u64,
    path: &'a str,
}

impl<'a> MapLine<'a> {
    fn parse(line: &'a str) -> Option<MapLine<'a>> {
        let mut fields = line.splitn(6, ' ');
        let (start, end) = fields.next()?.split_once('-')?;
        let perms = fields.next()?;
        let _offset = fields.next()?;
        let (major, minor) = fields.next()?.split_once(':')?;
        let ino = fields.next()?.parse().ok()?;
        let path = fields.next().unwrap_or("").trim_start();
        Some(MapLine {
            range: usize::from_str_radix(start, 16).ok()?..usize::from_str_radix(end, 16).ok()?,
            perms,
            dev: (u64::from_str_radix(major, 16).ok()? << 32) | u64::from_str_radix(minor, 16).ok()?,
            ino,
            path,
        })
    }
}

/// A 64-bit hash (FNV-1a) of a build id or of code.
fn hash_bytes(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash: u64, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0a0000000-55d0a0001000 r--p 00000000 08:01 42                         /bin/x
55d0a0001000-55d0a0080000 r-xp 00001000 08:01 42                         /bin/x
55d0a0080000-55d0a0090000 r--p 00080000 08:01 42                         /bin/x
55d0a0090000-55d0a0091000 rw-p 00090000 08:01 42                         /bin/x
7f0000000000-7f0000001000 r--p 00000000 08:01 77                         /lib/libc.so.6
7f0000001000-7f0000002000 r-xp 00001000 08:01 77                         /lib/libc.so.6
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
";

    #[test]
    fn finds_the_image_around_an_address() {
        let m = Mappings::parse(MAPS, 0x55d0a0002000).unwrap();
        assert_eq!(m.code, 0x55d0a0001000..0x55d0a0080000);
        assert_eq!(
            m.readonly,
            vec![0x55d0a0000000..0x55d0a0001000, 0x55d0a0080000..0x55d0a0090000]
        );
        assert_eq!((m.dev, m.ino), ((8 << 32) | 1, 42));
        assert_eq!(m.path, PathBuf::from("/bin/x"));
        let lib = Mappings::parse(MAPS, 0x7f0000001800).unwrap();
        assert_eq!(lib.path, PathBuf::from("/lib/libc.so.6"));
        assert_eq!(lib.readonly, vec![0x7f0000000000..0x7f0000001000]);
    }

    #[test]
    fn data_and_anonymous_memory_are_not_an_image() {
        assert!(Mappings::parse(MAPS, 0x55d0a0000010).is_err(), "not executable");
        assert!(Mappings::parse(MAPS, 0x7ffd00000010).is_err(), "the stack");
        assert!(Mappings::parse(MAPS, 0x10).is_err(), "unmapped");
    }

    #[test]
    fn this_process_image_is_its_executable() {
        let image = Image::current().unwrap();
        assert!(image.is_main);
        assert!(image.in_code(anchor_address()));
        assert_eq!(image.worker_program().unwrap(), PathBuf::from("/proc/self/exe"));
        let exe = std::fs::metadata("/proc/self/exe").unwrap();
        assert_eq!(
            (device_number(exe.dev()), exe.ino()),
            (image.identity.dev, image.identity.ino)
        );
    }

    #[test]
    fn a_library_image_is_refused_and_a_loader_run_program_restarted_from_its_file() {
        let mut image = Image::current().unwrap().clone();
        image.identity.ino ^= 1;
        image.path = PathBuf::from("/usr/lib/libplugin.so");
        image.is_main = false;
        let err = image.worker_program().unwrap_err();
        assert!(err.contains("shared library /usr/lib/libplugin.so"), "{err}");
        image.is_main = true;
        image.path = PathBuf::from("/opt/app/bin/app");
        assert_eq!(image.worker_program().unwrap(), PathBuf::from("/opt/app/bin/app"));
        image.path = PathBuf::from("/opt/app/bin/app (deleted)");
        assert!(image.worker_program().is_err());
    }

    #[test]
    fn builds_differ_in_their_identity() {
        let me = Image::current().unwrap().identity;
        assert_eq!(me.mismatch(&me), None);
        let other_file = Identity {
            ino: me.ino + 1,
            ..me
        };
        assert!(
            me.mismatch(&other_file)
                .unwrap()
                .contains("another executable file")
        );
        let other_build = Identity {
            build: me.build ^ 1,
            ..me
        };
        assert!(me.mismatch(&other_build).unwrap().contains("another build"));
        assert_ne!(hash_bytes(b"build-a"), hash_bytes(b"build-b"));
    }
}
