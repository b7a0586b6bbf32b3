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

/// `phase4 <args>` run in `cwd`: exit code and stderr.
fn phase4(cwd: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_phase4"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn hostile_prefixes_hosts_and_relative_paths_exit_78_naming_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[osc]\nprefix = \"/au\\u0000dio\"\n", "osc.prefix"),
        ("[osc]\nprefix = \"/a#b*c?d,e{f}[g]\"\n", "osc.prefix"),
        (
            "[[osc.destinations]]\nhost = \"127.0.0.1:80\"\n",
            "osc.destinations[0].host",
        ),
        (
            "[[osc.destinations]]\nhost = \"999.1.1.1\"\n",
            "osc.destinations[0].host",
        ),
        ("[state]\ndir = \"relstate\"\n", "state.dir"),
        ("[ws]\nweb-dir = \"web\"\n", "ws.web-dir"),
        ("[audio]\ninput = \"demo.wav\"\n", "audio.input"),
    ];
    for (i, (text, key)) in cases.iter().enumerate() {
        let cfg = dir.path().join(format!("c{i}.toml"));
        std::fs::write(&cfg, text).unwrap();
        let (code, err) = phase4(dir.path(), &["--check-config", cfg.to_str().unwrap()]);
        assert_eq!(code, Some(78), "{text}: {err}");
        let line = err.lines().find(|l| l.contains(key));
        let line = line.unwrap_or_else(|| panic!("{key} not named: {err}"));
        assert!(line.contains("line 2:"), "{line}");
        assert!(!line.contains('\0'), "{line:?}");
    }
    // `phase4 token` refuses a relative state.dir too, instead of making a
    // token in whatever directory it runs from.
    let cfg = dir.path().join("c4.toml");
    let (code, err) = phase4(dir.path(), &["token", "-c", cfg.to_str().unwrap()]);
    assert_eq!(code, Some(78), "{err}");
    assert!(!dir.path().join("relstate").exists());
}
