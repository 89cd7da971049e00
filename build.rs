//! Checks, with the compiler that builds procpool, that `type_name` tells a
//! fn item from a closure the way `starmap` relies on (see
//! `src/func/fn_item.rs`). rustc does not promise the format of type
//! names, so procpool does not assume it: it asks this compiler. Where the
//! probe cannot be built and run, or gives another answer, the cfg
//! `procpool_fn_item_names` stays unset and `starmap` does not compile:
//! it fails closed.

use std::path::PathBuf;
use std::process::Command;

const PROBE: &str = r#"
fn is_fn_item<F>(_: &F) -> bool {
    size_of::<F>() == 0
        && !std::any::type_name::<F>().replace("::{{constructor}}", "").contains('{')
}
fn item(x: u8) -> u8 { x }
#[derive(Clone, Copy)]
struct Token;
#[derive(Clone, Copy)]
struct Wrapper(#[allow(dead_code)] u8);
fn main() {
    let token = Token;
    let capturing = move |x: u8| { let Token = token; x };
    let plain = |x: u8| x;
    let checks = [
        is_fn_item(&item),
        is_fn_item(&u8::pow),
        is_fn_item(&Wrapper),
        is_fn_item(&Some::<u8>),
        !is_fn_item(&plain),
        !is_fn_item(&capturing),
        !is_fn_item(&(item as fn(u8) -> u8)),
    ];
    std::process::exit(if checks.iter().all(|&ok| ok) { 0 } else { 1 });
}
"#;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(procpool_fn_item_names)");
    println!("cargo::rerun-if-changed=build.rs");
    // Builds procpool as if the probe had failed: procpool's own tests use
    // it to check that `starmap` then fails closed.
    println!("cargo::rerun-if-env-changed=PROCPOOL_NO_FN_ITEM_PROBE");
    if std::env::var_os("PROCPOOL_NO_FN_ITEM_PROBE").is_none() && probe() {
        println!("cargo::rustc-cfg=procpool_fn_item_names");
    } else {
        println!(
            "cargo::warning=this compiler names closures differently from what procpool's starmap \
             relies on; starmap is unavailable with it"
        );
    }
}

fn probe() -> bool {
    let (Some(rustc), Some(out)) = (std::env::var_os("RUSTC"), std::env::var_os("OUT_DIR")) else {
        return false;
    };
    let out = PathBuf::from(out);
    let (source, binary) = (out.join("fn_item_probe.rs"), out.join("fn_item_probe"));
    if std::fs::write(&source, PROBE).is_err() {
        return false;
    }
    let built = Command::new(rustc)
        .args(["--edition", "2024", "-O", "-o"])
        .arg(&binary)
        .arg(&source)
        .status();
    built.is_ok_and(|s| s.success()) && Command::new(&binary).status().is_ok_and(|s| s.success())
}
