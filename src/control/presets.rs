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
//!
//! Saving and deleting are checked and indexed on the control thread and
//! written by a thread of their own once the control thread has started it
//! ([`PresetStore::start_writer`], module `writer`): a slow disk never holds
//! up control. Until its file is written, a saved preset is read back from
//! memory.

mod writer;

use super::state::{write_atomic, State};
use super::Reply;
use std::collections::BTreeMap;
use std::sync::mpsc::Sender;
use writer::{Job, PresetWriter, Work};

use std::io::Read;
use std::path::{Path, PathBuf};
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

#[derive(Clone, Copy, Debug)]
struct Entry {
    saved_at: f64,
    bytes: u64,
}

/// The presets folder of a state directory, and its index.
pub struct PresetStore {
    dir: PathBuf,
    index: BTreeMap<PresetName, Entry>,
    total_bytes: u64,
    truncated: bool,
    /// Writes the files off the control thread, once started.
    writer: Option<PresetWriter>,
    /// Names with jobs not yet finished by the writer.
    pending: BTreeMap<PresetName, Pending>,
}

/// A name's unfinished jobs.
struct Pending {
    /// The text of its newest save, while that is not known to be on disk
    /// (`None` once a delete follows it).
    text: Option<String>,
    jobs: u32,
    /// One of them failed: the index is taken from the disk again once
    /// the last one has ended.
    failed: bool,
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
            writer: None,
            pending: BTreeMap::new(),
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

    /// Write the files from now on on a thread of their own, whose answers
    /// go to `replies` (the control thread calls this; tests and a store
    /// whose thread cannot start write in place).
    pub fn start_writer(&mut self, replies: Sender<Reply>) {
        match PresetWriter::spawn(replies) {
            Ok(w) => self.writer = Some(w),
            Err(e) => log::warn!("presets: no writer thread ({e}); control writes them"),
        }
    }

    /// Take in what the writer has finished: a name whose last job has
    /// ended is no longer read from memory, and after a failed job its
    /// entry is taken from the disk again.
    pub fn settle(&mut self) {
        let Some(w) = &self.writer else {
            return;
        };
        let done: Vec<writer::Done> = w.finished().collect();
        for d in done {
            let Some(p) = self.pending.get_mut(&d.name) else {
                continue;
            };
            p.jobs = p.jobs.saturating_sub(1);
            p.failed |= !d.ok;
            if p.jobs == 0 {
                let failed = p.failed;
                self.pending.remove(&d.name);
                if failed {
                    self.reindex(&d.name);
                }
            }
        }
    }

    /// The entry of `name` as its file on disk says.
    fn reindex(&mut self, name: &PresetName) {
        if let Some(old) = self.index.remove(name) {
            self.total_bytes -= old.bytes;
        }
        let Ok(meta) = std::fs::symlink_metadata(self.path(name)) else {
            return;
        };
        if meta.is_file()
            && meta.len() <= MAX_FILE_BYTES
            && self.index.len() < MAX_PRESETS
            && self.total_bytes + meta.len() <= MAX_TOTAL_BYTES
        {
            self.total_bytes += meta.len();
            let saved_at = meta.modified().map(unix_s).unwrap_or(0.0);
            self.index.insert(
                name.clone(),
                Entry {
                    saved_at,
                    bytes: meta.len(),
                },
            );
        }
    }

    /// Save `state` (without the device and the snapshot rate, which belong
    /// to the machine, not the sound) as preset `name`, replacing one of the
    /// same name. Refused when it would pass the count or size cap.
    pub fn save(&mut self, name: &PresetName, state: &State) -> Result<(), String> {
        let (path, text) = self.check_save(name, state)?;
        write_atomic(&path, &text).map_err(|e| e.to_string())?;
        self.index_save(name, text.len() as u64);
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
        self.settle();
        let cannot = |e: String| format!("cannot save preset: {e}");
        if self.writer.is_none() {
            return self
                .save(name, state)
                .map(|()| Answer::Now(self.list()))
                .map_err(cannot);
        }
        if let Some(busy) = self.busy() {
            return Err(busy);
        }
        let (path, text) = self.check_save(name, state).map_err(cannot)?;
        let undo = (self.index.get(name).copied(), self.total_bytes);
        self.index_save(name, text.len() as u64);
        let job = Job {
            name: name.clone(),
            path,
            work: Work::Save { text: text.clone() },
            client,
            list: self.list(),
        };
        if let Err(e) = self.hand_over(job) {
            match undo.0 {
                Some(old) => self.index.insert(name.clone(), old),
                None => self.index.remove(name),
            };
            self.total_bytes = undo.1;
            return Err(e);
        }
        let p = self.pending.entry(name.clone()).or_insert(Pending {
            text: None,
            jobs: 0,
            failed: false,
        });
        p.text = Some(text);
        p.jobs += 1;
        Ok(Answer::Later)
    }

    /// Why a save or delete cannot be taken now: the writer holds as many
    /// as it may (a disk slower than the clicks).
    pub fn busy(&self) -> Option<String> {
        self.writer.as_ref().filter(|w| !w.has_room()).map(|_| {
            format!(
                "busy: {MAX_QUEUED} preset saves and deletes are still being written (a slow disk?); try again in a moment"
            )
        })
    }

    /// Give `job` to the writer, or say why not.
    fn hand_over(&self, job: Job) -> Result<(), String> {
        match &self.writer {
            Some(w) => w.submit(job).map_err(|_| {
                self.busy()
                    .unwrap_or_else(|| "busy: the presets' writer has stopped".into())
            }),
            None => Err("presets: no writer".into()),
        }
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
        Ok((path, text))
    }

    /// Index a save of `bytes` under `name` (checked by `check_save`).
    fn index_save(&mut self, name: &PresetName, bytes: u64) {
        let old = self.index.get(name).map(|e| e.bytes);
        self.total_bytes = self.total_bytes - old.unwrap_or(0) + bytes;
        self.index.insert(
            name.clone(),
            Entry {
                saved_at: unix_s(std::time::SystemTime::now()),
                bytes,
            },
        );
    }

    /// The text of preset `name`, with the sections a preset must not change
    /// removed.
    pub fn read(&self, name: &PresetName) -> Result<String, String> {
        if !self.index.contains_key(name) {
            return Err(format!("no preset named {:?}", name.0));
        }
        if let Some(text) = self.pending.get(name).and_then(|p| p.text.as_deref()) {
            return strip(name, text);
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
        strip(name, &text)
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

    /// [`delete`](Self::delete) for `client`: with the writer running, the
    /// file is removed by the writer, after any save of it handed over
    /// before, and the writer answers `client`.
    pub fn delete_for(&mut self, client: u64, name: &PresetName) -> Result<Answer, String> {
        self.settle();
        if self.writer.is_none() {
            return self.delete(name).map(|()| Answer::Now(self.list()));
        }
        if let Some(busy) = self.busy() {
            return Err(busy);
        }
        let Some(e) = self.index.remove(name) else {
            return Err(format!("no preset named {:?}", name.0));
        };
        self.total_bytes -= e.bytes;
        let job = Job {
            name: name.clone(),
            path: self.path(name),
            work: Work::Delete,
            client,
            list: self.list(),
        };
        if let Err(err) = self.hand_over(job) {
            self.index.insert(name.clone(), e);
            self.total_bytes += e.bytes;
            return Err(err);
        }
        let p = self.pending.entry(name.clone()).or_insert(Pending {
            text: None,
            jobs: 0,
            failed: false,
        });
        p.text = None;
        p.jobs += 1;
        Ok(Answer::Later)
    }

    /// Let the writer finish what it was given and stop it (before the
    /// service ends).
    pub fn close(&mut self) {
        if let Some(w) = &mut self.writer {
            w.close();
        }
        self.settle();
        self.writer = None;
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

    /// The reply the writer sends for `client`, within a few seconds.
    fn reply(rx: &std::sync::mpsc::Receiver<Reply>, client: u64) -> Vec<super::super::Response> {
        let r = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the writer answers");
        assert_eq!(r.client, client);
        r.responses
    }

    #[test]
    fn the_writer_saves_in_order_answers_the_client_and_serves_reads_meanwhile() {
        use super::super::Response;
        let d = tempfile::tempdir().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let mut s = PresetStore::open(d.path());
        s.start_writer(tx);
        assert_eq!(s.save_for(7, &name("one"), &state()), Ok(Answer::Later));
        // Indexed at once, and read back (from memory or the file).
        assert_eq!(s.list().items.len(), 1);
        assert!(s.read(&name("one")).unwrap().contains("[dsp.low]"));
        match &reply(&rx, 7)[..] {
            [Response::Presets(l)] => assert_eq!(l.items[0].name, "one"),
            other => panic!("{other:?}"),
        }
        assert!(dir(d.path()).join("one.toml").is_file());
        // A delete handed over after a save of the same name removes the
        // saved file: the writer keeps their order.
        assert_eq!(s.save_for(8, &name("two"), &state()), Ok(Answer::Later));
        assert_eq!(s.delete_for(9, &name("two")), Ok(Answer::Later));
        assert!(s.read(&name("two")).is_err());
        assert!(matches!(&reply(&rx, 8)[..], [Response::Presets(_)]));
        match &reply(&rx, 9)[..] {
            [Response::Presets(l)] => assert_eq!(l.items.len(), 1),
            other => panic!("{other:?}"),
        }
        s.close();
        assert!(!dir(d.path()).join("two.toml").exists());
        assert!(s.pending.is_empty());
        let names = |l: PresetList| l.items.into_iter().map(|i| i.name).collect::<Vec<_>>();
        assert_eq!(names(PresetStore::open(d.path()).list()), names(s.list()));
    }

    #[test]
    fn a_write_that_fails_is_reported_and_taken_out_of_the_index() {
        use super::super::Response;
        let d = tempfile::tempdir().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let mut s = PresetStore::open(d.path());
        s.save(&name("kept"), &state()).unwrap();
        s.start_writer(tx);
        // The file's place is taken by a directory: the rename fails.
        std::fs::create_dir(dir(d.path()).join("blocked.toml")).unwrap();
        assert_eq!(s.save_for(3, &name("blocked"), &state()), Ok(Answer::Later));
        assert_eq!(s.list().items.len(), 2);
        match &reply(&rx, 3)[..] {
            [Response::Error(e)] => assert!(e.contains("cannot save preset \"blocked\""), "{e}"),
            other => panic!("{other:?}"),
        }
        s.close();
        let names: Vec<_> = s.list().items.into_iter().map(|i| i.name).collect();
        assert_eq!(names, ["kept"]);
        assert_eq!(
            s.total_bytes,
            s.index.values().map(|e| e.bytes).sum::<u64>()
        );
    }
}
