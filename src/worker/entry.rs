//! The chunk runner: what a `TASK` frame's function id points at.

use crate::protocol::ProtocolError;
use crate::protocol::codec;
use crate::protocol::function::Call;
use crate::protocol::items::{self, ARG_HOLE, ARG_VALUE, Items, PushError};
use crate::sys::entry::CodeRange;
use crate::task::Kernel;
use crate::worker::panics;

/// Runs `K` on every item of `items`, appending one result item per item.
///
/// One monomorphised copy of this function exists per kernel; its address
/// is the `entry` of the [`Call`] the parent sends. It refuses a call whose
/// signature is not its own before it touches the function id.
pub(crate) fn run_chunk<K: Kernel + ?Sized>(
    call: Call,
    code: &CodeRange,
    items: &[u8],
    out: &mut Vec<u8>,
) -> Result<u32, ProtocolError> {
    if call.signature != K::signature() {
        return Err(ProtocolError::new(format!(
            "the task's signature {:#x} is not that of its entry point ({})",
            call.signature,
            std::any::type_name::<K>()
        )));
    }
    // SAFETY: the signature matches this kernel, so the parent made
    // `call.func` with this kernel's `func_id`, in this same executable
    // (checked at the handshake).
    let Some(func) = (unsafe { K::func_from(call.func, code) }) else {
        return Err(ProtocolError::new(format!(
            "function id {:#x} is not a function of this executable",
            call.func.0
        )));
    };
    let mut count = 0u32;
    for item in Items::new(items) {
        let (tag, bytes) = item?;
        match tag {
            ARG_VALUE => run_one::<K>(func, bytes, out),
            ARG_HOLE => items::push_bytes(out, items::RES_SKIPPED, &[]),
            other => return Err(ProtocolError::new(format!("unknown argument tag {other}"))),
        }
        count += 1;
    }
    Ok(count)
}

/// Decodes, runs and encodes one item. Every failure becomes that item's
/// result; nothing unwinds out.
fn run_one<K: Kernel + ?Sized>(func: K::Func, bytes: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    let mut failed_encode = None;
    let outcome = panics::catching(|| {
        let input = match codec::decode::<K::In>(bytes) {
            Ok(input) => input,
            Err(message) => return Err(message),
        };
        let value = K::call(func, input);
        match items::push_with(out, items::RES_OK, |buf| codec::encode(&value, buf)) {
            Ok(()) => {}
            Err(PushError::Body(message)) => failed_encode = Some(message),
            Err(PushError::TooLarge(size)) => {
                failed_encode = Some(format!(
                    "the encoded result is {size} bytes, over the 4 GiB item limit"
                ))
            }
        }
        Ok(())
    });
    match outcome {
        Ok(Ok(())) => {
            if let Some(message) = failed_encode {
                items::push_bytes(out, items::RES_RESULT_ENCODE, message.as_bytes());
            }
        }
        Ok(Err(message)) => items::push_bytes(out, items::RES_ARG_DECODE, message.as_bytes()),
        Err(panic) => {
            // The panic may come after the value was pushed (in a `Drop`).
            out.truncate(start);
            if items::push_with(out, items::RES_PANIC, |buf| codec::encode(&panic, buf)).is_err() {
                items::push_bytes(out, items::RES_PANIC, &[]);
            }
        }
    }
}
