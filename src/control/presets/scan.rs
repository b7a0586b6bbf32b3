//! Reading the presets folder into an index, within the caps: at start
//! ([`PresetStore::open`](super::PresetStore::open)) and on a reload (on
//! the writer thread), and the cap check every save goes through.

use super::{unix_s, Entry, PresetName, MAX_FILE_BYTES, MAX_PRESETS, MAX_SCAN, MAX_TOTAL_BYTES};
use std::collections::BTreeMap;
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
    pub(super) fn read(dir: &Path) -> Self {
        let mut found: Vec<(PresetName, u64)> = Vec::new();
        // Entries named like presets that are not regular files of at most
        // MAX_FILE_BYTES (a FIFO, a directory, a link, a huge file).
        let mut not_files = 0;
        for e in std::fs::read_dir(dir)
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
            let Ok(meta) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            if may_be_preset(&meta) {
                found.push((name, meta.len()));
            } else {
                not_files += 1;
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        let mut scan = Scan {
            index: BTreeMap::new(),
            truncated: not_files > 0,
        };
        let mut over_caps = false;
        let mut unreadable = 0;
        for (name, bytes) in found {
            if room_in(&scan.index, &name, bytes).is_err() || unreadable >= MAX_PRESETS {
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
