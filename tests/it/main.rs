//! procpool's behaviour tests, in one binary so that the suite links once.
//!
//! Each module is one topic (the seed's points S1–S7 first, then the rest).
//! Tests that need a process of their own (a global subscriber, a signal
//! disposition, a stalled stdout) re-run this binary with
//! `common::run_child_test`, naming the child test by its path
//! (`module::name`).

mod common;

mod async_results;
mod bad_input;
mod bootstrap;
mod bytes;
mod cancel;
mod chaos;
#[cfg(feature = "redis")]
mod cluster;
mod cpython_pool;
mod cpython_worker_errors;
mod fast_path;
mod foundation;
mod imap_lazy;
mod large_results;
mod layers;
mod lifecycle;
mod memory_cap;
mod nested_builds;
mod orphans;
mod output_stall;
mod progress;
mod recycling;
mod retries;
mod s1_worker_processes;
mod s2_map;
mod s3_apply;
mod s4_apply_async;
mod s5_async_result;
mod s6_callbacks;
mod s7_output;
mod sandbox;
mod seat_recovery;
mod sent_ahead;
mod stack_overflow;
mod stats;
mod task_panics;
mod timeouts;
mod tracing_events;
mod user_code_panics;
mod worker_death;
