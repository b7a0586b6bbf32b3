//! The beat state filter: a bar-pointer hidden Markov model over (beat
//! period, position within the beat), run forward one hop at a time.
//!
//! This is the state space of Krebs, Böck & Widmer (2015) as madmom's
//! online tracker uses it, with a classical observation instead of a
//! neural network's: every integer beat period `P` (in hops) of the active
//! tempo range has `P` positions; the position advances by one each hop and
//! wraps to 0 on the beat, where the period may change to a neighbour
//! (`exp(−λ·|P'/P − 1|)`, plus a small jump probability to any period, so a
//! new song is followed). The observation multiplies the first
//! `P/`[`BEAT_REGION`] positions of every period by the likelihood ratio
//! `r` of "a beat now" that the caller derives from the onset signal.
//!
//! Decoding is causal, as in madmom's forward mode: a beat falls in the hop
//! in which the most probable state enters its beat region. The tempo is
//! the posterior-weighted period around the most probable one.
//!
//! Storage: each period's positions live in a ring; advancing every
//! position is a change of the ring's head, not a copy.
//!
//! Real-time safety: sized in `new` for the widest range the configuration
//! allows (30–300 BPM); `set_range` rebuilds the active part in place;
//! `step` never allocates.

/// Tempo-change stiffness at a beat (madmom's transition λ).
const LAMBDA: f32 = 100.0;
/// Transition weights below this are dropped (banded matrix).
const TRANS_MIN: f32 = 1.0e-4;
/// Probability per beat of jumping to any period (tempo changes between
/// songs).
const JUMP_P: f32 = 1.0e-2;
/// The beat region is the first `P / BEAT_REGION` positions (at least one).
const BEAT_REGION: f32 = 16.0;
/// Widest range any configuration may ask for.
const RANGE_MIN_BPM: f32 = 30.0;
const RANGE_MAX_BPM: f32 = 300.0;
/// Periods searched for the most probable state (the most probable ones).
const DECODE_TEMPI: usize = 16;
/// Hops between exact recomputations of the marginals.
const RESYNC_HOPS: u32 = 256;
/// Most periods kept; wider ranges keep a log-spaced subset.
const MAX_TEMPI: usize = 256;

pub(super) struct BeatStates {
    hop_s: f32,
    /// Per active tempo: period (hops), offset of its ring in `fwd`, ring
    /// slot of position 0, beat-region width, first/len/offset of its
    /// transition row in `trans`.
    period: Vec<u32>,
    off: Vec<u32>,
    head: Vec<u32>,
    width: Vec<u32>,
    row: Vec<(u32, u32, u32)>,
    trans: Vec<f32>,
    fwd: Vec<f32>,
    wrapped: Vec<f32>,
    mixed: Vec<f32>,
    /// Posterior mass per tempo after the last step.
    marg: Vec<f32>,
    hops_since_sync: u32,
    n: usize,
    n_states: usize,
    range: (f32, f32),
    best: (usize, u32),
}

impl BeatStates {
    pub(super) fn new(hop_s: f32) -> Self {
        let (p_lo, p_hi) = period_bounds(hop_s, RANGE_MIN_BPM, RANGE_MAX_BPM);
        let cap_tempi = ((p_hi - p_lo + 1) as usize).min(MAX_TEMPI);
        // Every kept period is at most p_hi, so this bounds the states.
        let cap_states = cap_tempi * p_hi as usize;
        let mut s = BeatStates {
            hop_s,
            period: vec![0; cap_tempi],
            off: vec![0; cap_tempi],
            head: vec![0; cap_tempi],
            width: vec![0; cap_tempi],
            row: vec![(0, 0, 0); cap_tempi],
            // A row spans at most ±9.3 % of its period (TRANS_MIN at λ 100).
            trans: vec![0.0; cap_tempi * (2 * (p_hi as usize / 10 + 2) + 1).min(cap_tempi)],
            fwd: vec![0.0; cap_states],
            wrapped: vec![0.0; cap_tempi],
            mixed: vec![0.0; cap_tempi],
            marg: vec![0.0; cap_tempi],
            hops_since_sync: 0,
            n: 0,
            n_states: 0,
            range: (0.0, 0.0),
            best: (0, 0),
        };
        s.set_range(55.0, 215.0);
        s
    }

    /// Track tempi in `[min_bpm, max_bpm]` (clamped to 30–300). A new range
    /// restarts the filter. No allocation.
    pub(super) fn set_range(&mut self, min_bpm: f32, max_bpm: f32) {
        let lo = min_bpm.clamp(RANGE_MIN_BPM, RANGE_MAX_BPM);
        let hi = max_bpm.clamp(lo, RANGE_MAX_BPM);
        if (lo, hi) == self.range {
            return;
        }
        self.range = (lo, hi);
        let (p_lo, p_hi) = period_bounds(self.hop_s, lo, hi);
        let cap = self.period.len();
        let span = (p_hi - p_lo + 1) as usize;
        let n = span.min(cap);
        // All integer periods, or a log-spaced subset of them when there are
        // more than the capacity.
        let mut k = 0;
        let mut last = 0;
        for i in 0..n {
            let p = if n == span {
                p_lo + i as u32
            } else {
                let f = i as f32 / (n - 1).max(1) as f32;
                (p_lo as f32 * (p_hi as f32 / p_lo as f32).powf(f)).round() as u32
            };
            if p > last {
                self.period[k] = p;
                last = p;
                k += 1;
            }
        }
        self.n = k;
        let mut off = 0u32;
        for i in 0..k {
            let p = self.period[i];
            self.off[i] = off;
            self.head[i] = 0;
            self.width[i] = ((p as f32 / BEAT_REGION).round() as u32).clamp(1, p);
            off += p;
        }
        self.n_states = off as usize;
        // Banded transition rows, normalised over the active tempi.
        let mut t_off = 0u32;
        for j in 0..k {
            let pj = self.period[j] as f32;
            let w = |i: usize| (-LAMBDA * (self.period[i] as f32 / pj - 1.0).abs()).exp();
            let mut first = j;
            while first > 0 && w(first - 1) >= TRANS_MIN {
                first -= 1;
            }
            let mut end = j + 1;
            while end < k && w(end) >= TRANS_MIN {
                end += 1;
            }
            // The storage bound holds by construction; never overrun it.
            let room = self.trans.len().saturating_sub(t_off as usize);
            if end - first > room {
                first = j;
                end = (j + room).min(k);
            }
            let sum: f32 = (first..end).map(w).sum();
            for (m, i) in (first..end).enumerate() {
                self.trans[t_off as usize + m] = w(i) / sum;
            }
            self.row[j] = (first as u32, (end - first) as u32, t_off);
            t_off += (end - first) as u32;
        }
        self.reset();
    }

    /// Uniform belief over every state.
    pub(super) fn reset(&mut self) {
        let u = 1.0 / self.n_states.max(1) as f32;
        self.fwd[..self.n_states].iter_mut().for_each(|v| *v = u);
        for i in 0..self.n {
            self.head[i] = 0;
            self.marg[i] = self.period[i] as f32 * u;
        }
        self.best = (self.n / 2, 0);
        self.hops_since_sync = 0;
    }

    /// Advance one hop with the likelihood ratio `r` (≥ 0) of a beat in this
    /// hop. Returns whether the most probable state is in its beat region,
    /// and its position there (hops since the beat).
    ///
    /// Cost: the posterior per period (`marg`) and the total are kept up to
    /// date from the few states a hop changes (position 0 and the beat
    /// regions); the whole state vector is only rescaled when the total
    /// leaves a wide range or every [`RESYNC_HOPS`] hops. The most probable
    /// state is searched among the [`DECODE_TEMPI`] most probable periods.
    pub(super) fn step(&mut self, r: f32) -> Option<u32> {
        let n = self.n;
        if n == 0 {
            return None;
        }
        // Advance every ring; the mass that wraps to position 0 is mixed
        // across periods.
        let mut total_wrapped = 0.0;
        for i in 0..n {
            let h = self.head[i] + 1;
            self.head[i] = if h == self.period[i] { 0 } else { h };
            let v = self.fwd[(self.off[i] + self.head[i]) as usize];
            self.wrapped[i] = v;
            self.mixed[i] = 0.0;
            total_wrapped += v;
        }
        for j in 0..n {
            let (first, len, t_off) = self.row[j];
            let v = (1.0 - JUMP_P) * self.wrapped[j];
            let w = &self.trans[t_off as usize..(t_off + len) as usize];
            for (m, &t) in self.mixed[first as usize..(first + len) as usize]
                .iter_mut()
                .zip(w)
            {
                *m += v * t;
            }
        }
        let jump = JUMP_P * total_wrapped / n as f32;
        for i in 0..n {
            let v = self.mixed[i] + jump;
            self.fwd[(self.off[i] + self.head[i]) as usize] = v;
            self.marg[i] += v - self.wrapped[i];
        }
        // Observation: the beat region of every period.
        let r = if r.is_finite() {
            r.clamp(0.0, 1.0e6)
        } else {
            1.0
        };
        let mut total = 0.0;
        for i in 0..n {
            let (off, p, h) = (self.off[i], self.period[i], self.head[i]);
            let mut gain = 0.0;
            for pos in 0..self.width[i] {
                let slot = if h >= pos { h - pos } else { h + p - pos };
                let v = &mut self.fwd[(off + slot) as usize];
                gain += *v * (r - 1.0);
                *v *= r;
            }
            self.marg[i] = (self.marg[i] + gain).max(0.0);
            total += self.marg[i];
        }
        self.hops_since_sync += 1;
        let due = !(1.0e-20..=1.0e20).contains(&total)
            || !total.is_finite()
            || self.hops_since_sync >= RESYNC_HOPS;
        if due && !self.resync() {
            self.reset();
            return None;
        }
        self.decode()
    }

    /// Rescale every state to a total of 1 and recompute the marginals
    /// exactly; false when the belief has collapsed.
    fn resync(&mut self) -> bool {
        self.hops_since_sync = 0;
        let total: f32 = self.fwd[..self.n_states].iter().sum();
        if !(total > 1.0e-30 && total.is_finite()) {
            return false;
        }
        let inv = 1.0 / total;
        self.fwd[..self.n_states].iter_mut().for_each(|v| *v *= inv);
        for i in 0..self.n {
            let (o, p) = (self.off[i] as usize, self.period[i] as usize);
            self.marg[i] = self.fwd[o..o + p].iter().sum();
        }
        true
    }

    /// The most probable state among the most probable periods.
    fn decode(&mut self) -> Option<u32> {
        let n = self.n;
        let mut top = [usize::MAX; DECODE_TEMPI];
        for i in 0..n {
            // Insertion into the short list of the largest marginals.
            let mut k = DECODE_TEMPI;
            while k > 0 && (top[k - 1] == usize::MAX || self.marg[top[k - 1]] < self.marg[i]) {
                k -= 1;
            }
            if k < DECODE_TEMPI {
                top.copy_within(k..DECODE_TEMPI - 1, k + 1);
                top[k] = i;
            }
        }
        let (mut bi, mut bslot, mut bv) = (top[0].min(n - 1), 0u32, f32::MIN);
        for &i in top.iter().filter(|&&i| i != usize::MAX) {
            let (o, p) = (self.off[i] as usize, self.period[i] as usize);
            for (k, &v) in self.fwd[o..o + p].iter().enumerate() {
                if v > bv {
                    (bi, bslot, bv) = (i, k as u32, v);
                }
            }
        }
        let (p, h) = (self.period[bi], self.head[bi]);
        let pos = if h >= bslot { h - bslot } else { h + p - bslot };
        self.best = (bi, pos);
        (pos < self.width[bi]).then_some(pos)
    }

    /// Move every state `frac` of its period further into the beat (the
    /// beat was that much earlier than the filter thought).
    pub(super) fn advance(&mut self, frac: f32) {
        for i in 0..self.n {
            let p = self.period[i];
            let d = ((frac.clamp(0.0, 1.0) * p as f32).round() as u32) % p;
            self.head[i] = (self.head[i] + d) % p;
        }
        let (bi, pos) = self.best;
        if let Some(&p) = self.period.get(bi) {
            let d = ((frac.clamp(0.0, 1.0) * p as f32).round() as u32) % p.max(1);
            self.best = (bi, (pos + d) % p.max(1));
        }
    }

    /// Longest period (hops) any range can have.
    pub(super) fn max_period(&self) -> usize {
        period_bounds(self.hop_s, RANGE_MIN_BPM, RANGE_MAX_BPM).1 as usize
    }

    /// Posterior-weighted tempo (BPM) around the most probable period, and
    /// the posterior mass within ±4 % of it.
    pub(super) fn tempo(&self) -> (f32, f32) {
        let n = self.n;
        if n == 0 {
            return (0.0, 0.0);
        }
        let mut bi = 0;
        for i in 0..n {
            if self.marg[i] > self.marg[bi] {
                bi = i;
            }
        }
        let pb = self.period[bi] as f32;
        let total: f32 = self.marg[..n].iter().sum();
        let (mut m, mut wp) = (0.0, 0.0);
        for i in 0..n {
            let p = self.period[i] as f32;
            if (p / pb - 1.0).abs() <= 0.04 {
                m += self.marg[i];
                wp += self.marg[i] * p;
            }
        }
        if m <= 0.0 {
            return (0.0, 0.0);
        }
        (
            60.0 / (wp / m * self.hop_s),
            (m / total.max(1.0e-30)).clamp(0.0, 1.0),
        )
    }

    /// Phase in [0, 1) of the most probable state.
    pub(super) fn phase(&self) -> f32 {
        let (bi, pos) = self.best;
        let p = self.period.get(bi).copied().unwrap_or(1).max(1);
        (pos as f32 / p as f32).clamp(0.0, 0.999_999)
    }

    /// Beat period (hops) of the most probable state.
    pub(super) fn best_period(&self) -> u32 {
        self.period.get(self.best.0).copied().unwrap_or(0)
    }
}

/// Shortest and longest period (hops) for a BPM range.
fn period_bounds(hop_s: f32, min_bpm: f32, max_bpm: f32) -> (u32, u32) {
    let lo = ((60.0 / (max_bpm * hop_s)).floor() as u32).max(2);
    let hi = ((60.0 / (min_bpm * hop_s)).ceil() as u32).max(lo);
    (lo, hi)
}
