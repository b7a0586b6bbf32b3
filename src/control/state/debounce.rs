//! When the state file is written: debounced like the Python server does,
//! so a slider drag is not one write per message. Runs on the control
//! thread.

use std::time::{Duration, Instant};

/// Debounce after a change made while dragging a slider (`commit: false`).
pub const DRAG_DEBOUNCE: Duration = Duration::from_millis(1000);
/// Debounce after a committed change (`commit: true`, or a one-shot command).
pub const COMMIT_DEBOUNCE: Duration = Duration::from_millis(50);
/// Longest a dirty state waits, counted from its first unsaved change.
pub const MAX_DELAY: Duration = Duration::from_millis(250);

/// When the state should next be written, as the Python server schedules it:
/// 1 s after the last drag change, 50 ms after a commit, and never later
/// than 250 ms after the first unsaved change.
#[derive(Debug, Default)]
pub struct Debounce {
    first_dirty: Option<Instant>,
    due: Option<Instant>,
}

impl Debounce {
    /// A change happened now.
    pub fn touch(&mut self, commit: bool, now: Instant) {
        let first = *self.first_dirty.get_or_insert(now);
        let wait = if commit {
            COMMIT_DEBOUNCE
        } else {
            DRAG_DEBOUNCE
        };
        self.due = Some((now + wait).min(first + MAX_DELAY));
    }

    /// When the next write is due, if anything is unsaved.
    pub fn due(&self) -> Option<Instant> {
        self.due
    }

    /// Whether a write is due at `now`; if so, the state counts as saved.
    pub fn take_due(&mut self, now: Instant) -> bool {
        match self.due {
            Some(d) if d <= now => {
                self.due = None;
                self.first_dirty = None;
                true
            }
            _ => false,
        }
    }

    /// Whether anything is unsaved.
    pub fn dirty(&self) -> bool {
        self.due.is_some()
    }

    /// Forget pending changes (after a forced write).
    pub fn clear(&mut self) {
        self.due = None;
        self.first_dirty = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drags_wait_longer_than_commits_but_never_past_the_cap() {
        let t0 = Instant::now();
        let mut d = Debounce::default();
        d.touch(false, t0);
        assert_eq!(d.due(), Some(t0 + MAX_DELAY));
        let mut d = Debounce::default();
        d.touch(true, t0);
        assert_eq!(d.due(), Some(t0 + COMMIT_DEBOUNCE));
        assert!(!d.take_due(t0));
        assert!(d.take_due(t0 + COMMIT_DEBOUNCE));
        assert!(!d.dirty());
    }
}
