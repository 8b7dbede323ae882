//! The crate's layering (README, "Architecture"): every `crate::` path in `src/` (the library,
//! not the `dave` binary) names a module in a lower layer than the file's own top-level module,
//! so there is no import cycle and no core reaches up into a driver.

use std::fs;
use std::path::{Path, PathBuf};

/// Each top-level module of the library and its layer (README table).
const LAYERS: &[(&str, u32)] = &[
    ("limits", 0),
    ("keys", 0),
    ("wire", 1),
    ("net", 1),
    ("time", 1),
    ("outbox", 2),
    ("pow", 2),
    ("permits", 3),
    ("peer", 3),
    ("stats", 4),
    ("route", 4),
    ("shard", 5),
    ("backup", 6),
    ("config", 7),
    ("metrics", 7),
    ("node", 8),
    ("sim", 8),
    ("demo", 9),
];

fn layer(module: &str) -> Option<u32> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|&(_, l)| l)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("readable src directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a source text names through `crate::`: `crate::a::…` and each first
/// name inside `crate::{a, b::…}`.
fn crate_paths(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                found.push(name);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.push(name);
        }
    }
    found
}

#[test]
fn every_module_imports_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    let mut checked = 0;
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src");
        let first = relative
            .components()
            .next()
            .expect("a path component")
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if first == "bin" || first == "lib" {
            continue; // the binary is its own crate; lib.rs only declares and re-exports
        }
        let own = layer(&first)
            .unwrap_or_else(|| panic!("src/{first}: not in LAYERS (add it, and to the README)"));
        let text = fs::read_to_string(file).expect("readable source");
        for name in crate_paths(&text) {
            checked += 1;
            if name == first {
                continue;
            }
            match layer(&name) {
                Some(l) if l < own => {}
                Some(l) => violations.push(format!(
                    "{} (layer {own}) uses crate::{name} (layer {l})",
                    relative.display()
                )),
                None => {} // an item re-exported at the crate root, e.g. `crate::Node` in docs
            }
        }
    }
    assert!(checked > 100, "found only {checked} crate:: paths");
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_path_scanner_sees_plain_and_grouped_paths() {
    let text = "use crate::wire::Dat;\nuse crate::{keys, peer::PeerTable};\n[`x`](crate::shard)";
    assert_eq!(crate_paths(text), ["wire", "keys", "peer", "shard"]);
}
