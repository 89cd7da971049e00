//! S3: `pool.apply(func, args)` blocks and returns `func`'s value; in a
//! loop the tasks run one after another, in order.

use procpool::Pool;

/// Appends `i` to the log file and returns it.
fn log_and_return((path, i): (String, u32)) -> u32 {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    writeln!(file, "{i}").unwrap();
    i
}

#[test]
fn apply_blocks_and_returns_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let path = log.to_str().unwrap().to_owned();
    let pool = Pool::new(5).unwrap();
    for i in 0..5 {
        let value = pool.apply(log_and_return, (path.clone(), i)).unwrap();
        assert_eq!(value, i);
        // apply returned, so the task has run to the end.
        let lines: Vec<u32> = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect();
        assert_eq!(
            lines,
            (0..=i).collect::<Vec<_>>(),
            "tasks ran out of order or were not done"
        );
    }
}

#[test]
fn apply_takes_tuples_for_several_arguments() {
    fn pow((base, exp): (u64, u32)) -> u64 {
        base.pow(exp)
    }
    let pool = Pool::new(1).unwrap();
    assert_eq!(pool.apply(pow, (2, 10)).unwrap(), 1024);
    assert_eq!(
        pool.apply(|()| "no arguments".to_string(), ()).unwrap(),
        "no arguments"
    );
}
