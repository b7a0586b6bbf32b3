//! Presets: named snapshots of the DSP, auto-scaler, spectrum, onset and
//! tempo settings, one TOML file each in `<state dir>/presets/`.
//!
//! A name is 1–64 characters of `[A-Za-z0-9_\- ]`, so it can never hold a
//! path separator or a dot: no name can reach outside the folder.

use super::state::{write_atomic, State};
use std::path::{Path, PathBuf};

/// Longest preset name.
pub const MAX_NAME: usize = 64;

/// Why a preset name is refused, or `None` when it is fine.
pub fn check_name(name: &str) -> Option<String> {
    if name.is_empty() || name.chars().count() > MAX_NAME {
        return Some(format!("preset name must be 1-{MAX_NAME} characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ' ')))
    {
        return Some(format!(
            "preset name may only hold letters, digits, '_', '-' and spaces (not {c:?})"
        ));
    }
    if name.trim().is_empty() {
        return Some("preset name must not be only spaces".into());
    }
    None
}

/// One saved preset.
#[derive(Clone, Debug, PartialEq)]
pub struct PresetInfo {
    /// Its name.
    pub name: String,
    /// When it was saved (Unix seconds).
    pub saved_at: f64,
}

/// The presets folder in a state directory.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("presets")
}

fn path(state_dir: &Path, name: &str) -> PathBuf {
    dir(state_dir).join(format!("{name}.toml"))
}

/// Every preset, sorted by name.
pub fn list(state_dir: &Path) -> Vec<PresetInfo> {
    let mut out: Vec<PresetInfo> = std::fs::read_dir(dir(state_dir))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().to_string();
            let name = file.strip_suffix(".toml")?.to_string();
            check_name(&name).is_none().then_some(())?;
            let saved_at = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            Some(PresetInfo { name, saved_at })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Save `state` (without the device and the snapshot rate, which belong to
/// the machine, not the sound) as preset `name`. The name must be checked.
pub fn save(state_dir: &Path, name: &str, state: &State) -> Result<(), String> {
    let mut t = toml::Table::try_from(state).map_err(|e| e.to_string())?;
    t.remove("audio");
    t.remove("ws");
    let text = format!(
        "# phase4 preset \"{name}\"\n{}",
        toml::to_string(&t).map_err(|e| e.to_string())?
    );
    write_atomic(&path(state_dir, name), &text).map_err(|e| e.to_string())
}

/// The text of preset `name` (checked), with the sections a preset must not
/// change removed.
pub fn read(state_dir: &Path, name: &str) -> Result<String, String> {
    let p = path(state_dir, name);
    let text = std::fs::read_to_string(&p).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("no preset named {name:?}"),
        _ => format!("cannot read preset {name:?}: {e}"),
    })?;
    let mut t: toml::Table = toml::from_str(&text)
        .map_err(|e| format!("preset {name:?} is unreadable: {}", e.message()))?;
    t.remove("audio");
    t.remove("ws");
    toml::to_string(&t).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_leave_the_folder_are_refused() {
        for bad in [
            "",
            "../x",
            "a/b",
            "a.b",
            "..",
            "x\\y",
            "é",
            " ",
            &"a".repeat(65),
        ] {
            assert!(check_name(bad).is_some(), "{bad:?} accepted");
        }
        for good in ["a", "My preset_1", "kick-heavy", &"a".repeat(64)] {
            assert!(check_name(good).is_none(), "{good:?} refused");
        }
    }

    #[test]
    fn saved_presets_are_listed_and_read_back() {
        let d = tempfile::tempdir().unwrap();
        let s = State::from_config(&crate::config::Config::default());
        save(d.path(), "one", &s).unwrap();
        let l = list(d.path());
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].name, "one");
        let text = read(d.path(), "one").unwrap();
        assert!(text.contains("[dsp.low]"), "{text}");
        assert!(!text.contains("snapshot"), "{text}");
        assert!(read(d.path(), "two").is_err());
    }
}
