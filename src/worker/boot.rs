//! The hook that turns a re-executed copy of the program into a worker
//! before its `main` runs. See `bootstrap` for what it does.

ctor::declarative::ctor! {
    #[ctor(unsafe)]
    fn procpool_worker_bootstrap() {
        // Cheap in every process: one environment lookup; only a process
        // the pool started as a worker goes further (and never returns).
        if let Some(value) = crate::bootstrap::on_load() {
            crate::worker::child::run(value)
        }
    }
}
