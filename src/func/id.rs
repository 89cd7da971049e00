//! Function ids: a function's distance from a fixed function of this crate.

use super::image::Image;

/// Names a function (or a [`Runner`](super::Runner)) of the image that
/// holds procpool's code: its distance in bytes from [`anchor`]. See the
/// [module docs](super) for why the same id names the same function in a
/// worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FunctionId(pub(crate) u64);

impl FunctionId {
    /// The id of the code at `address`, if it lies in the image's code
    /// (always, unless it comes from a shared library).
    pub(crate) fn of_code(address: usize, image: &Image) -> Option<FunctionId> {
        image.in_code(address).then(|| Self::of_address(address))
    }

    /// The id of any address, measured from [`anchor`].
    pub(crate) fn of_address(address: usize) -> FunctionId {
        FunctionId(address.wrapping_sub(anchor_address()) as u64)
    }

    /// The address this id names in this process.
    pub(crate) fn address(self) -> usize {
        anchor_address().wrapping_add(self.0 as usize)
    }
}

/// A stable 64-bit hash of a type name (FNV-1a over words), for a task's
/// signature.
pub(crate) fn signature_of(type_name: &str) -> u64 {
    // FNV-1a over 8-byte words (it runs for every task, on long names),
    // then the last bytes and the length.
    let bytes = type_name.as_bytes();
    let mut words = bytes.chunks_exact(8);
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for word in &mut words {
        let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        hash = (hash ^ word).wrapping_mul(0x0000_0100_0000_01b3);
        hash ^= hash >> 29;
    }
    for &byte in words.remainder() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash ^ bytes.len() as u64).wrapping_mul(0x0000_0100_0000_01b3)
}

/// The fixed point that function ids are measured from.
#[inline(never)]
pub(crate) fn anchor() {
    std::hint::black_box(());
}

/// The address of [`anchor`] in this process.
pub(crate) fn anchor_address() -> usize {
    anchor as fn() as usize
}

/// The function of type `P` (a fn pointer type) that `id` names, or `None`
/// if it points outside the image's code.
///
/// # Safety
///
/// `id` must have been made by [`FunctionId::of_code`] from a function
/// pointer of type `P`, in a process running the same build of the image
/// (see the [module docs](super) for the whole argument).
pub(crate) unsafe fn resolve<P: Copy>(id: FunctionId, image: &Image) -> Option<P> {
    const {
        assert!(
            size_of::<P>() == size_of::<usize>(),
            "only fn pointer types can be resolved"
        )
    };
    let address = id.address();
    if !image.in_code(address) {
        return None;
    }
    // SAFETY: by this function's contract the parent computed `id` from a
    // real `P` in the same build, so `address` is that function's entry
    // point in this process too (the image moves as a whole), and `P` is a
    // fn pointer type of the same size as `usize` (checked above). The range
    // check keeps a corrupt id from naming data or another library.
    Some(unsafe { std::mem::transmute_copy::<usize, P>(&address) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn double(x: u32) -> u32 {
        x * 2
    }

    #[test]
    fn ids_point_back_at_their_function() {
        let image = Image::current().unwrap();
        let f = double as fn(u32) -> u32 as usize;
        let id = FunctionId::of_code(f, image).unwrap();
        assert_eq!(id.address(), f);
        assert_eq!(FunctionId::of_code(anchor_address(), image), Some(FunctionId(0)));
        // SAFETY: `id` was made from a `fn(u32) -> u32` in this process.
        let back = unsafe { resolve::<fn(u32) -> u32>(id, image) }.unwrap();
        assert_eq!(back(21), 42);
        let far = FunctionId(id.0.wrapping_add(1 << 40));
        // SAFETY: an id outside the code is refused before any use.
        assert!(unsafe { resolve::<fn(u32) -> u32>(far, image) }.is_none());
    }

    #[test]
    fn addresses_outside_the_code_have_no_id() {
        let image = Image::current().unwrap();
        assert_eq!(FunctionId::of_code(0, image), None);
        let heap = Box::new(0u8);
        assert_eq!(FunctionId::of_code(&*heap as *const u8 as usize, image), None);
    }

    #[test]
    fn signatures_tell_types_apart() {
        assert_eq!(signature_of("a"), signature_of("a"));
        assert_ne!(
            signature_of("procpool::Unary<u32, u64>"),
            signature_of("procpool::Unary<u64, u32>")
        );
    }
}
