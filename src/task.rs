//! What can be a task: the kernels that tie a task function to its chunk
//! runner, and the checks on `starmap`'s functions.
//!
//! `apply`, `map` and `imap` take a task function as a `fn(A) -> R`
//! pointer: fn items and closures that capture nothing coerce to it, and a
//! closure that captures variables is refused by the compiler ("closures
//! can only be coerced to `fn` types if they do not capture any
//! variables"). The pointer travels as a function id ([`Unary`]).
//!
//! `starmap` takes functions of 2 to 4 arguments under one name, so it is
//! generic over the function's type instead ([`StarFn`], [`Star`]). Only fn
//! item types are accepted there: they have no state, so the worker can
//! make the one value of the type. Closures are refused (a zero-sized
//! closure may capture a zero-sized value whose meaning belongs to the
//! parent process), by a compile-time size check and a run-time check of
//! the type.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::protocol::function::{Call, EntryFn, FunctionId, signature_of};
use crate::sys::entry::{CodeRange, fn_item, is_fn_item, resolve};

/// Refuses, at compile time, a `starmap` function that has state.
///
/// The check is a `const` assertion, so it fails the build of the caller
/// (during code generation: `cargo build`, not `cargo check`).
pub(crate) fn assert_stateless<F>() {
    const {
        assert!(
            size_of::<F>() == 0,
            "procpool: starmap takes a named function (a fn item); this one has state: it is a \
             closure that captures variables, a fn pointer or a boxed closure. Workers are separate \
             processes and cannot receive captured state: pass the data in the tuples, and name \
             the function directly."
        )
    };
}

/// Functions of several arguments, for [`Pool::starmap`](crate::Pool::starmap):
/// implemented for every `Fn(A, B) -> R`, `Fn(A, B, C) -> R` and
/// `Fn(A, B, C, D) -> R`, taking the arguments as a tuple. `starmap` itself
/// accepts only fn items (named functions), not closures.
///
/// This trait is sealed: it cannot be implemented outside procpool.
///
/// # Examples
///
/// ```
/// fn mul(a: u32, b: u32) -> u32 { a * b }
/// let pool = procpool::Pool::new(2)?;
/// assert_eq!(pool.starmap(mul, vec![(1, 2), (3, 4)])?, vec![2, 12]);
/// # Ok::<(), procpool::Error>(())
/// ```
pub trait StarFn<Args>: sealed::Sealed<Args> {
    /// What the function returns.
    type Output;

    /// Calls the function with the tuple's fields as its arguments.
    ///
    /// # Examples
    ///
    /// ```
    /// use procpool::StarFn;
    /// fn sub(a: i32, b: i32) -> i32 { a - b }
    /// assert_eq!(sub.call_star((5, 3)), 2);
    /// ```
    fn call_star(&self, args: Args) -> Self::Output;
}

mod sealed {
    pub trait Sealed<Args> {}
}

macro_rules! star_fn {
    ($($arg:ident),+) => {
        impl<F, R, $($arg),+> sealed::Sealed<($($arg,)+)> for F where F: Fn($($arg),+) -> R {}

        impl<F, R, $($arg),+> StarFn<($($arg,)+)> for F
        where
            F: Fn($($arg),+) -> R,
        {
            type Output = R;

            #[allow(non_snake_case)]
            fn call_star(&self, ($($arg,)+): ($($arg,)+)) -> R {
                self($($arg),+)
            }
        }
    };
}

star_fn!(A, B);
star_fn!(A, B, C);
star_fn!(A, B, C, D);

/// A task function's types: what a worker needs to run one item.
pub(crate) trait Kernel: 'static {
    type In: DeserializeOwned;
    type Out: Serialize;
    /// The task function as the runner calls it: a fn pointer, or the value
    /// of a fn item type.
    type Func: Copy;

    /// Runs the task function on one argument.
    fn call(func: Self::Func, input: Self::In) -> Self::Out;

    /// The task function's id on the wire, if it has one in this image.
    fn func_id(func: Self::Func) -> Option<FunctionId>;

    /// Rebuilds the task function in the worker.
    ///
    /// # Safety
    ///
    /// `id` must come from [`func_id`](Self::func_id) of this same kernel in
    /// a process running this same executable.
    unsafe fn func_from(id: FunctionId, code: &CodeRange) -> Option<Self::Func>;

    /// The hash of this kernel's type, which the runner checks.
    fn signature() -> u64 {
        signature_of(std::any::type_name::<Self>())
    }

    /// Everything a `TASK` frame says about what to run, or `None` if the
    /// task function does not lie in this executable's image.
    fn call_for(func: Self::Func) -> Option<Call> {
        Some(Call {
            entry: FunctionId::of(crate::worker::entry::run_chunk::<Self> as EntryFn as usize)?,
            func: Self::func_id(func)?,
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

    fn func_id(func: fn(A) -> R) -> Option<FunctionId> {
        FunctionId::of(func as usize)
    }

    unsafe fn func_from(id: FunctionId, code: &CodeRange) -> Option<fn(A) -> R> {
        // SAFETY: by this function's contract, `id` was made from a
        // `fn(A) -> R` by `func_id` in a process running this executable.
        unsafe { resolve::<fn(A) -> R>(id, code) }
    }
}

/// What a pool [`initializer`](crate::PoolBuilder::initializer) may
/// return: `()`, or a `Result<(), E>` whose error is displayed in
/// [`Error::Initializer`](crate::Error::Initializer). Sealed.
///
/// # Examples
///
/// ```
/// fn check_config(path: String) -> Result<(), String> {
///     if path.is_empty() { Err("no config path".into()) } else { Ok(()) }
/// }
/// let pool = procpool::Pool::builder().processes(1).initializer(check_config, "app.toml".to_string()).build()?;
/// assert_eq!(pool.processes(), 1);
/// # Ok::<(), procpool::Error>(())
/// ```
pub trait InitResult: init_sealed::Sealed + 'static {
    /// `Ok` if the worker may serve, or the reason it may not.
    fn into_init(self) -> Result<(), String>;
}

mod init_sealed {
    pub trait Sealed {}
    impl Sealed for () {}
    impl<E: std::fmt::Display> Sealed for Result<(), E> {}
}

impl InitResult for () {
    fn into_init(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: std::fmt::Display + 'static> InitResult for Result<(), E> {
    fn into_init(self) -> Result<(), String> {
        self.map_err(|e| e.to_string())
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

    fn func_id(func: fn(A) -> R) -> Option<FunctionId> {
        FunctionId::of(func as usize)
    }

    unsafe fn func_from(id: FunctionId, code: &CodeRange) -> Option<fn(A) -> R> {
        // SAFETY: by this function's contract, `id` was made from a
        // `fn(A) -> R` by `func_id` in a process running this executable.
        unsafe { resolve::<fn(A) -> R>(id, code) }
    }
}

/// A fn item `F: StarFn<Args>`, for `starmap`.
pub(crate) struct Star<F, Args>(PhantomData<fn(Args) -> F>);

impl<F, Args> Kernel for Star<F, Args>
where
    F: StarFn<Args> + Copy + 'static,
    F::Output: Serialize,
    Args: DeserializeOwned + 'static,
{
    type In = Args;
    type Out = F::Output;
    type Func = F;

    fn call(func: F, input: Args) -> F::Output {
        func.call_star(input)
    }

    fn func_id(_: F) -> Option<FunctionId> {
        // The kernel's type names the function; nothing else travels.
        is_fn_item::<F>().then_some(FunctionId(0))
    }

    unsafe fn func_from(_: FunctionId, _: &CodeRange) -> Option<F> {
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
    fn star_fns_spread_the_tuple() {
        assert_eq!(add3.call_star((1, 2, 3)), 6);
        assert_eq!((|a: i8, b: i8| a - b).call_star((5, 7)), -2);
    }

    #[test]
    fn unary_calls_travel_as_function_ids() {
        fn double(x: u32) -> u32 {
            x * 2
        }
        let call = Unary::<u32, u32>::call_for(double).unwrap();
        let code = CodeRange::of_this_crate().unwrap();
        // SAFETY: the id comes from `func_id` of this kernel, in this process.
        let back = unsafe { Unary::<u32, u32>::func_from(call.func, &code) }.unwrap();
        assert_eq!(Unary::<u32, u32>::call(back, 21), 42);
        assert_ne!(call.signature, Unary::<u32, u64>::signature());
    }

    #[test]
    fn star_calls_accept_fn_items_only() {
        fn kernel_call<F: StarFn<(u8, u16, u32), Output = u64> + Copy + 'static>(f: F) -> Option<Call> {
            Star::<F, (u8, u16, u32)>::call_for(f)
        }
        assert!(kernel_call(add3).is_some());
        assert!(kernel_call(|a: u8, _: u16, _: u32| u64::from(a)).is_none());
    }
}
