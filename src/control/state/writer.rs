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
//!
//! A text whose write failed (disk full, read-only, the folder gone) is
//! kept and tried again, after [`RETRY_FIRST`] doubling to [`RETRY_MAX`],
//! until it is written or a newer text takes its place, and once more when
//! the writer ends: a change made while the disk was full reaches the file
//! once there is room again (before, it was logged once and lost at the
//! next start).

use super::write_atomic;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// First wait before a failed write is tried again.
const RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest wait between two tries.
const RETRY_MAX: Duration = Duration::from_secs(30);

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
    // The text whose write failed, while no newer one has come.
    let mut unsaved: Option<String> = None;
    let mut retry = RETRY_FIRST;
    let mut failures = 0u32;
    loop {
        // (text, handed over since the last write, the writer's last try)
        let (text, fresh, last) = {
            let mut p = slot.lock();
            loop {
                if let Some(t) = p.text.take() {
                    break (t, true, false);
                }
                if p.closing {
                    match unsaved.take() {
                        Some(t) => break (t, false, true),
                        None => return,
                    }
                }
                if unsaved.is_none() {
                    p = slot.changed.wait(p).unwrap_or_else(|e| e.into_inner());
                    continue;
                }
                let (g, waited) = slot
                    .changed
                    .wait_timeout(p, retry)
                    .unwrap_or_else(|e| e.into_inner());
                p = g;
                if waited.timed_out() && p.text.is_none() && !p.closing {
                    if let Some(t) = unsaved.take() {
                        break (t, false, false);
                    }
                }
            }
        };
        match write_atomic(path, &text) {
            Ok(()) if failures > 0 => {
                log::info!(
                    "state: saved {} after {failures} failed attempt(s)",
                    path.display()
                );
                failures = 0;
            }
            Ok(()) => log::debug!("state: saved {}", path.display()),
            Err(e) => {
                if failures == 0 {
                    log::warn!(
                        "state: cannot save: {e}; trying again (every {} s at most) until it can",
                        RETRY_MAX.as_secs()
                    );
                }
                failures = failures.saturating_add(1);
                retry = if fresh {
                    RETRY_FIRST
                } else {
                    (retry * 2).min(RETRY_MAX)
                };
                unsaved = Some(text);
            }
        }
        if fresh {
            slot.lock().done += 1;
            slot.changed.notify_all();
        }
        if last {
            return;
        }
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

    #[test]
    fn a_failed_write_is_tried_again_until_it_is_written() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("state.toml");
        std::fs::create_dir(&path).unwrap();
        let w = StateWriter::spawn(path.clone()).unwrap();
        w.submit("a = 1\n".into());
        w.flush();
        assert!(path.is_dir());
        // The cause goes away; nothing new is handed over.
        std::fs::remove_dir(&path).unwrap();
        let t = std::time::Instant::now();
        while std::fs::read_to_string(&path).ok().as_deref() != Some("a = 1\n") {
            assert!(t.elapsed() < Duration::from_secs(10), "never written again");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn a_failed_write_is_tried_once_more_when_the_writer_ends() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("state.toml");
        std::fs::create_dir(&path).unwrap();
        let w = StateWriter::spawn(path.clone()).unwrap();
        w.submit("b = 1\n".into());
        w.flush();
        std::fs::remove_dir(&path).unwrap();
        drop(w);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "b = 1\n");
        // Still failing at the end: the writer ends all the same.
        let other = d.path().join("other.toml");
        std::fs::create_dir(&other).unwrap();
        let w = StateWriter::spawn(other.clone()).unwrap();
        w.submit("c = 1\n".into());
        w.flush();
        drop(w);
        assert!(other.is_dir());
    }
}
