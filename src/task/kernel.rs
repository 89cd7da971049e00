//! Kernels: a task function's types, and how its runner is named on the
//! wire.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{InitResult, StarFn, runner};
use crate::func::fn_item::{fn_item, is_fn_item};
use crate::func::{FunctionId, Image, Runner, resolve, signature_of};
use crate::protocol::message::Target;

/// A task function's types: what a worker needs to run one item.
pub(crate) trait Kernel: 'static {
    type In: DeserializeOwned + 'static;
    type Out: Serialize + 'static;
    /// The task function as the runner calls it: a fn pointer, or the value
    /// of a fn item type.
    type Func: Copy;

    /// Runs the task function on one argument.
    fn call(func: Self::Func, input: Self::In) -> Self::Out;

    /// The task function's id on the wire, if it has one in this image.
    fn func_id(func: Self::Func, image: &Image) -> Option<FunctionId>;

    /// Rebuilds the task function in the worker.
    ///
    /// # Safety
    ///
    /// `id` must come from [`func_id`](Self::func_id) of this same kernel in
    /// a process running this same executable.
    unsafe fn func_from(id: FunctionId, image: &Image) -> Option<Self::Func>;

    /// The hash of this kernel's type, which the runner checks.
    fn signature() -> u64 {
        signature_of(std::any::type_name::<Self>())
    }

    /// The record of this kernel's runner, in the image's read-only data.
    fn runner() -> &'static Runner {
        const { &Runner::new(runner::run_chunk::<Self>) }
    }

    /// Everything a `TASK` frame says about what to run, or `None` if the
    /// task function does not lie in the image that holds procpool.
    fn target_for(func: Self::Func, image: &Image) -> Option<Target> {
        Some(Target {
            runner: Self::runner().id().0,
            func: Self::func_id(func, image)?.0,
            signature: Self::signature(),
        })
    }
}

/// `fn(A) -> R`, for `apply`, `map` and `imap`.
pub(crate) struct Unary<A, R>(PhantomData<fn(A) -> R>);

impl<A, R> Kernel for Unary<A, R>
where
    A: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    type In = A;
    type Out = R;
    type Func = fn(A) -> R;

    fn call(func: fn(A) -> R, input: A) -> R {
        func(input)
    }

    fn func_id(func: fn(A) -> R, image: &Image) -> Option<FunctionId> {
        FunctionId::of_code(func as usize, image)
    }

    unsafe fn func_from(id: FunctionId, image: &Image) -> Option<fn(A) -> R> {
        // SAFETY: by this function's contract, `id` was made from a
        // `fn(A) -> R` by `func_id` in a process running this executable.
        unsafe { resolve::<fn(A) -> R>(id, image) }
    }
}

/// `fn(A) -> R` run once per worker as the pool's initializer: its outcome
/// travels as `Result<(), String>`.
pub(crate) struct Init<A, R>(PhantomData<fn(A) -> R>);

impl<A, R> Kernel for Init<A, R>
where
    A: DeserializeOwned + 'static,
    R: InitResult,
{
    type In = A;
    type Out = Result<(), String>;
    type Func = fn(A) -> R;

    fn call(func: fn(A) -> R, input: A) -> Result<(), String> {
        func(input).into_init()
    }

    fn func_id(func: fn(A) -> R, image: &Image) -> Option<FunctionId> {
        FunctionId::of_code(func as usize, image)
    }

    unsafe fn func_from(id: FunctionId, image: &Image) -> Option<fn(A) -> R> {
        // SAFETY: by this function's contract, `id` was made from a
        // `fn(A) -> R` by `func_id` in a process running this executable.
        unsafe { resolve::<fn(A) -> R>(id, image) }
    }
}

/// A fn item `F: StarFn<Args>`, for `starmap`.
pub(crate) struct Star<F, Args>(PhantomData<fn(Args) -> F>);

impl<F, Args> Kernel for Star<F, Args>
where
    F: StarFn<Args> + Copy + 'static,
    F::Output: Serialize + 'static,
    Args: DeserializeOwned + 'static,
{
    type In = Args;
    type Out = F::Output;
    type Func = F;

    fn call(func: F, input: Args) -> F::Output {
        func.call_star(input)
    }

    fn func_id(_: F, _: &Image) -> Option<FunctionId> {
        // The kernel's type names the function; nothing else travels.
        is_fn_item::<F>().then_some(FunctionId(0))
    }

    unsafe fn func_from(_: FunctionId, _: &Image) -> Option<F> {
        fn_item::<F>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add3(a: u8, b: u16, c: u32) -> u64 {
        u64::from(a) + u64::from(b) + u64::from(c)
    }

    #[test]
    fn unary_calls_travel_as_function_ids() {
        fn double(x: u32) -> u32 {
            x * 2
        }
        let image = Image::current().unwrap();
        let target = Unary::<u32, u32>::target_for(double, image).unwrap();
        // SAFETY: the id comes from `func_id` of this kernel, in this process.
        let back = unsafe { Unary::<u32, u32>::func_from(FunctionId(target.func), image) }.unwrap();
        assert_eq!(Unary::<u32, u32>::call(back, 21), 42);
        assert_ne!(target.signature, Unary::<u32, u64>::signature());
        let run = Runner::find(FunctionId(target.runner), image).expect("a runner record");
        assert_eq!(
            run as usize,
            runner::run_chunk::<Unary<u32, u32>> as crate::func::runner::RunFn as usize
        );
    }

    #[test]
    fn star_calls_accept_fn_items_only() {
        fn kernel_call<F: StarFn<(u8, u16, u32), Output = u64> + Copy + 'static>(f: F) -> Option<Target> {
            Star::<F, (u8, u16, u32)>::target_for(f, Image::current().unwrap())
        }
        assert!(kernel_call(add3).is_some());
        assert!(kernel_call(|a: u8, _: u16, _: u32| u64::from(a)).is_none());
    }
}
