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
//! memory, built when control starts and on a reload (looking at no more
//! than [`MAX_SCAN`] directory entries), so saving never lists the folder and the
//! `presets` message can always be sent (200 names of 64 characters are
//! about 20 KiB). A folder that holds more than the cap (files copied in by
//! hand, or left by an older version) is indexed up to the cap and the list
//! says `truncated`.
//!
//! The index holds each preset's text as well (the caps bound it to
//! [`MAX_TOTAL_BYTES`]): the files are read when the store is opened and
//! again on a reload ([`PresetStore::rescan`], by the writer thread), so
//! loading a preset never touches the disk, and a save is indexed with
//! the text it writes (files that cannot be read, such as text that is not
//! UTF-8, are left out: at most [`MAX_PRESETS`] of them are tried, though
//! the presets offered before a reload are always read again). A
//! preset file added, edited or removed by hand is seen after a reload or
//! a restart.
//!
//! Saving and deleting are checked and indexed on the control thread and
//! written by a thread of their own once the control thread has started it
//! ([`PresetStore::start_writer`], module `writer`): a slow disk never holds
//! up control, neither for a save nor for a load. Only after a write fails
//! does the control thread read that one file again (the index then says
//! what the disk holds).

mod scan;
mod writer;

use super::state::{write_atomic, State};
use super::Reply;
use scan::{read_entry, room_in, Scan};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use writer::{Job, PresetWriter, Settled, Work};

pub use writer::MAX_QUEUED;

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

#[derive(Clone, Debug)]
struct Entry {
    saved_at: f64,
    /// The file's text as read when indexed, or as saved.
    text: String,
}

impl Entry {
    fn bytes(&self) -> u64 {
        self.text.len() as u64
    }
}

/// The presets folder of a state directory, and its index.
pub struct PresetStore {
    dir: PathBuf,
    index: BTreeMap<PresetName, Entry>,
    truncated: bool,
    /// Writes the files off the control thread, once started.
    writer: Option<PresetWriter>,
    rescan: Rescan,
}

/// How a save or a delete was answered.
#[derive(Debug, PartialEq)]
pub enum Answer {
    /// Done: the presets as they are now.
    Now(PresetList),
    /// Handed to the writer, which answers the client when it is done.
    Later,
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

/// Where a re-read of the folder (a reload) stands.
#[derive(Default)]
struct Rescan {
    /// Asked for and not yet handed to the writer (it was busy).
    due: bool,
    /// With the writer.
    running: bool,
    /// Taken into the index; the clients have not been told yet.
    done: bool,
}

impl PresetStore {
    /// Index the presets of `state_dir` and read them (see the module docs
    /// for the bounds: files past the caps are not read).
    pub fn open(state_dir: &Path) -> Self {
        let dir = dir(state_dir);
        let scan = Scan::read(&dir, &BTreeSet::new());
        PresetStore {
            dir,
            index: scan.index,
            truncated: scan.truncated,
            writer: None,
            rescan: Rescan::default(),
        }
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

    /// Whether `name` may take `bytes` (replacing its own entry) within the
    /// count and size caps; why not if not.
    fn room_for(&self, name: &PresetName, bytes: u64) -> Result<(), String> {
        room_in(&self.index, name, bytes)
    }

    /// Write the files from now on on a thread of their own, whose answers
    /// go to `replies` (the control thread calls this; tests and a store
    /// whose thread cannot start write in place).
    pub fn start_writer(&mut self, replies: Sender<Reply>) {
        match PresetWriter::spawn(replies) {
            Ok(w) => self.writer = Some(w),
            Err(e) => log::warn!("presets: no writer thread ({e}); control writes them"),
        }
    }

    /// Take in what the writer has finished: after a failed job, the entry
    /// is taken from the disk again; a finished re-read of the folder
    /// becomes the index. Then hand over a re-read that was waiting.
    pub fn settle(&mut self) {
        let settled = self.writer.as_mut().map(PresetWriter::settle);
        for s in settled.into_iter().flatten() {
            self.take(s);
        }
        self.start_rescan();
    }

    fn take(&mut self, settled: Settled) {
        match settled {
            Settled::Failed(name) => self.reindex(&name),
            Settled::Scanned { scan, pending } => {
                self.rescan.running = false;
                self.take_scan(scan, &pending);
            }
        }
    }

    /// Read the folder again (SIGHUP), so presets added, edited or removed
    /// by hand are offered as they are now. With the writer running, it
    /// reads the folder after the saves and deletes handed to it before,
    /// and [`rescanned`](Self::rescanned) says when the index has taken it
    /// in; a reload while one is under way reads it once more after it.
    pub fn rescan(&mut self) {
        if self.writer.is_none() {
            let scan = Scan::read(&self.dir, &self.offered());
            self.take_scan(scan, &[]);
            return;
        }
        self.rescan.due = true;
        self.settle();
    }

    /// The names offered now (a re-read always looks at them again).
    fn offered(&self) -> BTreeSet<PresetName> {
        self.index.keys().cloned().collect()
    }

    /// Hand a re-read that is due to the writer, if it has room.
    fn start_rescan(&mut self) {
        if !self.rescan.due || self.rescan.running {
            return;
        }
        let offered = self.offered();
        let Some(w) = self.writer.as_mut() else {
            return;
        };
        if w.submit_scan(self.dir.clone(), offered).is_ok() {
            self.rescan.due = false;
            self.rescan.running = true;
        }
    }

    /// The presets as a finished re-read left them, once (for every
    /// client); `None` if no re-read has finished since the last call.
    pub fn rescanned(&mut self) -> Option<PresetList> {
        std::mem::take(&mut self.rescan.done).then(|| self.list())
    }

    /// Make `scan` the index, except for the names in `pending` (saves and
    /// deletes handed to the writer after the scan was: the index already
    /// says what they will leave on disk). If those push it past a cap,
    /// scanned presets make room for them from the end of the names.
    fn take_scan(&mut self, scan: Scan, pending: &[PresetName]) {
        let before = self.index.len();
        let mut index = scan.index;
        for name in pending {
            match self.index.remove(name) {
                Some(entry) => index.insert(name.clone(), entry),
                None => index.remove(name),
            };
        }
        let mut truncated = scan.truncated;
        let mut bytes: u64 = index.values().map(Entry::bytes).sum();
        while index.len() > MAX_PRESETS || bytes > MAX_TOTAL_BYTES {
            let Some(last) = index.keys().rev().find(|n| !pending.contains(n)).cloned() else {
                break;
            };
            bytes -= index.remove(&last).map_or(0, |e| e.bytes());
            truncated = true;
        }
        self.index = index;
        self.truncated = truncated;
        self.rescan.done = true;
        // Scan::read has said why, if it did not offer everything.
        log::info!(
            "presets: read the folder again: {} offered (were {before})",
            self.index.len()
        );
    }

    /// The entry of `name` as its file on disk says (read again: only after
    /// a write of it failed).
    fn reindex(&mut self, name: &PresetName) {
        self.index.remove(name);
        let entry = read_entry(&self.path(name)).ok();
        if let Some(entry) = entry.filter(|e| self.room_for(name, e.bytes()).is_ok()) {
            self.index.insert(name.clone(), entry);
        }
    }

    /// Save `state` (without the device and the snapshot rate, which belong
    /// to the machine, not the sound) as preset `name`, replacing one of the
    /// same name. Refused when it would pass the count or size cap.
    pub fn save(&mut self, name: &PresetName, state: &State) -> Result<(), String> {
        let (path, text) = self.check_save(name, state)?;
        write_atomic(&path, &text).map_err(|e| e.to_string())?;
        self.index_save(name, text);
        Ok(())
    }

    /// [`save`](Self::save) for `client`: with the writer running, checked
    /// and indexed now and written by the writer, which answers `client`.
    /// Errors are the client's whole message ("busy: …" when the writer
    /// holds as many jobs as it may, else "cannot save preset: …").
    pub fn save_for(
        &mut self,
        client: u64,
        name: &PresetName,
        state: &State,
    ) -> Result<Answer, String> {
        let cannot = |e: String| format!("cannot save preset: {e}");
        if self.writer.is_none() {
            return self
                .save(name, state)
                .map(|()| Answer::Now(self.list()))
                .map_err(cannot);
        }
        self.room_in_writer()?;
        let (path, text) = self.check_save(name, state).map_err(cannot)?;
        let before = self.index.get(name).cloned();
        self.index_save(name, text.clone());
        self.queue(client, name, path, Work::Save { text }, before)
    }

    /// Delete preset `name`.
    pub fn delete(&mut self, name: &PresetName) -> Result<(), String> {
        if !self.index.contains_key(name) {
            return Err(format!("no preset named {:?}", name.0));
        }
        match std::fs::remove_file(self.path(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot delete preset {:?}: {e}", name.0)),
        }
        self.index.remove(name);
        Ok(())
    }

    /// [`delete`](Self::delete) for `client`: with the writer running, the
    /// file is removed by the writer, after any save of it handed over
    /// before, and the writer answers `client`.
    pub fn delete_for(&mut self, client: u64, name: &PresetName) -> Result<Answer, String> {
        if self.writer.is_none() {
            return self.delete(name).map(|()| Answer::Now(self.list()));
        }
        self.room_in_writer()?;
        let Some(before) = self.index.remove(name) else {
            return Err(format!("no preset named {:?}", name.0));
        };
        let path = self.path(name);
        self.queue(client, name, path, Work::Delete, Some(before))
    }

    /// Settle, then say "busy" if the writer holds as many jobs as it may.
    fn room_in_writer(&mut self) -> Result<(), String> {
        self.settle();
        match self.writer.as_ref().and_then(PresetWriter::busy) {
            Some(busy) => Err(busy),
            None => Ok(()),
        }
    }

    /// Hand the file work of a change already made to the index to the
    /// writer; if it cannot take it, put `before` (the entry before the
    /// change) back and say why.
    fn queue(
        &mut self,
        client: u64,
        name: &PresetName,
        path: PathBuf,
        work: Work,
        before: Option<Entry>,
    ) -> Result<Answer, String> {
        let job = Job {
            name: name.clone(),
            path,
            work,
            client,
            list: self.list(),
        };
        let handed = match self.writer.as_mut() {
            Some(w) => w.submit(job),
            None => Err("presets: no writer".into()),
        };
        if let Err(e) = handed {
            match before {
                Some(entry) => self.index.insert(name.clone(), entry),
                None => self.index.remove(name),
            };
            return Err(e);
        }
        Ok(Answer::Later)
    }

    /// The file and text of a save, checked against the caps.
    fn check_save(&self, name: &PresetName, state: &State) -> Result<(PathBuf, String), String> {
        let mut t = toml::Table::try_from(state).map_err(|e| e.to_string())?;
        t.remove("audio");
        t.remove("ws");
        let text = format!(
            "# phase4 preset \"{}\"\n{}",
            name.0,
            toml::to_string(&t).map_err(|e| e.to_string())?
        );
        self.room_for(name, text.len() as u64)?;
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
        Ok((path, text))
    }

    /// Index a save of `text` under `name` (checked by `check_save`).
    fn index_save(&mut self, name: &PresetName, text: String) {
        self.index.insert(
            name.clone(),
            Entry {
                saved_at: unix_s(std::time::SystemTime::now()),
                text,
            },
        );
    }

    /// The text of preset `name`, with the sections a preset must not change
    /// removed. From the index: no disk access.
    pub fn read(&self, name: &PresetName) -> Result<String, String> {
        match self.index.get(name) {
            Some(entry) => strip(name, &entry.text),
            None => Err(format!("no preset named {:?}", name.0)),
        }
    }

    /// Let the writer finish what it was given and stop it (before the
    /// service ends).
    pub fn close(&mut self) {
        if let Some(mut w) = self.writer.take() {
            for s in w.close() {
                self.take(s);
            }
        }
    }
}

/// A preset's text with the sections a preset must not change removed.
fn strip(name: &PresetName, text: &str) -> Result<String, String> {
    let mut t: toml::Table = toml::from_str(text).map_err(|e| {
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

#[cfg(test)]
mod tests;
