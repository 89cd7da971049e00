//! The hook that turns this executable into a worker host before `main`,
//! when `PROCPOOL_REDIS` is set (and it is not a local worker).

use std::ffi::OsString;

/// Reads and removes the host's variables; `None` unless `PROCPOOL_REDIS`
/// is set in a process that is not a local worker.
fn take_vars() -> Option<Vec<(&'static str, OsString)>> {
    std::env::var_os("PROCPOOL_REDIS")?;
    if std::env::var_os(crate::bootstrap::ENV_VAR).is_some() {
        return None;
    }
    let found = super::VARS
        .iter()
        .filter_map(|name| std::env::var_os(name).map(|value| (*name, value)))
        .collect();
    // Removing the secret keeps it from the host's workers (they inherit
    // the environment) and so from tasks.
    for name in super::VARS {
        crate::sys::process::remove_env(name);
    }
    // Not a worker: this marks procpool's bootstrap as run (the host's
    // constructor may run before the worker one, and the host starts
    // workers).
    let worker = crate::bootstrap::on_load();
    debug_assert!(worker.is_none());
    Some(found)
}

ctor::declarative::ctor! {
    #[ctor(unsafe)]
    fn procpool_host_bootstrap() {
        // Cheap in every process: one environment lookup.
        let Some(vars) = take_vars() else { return };
        let get = |name: &str| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .and_then(|(_, v)| v.to_str().map(str::to_owned))
        };
        let level = get("PROCPOOL_LOG").unwrap_or_else(|| "info".to_owned());
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_max_level(level.parse().unwrap_or(tracing::Level::INFO))
            .try_init();
        let code = match super::HostConfig::from_vars(get) {
            Ok(config) => super::run(config),
            Err(e) => {
                tracing::error!("{e}");
                eprintln!("procpool worker host: {e}");
                2
            }
        };
        std::process::exit(code)
    }
}
