//! Causal beat tracking and tempo from the onset detector's band fluxes.
//!
//! The tracker has three stages, all updated in place every hop:
//!
//! 1. **Beat signal.** The broadband detector hands over the half-wave
//!    rectified SuperFlux of four frequency groups
//!    ([`super::onset::BEAT_GROUP_EDGES_HZ`]: below 150 Hz — the kick and
//!    the bass —, 150–500 Hz, 500 Hz–2 kHz, above 2 kHz), each band's rise
//!    above its largest value of the last 45 ms, so the hop-to-hop swing of
//!    a held bass note's leakage is not beat evidence. Each group is
//!    divided by its own 2 s running mean, so a quiet kick under loud
//!    cymbals counts as much as in a clean mix, and the groups are summed
//!    with weights [`GROUP_WEIGHTS`] (the low group twice: the beat is
//!    usually where the kick and the bass are). The sum is smoothed over
//!    three hops, divided by its own 2 s running mean, and turned into the
//!    likelihood ratio of a beat in this hop,
//!    `r = max(x / OBS_SCALE, OBS_FLOOR)^OBS_GAMMA` ([`signal`]).
//! 2. **Beat state filter** ([`dbn::BeatStates`]): a bar-pointer model over
//!    (beat period, position in the beat) for every integer period of the
//!    configured tempo range, run forward. Tempo, phase and metrical level
//!    are one inference: the tempo is the posterior-weighted period around
//!    the reported hypothesis (the most probable one; once a tempo is
//!    claimed, held against a slower rival until that clearly outweighs it:
//!    [`hold`]), and a beat falls in the hop in which that hypothesis's
//!    phase wraps. A tempo outside `[min_bpm, max_bpm]` is tracked at its
//!    octave inside the range.
//! 3. **Confidence and lock**: the filter's own posterior is no measure of
//!    confidence (on noise it settles on some tempo too), so confidence is
//!    how well the beats it predicts meet the signal: a running mean over
//!    beats ([`AGREE_RATE`] per beat) of the normalised beat signal in the
//!    hop of the beat (1 on average; about 1.2–1.7 on noise, 2–4 on
//!    music), measured on the same signal taken against the previous frame
//!    alone (`agree_groups`: against 45 ms, stationary noise turns into
//!    sparse peaks and reads 2–3.5, as high as the weakest music), mapped linearly from [`AGREE_ZERO`] (0) to
//!    [`AGREE_ZERO`]` + `[`AGREE_SPAN`] (1). A tempo is claimed
//!    (`locked`, `bpm > 0`, beat events) once confidence has stayed above
//!    `lock_confidence` for [`LOCK_HOLD_S`], or at once on a beat that
//!    lifts it clearly above ([`FAST_CLAIM_MARGIN`]; that beat is then the
//!    first one reported, a few hops late); the lock is dropped when
//!    confidence stays below 60 % of that for [`UNLOCK_HOLD_S`], and at
//!    once — with all history cleared — when the input has been below
//!    `silence_threshold_dbfs` for `silence_hold_s`. Short breaks keep the
//!    beat going (the state keeps advancing).
//!
//! Real-time safety: every buffer is sized in `new` for the widest tempo
//! range the configuration allows (30–300 BPM); `process` never allocates,
//! locks, logs or blocks, and never panics on any input (non-finite values
//! are treated as zero).

mod dbn;
mod hold;
mod kick;
mod signal;

use super::onset::{BEAT_GROUPS, ODF_PEAK_LAG_S};
use super::params::DspParams;
use crate::types::TempoState;
use dbn::BeatStates;
use kick::{Kick, KickPhase};
use signal::BeatSignal;
pub use signal::GROUP_WEIGHTS;

/// Confidence must stay above `lock_confidence` this long before a tempo is
/// claimed, unless one beat lifts it clearly above ([`FAST_CLAIM_MARGIN`]).
pub const LOCK_HOLD_S: f32 = 0.2;
/// A beat whose agreement lifts confidence this share of the way from
/// `lock_confidence` to 1 (0.7 at the default 0.5) claims the tempo at once
/// when the other gates hold, and that beat is itself the first one
/// reported ([`AGREE_AFTER_HOPS`] late, its time in `beat_lag_s`).
/// Confidence changes only at beats, so the hold only ever waited for the
/// beat after the one that earned the claim, and the exact-phase lock (two
/// correct beats in a row) came a beat later.
const FAST_CLAIM_MARGIN: f32 = 0.4;
/// The tempo estimate must have stayed within 4 % this long before it is
/// claimed (early on the filter may hover on a 2:3 or 3:4 relative).
const STEADY_S: f32 = 0.3;
/// Silence longer than this is left out of the beat signal's running means.
const SILENT_SKIP_S: f32 = 0.25;
/// Signal needed before anything is claimed.
pub const MIN_SIGNAL_S: f32 = 0.5;
/// Confidence must stay below 60 % of `lock_confidence` this long before a
/// claimed tempo is dropped (silence drops it sooner).
pub const UNLOCK_HOLD_S: f32 = 3.0;
/// The agreement starts at [`AGREE_ZERO`] with the weight of this many
/// beats, so two or three beats that meet the signal are enough for a
/// claim and a single strong one is not.
const AGREE_PRIOR_BEATS: f32 = 2.0;
/// Beats needed before anything is claimed.
const MIN_BEATS: u32 = 2;
/// Weight of each new beat in the agreement (once it has seen enough).
/// At 0.4 a run of two or three beats on the chance peaks of noise lifted
/// confidence over the threshold for long enough to claim (6 of 16 15 s
/// white-noise seeds with the exact beat region); at 0.3 two of 16 and
/// half the noise claims, and the music scores move by 0.003 or less
/// (docs/eval.md, "The exact beat region, kept").
const AGREE_RATE: f32 = 0.3;
/// Agreement that maps to confidence 0, and the span that maps to 1.
const AGREE_ZERO: f32 = 1.2;
const AGREE_SPAN: f32 = 1.6;
/// Hops after a beat whose signal still counts for its agreement.
const AGREE_AFTER_HOPS: u32 = 2;
/// Largest beat-signal value one beat may add to the agreement.
const AGREE_MAX: f32 = 6.0;
/// Beats without a clear kick after which the kick offset is dropped.
const KICK_HOLD_BEATS: u32 = 16;
/// Consecutive beats on which the same other chain must dominate before
/// the beats move onto it.
const KICK_CONFIRM_BEATS: u32 = 3;
/// A reported phase is not moved back by less than this (a correction of
/// the phase estimate within a beat); larger steps back are shown.
const PHASE_HOLD: f32 = 0.1;
/// Hops by which the 3-tap smoothing delays the beat signal's peak.
const SMOOTH_DELAY_HOPS: f32 = 1.0;

/// Beat tracker fed the detector's group fluxes once per hop.
pub struct BeatTracker {
    hop_s: f32,
    states: BeatStates,
    kick: KickPhase,
    /// Fraction of a period by which the reported beats precede the
    /// filter's (the kick's chain), and beats since the kick last decided.
    kick_offset: f32,
    kick_unclear: u32,
    /// The chain that dominated on the last `kick_votes` beats.
    kick_candidate: f32,
    kick_votes: u32,
    /// Hops until a beat on the kick's chain is due.
    pending: Option<u32>,
    /// Hops since the last beat, while it went unreported (not locked).
    unreported: Option<u32>,
    n_seen: u32,
    signal: BeatSignal,
    silent_s: f32,
    since_beat_s: f32,
    last_phase: f32,
    /// The phase last reported.
    out_phase: f32,
    last_x: f32,
    /// The signal of the two hops before `last_x`.
    recent_x: [f32; 2],
    /// Hops until the last beat's agreement is complete, and its peak.
    agree_due: u32,
    agree_peak: f32,
    agreement: f32,
    n_beats: u32,
    confidence: f32,
    above_s: f32,
    /// The tempo estimate held within 4 % of `steady_bpm` for `steady_s`.
    steady_bpm: f32,
    steady_s: f32,
    below_s: f32,
    locked: bool,
    bpm: f32,
    beat_index: u32,
}

impl BeatTracker {
    /// A tracker called once every `hop_period_s`.
    pub fn new(hop_period_s: f32) -> Self {
        let hop_s = if hop_period_s.is_finite() && hop_period_s > 0.0 {
            hop_period_s.clamp(1.0e-3, 0.1)
        } else {
            512.0 / 48_000.0
        };
        let states = BeatStates::new(hop_s);
        BeatTracker {
            hop_s,
            kick: KickPhase::new(states.max_period()),
            kick_offset: 0.0,
            kick_unclear: 0,
            kick_candidate: 0.0,
            kick_votes: 0,
            pending: None,
            unreported: None,
            states,
            n_seen: 0,
            signal: BeatSignal::new(hop_s),
            silent_s: 0.0,
            since_beat_s: f32::INFINITY,
            last_phase: 0.0,
            out_phase: 0.0,
            last_x: 0.0,
            recent_x: [0.0; 2],
            agree_due: 0,
            agree_peak: 0.0,
            agreement: AGREE_ZERO,
            n_beats: 0,
            confidence: 0.0,
            above_s: 0.0,
            steady_bpm: 0.0,
            steady_s: 0.0,
            below_s: 0.0,
            locked: false,
            bpm: 0.0,
            beat_index: 0,
        }
    }

    /// Feed one hop: the detector's group fluxes and low-band power
    /// ([`super::onset::OnsetOut::beat_groups`], `low_power`) and the
    /// window's RMS level in dBFS.
    pub fn process(
        &mut self,
        groups: &[f32; BEAT_GROUPS],
        agree_groups: &[f32; BEAT_GROUPS],
        low_power: f32,
        rms_dbfs: f32,
        p: &DspParams,
    ) -> TempoState {
        // NaN levels count as silence.
        let silent = rms_dbfs.is_nan() || rms_dbfs < p.silence_threshold_dbfs;
        if self.long_silence(silent, p) {
            return self.state(false, 0.0);
        }
        let (lo, hi) = bpm_range(p);
        self.states.set_range(lo, hi);

        // Silence before the first sound, or a stretch of it, tells nothing
        // about beats and must not drag the running means down (the first
        // onset after it would look like a huge beat).
        let r = if silent && (self.n_seen == 0 || self.silent_s >= SILENT_SKIP_S) {
            1.0
        } else {
            self.observe(groups, agree_groups)
        };
        let agreed = self.agree();
        self.kick.push(low_power);
        self.states.hold = self.locked;
        self.states.step(r);
        let (bpm, _) = self.states.tempo();
        if self.steady_bpm > 0.0 && (bpm / self.steady_bpm - 1.0).abs() <= 0.04 {
            self.steady_s += self.hop_s;
        } else {
            (self.steady_bpm, self.steady_s) = (bpm, 0.0);
        }
        let beat = self.beat_due();
        self.report(beat, bpm, agreed, p)
    }

    /// Count silent time; true once it has lasted `silence_hold_s`: then
    /// everything is forgotten so the next piece starts fresh, and nothing
    /// is claimed meanwhile.
    #[inline]
    fn long_silence(&mut self, silent: bool, p: &DspParams) -> bool {
        if !silent {
            self.silent_s = 0.0;
            return false;
        }
        self.silent_s += self.hop_s;
        let hold = if p.silence_hold_s.is_finite() {
            p.silence_hold_s.max(0.0)
        } else {
            2.0
        };
        if self.silent_s < hold {
            return false;
        }
        if self.n_seen > 0 {
            self.clear_history();
        }
        true
    }

    /// Whether a beat falls due this hop: one on the kick's chain, or the
    /// filter's own when its phase wraps (at most one per half period),
    /// which also opens that beat's agreement and schedules the kick's.
    #[inline]
    fn beat_due(&mut self) -> bool {
        let mut beat = false;
        if let Some(k) = self.pending {
            self.pending = k.checked_sub(1).filter(|&k| k > 0);
            beat = self.pending.is_none();
        }
        self.since_beat_s += self.hop_s;
        let phase = self.states.phase();
        let wrapped = self.last_phase - phase > 0.5;
        self.last_phase = phase;
        let half_period_s = 0.5 * self.states.best_period() as f32 * self.hop_s;
        if wrapped && self.since_beat_s >= half_period_s {
            self.since_beat_s = 0.0;
            // The beat's agreement is its signal peak from two hops
            // before to AGREE_AFTER_HOPS after it.
            self.agree_peak = self.recent_x.iter().fold(self.last_x, |m, &v| m.max(v));
            self.agree_due = AGREE_AFTER_HOPS;
            let period = self.states.best_period();
            self.follow_kick(period);
            if self.kick_offset > 0.0 {
                // The kick comes `kick_offset` of a period before the
                // filter's next beat.
                let due = ((1.0 - self.kick_offset) * period as f32).round() as u32;
                self.pending = Some(due.max(1));
            } else {
                self.pending = None;
                beat = true;
            }
        }
        beat
    }

    /// The hop's state: the lock decided with this hop's agreement, the
    /// reported tempo, and the beat (if any) with how late it is reported.
    #[inline]
    fn report(&mut self, beat: bool, bpm: f32, agreed: bool, p: &DspParams) -> TempoState {
        if beat && !self.locked {
            self.unreported = Some(0);
        }
        // A beat recognised a few hops into its region is reported late
        // rather than back-dated: live and `analyze` then agree within a
        // block.
        let mut beat = beat.then_some(SMOOTH_DELAY_HOPS * self.hop_s + ODF_PEAK_LAG_S);
        let was_locked = self.locked;
        self.update_lock(p, agreed);
        if self.locked && !was_locked && beat.is_none() {
            // A claim made by a beat's agreement reports that beat, a few
            // hops late.
            if let Some(k) = self.unreported.filter(|&k| k <= AGREE_AFTER_HOPS) {
                beat = Some((SMOOTH_DELAY_HOPS + k as f32) * self.hop_s + ODF_PEAK_LAG_S);
            }
        }
        self.unreported = match self.unreported {
            Some(k) if !self.locked => Some(k.saturating_add(1)),
            _ => None,
        };
        if self.locked {
            // Report a steady number: follow the estimate with a short lag.
            if self.bpm <= 0.0 || (bpm / self.bpm - 1.0).abs() > 0.04 {
                self.bpm = bpm;
            } else {
                self.bpm += 0.2 * (bpm - self.bpm);
            }
        } else {
            self.bpm = 0.0;
        }
        if beat.is_some() && self.locked {
            self.beat_index = self.beat_index.wrapping_add(1);
        }
        self.state(self.locked && beat.is_some(), beat.unwrap_or(0.0))
    }

    /// At a filter beat: move the reported beats onto a four-on-the-floor
    /// kick's chain once it has dominated for [`KICK_CONFIRM_BEATS`] beats,
    /// back onto the filter's beats when they carry the kick, and keep the
    /// last decision through [`KICK_HOLD_BEATS`] beats without one.
    fn follow_kick(&mut self, period: u32) {
        match self.kick.check(period as f32) {
            Kick::Late(frac) => {
                self.kick_unclear = 0;
                if self.kick_votes > 0 && self.kick_candidate == frac {
                    self.kick_votes = self.kick_votes.saturating_add(1);
                } else {
                    (self.kick_candidate, self.kick_votes) = (frac, 1);
                }
                if self.kick_votes >= KICK_CONFIRM_BEATS {
                    self.kick_offset = frac;
                }
            }
            Kick::OnBeat => {
                self.kick_offset = 0.0;
                self.kick_unclear = 0;
                self.kick_votes = 0;
            }
            Kick::Unclear => {
                self.kick_votes = 0;
                self.kick_unclear = self.kick_unclear.saturating_add(1);
                if self.kick_unclear > KICK_HOLD_BEATS {
                    self.kick_offset = 0.0;
                }
            }
        }
    }

    /// Fold this hop's signal into the pending beat's agreement; once it is
    /// complete, update the agreement and the confidence. Returns whether
    /// a beat's agreement was completed in this hop.
    fn agree(&mut self) -> bool {
        if self.agree_due == 0 {
            return false;
        }
        self.agree_peak = self.agree_peak.max(self.last_x);
        self.agree_due -= 1;
        if self.agree_due == 0 {
            let x = self.agree_peak.min(AGREE_MAX);
            self.n_beats = self.n_beats.saturating_add(1);
            let a = AGREE_RATE.max(1.0 / (AGREE_PRIOR_BEATS + self.n_beats as f32));
            self.agreement += a * (x - self.agreement);
            self.confidence = ((self.agreement - AGREE_ZERO) / AGREE_SPAN).clamp(0.0, 1.0);
        }
        self.agree_due == 0
    }

    /// The likelihood ratio of a beat in this hop.
    fn observe(&mut self, groups: &[f32; BEAT_GROUPS], agree_groups: &[f32; BEAT_GROUPS]) -> f32 {
        self.n_seen = self.n_seen.saturating_add(1);
        let (r, x) = self.signal.observe(groups, agree_groups, self.n_seen);
        self.recent_x = [self.last_x, self.recent_x[0]];
        self.last_x = x;
        r
    }

    /// `agreed`: a beat's agreement was completed in this hop.
    fn update_lock(&mut self, p: &DspParams, agreed: bool) {
        let thr = if p.lock_confidence.is_finite() {
            p.lock_confidence.clamp(0.0, 1.0)
        } else {
            0.5
        };
        if self.confidence >= thr {
            self.above_s += self.hop_s;
        } else {
            self.above_s = 0.0;
        }
        if self.confidence < 0.6 * thr {
            self.below_s += self.hop_s;
        } else {
            self.below_s = 0.0;
        }
        // The first second's normalisation is still settling (a start
        // transient looks like a strong beat): claim nothing before it.
        let settled = self.n_seen as f32 * self.hop_s >= MIN_SIGNAL_S
            && self.n_beats >= MIN_BEATS
            && self.steady_s >= STEADY_S;
        let fast = agreed && self.confidence >= thr + FAST_CLAIM_MARGIN * (1.0 - thr);
        if !self.locked && settled && (self.above_s >= LOCK_HOLD_S || fast) {
            self.locked = true;
        } else if self.locked && self.below_s >= UNLOCK_HOLD_S {
            self.locked = false;
        }
    }

    fn state(&mut self, beat: bool, beat_lag_s: f32) -> TempoState {
        let phase = if self.locked {
            // The state's position lags the audio by the signal's delay.
            let p = self.states.best_period().max(1) as f32;
            let lag = SMOOTH_DELAY_HOPS + ODF_PEAK_LAG_S / self.hop_s;
            let phase = (self.states.phase() + lag / p + self.kick_offset).rem_euclid(1.0);
            // Small corrections against the run of the phase are held
            // rather than shown as a step back.
            let back = self.out_phase - phase;
            if back > 0.0 && back < PHASE_HOLD {
                self.out_phase
            } else {
                phase.min(0.999_999)
            }
        } else {
            0.0
        };
        self.out_phase = phase;
        TempoState {
            bpm: self.bpm,
            confidence: self.confidence.clamp(0.0, 1.0),
            phase,
            locked: self.locked,
            beat,
            beat_index: self.beat_index,
            beat_lag_s: if beat { beat_lag_s.max(0.0) } else { 0.0 },
        }
    }

    fn clear_history(&mut self) {
        self.states.reset();
        self.kick.reset();
        self.kick_offset = 0.0;
        self.kick_unclear = 0;
        self.kick_candidate = 0.0;
        self.kick_votes = 0;
        self.pending = None;
        self.unreported = None;
        self.n_seen = 0;
        self.signal.reset();
        self.since_beat_s = f32::INFINITY;
        self.last_phase = 0.0;
        self.out_phase = 0.0;
        self.last_x = 0.0;
        self.recent_x = [0.0; 2];
        self.agree_due = 0;
        self.agree_peak = 0.0;
        self.agreement = AGREE_ZERO;
        self.n_beats = 0;
        self.confidence = 0.0;
        self.above_s = 0.0;
        self.steady_bpm = 0.0;
        self.steady_s = 0.0;
        self.below_s = 0.0;
        self.locked = false;
        self.bpm = 0.0;
    }

    /// Forget all history.
    pub fn reset(&mut self) {
        self.clear_history();
        self.silent_s = 0.0;
        self.beat_index = 0;
    }

    /// The tempo estimate in BPM even when not locked (diagnostics).
    pub fn estimate_bpm(&self) -> f32 {
        self.states.tempo().0
    }
}

/// The configured tempo range, or the default when it is unusable.
fn bpm_range(p: &DspParams) -> (f32, f32) {
    let (lo, hi) = (p.min_bpm, p.max_bpm);
    if lo.is_finite() && hi.is_finite() && lo > 0.0 && hi > lo {
        (lo, hi)
    } else {
        (55.0, 215.0)
    }
}

#[cfg(test)]
#[path = "tempo/tests.rs"]
mod tests;
