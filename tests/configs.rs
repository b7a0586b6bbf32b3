//! Every configuration the project ships loads and validates, and the
//! shipped default says exactly what the built-in defaults are.

use phase4::config::{load_file, load_str, Config};
use std::path::Path;

fn toml_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            toml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "toml") {
            out.push(p);
        }
    }
}

#[test]
fn every_shipped_config_is_valid() {
    let mut files = Vec::new();
    toml_files(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("configs")
            .as_path(),
        &mut files,
    );
    assert!(!files.is_empty());
    for f in files {
        if let Err(e) = load_file(&f) {
            panic!("{}: {e}", f.display());
        }
    }
}

#[test]
fn shipped_default_matches_built_in_defaults() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/phase4.toml");
    assert_eq!(load_file(&p).unwrap(), Config::default());
}

#[test]
fn unknown_section_and_wrong_types_are_reported_with_lines() {
    let err = load_str("[audoi]\ndevice = \"x\"\n[fft]\nn-bins = \"many\"\nenabled = 3\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("audoi"), "{err}");
    assert!(err.contains("fft.n-bins"), "{err}");
    assert!(err.contains("fft.enabled"), "{err}");
    assert!(err.contains("line 4"), "{err}");
}
