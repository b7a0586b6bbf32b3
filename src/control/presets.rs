//! Presets: named snapshots of the DSP, auto-scaler, spectrum, onset and
//! tempo settings, one TOML file each in `<state dir>/presets/`.
//!
//! A name is 1–64 characters of `[A-Za-z0-9_\- ]` ([`PresetName`]), so it
//! can never hold a path separator or a dot: no name can reach outside the
//! folder.
//!
//! Presets are bounded, because a client may save them: at most
//! [`MAX_PRESETS`] of them and [`MAX_TOTAL_BYTES`] of files, each file read
//! back at most [`MAX_FILE_BYTES`]. The [`PresetStore`] keeps an index in
//! memory, built once when control starts (looking at no more than
//! [`MAX_SCAN`] directory entries), so saving never lists the folder and the
//! `presets` message can always be sent (200 names of 64 characters are
//! about 20 KiB). A folder that holds more than the cap (files copied in by
//! hand, or left by an older version) is indexed up to the cap and the list
//! says `truncated`.

use super::state::{write_atomic, State};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Longest preset name.
pub const MAX_NAME: usize = 64;
/// Most presets.
pub const MAX_PRESETS: usize = 200;
/// Largest preset file read back (phase4 writes about 1 KiB).
pub const MAX_FILE_BYTES: u64 = 16 * 1024;
/// Most bytes of preset files in all.
pub const MAX_TOTAL_BYTES: u64 = 512 * 1024;
/// Most directory entries looked at when the index is built.
pub const MAX_SCAN: usize = 10_000;

/// A checked preset name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PresetName(String);

impl PresetName {
    /// `name` if it is a valid preset name, else why not.
    pub fn parse(name: &str) -> Result<Self, String> {
        if name.is_empty() || name.chars().count() > MAX_NAME {
            return Err(format!("preset name must be 1-{MAX_NAME} characters"));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ' ')))
        {
            return Err(format!(
                "preset name may only hold letters, digits, '_', '-' and spaces (not {c:?})"
            ));
        }
        if name.trim().is_empty() {
            return Err("preset name must not be only spaces".into());
        }
        Ok(PresetName(name.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One saved preset.
#[derive(Clone, Debug, PartialEq)]
pub struct PresetInfo {
    /// Its name.
    pub name: String,
    /// When it was saved (Unix seconds).
    pub saved_at: f64,
}

/// The presets, sorted by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PresetList {
    /// The presets.
    pub items: Vec<PresetInfo>,
    /// The folder holds more than the index does (see the module docs).
    pub truncated: bool,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    saved_at: f64,
    bytes: u64,
}

/// The presets folder of a state directory, and its index.
#[derive(Debug)]
pub struct PresetStore {
    dir: PathBuf,
    index: BTreeMap<PresetName, Entry>,
    total_bytes: u64,
    truncated: bool,
}

/// The presets folder in a state directory.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("presets")
}

fn unix_s(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl PresetStore {
    /// Index the presets of `state_dir` (see the module docs for the bounds).
    pub fn open(state_dir: &Path) -> Self {
        let dir = dir(state_dir);
        let mut found: Vec<(PresetName, Entry)> = Vec::new();
        let mut more = false;
        for e in std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .take(MAX_SCAN)
            .filter_map(|e| e.ok())
        {
            let file = e.file_name().to_string_lossy().to_string();
            let Some(name) = file
                .strip_suffix(".toml")
                .and_then(|n| PresetName::parse(n).ok())
            else {
                continue;
            };
            // Regular files only (a symlink to /dev/zero is not a preset).
            let Ok(meta) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            if !meta.is_file() || meta.len() > MAX_FILE_BYTES {
                more = true;
                continue;
            }
            let saved_at = meta.modified().map(unix_s).unwrap_or(0.0);
            found.push((
                name,
                Entry {
                    saved_at,
                    bytes: meta.len(),
                },
            ));
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        let mut store = PresetStore {
            dir,
            index: BTreeMap::new(),
            total_bytes: 0,
            truncated: more,
        };
        for (name, entry) in found {
            if store.index.len() >= MAX_PRESETS || store.total_bytes + entry.bytes > MAX_TOTAL_BYTES
            {
                store.truncated = true;
                continue;
            }
            store.total_bytes += entry.bytes;
            store.index.insert(name, entry);
        }
        if store.truncated {
            log::warn!(
                "presets: {} holds more than {MAX_PRESETS} presets or {} KiB; only the first {} (by name) are offered",
                store.dir.display(),
                MAX_TOTAL_BYTES / 1024,
                store.index.len()
            );
        }
        store
    }

    /// Every indexed preset, sorted by name.
    pub fn list(&self) -> PresetList {
        PresetList {
            items: self
                .index
                .iter()
                .map(|(n, e)| PresetInfo {
                    name: n.0.clone(),
                    saved_at: e.saved_at,
                })
                .collect(),
            truncated: self.truncated,
        }
    }

    fn path(&self, name: &PresetName) -> PathBuf {
        self.dir.join(format!("{}.toml", name.0))
    }

    /// Save `state` (without the device and the snapshot rate, which belong
    /// to the machine, not the sound) as preset `name`, replacing one of the
    /// same name. Refused when it would pass the count or size cap.
    pub fn save(&mut self, name: &PresetName, state: &State) -> Result<(), String> {
        let mut t = toml::Table::try_from(state).map_err(|e| e.to_string())?;
        t.remove("audio");
        t.remove("ws");
        let text = format!(
            "# phase4 preset \"{}\"\n{}",
            name.0,
            toml::to_string(&t).map_err(|e| e.to_string())?
        );
        let bytes = text.len() as u64;
        let old = self.index.get(name).map(|e| e.bytes);
        if old.is_none() && self.index.len() >= MAX_PRESETS {
            return Err(format!(
                "there are already {MAX_PRESETS} presets (the most phase4 keeps); delete one first"
            ));
        }
        let total = self.total_bytes - old.unwrap_or(0) + bytes;
        if total > MAX_TOTAL_BYTES {
            return Err(format!(
                "presets would take more than {} KiB; delete some first",
                MAX_TOTAL_BYTES / 1024
            ));
        }
        let path = self.path(name);
        if let Some(folder) = path.parent() {
            // Made by phase4 in the state directory: a symlink there was
            // planted, and would put the presets somewhere else.
            if std::fs::symlink_metadata(folder).is_ok()
                && !crate::service::safe_fs::real_dir(folder)
            {
                return Err(format!(
                    "{} is not a directory (a symbolic link?); presets are not saved there",
                    folder.display()
                ));
            }
        }
        write_atomic(&path, &text).map_err(|e| e.to_string())?;
        self.total_bytes = total;
        self.index.insert(
            name.clone(),
            Entry {
                saved_at: unix_s(std::time::SystemTime::now()),
                bytes,
            },
        );
        Ok(())
    }

    /// The text of preset `name`, with the sections a preset must not change
    /// removed.
    pub fn read(&self, name: &PresetName) -> Result<String, String> {
        if !self.index.contains_key(name) {
            return Err(format!("no preset named {:?}", name.0));
        }
        let p = self.path(name);
        let cannot = |e: &dyn std::fmt::Display| format!("cannot read preset {:?}: {e}", name.0);
        let f = crate::service::safe_fs::open_regular(&p).map_err(|e| cannot(&e))?;
        let meta = f.metadata().map_err(|e| cannot(&e))?;
        if !meta.is_file() || meta.len() > MAX_FILE_BYTES {
            return Err(cannot(&format!(
                "not a file of at most {MAX_FILE_BYTES} bytes"
            )));
        }
        let mut text = String::new();
        f.take(MAX_FILE_BYTES)
            .read_to_string(&mut text)
            .map_err(|e| cannot(&e))?;
        let mut t: toml::Table = toml::from_str(&text).map_err(|e| {
            format!(
                "preset {:?} is unreadable: {}",
                name.0,
                crate::config::syntax_message(&e)
            )
        })?;
        t.remove("audio");
        t.remove("ws");
        toml::to_string(&t).map_err(|e| e.to_string())
    }

    /// Delete preset `name`.
    pub fn delete(&mut self, name: &PresetName) -> Result<(), String> {
        let Some(e) = self.index.get(name).copied() else {
            return Err(format!("no preset named {:?}", name.0));
        };
        match std::fs::remove_file(self.path(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot delete preset {:?}: {e}", name.0)),
        }
        self.index.remove(name);
        self.total_bytes -= e.bytes;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State::from_config(&crate::config::Config::default())
    }

    fn name(n: &str) -> PresetName {
        PresetName::parse(n).unwrap()
    }

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
            assert!(PresetName::parse(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["a", "My preset_1", "kick-heavy", &"a".repeat(64)] {
            assert!(PresetName::parse(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn saved_presets_are_listed_read_back_and_deleted() {
        let d = tempfile::tempdir().unwrap();
        let mut s = PresetStore::open(d.path());
        s.save(&name("one"), &state()).unwrap();
        let l = s.list();
        assert_eq!(l.items.len(), 1);
        assert_eq!(l.items[0].name, "one");
        assert!(!l.truncated);
        let text = s.read(&name("one")).unwrap();
        assert!(text.contains("[dsp.low]"), "{text}");
        assert!(!text.contains("snapshot"), "{text}");
        assert!(s.read(&name("two")).is_err());
        // The index is rebuilt from the folder at the next start.
        let again = PresetStore::open(d.path());
        assert_eq!(again.list().items.len(), 1);
        s.delete(&name("one")).unwrap();
        assert!(s.list().items.is_empty());
        assert!(!dir(d.path()).join("one.toml").exists());
        assert!(s.delete(&name("one")).is_err());
    }

    #[test]
    fn the_count_cap_refuses_new_names_but_allows_overwrites() {
        let d = tempfile::tempdir().unwrap();
        let mut s = PresetStore::open(d.path());
        for i in 0..MAX_PRESETS {
            s.save(&name(&format!("p{i:04}")), &state()).unwrap();
        }
        let e = s.save(&name("one more"), &state()).unwrap_err();
        assert!(e.contains("delete one first"), "{e}");
        s.save(&name("p0000"), &state()).unwrap();
        assert_eq!(s.list().items.len(), MAX_PRESETS);
        s.delete(&name("p0001")).unwrap();
        s.save(&name("one more"), &state()).unwrap();
    }

    #[test]
    fn a_folder_over_the_cap_is_indexed_up_to_it_and_says_so() {
        let d = tempfile::tempdir().unwrap();
        let p = dir(d.path());
        std::fs::create_dir_all(&p).unwrap();
        for i in 0..(MAX_PRESETS + 50) {
            std::fs::write(p.join(format!("x{i:05}.toml")), "[fft]\nenabled = true\n").unwrap();
        }
        std::fs::write(p.join("huge.toml"), vec![b'#'; MAX_FILE_BYTES as usize + 1]).unwrap();
        std::os::unix::fs::symlink("/dev/zero", p.join("zero.toml")).unwrap();
        let s = PresetStore::open(d.path());
        let l = s.list();
        assert_eq!(l.items.len(), MAX_PRESETS);
        assert!(l.truncated);
        assert!(l.items.iter().all(|i| i.name.starts_with('x')));
    }
}
