//! What can be a task, and how a worker runs one: the kernels that tie a
//! task function to its chunk runner ([`kernel`]), the runner itself
//! ([`runner`]), the capture of task panics ([`panics`]), and the checks on
//! `starmap`'s functions.
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

mod kernel;
pub(crate) mod panics;
mod runner;
mod runs;

pub(crate) use kernel::{Init, Kernel, Star, Unary};

/// Refuses, at compile time, a `starmap` function that has state, and every
/// `starmap` function when the compiler's type names could not be checked.
///
/// The checks are `const` assertions, so they fail the build of the caller
/// (during code generation: `cargo build`, not `cargo check`).
pub(crate) fn assert_stateless<F>() {
    const {
        assert!(
            size_of::<F>() == 0,
            "procpool: starmap takes a named function (a fn item); this one has state: it is a \
             closure that captures variables, a fn pointer or a boxed closure. Workers are separate \
             processes and cannot receive captured state: pass the data in the tuples, and name \
             the function directly."
        );
        assert!(
            cfg!(procpool_fn_item_names),
            "procpool: starmap is unavailable with this compiler: its type names do not tell fn \
             items from closures the way procpool checked at build time (see procpool's build.rs). \
             Use map with a tuple argument."
        );
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
pub trait StarFn<Args>: sealed::SealedStarFn<Args> {
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
    pub trait SealedStarFn<Args> {}
}

macro_rules! star_fn {
    ($($arg:ident),+) => {
        impl<F, R, $($arg),+> sealed::SealedStarFn<($($arg,)+)> for F where F: Fn($($arg),+) -> R {}

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
pub trait InitResult: init_sealed::SealedInitResult + 'static {
    /// `Ok` if the worker may serve, or the reason it may not.
    fn into_init(self) -> Result<(), String>;
}

mod init_sealed {
    pub trait SealedInitResult {}
    impl SealedInitResult for () {}
    impl<E: std::fmt::Display> SealedInitResult for Result<(), E> {}
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
}
