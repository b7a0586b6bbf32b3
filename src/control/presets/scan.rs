//! Reading the presets folder into an index, within the caps: at start
//! ([`PresetStore::open`](super::PresetStore::open)) and on a reload (on
//! the writer thread), and the cap check every save goes through.

use super::{unix_s, Entry, PresetName, MAX_FILE_BYTES, MAX_PRESETS, MAX_SCAN, MAX_TOTAL_BYTES};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;

/// Whether `meta` may be a preset: a regular file of at most
/// [`MAX_FILE_BYTES`] (a symlink to /dev/zero is not a preset).
fn may_be_preset(meta: &std::fs::Metadata) -> bool {
    meta.is_file() && meta.len() <= MAX_FILE_BYTES
}

/// The index entry of the preset file at `path`: its text (UTF-8, at most
/// [`MAX_FILE_BYTES`]) and when it was written; why not if it cannot be one.
pub(super) fn read_entry(path: &Path) -> Result<Entry, String> {
    let f = crate::service::safe_fs::open_regular(path).map_err(|e| e.to_string())?;
    let meta = f.metadata().map_err(|e| e.to_string())?;
    if !may_be_preset(&meta) {
        return Err(format!("not a file of at most {MAX_FILE_BYTES} bytes"));
    }
    let mut text = String::new();
    f.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("grew past {MAX_FILE_BYTES} bytes while read"));
    }
    Ok(Entry {
        saved_at: meta.modified().map(unix_s).unwrap_or(0.0),
        text,
    })
}

/// The presets a look at the folder found (see the module docs for the
/// bounds), with `truncated` set when it holds more than the caps let in.
pub(in crate::control) struct Scan {
    pub(super) index: BTreeMap<PresetName, Entry>,
    pub(super) truncated: bool,
}

impl Scan {
    /// List `dir` (at most [`MAX_SCAN`] entries) and read the presets in
    /// it, in name order, until the caps are reached.
    ///
    /// `known` are the presets offered before this read (none at start).
    /// They are always looked at and read, so a flood of other entries (more
    /// than [`MAX_SCAN`], or files that cannot be read, of which only
    /// [`MAX_PRESETS`] are tried) never hides a preset that was offered.
    pub(super) fn read(dir: &Path, known: &BTreeSet<PresetName>) -> Self {
        Self::read_listing(dir, known, MAX_SCAN)
    }

    /// [`read`](Self::read), listing at most `max_listed` entries.
    pub(super) fn read_listing(
        dir: &Path,
        known: &BTreeSet<PresetName>,
        max_listed: usize,
    ) -> Self {
        let mut found: BTreeMap<PresetName, u64> = BTreeMap::new();
        // Entries named like presets that are not regular files of at most
        // MAX_FILE_BYTES (a FIFO, a directory, a link, a huge file).
        let mut not_files = 0;
        let mut look = |name: PresetName, path: &Path| {
            let Ok(meta) = std::fs::symlink_metadata(path) else {
                return;
            };
            if may_be_preset(&meta) {
                found.insert(name, meta.len());
            } else {
                not_files += 1;
            }
        };
        let mut listed = 0;
        let entries = match std::fs::read_dir(dir) {
            Ok(rd) => Some(rd),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                // Said: an unlistable folder offered nothing, and the saved
                // presets vanished without a word (tester ag AG6).
                log::warn!(
                    "presets: cannot list {}: {e}; the presets there are not offered",
                    dir.display()
                );
                None
            }
        };
        for e in entries.into_iter().flatten() {
            listed += 1;
            if listed > max_listed {
                break;
            }
            let Ok(e) = e else { continue };
            let file = e.file_name().to_string_lossy().to_string();
            if let Some(name) = file
                .strip_suffix(".toml")
                .and_then(|n| PresetName::parse(n).ok())
            {
                look(name, &e.path());
            }
        }
        let listed_all = listed <= max_listed;
        if !listed_all {
            // The listing stopped early: what was offered is looked at by
            // name (at most MAX_PRESETS of them).
            for name in known.iter().take(MAX_PRESETS) {
                look(name.clone(), &dir.join(format!("{}.toml", name.0)));
            }
            log::warn!(
                "presets: {} holds more than {max_listed} entries; only the first {max_listed} listed are looked at",
                dir.display()
            );
        }
        let mut scan = Scan {
            index: BTreeMap::new(),
            truncated: not_files > 0 || !listed_all,
        };
        let mut over_caps = false;
        let mut unreadable = 0;
        for (name, bytes) in found {
            let tried_enough = unreadable >= MAX_PRESETS && !known.contains(&name);
            if room_in(&scan.index, &name, bytes).is_err() || tried_enough {
                over_caps = true;
                continue;
            }
            // Read now (it may have changed since it was listed: the caps
            // are checked again on what was read).
            match read_entry(&dir.join(format!("{}.toml", name.0))) {
                Ok(entry) if room_in(&scan.index, &name, entry.bytes()).is_ok() => {
                    scan.index.insert(name, entry);
                }
                Ok(_) => over_caps = true,
                Err(e) => {
                    unreadable += 1;
                    if unreadable <= 3 {
                        log::warn!("presets: {:?} is not offered: {e}", name.0);
                    }
                }
            }
        }
        if unreadable > 3 {
            log::warn!("presets: {unreadable} files in all are not offered (unreadable)");
        }
        if not_files > 0 {
            log::warn!(
                "presets: {not_files} entries of {} are not offered: not regular files of at most {MAX_FILE_BYTES} bytes",
                dir.display()
            );
        }
        scan.truncated |= over_caps;
        if over_caps {
            log::warn!(
                "presets: {} holds more than {MAX_PRESETS} presets or {} KiB; only the first {} (by name) are offered",
                dir.display(),
                MAX_TOTAL_BYTES / 1024,
                scan.index.len()
            );
        }
        scan
    }
}

/// Whether `name` may take `bytes` in `index` (replacing its own entry)
/// within the count and size caps; why not if not.
pub(super) fn room_in(
    index: &BTreeMap<PresetName, Entry>,
    name: &PresetName,
    bytes: u64,
) -> Result<(), String> {
    let old = index.get(name).map(Entry::bytes);
    if old.is_none() && index.len() >= MAX_PRESETS {
        return Err(format!(
            "there are already {MAX_PRESETS} presets (the most phase4 keeps); delete one first"
        ));
    }
    let total: u64 = index.values().map(Entry::bytes).sum();
    if total - old.unwrap_or(0) + bytes > MAX_TOTAL_BYTES {
        return Err(format!(
            "presets would take more than {} KiB; delete some first",
            MAX_TOTAL_BYTES / 1024
        ));
    }
    Ok(())
}
