//! Causal beat tracking and tempo on the onset detection function (ODF).
//!
//! The tracker has three stages, all updated in place every hop:
//!
//! 1. **Tempogram** ([`tempogram::Tempogram`]): a leaky autocorrelation of the
//!    mean-removed ODF over lags up to 4.5 s (τ 2.5 s, normalised to a
//!    correlation), scored on a log-tempo grid (0.5 % steps) by the sum of the
//!    correlation at the first four multiples of each candidate period, times
//!    a log-Gaussian prior around 120 BPM. Only candidates inside
//!    `[min_bpm, max_bpm]` compete, so a tempo outside the range is reported
//!    as its octave inside it. A forward filter over the grid (a narrow
//!    Gaussian transition plus a small jump probability) keeps the estimate
//!    steady and lets it move to a new tempo within a couple of seconds.
//! 2. **Beat placement** ([`beats::BeatPredictor`]): the online cumulative
//!    score of Ellis' dynamic-programming tracker as used in BTrack
//!    (`C[t] = (1−α)·ODF[t] + α·max_v W(v)·C[t−v]`, `W` a log-Gaussian around
//!    one period); halfway between beats the score is projected one period
//!    into the future and the next beat is scheduled at its peak. Beats are
//!    therefore predicted, not detected late: a beat is emitted in the hop it
//!    falls in.
//!    The chain's *phase* is then checked against a separate low-band signal
//!    (the power below 110 Hz: the kick), which plays no part in the ODF:
//!    when the chain a quarter, half or three quarters of a period away has
//!    3× the low-band power over the last 8 beats, the beat moves onto it,
//!    and the score may not pull the beat off a chain that has 2× the
//!    low-band power of the new one. So on four-on-the-floor music with an
//!    off-beat hat as strong as the kick the beats fall on the kick.
//! 3. **Confidence and lock**: confidence is a 0.5 s running mean of the
//!    geometric mean of the tempogram salience and how well the recent
//!    beats sit on ODF peaks. A tempo is claimed (`locked`, `bpm > 0`, beat
//!    events) only after confidence has stayed above `lock_confidence` for
//!    [`LOCK_HOLD_S`]; the lock is dropped when confidence stays below 60 %
//!    of that for [`UNLOCK_HOLD_S`], and at once — with all history cleared —
//!    when the input has been below `silence_threshold_dbfs` for
//!    `silence_hold_s`. Short breaks keep the beat going (flywheel).
//!
//! Real-time safety: every buffer is sized in `new` for the widest tempo
//! range the configuration allows (30–300 BPM); `process` never allocates,
//! locks, logs or blocks, and never panics on any input (non-finite values
//! are treated as zero).

mod beats;
mod tempogram;

use super::onset::{one_pole, take_low_odf, ODF_PEAK_LAG_S};
use super::params::DspParams;
use crate::types::TempoState;
use beats::BeatPredictor;
use tempogram::Tempogram;

/// Confidence must stay above `lock_confidence` this long before a tempo is
/// claimed.
pub const LOCK_HOLD_S: f32 = 0.5;
/// Confidence must stay below 60 % of `lock_confidence` this long before a
/// claimed tempo is dropped (silence drops it sooner).
pub const UNLOCK_HOLD_S: f32 = 3.0;
/// Seconds between tempogram updates.
const TEMPO_UPDATE_S: f32 = 0.04;

/// Beat tracker fed one onset-detection value per hop.
pub struct BeatTracker {
    hop_s: f32,
    tempogram: Tempogram,
    beats: BeatPredictor,
    hop: u64,
    since_update_s: f32,
    silent_s: f32,
    /// Running mean of the ODF, for normalising it.
    odf_mean: f32,
    a_odf_mean: f32,
    confidence: f32,
    a_conf: f32,
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
            hop_period_s
        } else {
            512.0 / 48_000.0
        };
        BeatTracker {
            hop_s,
            tempogram: Tempogram::new(hop_s),
            beats: BeatPredictor::new(hop_s),
            hop: 0,
            since_update_s: 0.0,
            silent_s: 0.0,
            odf_mean: 0.0,
            a_odf_mean: one_pole(hop_s, 2.0),
            confidence: 0.0,
            a_conf: one_pole(hop_s, 0.5),
            above_s: 0.0,
            below_s: 0.0,
            locked: false,
            bpm: 0.0,
            beat_index: 0,
        }
    }

    /// Feed one hop: the ODF value and the window's RMS level in dBFS. The
    /// low-band power that chooses the beat phase is taken from the
    /// [`super::onset::FluxOnset::process`] call of this hop on the same
    /// thread (none: the phase follows the ODF alone).
    pub fn process(&mut self, odf: f32, rms_dbfs: f32, p: &DspParams) -> TempoState {
        let low = take_low_odf().unwrap_or(0.0);
        self.process_with_low(odf, low, rms_dbfs, p)
    }

    /// [`Self::process`] with the low-band power
    /// ([`super::onset::OnsetOut::low_odf`]) passed explicitly.
    pub fn process_with_low(
        &mut self,
        odf: f32,
        low_odf: f32,
        rms_dbfs: f32,
        p: &DspParams,
    ) -> TempoState {
        let low = if low_odf.is_finite() {
            low_odf.max(0.0)
        } else {
            0.0
        };
        let odf = if odf.is_finite() { odf.max(0.0) } else { 0.0 };
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
                if self.hop > 0 {
                    self.clear_history();
                }
                return self.state(false, 0.0);
            }
        } else {
            self.silent_s = 0.0;
        }

        self.odf_mean += self.a_odf_mean * (odf - self.odf_mean);
        let norm = odf / (self.odf_mean + 1.0e-3);
        self.tempogram.push(odf);
        self.since_update_s += self.hop_s;
        if self.since_update_s >= TEMPO_UPDATE_S {
            self.since_update_s = 0.0;
            self.tempogram.update(p);
        }
        let period = self.tempogram.period_hops();
        let beat = self.beats.push(norm, low, period);

        // Confidence: tempogram salience × beat agreement.
        let inst = (self.tempogram.salience() * self.beats.agreement()).sqrt();
        let inst = if inst.is_finite() { inst } else { 0.0 };
        self.confidence += self.a_conf * (inst - self.confidence);
        self.update_lock(p);
        self.hop += 1;

        let bpm = self.tempogram.bpm();
        if self.locked {
            // Report a steady number: follow the estimate with a short lag.
            if self.bpm <= 0.0 || (bpm / self.bpm - 1.0).abs() > 0.04 {
                self.bpm = bpm;
            } else {
                self.bpm += 0.1 * (bpm - self.bpm);
            }
        } else {
            self.bpm = 0.0;
        }
        let lag = beat.map(|ago_hops| ago_hops * self.hop_s + ODF_PEAK_LAG_S);
        if lag.is_some() && self.locked {
            self.beat_index = self.beat_index.wrapping_add(1);
        }
        self.state(self.locked && lag.is_some(), lag.unwrap_or(0.0))
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
        if !self.locked && self.above_s >= LOCK_HOLD_S && self.tempogram.bpm() > 0.0 {
            self.locked = true;
        } else if self.locked && self.below_s >= UNLOCK_HOLD_S {
            self.locked = false;
        }
    }

    fn state(&self, beat: bool, beat_lag_s: f32) -> TempoState {
        let phase = if self.locked {
            let now = self.beats.now_hops() - (ODF_PEAK_LAG_S / self.hop_s) as f64;
            self.beats.phase_at(now)
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
        self.tempogram.reset();
        self.beats.reset();
        self.hop = 0;
        self.since_update_s = 0.0;
        self.odf_mean = 0.0;
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
        self.tempogram.bpm()
    }
}

#[cfg(test)]
#[path = "tempo/tests.rs"]
mod tests;
