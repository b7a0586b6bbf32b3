//! Causal beat tracking and tempo from the onset detector's band fluxes.
//!
//! The tracker has three stages, all updated in place every hop:
//!
//! 1. **Beat signal.** The broadband detector hands over the half-wave
//!    rectified SuperFlux of four frequency groups
//!    ([`super::onset::BEAT_GROUP_EDGES_HZ`]: below 150 Hz — the kick and
//!    the bass —, 150–500 Hz, 500 Hz–2 kHz, above 2 kHz). Each group is
//!    divided by its own 2 s running mean, so a quiet kick under loud
//!    cymbals counts as much as in a clean mix, and the groups are summed
//!    with weights [`GROUP_WEIGHTS`] (the low group twice: the beat is
//!    usually where the kick and the bass are). The sum is smoothed over
//!    three hops, divided by its own 2 s running mean, and turned into the
//!    likelihood ratio of a beat in this hop,
//!    `r = max(x / `[`OBS_SCALE`]`, `[`OBS_FLOOR`]`)^`[`OBS_GAMMA`].
//! 2. **Beat state filter** ([`dbn::BeatStates`]): a bar-pointer model over
//!    (beat period, position in the beat) for every integer period of the
//!    configured tempo range, run forward. Tempo, phase and metrical level
//!    are one inference: a beat falls in the hop in which the most probable
//!    state enters its beat region, and the tempo is the posterior-weighted
//!    period around the most probable one. A tempo outside
//!    `[min_bpm, max_bpm]` is tracked at its octave inside the range.
//! 3. **Confidence and lock**: the filter's own posterior is no measure of
//!    confidence (on noise it settles on some tempo too), so confidence is
//!    how well the beats it predicts meet the signal: a running mean over
//!    beats ([`AGREE_RATE`] per beat) of the normalised beat signal in the
//!    hop of the beat (1 on average; about 1.2–1.7 on noise, 2–4 on
//!    music), mapped linearly from [`AGREE_ZERO`] (0) to
//!    [`AGREE_ZERO`]` + `[`AGREE_SPAN`] (1). A tempo is claimed
//!    (`locked`, `bpm > 0`, beat events) once confidence has stayed above
//!    `lock_confidence` for [`LOCK_HOLD_S`]; the lock is dropped when
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
mod kick;

use super::onset::{one_pole, BEAT_GROUPS, ODF_PEAK_LAG_S};
use super::params::DspParams;
use crate::types::TempoState;
use dbn::BeatStates;
use kick::KickPhase;

/// Confidence must stay above `lock_confidence` this long before a tempo is
/// claimed.
pub const LOCK_HOLD_S: f32 = 0.2;
/// Signal needed before anything is claimed.
pub const MIN_SIGNAL_S: f32 = 1.0;
/// Confidence must stay below 60 % of `lock_confidence` this long before a
/// claimed tempo is dropped (silence drops it sooner).
pub const UNLOCK_HOLD_S: f32 = 3.0;
/// Weights of the frequency groups in the beat signal.
pub const GROUP_WEIGHTS: [f32; BEAT_GROUPS] = [2.0, 1.0, 1.0, 1.0];
/// Floor of the running means that normalise the groups and their sum: a
/// flux this small is numerical noise (a steady tone), not a beat.
const GROUP_FLOOR: f32 = 0.01;
/// Memory of the running means that normalise the groups and their sum.
const NORM_TAU_S: f32 = 2.0;
/// Likelihood ratio of a beat: `max(x / OBS_SCALE, OBS_FLOOR)^OBS_GAMMA`,
/// `x` the normalised beat signal (1 on average).
const OBS_SCALE: f32 = 1.5;
const OBS_FLOOR: f32 = 0.05;
const OBS_GAMMA: f32 = 0.7;
/// Weight of each new beat in the agreement.
const AGREE_RATE: f32 = 0.3;
/// Agreement that maps to confidence 0, and the span that maps to 1.
const AGREE_ZERO: f32 = 1.2;
const AGREE_SPAN: f32 = 1.6;
/// Largest beat-signal value one beat may add to the agreement.
const AGREE_MAX: f32 = 6.0;
/// While the kick decides the phase, the low-band power (over its 2 s
/// mean, at most [`KICK_OBS_MAX`]) joins the beat signal with this weight,
/// for [`KICK_MODE_BEATS`] beats after each kick decision.
const KICK_OBS_WEIGHT: f32 = 2.0;
const KICK_OBS_MAX: f32 = 4.0;
const KICK_MODE_BEATS: u32 = 16;
/// Hops by which the 3-tap smoothing delays the beat signal's peak.
const SMOOTH_DELAY_HOPS: f32 = 1.0;

/// Beat tracker fed the detector's group fluxes once per hop.
pub struct BeatTracker {
    hop_s: f32,
    states: BeatStates,
    kick: KickPhase,
    kick_mode: u32,
    low_mean: f32,
    n_seen: u32,
    a_norm: f32,
    group_mean: [f32; BEAT_GROUPS],
    sum_mean: f32,
    prev: [f32; 2],
    silent_s: f32,
    since_beat_s: f32,
    last_x: f32,
    agreement: f32,
    confidence: f32,
    above_s: f32,
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
            kick_mode: 0,
            low_mean: 0.0,
            states,
            n_seen: 0,
            a_norm: one_pole(hop_s, NORM_TAU_S),
            group_mean: [0.0; BEAT_GROUPS],
            sum_mean: 0.0,
            prev: [0.0; 2],
            silent_s: 0.0,
            since_beat_s: f32::INFINITY,
            last_x: 0.0,
            agreement: 0.0,
            confidence: 0.0,
            above_s: 0.0,
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
        low_power: f32,
        rms_dbfs: f32,
        p: &DspParams,
    ) -> TempoState {
        // NaN levels count as silence.
        let silent = rms_dbfs.is_nan() || rms_dbfs < p.silence_threshold_dbfs;
        if silent {
            self.silent_s += self.hop_s;
            let hold = if p.silence_hold_s.is_finite() {
                p.silence_hold_s.max(0.0)
            } else {
                2.0
            };
            if self.silent_s >= hold {
                // Long silence: forget everything so the next piece starts
                // fresh, and claim nothing meanwhile.
                if self.n_seen > 0 {
                    self.clear_history();
                }
                return self.state(false, 0.0);
            }
        } else {
            self.silent_s = 0.0;
        }
        let (lo, hi) = bpm_range(p);
        self.states.set_range(lo, hi);

        let r = self.observe(groups, low_power);
        self.kick.push(low_power);
        let beat_pos = self.states.step(r);
        let (bpm, _) = self.states.tempo();
        // A beat when the most probable state enters its beat region, at
        // most one per shortest period of the range.
        self.since_beat_s += self.hop_s;
        let mut beat = None;
        if beat_pos.is_some() && self.since_beat_s >= 60.0 / hi {
            self.since_beat_s = 0.0;
            if let Some(frac) = self.kick.check(self.states.best_period() as f32) {
                // The kick is on another chain: this beat is not one,
                // the next falls on the kick, and the kick joins the
                // beat signal for a while so the filter stays there.
                self.states.advance(frac);
                self.kick_mode = KICK_MODE_BEATS;
            } else {
                self.kick_mode = self.kick_mode.saturating_sub(1);
                // A beat recognised a few hops into its region is
                // reported late rather than back-dated: live and
                // `analyze` then agree within a block.
                beat = Some(SMOOTH_DELAY_HOPS * self.hop_s + ODF_PEAK_LAG_S);
                let x = self.last_x.min(AGREE_MAX);
                self.agreement += AGREE_RATE * (x - self.agreement);
                self.confidence = ((self.agreement - AGREE_ZERO) / AGREE_SPAN).clamp(0.0, 1.0);
            }
        }
        self.update_lock(p);
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

    /// The likelihood ratio of a beat in this hop.
    fn observe(&mut self, groups: &[f32; BEAT_GROUPS], low_power: f32) -> f32 {
        self.n_seen = self.n_seen.saturating_add(1);
        let a = self.a_norm.max(1.0 / self.n_seen as f32);
        let low = if low_power.is_finite() {
            low_power.clamp(0.0, 1.0e6)
        } else {
            0.0
        };
        self.low_mean += a * (low - self.low_mean);
        let mut sum = 0.0;
        if self.kick_mode > 0 {
            sum += KICK_OBS_WEIGHT * (low / (self.low_mean + 1.0e-9)).min(KICK_OBS_MAX);
        }
        for ((g, m), w) in groups.iter().zip(&mut self.group_mean).zip(GROUP_WEIGHTS) {
            let g = if g.is_finite() {
                g.clamp(0.0, 1.0e3)
            } else {
                0.0
            };
            *m += a * (g - *m);
            sum += w * g / (*m + GROUP_FLOOR);
        }
        let smooth = 0.25 * (sum + self.prev[1]) + 0.5 * self.prev[0];
        self.prev = [sum, self.prev[0]];
        self.sum_mean += a * (smooth - self.sum_mean);
        let x = smooth / (self.sum_mean + GROUP_FLOOR);
        self.last_x = x;
        (x / OBS_SCALE).max(OBS_FLOOR).powf(OBS_GAMMA)
    }

    fn update_lock(&mut self, p: &DspParams) {
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
        let settled = self.n_seen as f32 * self.hop_s >= MIN_SIGNAL_S;
        if !self.locked && settled && self.above_s >= LOCK_HOLD_S {
            self.locked = true;
        } else if self.locked && self.below_s >= UNLOCK_HOLD_S {
            self.locked = false;
        }
    }

    fn state(&self, beat: bool, beat_lag_s: f32) -> TempoState {
        let phase = if self.locked {
            // The state's position lags the audio by the signal's delay.
            let p = self.states.best_period().max(1) as f32;
            let lag = SMOOTH_DELAY_HOPS + ODF_PEAK_LAG_S / self.hop_s;
            (self.states.phase() + lag / p)
                .rem_euclid(1.0)
                .min(0.999_999)
        } else {
            0.0
        };
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
        self.kick_mode = 0;
        self.low_mean = 0.0;
        self.n_seen = 0;
        self.group_mean = [0.0; BEAT_GROUPS];
        self.sum_mean = 0.0;
        self.prev = [0.0; 2];
        self.since_beat_s = f32::INFINITY;
        self.last_x = 0.0;
        self.agreement = 0.0;
        self.confidence = 0.0;
        self.above_s = 0.0;
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
