//! The loaded object (executable or shared library) that holds an address,
//! as the dynamic loader lists it (`dl_iterate_phdr`).

use std::ffi::{c_int, c_void};

/// What the loader says of the object that holds an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LoadedObject {
    /// It is the program itself (the loader's first object), not a shared
    /// library it loaded.
    pub(crate) is_main: bool,
    /// Its GNU build id (`NT_GNU_BUILD_ID` note), if the linker wrote one.
    pub(crate) build_id: Option<Vec<u8>>,
}

struct Search {
    address: usize,
    index: usize,
    found: Option<LoadedObject>,
}

/// The object whose loaded segments hold `address`, if any.
pub(crate) fn object_of(address: usize) -> Option<LoadedObject> {
    let mut search = Search {
        address,
        index: 0,
        found: None,
    };
    // SAFETY: `visit` matches the callback type `dl_iterate_phdr` expects,
    // and `search` outlives the call (it is only used during it, through
    // the pointer passed as `data`).
    unsafe { libc::dl_iterate_phdr(Some(visit), (&raw mut search).cast()) };
    search.found
}

unsafe extern "C" fn visit(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> c_int {
    // SAFETY: `data` is the `Search` that `object_of` passed, alive and not
    // otherwise borrowed during the iteration; `info` is valid for the
    // duration of this callback (the loader's contract).
    let (search, info) = unsafe { (&mut *data.cast::<Search>(), &*info) };
    let index = search.index;
    search.index += 1;
    let headers: &[libc::Elf64_Phdr] = if info.dlpi_phdr.is_null() {
        &[]
    } else {
        // SAFETY: the loader gives `dlpi_phnum` program headers at
        // `dlpi_phdr`, mapped for as long as the object is loaded.
        unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) }
    };
    let base = info.dlpi_addr as usize;
    let holds = headers.iter().any(|h| {
        let start = base.wrapping_add(h.p_vaddr as usize);
        h.p_type == libc::PT_LOAD && (start..start.wrapping_add(h.p_memsz as usize)).contains(&search.address)
    });
    if !holds {
        return 0;
    }
    let build_id = headers
        .iter()
        .filter(|h| h.p_type == libc::PT_NOTE)
        .find_map(|h| {
            // SAFETY: a PT_NOTE segment lies inside a loaded PT_LOAD segment
            // of the object (the ELF rules), readable for as long as it is
            // loaded; `p_memsz` is its length.
            let notes = unsafe {
                std::slice::from_raw_parts(
                    base.wrapping_add(h.p_vaddr as usize) as *const u8,
                    h.p_memsz as usize,
                )
            };
            gnu_build_id(notes)
        });
    search.found = Some(LoadedObject {
        is_main: index == 0,
        build_id,
    });
    1
}

/// The descriptor of the `NT_GNU_BUILD_ID` note among `notes` (the bytes of
/// one PT_NOTE segment).
fn gnu_build_id(mut notes: &[u8]) -> Option<Vec<u8>> {
    const NT_GNU_BUILD_ID: u32 = 3;
    let word = |b: &[u8], at: usize| Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?));
    let align = |n: usize| n.checked_add(3).map(|n| n & !3);
    while notes.len() >= 12 {
        let name_len = word(notes, 0)? as usize;
        let desc_len = word(notes, 4)? as usize;
        let kind = word(notes, 8)?;
        let desc_at = 12usize.checked_add(align(name_len)?)?;
        let end = desc_at.checked_add(align(desc_len)?)?;
        let name = notes.get(12..12 + name_len)?;
        let desc = notes.get(desc_at..desc_at + desc_len)?;
        if kind == NT_GNU_BUILD_ID && name == b"GNU\0" {
            return Some(desc.to_vec());
        }
        notes = notes.get(end..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_binary_is_the_main_object_with_a_build_id() {
        let object = object_of(this_test_binary_is_the_main_object_with_a_build_id as fn() as usize).unwrap();
        assert!(object.is_main);
        assert!(object.build_id.is_some_and(|id| !id.is_empty()));
    }

    #[test]
    fn libc_is_a_shared_object_and_the_heap_no_object() {
        let libc = object_of(libc::getpid as *const () as usize).unwrap();
        assert!(!libc.is_main);
        assert_eq!(object_of(&*Box::new(0u8) as *const u8 as usize), None);
    }

    #[test]
    fn notes_are_walked_to_the_build_id() {
        let mut notes = Vec::new();
        for (kind, name, desc) in [
            (1u32, &b"GNU\0"[..], &[1u8, 2, 3, 4][..]),
            (3, b"GNU\0", &[9, 8, 7]),
        ] {
            notes.extend_from_slice(&(name.len() as u32).to_ne_bytes());
            notes.extend_from_slice(&(desc.len() as u32).to_ne_bytes());
            notes.extend_from_slice(&kind.to_ne_bytes());
            notes.extend_from_slice(name);
            notes.extend_from_slice(desc);
            notes.resize(notes.len().next_multiple_of(4), 0);
        }
        assert_eq!(gnu_build_id(&notes), Some(vec![9, 8, 7]));
        assert_eq!(gnu_build_id(&notes[..20]), None, "cut short");
        assert_eq!(gnu_build_id(&[]), None);
    }
}
