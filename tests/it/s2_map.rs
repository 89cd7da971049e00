//! S2: `pool.map(func, range(100))` runs `func` on every item and returns
//! the results in input order; the pool is still usable afterwards.

use procpool::Pool;

fn hello(i: u32) -> u32 {
    println!("hello {i}");
    i
}

fn square(x: u64) -> u64 {
    x * x
}

#[test]
fn map_runs_every_item_and_keeps_input_order() {
    let pool = Pool::new(5).unwrap();
    assert_eq!(pool.map(hello, 0..100).unwrap(), (0..100).collect::<Vec<_>>());
    // Still usable, more than once.
    assert_eq!(pool.map(square, 0..5).unwrap(), [0, 1, 4, 9, 16]);
    assert_eq!(pool.apply(square, 7).unwrap(), 49);
}

#[test]
fn order_is_kept_for_every_chunk_size_and_input_kind() {
    let pool = Pool::new(3).unwrap();
    let expected: Vec<u64> = (0..97).map(|x| x * x).collect();
    for chunksize in [1, 2, 7, 96, 97, 1000] {
        assert_eq!(
            pool.with_chunksize(chunksize).map(square, 0..97).unwrap(),
            expected,
            "chunksize {chunksize}"
        );
    }
    // A Vec, and an iterator without an exact length (collected first).
    assert_eq!(pool.map(square, (0..97).collect::<Vec<_>>()).unwrap(), expected);
    let odd_first = (0..97u64).filter(|_| true);
    assert_eq!(pool.map(square, odd_first).unwrap(), expected);
}

#[test]
fn results_come_in_input_order_even_when_later_items_finish_first() {
    fn slow_first(i: u64) -> u64 {
        // Item 0 takes longest; with chunksize 1 it finishes last.
        std::thread::sleep(std::time::Duration::from_millis(if i == 0 { 200 } else { 1 }));
        i
    }
    let pool = Pool::new(2).unwrap();
    assert_eq!(
        pool.with_chunksize(1).map(slow_first, 0..8).unwrap(),
        (0..8).collect::<Vec<_>>()
    );
}

#[test]
fn values_of_many_types_cross_both_ways() {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Clone)]
    struct Point {
        name: String,
        xy: (f64, f64),
        tags: Vec<Option<char>>,
    }
    fn mirror(p: Point) -> Point {
        Point {
            name: p.name.chars().rev().collect(),
            xy: (p.xy.1, p.xy.0),
            tags: p.tags.into_iter().rev().collect(),
        }
    }
    let input: Vec<Point> = (0..20)
        .map(|i| Point {
            name: format!("point-{i}-é"),
            xy: (f64::from(i), -0.5),
            tags: vec![Some('x'), None, Some('ü')],
        })
        .collect();
    let pool = Pool::new(2).unwrap();
    let expected: Vec<Point> = input.iter().cloned().map(mirror).collect();
    assert_eq!(pool.map(mirror, input).unwrap(), expected);
}
