//! The layers of ARCHITECTURE.md import only downwards: a check over the
//! source, so that a new `use` of a higher layer fails the suite instead of
//! slowly tangling the modules again.

use std::collections::BTreeSet;
use std::path::Path;

/// From the bottom up.
const LAYERS: &[&str] = &[
    "error",
    "sys",
    "sandbox",
    "protocol",
    "func",
    "task",
    "bootstrap",
    "worker",
    "progress",
    "result",
    "cluster",
    "pool",
    "host",
];

/// Every `crate::<module>` that `source` names outside its unit tests.
fn names(source: &str) -> BTreeSet<String> {
    let code = source.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
    let mut found = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let line_start = code[..i].rfind('\n').map_or(0, |n| n + 1);
        let line = code[line_start..].trim_start();
        // Doc links are not imports.
        if !line.starts_with("//") && LAYERS.contains(&name.as_str()) {
            found.insert(name);
        }
    }
    found
}

fn visit(dir: &Path, layer: &str, problems: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            visit(&path, layer, problems);
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        let rank = LAYERS.iter().position(|l| *l == layer).unwrap();
        for used in names(&source) {
            let used_rank = LAYERS.iter().position(|l| *l == used).unwrap();
            if used_rank > rank {
                problems.push(format!(
                    "{} ({layer}) uses crate::{used}, a higher layer",
                    path.display()
                ));
            }
        }
    }
}

#[test]
fn each_layer_imports_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut problems = Vec::new();
    for layer in LAYERS {
        let dir = src.join(layer);
        if dir.is_dir() {
            visit(&dir, layer, &mut problems);
        } else {
            let file = src.join(format!("{layer}.rs"));
            let source = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let rank = LAYERS.iter().position(|l| l == layer).unwrap();
            for used in names(&source) {
                if LAYERS.iter().position(|l| *l == used).unwrap() > rank {
                    problems.push(format!("{} ({layer}) uses crate::{used}", file.display()));
                }
            }
        }
    }
    assert!(problems.is_empty(), "layering broken:\n{}", problems.join("\n"));
}

#[test]
fn the_check_sees_an_upward_import() {
    let bad = "use crate::pool::Pool;\n/// [`x`](crate::pool::X)\nfn f() {}\n#[cfg(test)]\nmod tests {\n use crate::result::X;\n}\n";
    assert_eq!(names(bad), BTreeSet::from(["pool".to_owned()]));
}
