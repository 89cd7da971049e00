//! What can be a task: the bounds on task functions, and the kernels that
//! tie a function type to its chunk runner.
//!
//! A task function is any `Fn` that is zero-sized and `Copy`: a fn item or
//! a closure that captures nothing. Its *type* names the code; there is no
//! value to send. The worker rebuilds the value from the type
//! (`sys::entry::conjure`). A closure that captures variables has state the
//! worker cannot see, so it is refused at compile time by
//! [`assert_task_fn`].

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::protocol::function::FunctionId;
use crate::sys::entry::conjure;

/// Refuses, at compile time, a task function that has state.
///
/// The check is a `const` assertion, so it fails the build of the caller
/// (during code generation: `cargo build`, not `cargo check`).
pub(crate) fn assert_task_fn<F>() {
    const {
        assert!(
            size_of::<F>() == 0,
            "procpool: this task function captures variables (or is a fn pointer or a boxed closure). \
             Workers are separate processes: they can run a fn item or a closure that captures \
             nothing, but cannot receive captured state. Pass the data in the task's argument \
             (a tuple for several values), and name the function directly."
        )
    };
}

/// Functions of several arguments, for [`Pool::starmap`](crate::Pool::starmap):
/// implemented for every `Fn(A, B) -> R`, `Fn(A, B, C) -> R` and
/// `Fn(A, B, C, D) -> R`, taking the arguments as a tuple.
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

/// A task function type together with its argument and result types: what
/// a worker needs to run one item.
pub(crate) trait Kernel: 'static {
    type In: DeserializeOwned;
    type Out: Serialize;

    /// Runs the task function on one argument.
    fn call(input: Self::In) -> Self::Out;

    /// The id of this kernel's chunk runner, sent in `TASK` frames.
    fn function_id() -> FunctionId {
        FunctionId::of(crate::worker::entry::run_chunk::<Self>)
    }
}

/// `F: Fn(A) -> R`, for `apply`, `map` and `imap`.
pub(crate) struct Unary<F, A, R>(PhantomData<fn(A) -> (F, R)>);

impl<F, A, R> Kernel for Unary<F, A, R>
where
    F: Fn(A) -> R + Copy + 'static,
    A: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    type In = A;
    type Out = R;

    fn call(input: A) -> R {
        conjure::<F>()(input)
    }
}

/// `F: StarFn<Args>`, for `starmap`.
pub(crate) struct Star<F, Args>(PhantomData<fn(Args) -> F>);

impl<F, Args> Kernel for Star<F, Args>
where
    F: StarFn<Args> + Copy + 'static,
    F::Output: Serialize,
    Args: DeserializeOwned + 'static,
{
    type In = Args;
    type Out = F::Output;

    fn call(input: Args) -> F::Output {
        conjure::<F>().call_star(input)
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
    fn kernels_call_the_conjured_function() {
        fn double(x: u32) -> u32 {
            x * 2
        }
        fn kernel_of<F: Fn(u32) -> u32 + Copy + 'static>(_: F) -> u32 {
            <Unary<F, u32, u32> as Kernel>::call(21)
        }
        assert_eq!(kernel_of(double), 42);
        assert_eq!(kernel_of(|x| x + 1), 22);
        fn star_of<F: StarFn<(u8, u16, u32), Output = u64> + Copy + 'static>(_: F) -> u64 {
            <Star<F, (u8, u16, u32)> as Kernel>::call((1, 1, 1))
        }
        assert_eq!(star_of(add3), 3);
    }

    #[test]
    fn different_functions_get_different_ids() {
        fn id_of<F: Fn(u32) -> u32 + Copy + 'static>(_: F) -> FunctionId {
            <Unary<F, u32, u32>>::function_id()
        }
        assert_ne!(id_of(|x| x), id_of(|x| x + 1));
        let f = |x| x * 5;
        assert_eq!(id_of(f), id_of(f));
    }
}
