//! A program that uses `starmap`, built by `tests/it/nested_builds.rs` with
//! procpool's build-time check of type names switched off: the build must
//! fail, saying why.

fn add(a: u32, b: u32) -> u32 {
    a + b
}

fn main() {
    let pool = procpool::Pool::new(1).unwrap();
    assert_eq!(pool.starmap(add, vec![(1, 2)]).unwrap(), [3]);
}
