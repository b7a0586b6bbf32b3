//! Beat placement: the online cumulative score of Ellis' dynamic-programming
//! beat tracker (as in Stark, Davies & Plumbley's BTrack), with beats
//! predicted half a period ahead.
//!
//! Real-time safety: sized in `new`; `push` never allocates.

/// Weight of the past in the cumulative score.
const ALPHA: f32 = 0.9;
/// Tightness of the log-Gaussian transition around one period.
const TIGHTNESS: f32 = 5.0;
/// Longest period the buffers allow (30 BPM).
const MAX_PERIOD_S: f32 = 2.0;
/// Width of the window that pulls the predicted beat towards one period
/// after the last one, as a fraction of the period.
const PREDICT_SIGMA: f32 = 0.25;

/// How much stronger another chain of the cumulative score must be before
/// the beat moves onto it.
const SWITCH_RATIO: f32 = 1.15;

/// Low-band evidence: a chain a quarter, half or three quarters of a period
/// away must have this many times the low-band power of the current
/// one before the beat moves onto it.
const LOW_SWITCH_RATIO: f32 = 3.0;
/// A chain with this many times the low-band strength of another is not left
/// for that one, however the cumulative score compares.
const LOW_KEEP_RATIO: f32 = 2.0;
/// Beats of history the low-band evidence is summed over (at most).
const LOW_BEATS: usize = 8;
/// Fewest beats of history before the low band may decide anything.
const LOW_MIN_BEATS: usize = 4;

pub(super) struct BeatPredictor {
    /// Cumulative score and normalised ODF, indexed by hop modulo `cap`.
    cs: Vec<f32>,
    odf: Vec<f32>,
    /// Low-band onset strength, same indexing.
    low: Vec<f32>,
    cap: usize,
    /// Transition weights for backward offsets `v` (hops).
    w: Vec<f32>,
    w_period: f32,
    v_lo: usize,
    v_hi: usize,
    /// Projected future cumulative score, index = hops ahead.
    fut: Vec<f32>,
    /// Index of the newest hop pushed (t), or none yet.
    t: u64,
    started: bool,
    last_beat: f64,
    next_beat: Option<f64>,
    agreement: f32,
}

impl BeatPredictor {
    pub(super) fn new(hop_s: f32) -> Self {
        let max_p = (MAX_PERIOD_S / hop_s).ceil() as usize + 2;
        let cap = 4 * max_p + 8;
        BeatPredictor {
            cs: vec![0.0; cap],
            odf: vec![0.0; cap],
            low: vec![0.0; cap],
            cap,
            w: vec![0.0; 2 * max_p + 2],
            w_period: 0.0,
            v_lo: 1,
            v_hi: 1,
            fut: vec![0.0; 2 * max_p + 2],
            t: 0,
            started: false,
            last_beat: 0.0,
            next_beat: None,
            agreement: 0.0,
        }
    }

    fn set_period(&mut self, period: f32) {
        let max_p = (self.w.len() - 2) / 2;
        let period = period.clamp(2.0, max_p as f32);
        if self.w_period > 0.0 && (period / self.w_period - 1.0).abs() < 0.001 {
            return;
        }
        self.w_period = period;
        self.v_lo = ((0.5 * period).round() as usize).max(1);
        self.v_hi = ((2.0 * period).round() as usize).min(self.w.len() - 1);
        for v in self.v_lo..=self.v_hi {
            let x = TIGHTNESS * (v as f32 / period).ln();
            self.w[v] = (-0.5 * x * x).exp();
        }
    }

    #[inline]
    fn at(&self, buf: &[f32], hop: u64) -> f32 {
        buf[(hop % self.cap as u64) as usize]
    }

    /// Cumulative score at hop `x`, reading the projection for future hops.
    #[inline]
    fn cs_ext(&self, x: u64) -> f32 {
        if x <= self.t {
            self.at(&self.cs, x)
        } else {
            self.fut[(x - self.t) as usize]
        }
    }

    /// Best weighted predecessor score for hop `x`.
    #[inline]
    fn best_past(&self, x: u64) -> f32 {
        let mut best = 0.0f32;
        for v in self.v_lo..=self.v_hi {
            if v as u64 > x {
                break;
            }
            best = best.max(self.w[v] * self.cs_ext(x - v as u64));
        }
        best
    }

    /// Add one hop of normalised ODF with the current period estimate
    /// (hops). Returns how many hops ago a beat fell, when one falls in this
    /// hop.
    pub(super) fn push(&mut self, odf: f32, low: f32, period: f32) -> Option<f32> {
        self.set_period(period);
        let period = self.w_period;
        if self.started {
            self.t += 1;
        }
        let t = self.t;
        let odf = if odf.is_finite() {
            odf.clamp(0.0, 1.0e3)
        } else {
            0.0
        };
        let c = (1.0 - ALPHA) * odf + ALPHA * self.best_past(t);
        let i = (t % self.cap as u64) as usize;
        self.cs[i] = c;
        self.odf[i] = odf;
        self.low[i] = if low.is_finite() {
            low.clamp(0.0, 1.0e3)
        } else {
            0.0
        };
        if !self.started {
            self.started = true;
            self.last_beat = t as f64;
        }

        let mut out = None;
        if let Some(nb) = self.next_beat {
            if t as f64 >= nb {
                out = Some((t as f64 - nb) as f32);
                self.last_beat = nb;
                self.next_beat = None;
            }
        }
        // A beat that was never scheduled (period jumped): restart from now.
        if self.next_beat.is_none() && t as f64 > self.last_beat + 2.0 * period as f64 {
            self.last_beat = t as f64 - period as f64;
        }
        if self.next_beat.is_none() && t as f64 >= self.last_beat + 0.5 * period as f64 {
            self.score_last_beat(period);
            self.predict(period);
        }
        out
    }

    /// Project the cumulative score one and a half periods ahead with no
    /// new input and schedule the next beat at its weighted peak.
    fn predict(&mut self, period: f32) {
        let t = self.t;
        let horizon = ((1.5 * period).ceil() as usize).min(self.fut.len() - 1);
        // Follow the strongest chain of the cumulative score: where it peaked
        // within the last period. Keep the current chain unless another one
        // is clearly stronger, so near-equal beat and off-beat chains do not
        // make the phase flip back and forth.
        let n = (period.round() as u64).clamp(1, t);
        let mut best_h = t;
        let mut best_c = f32::MIN;
        for h in t + 1 - n..=t {
            let c = self.at(&self.cs, h);
            if c > best_c {
                best_c = c;
                best_h = h;
            }
        }
        let lb = self.last_beat.round().max(0.0) as u64;
        let mut cur_c = 0.0f32;
        for h in lb.saturating_sub(2)..=(lb + 2).min(t) {
            cur_c = cur_c.max(self.at(&self.cs, h));
        }
        let mut anchor = if best_c > SWITCH_RATIO * cur_c {
            best_h as f64
        } else {
            self.last_beat
        };
        // Phase from the low band (kick): compare the chain through the
        // anchor with the chains a quarter, half and three quarters of a
        // period away.
        let p64 = period as f64;
        let d = (anchor - self.last_beat).rem_euclid(p64) / p64;
        if d > 0.15 && d < 0.85 {
            // The score wants to move the phase: refuse when the low band
            // clearly supports the current chain over the new one.
            if let (Some(cur), Some(new)) = (
                self.low_chain(self.last_beat, period),
                self.low_chain(anchor, period),
            ) {
                if cur > LOW_KEEP_RATIO * new {
                    anchor = self.last_beat;
                }
            }
        } else if let Some(cur) = self.low_chain(anchor, period) {
            let mut best = (0.0f64, cur);
            for f in [0.25, 0.5, 0.75] {
                if let Some(e) = self.low_chain(anchor - f * p64, period) {
                    if e > best.1 {
                        best = (f, e);
                    }
                }
            }
            if best.0 > 0.0 && best.1 > LOW_SWITCH_RATIO * cur {
                // Another chain carries the kick: move onto its newest beat.
                anchor -= best.0 * p64;
                if anchor + p64 <= t as f64 {
                    anchor += p64;
                }
            }
        }
        let expected = (anchor + period as f64 - t as f64) as f32;
        let sigma = (PREDICT_SIGMA * period).max(1.0);
        let mut best_j = 1;
        let mut best_v = f32::MIN;
        self.fut[0] = self.at(&self.cs, t);
        for j in 1..=horizon {
            let v = ALPHA * self.best_past(t + j as u64);
            self.fut[j] = v;
            let g = (-0.5 * ((j as f32 - expected) / sigma).powi(2)).exp();
            let s = v * g;
            if s > best_v {
                best_v = s;
                best_j = j;
            }
        }
        // Sub-hop refinement of the peak (weights included).
        let mut frac = 0.0;
        if best_j > 1 && best_j < horizon {
            let f = |j: usize| self.fut[j] * (-0.5 * ((j as f32 - expected) / sigma).powi(2)).exp();
            let (l, c, r) = (f(best_j - 1), f(best_j), f(best_j + 1));
            let den = l - 2.0 * c + r;
            if den < 0.0 {
                frac = (0.5 * (l - r) / den).clamp(-0.5, 0.5);
            }
        }
        let nb = t as f64 + best_j as f64 + frac as f64;
        self.next_beat = Some(nb.max(t as f64 + 0.5));
    }

    /// Mean low-band power around the beats of the chain through hop `x`
    /// (one `period` apart), over the last [`LOW_BEATS`] beats the history
    /// holds; none with fewer than [`LOW_MIN_BEATS`].
    fn low_chain(&self, x: f64, period: f32) -> Option<f32> {
        let t = self.t as f64;
        let oldest = (t - self.cap as f64 + 3.0).max(2.0);
        // The newest beat of the chain whose low band has been seen.
        let mut x = x;
        while x + 3.0 > t && period > 0.0 {
            x -= period as f64;
        }
        let (mut sum, mut n) = (0.0f32, 0usize);
        for k in 0..LOW_BEATS {
            let c = (x - k as f64 * period as f64).round();
            if c < oldest {
                break;
            }
            let c = c as u64;
            for h in c - 1..=c + 2 {
                sum += self.at(&self.low, h);
            }
            n += 1;
        }
        if n < LOW_MIN_BEATS {
            None
        } else {
            Some(sum / n as f32 + 1.0e-9)
        }
    }

    /// How well the last beat sat on an ODF peak, folded into `agreement`.
    fn score_last_beat(&mut self, period: f32) {
        let lb = self.last_beat.round().max(0.0) as u64;
        if lb + 2 > self.t || self.t < period as u64 {
            return;
        }
        let mut peak = 0.0f32;
        for h in lb.saturating_sub(2)..=lb + 2 {
            peak = peak.max(self.at(&self.odf, h));
        }
        // The phase may have been chosen by the low band against a stronger
        // off-beat chain (an open hat): the pulse is as clear either way.
        let off = (self.last_beat - 0.5 * period as f64).round();
        if off >= 2.0 && (off as u64) + self.cap as u64 > self.t + 4 {
            let off = off as u64;
            for h in off - 2..=off + 2 {
                peak = peak.max(self.at(&self.odf, h));
            }
        }
        let n = (period.round() as u64).max(1);
        let mut mean = 0.0;
        for h in self.t + 1 - n..=self.t {
            mean += self.at(&self.odf, h);
        }
        mean /= n as f32;
        let r = peak / (mean + 1.0e-3);
        let inst = ((r - 1.2) / 2.5).clamp(0.0, 1.0);
        self.agreement += 0.3 * (inst - self.agreement);
    }

    /// How well recent beats sat on ODF peaks, in [0, 1].
    pub(super) fn agreement(&self) -> f32 {
        self.agreement
    }

    /// The newest hop index, as a float.
    pub(super) fn now_hops(&self) -> f64 {
        self.t as f64
    }

    /// Beat phase in [0, 1) at hop position `now`.
    pub(super) fn phase_at(&self, now: f64) -> f32 {
        let ph = match self.next_beat {
            Some(nb) if nb > self.last_beat => (now - self.last_beat) / (nb - self.last_beat),
            _ => (now - self.last_beat) / self.w_period.max(1.0) as f64,
        };
        let ph = ph.rem_euclid(1.0) as f32;
        if ph.is_finite() && ph < 1.0 {
            ph
        } else {
            0.0
        }
    }

    pub(super) fn reset(&mut self) {
        self.cs.iter_mut().for_each(|v| *v = 0.0);
        self.odf.iter_mut().for_each(|v| *v = 0.0);
        self.low.iter_mut().for_each(|v| *v = 0.0);
        self.t = 0;
        self.started = false;
        self.last_beat = 0.0;
        self.next_beat = None;
        self.agreement = 0.0;
    }
}
