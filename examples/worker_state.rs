//! Per-worker state: a large read-only table is sent to each worker once
//! (as the initializer's argument), built into a lookup structure there,
//! and then used by every task without being sent again.
//!
//! Run with: `cargo run --example worker_state`

use std::collections::HashMap;
use std::sync::OnceLock;

use procpool::Pool;

/// The worker's copy of the table, set once per worker process.
static TABLE: OnceLock<HashMap<String, u32>> = OnceLock::new();

/// Runs once in every worker, replacements included.
fn load_table(rows: Vec<(String, u32)>) -> Result<(), String> {
    let table: HashMap<String, u32> = rows.into_iter().collect();
    TABLE
        .set(table)
        .map_err(|_| "the table was loaded twice".to_string())
}

/// A task: looks a word up in the worker's table.
fn lookup(word: String) -> Option<u32> {
    TABLE.get().and_then(|t| t.get(&word).copied())
}

fn main() -> Result<(), procpool::Error> {
    // 100 000 rows: sent once to each of the 4 workers, not with each task.
    let rows: Vec<(String, u32)> = (0..100_000).map(|i| (format!("word{i}"), i)).collect();
    let pool = Pool::builder()
        .processes(4)
        .initializer(load_table, rows)
        .max_tasks_per_child(3_000) // replacements load the table too
        .build()?;

    let words: Vec<String> = (0..20_000).map(|i| format!("word{}", i * 5)).collect();
    let found = pool.map(lookup, words)?;
    assert!(found.iter().all(Option::is_some));
    println!(
        "looked up {} words in per-worker tables; {} workers were recycled and reloaded",
        found.len(),
        pool.stats().respawns
    );
    Ok(())
}
