//! How phase4's tempo and beat phase become changes to the Link session.
//! Pure decisions, no Link calls, so they are tested on their own.
//!
//! - Tempo: set when it differs from the session's by more than
//!   [`TEMPO_STEP_BPM`] (the tracker's estimate wobbles by a few hundredths
//!   of a BPM; peers should not see that as tempo changes).
//! - Phase: the error between the session's beat at the capture time and
//!   phase4's beat phase, wrapped to half a beat, is smoothed over
//!   [`PHASE_TAU_S`]; when it exceeds [`PHASE_TOLERANCE_S`] the session's
//!   beat at that time is moved by the smoothed error (a whole-beat change
//!   is never made, so the bar position within the quantum is kept).

/// Smallest tempo difference that is published.
pub const TEMPO_STEP_BPM: f64 = 0.05;
/// Phase errors below this are left alone.
pub const PHASE_TOLERANCE_S: f64 = 0.004;
/// Smoothing of the phase error.
pub const PHASE_TAU_S: f64 = 0.15;

/// `x` wrapped into [-0.5, 0.5).
pub fn wrap_half(x: f64) -> f64 {
    x - (x + 0.5).floor()
}

/// What to change in the session.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Change {
    /// Set this tempo.
    pub tempo: Option<f64>,
    /// Map this beat to the capture time.
    pub beat: Option<f64>,
}

/// The follower's state between messages.
#[derive(Clone, Copy, Debug, Default)]
pub struct Follower {
    err_beats: f64,
    primed: bool,
}

impl Follower {
    /// Forget the smoothed error (lock lost).
    pub fn reset(&mut self) {
        *self = Follower::default();
    }

    /// Decide the change for one locked message: phase4 says `bpm` and beat
    /// phase `phase` at a time when the session (at `session_bpm`) is at
    /// `session_beat`. `dt_s` is the time since the previous message.
    pub fn decide(
        &mut self,
        bpm: f64,
        phase: f64,
        session_bpm: f64,
        session_beat: f64,
        dt_s: f64,
    ) -> Change {
        let mut c = Change::default();
        if (bpm - session_bpm).abs() > TEMPO_STEP_BPM {
            c.tempo = Some(bpm);
        }
        // Positive: the session is ahead of the music.
        let err = wrap_half(session_beat - phase);
        if self.primed && c.tempo.is_none() {
            let a = 1.0 - (-dt_s.max(0.0) / PHASE_TAU_S).exp();
            self.err_beats += a * (wrap_half(err - self.err_beats));
        } else {
            self.err_beats = err;
            self.primed = true;
        }
        let beat_s = 60.0 / bpm.max(1.0);
        let due = self.err_beats.abs() * beat_s > PHASE_TOLERANCE_S || c.tempo.is_some();
        if due && err.abs() * beat_s > PHASE_TOLERANCE_S {
            let fix = if c.tempo.is_some() {
                err
            } else {
                self.err_beats
            };
            c.beat = Some(session_beat - fix);
            self.err_beats = 0.0;
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_keeps_half_a_beat() {
        assert_eq!(wrap_half(0.25), 0.25);
        assert_eq!(wrap_half(0.75), -0.25);
        assert_eq!(wrap_half(-0.75), 0.25);
        assert_eq!(wrap_half(3.1), 0.10000000000000009);
    }

    #[test]
    fn a_new_tempo_is_set_and_the_phase_moved_to_the_music() {
        let mut f = Follower::default();
        // Session at 120, beat 10.30; the music is at 128 with phase 0.25.
        let c = f.decide(128.0, 0.25, 120.0, 10.30, 0.02);
        assert_eq!(c.tempo, Some(128.0));
        let b = c.beat.unwrap();
        assert!((b - 10.25).abs() < 1e-9, "{b}");
    }

    #[test]
    fn small_wobble_changes_nothing() {
        let mut f = Follower::default();
        for i in 0..200 {
            let jitter = if i % 2 == 0 { 0.002 } else { -0.002 };
            let c = f.decide(120.01, 0.5 + jitter, 120.0, 7.5, 0.02);
            assert_eq!(c, Change::default(), "message {i}");
        }
    }

    #[test]
    fn a_steady_phase_offset_is_corrected_once() {
        let mut f = Follower::default();
        // The session runs 20 ms (0.04 beat at 120) ahead of the music.
        let mut fixes = 0;
        let mut beat = 3.54;
        for _ in 0..100 {
            let c = f.decide(120.0, 0.5, 120.0, beat, 0.02);
            if let Some(b) = c.beat {
                fixes += 1;
                assert!((b - 3.5 - (beat - 3.54)).abs() < 0.01, "{b}");
                beat = b;
            }
        }
        assert_eq!(fixes, 1);
    }

    #[test]
    fn whole_beats_are_never_changed() {
        let mut f = Follower::default();
        // The session is 0.9 beat "ahead": that is 0.1 beat behind.
        let c = f.decide(120.0, 0.0, 120.0, 4.9, 0.02);
        let b = c.beat.unwrap();
        assert!((b - 5.0).abs() < 1e-9, "{b}");
    }
}
