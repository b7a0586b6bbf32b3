//! The state file's writer: a thread of its own (`p4-state`), so that the
//! control thread never waits for the disk.
//!
//! Each write is two fsyncs ([`write_atomic`]). On an SD card one fsync
//! takes 10 ms to over a second, and during a slider drag the debounce
//! writes every [`super::MAX_DELAY`]: done on the control thread, every
//! command behind a write (the rest of the drag, other clients, the OSC
//! input port) would wait for it, and the lights would stop following the
//! fader four times a second.
//!
//! The control thread hands over the text to write; a text not yet written
//! is replaced by a newer one, since only the newest state matters. So at
//! most one text waits, however slow the disk: memory stays bounded and
//! the control thread only ever takes a lock that the writer holds for a
//! few instructions, never during the write itself.

use super::write_atomic;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// What waits for the writer.
#[derive(Default)]
struct Pending {
    /// The newest text not yet taken by the writer.
    text: Option<String>,
    /// Texts handed over so far.
    submitted: u64,
    /// Texts whose write has ended (written or failed), counting the ones
    /// a newer text replaced.
    done: u64,
    /// No more texts: write what waits, then end.
    closing: bool,
}

/// Shared by the control thread and the writer.
#[derive(Default)]
struct Slot {
    pending: Mutex<Pending>,
    /// The writer waits on it for a text; [`StateWriter::flush`] for the
    /// writes to end.
    changed: Condvar,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Writes the state file on its own thread (see the module docs).
pub struct StateWriter {
    slot: Arc<Slot>,
    thread: Option<JoinHandle<()>>,
}

impl StateWriter {
    /// Start the writer for the file at `path`.
    pub fn spawn(path: PathBuf) -> std::io::Result<Self> {
        let slot = Arc::new(Slot::default());
        let s = slot.clone();
        let thread = std::thread::Builder::new()
            .stack_size(crate::rt::THREAD_STACK)
            .name("p4-state".into())
            .spawn(move || write_loop(&s, &path))?;
        Ok(StateWriter {
            slot,
            thread: Some(thread),
        })
    }

    /// Write `text` soon, in place of any text still waiting. Never waits
    /// for the disk.
    pub fn submit(&self, text: String) {
        let mut p = self.slot.lock();
        p.submitted += 1;
        if p.text.replace(text).is_some() {
            // The text it replaces will never be written: done with it.
            p.done += 1;
        }
        self.slot.changed.notify_all();
    }

    /// Wait until everything handed over so far has been written (or has
    /// failed and been logged).
    pub fn flush(&self) {
        let mut p = self.slot.lock();
        let target = p.submitted;
        while p.done < target {
            p = self.slot.changed.wait(p).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Drop for StateWriter {
    /// Write what waits, then end the thread.
    fn drop(&mut self) {
        self.slot.lock().closing = true;
        self.slot.changed.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Write the state file now, and log how it went (the writer's one write,
/// and control's own when the writer could not start).
pub fn save(path: &Path, text: &str) {
    match write_atomic(path, text) {
        Ok(()) => log::debug!("state: saved {}", path.display()),
        Err(e) => log::warn!("state: cannot save: {e}"),
    }
}

fn write_loop(slot: &Slot, path: &Path) {
    loop {
        let text = {
            let mut p = slot.lock();
            loop {
                if let Some(t) = p.text.take() {
                    break t;
                }
                if p.closing {
                    return;
                }
                p = slot.changed.wait(p).unwrap_or_else(|e| e.into_inner());
            }
        };
        save(path, &text);
        slot.lock().done += 1;
        slot.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_text_is_written_and_flush_waits_for_it() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("state.toml");
        let w = StateWriter::spawn(path.clone()).unwrap();
        for i in 0..100 {
            w.submit(format!("n = {i}\n"));
        }
        w.flush();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "n = 99\n");
        // Nothing is left to write, and nothing waits.
        let p = w.slot.lock();
        assert!(p.text.is_none());
        assert_eq!(p.done, p.submitted);
    }

    #[test]
    fn what_waits_is_written_before_the_writer_ends() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("state.toml");
        let w = StateWriter::spawn(path.clone()).unwrap();
        w.submit("last = true\n".into());
        drop(w);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "last = true\n");
    }

    #[test]
    fn a_failed_write_is_logged_and_does_not_stop_the_writer() {
        let d = tempfile::tempdir().unwrap();
        // A directory where the file should be: the rename fails.
        let path = d.path().join("state.toml");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("keep"), "x").unwrap();
        let w = StateWriter::spawn(path.clone()).unwrap();
        w.submit("a = 1\n".into());
        w.flush();
        assert!(path.is_dir());
        std::fs::remove_dir_all(&path).unwrap();
        w.submit("a = 2\n".into());
        w.flush();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a = 2\n");
    }
}
