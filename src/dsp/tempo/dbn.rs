//! The beat state filter: a bar-pointer hidden Markov model over (beat
//! period, position within the beat), run forward one hop at a time.
//!
//! This is the state space of Krebs, Böck & Widmer (2015) as madmom's
//! online tracker uses it, with a classical observation instead of a
//! neural network's: every integer beat period `P` (in hops) of the active
//! tempo range has `P` positions; the position advances by one each hop and
//! wraps to 0 on the beat, where the period may change to a neighbour
//! (`exp(−λ·|P'/P − 1|)`, plus a small jump probability to any period, so a
//! new song is followed). The observation multiplies the beat region of
//! every period, exactly `P/`[`BEAT_REGION`] positions long, by the
//! likelihood ratio `r` of "a beat now" that the caller derives from the
//! onset signal: the whole positions by `r`, the last, partial one by `r`
//! to the power of its share (so every period's region is the same share
//! of its beat).
//!
//! Decoding is causal, as in madmom's forward mode: the phase is that of
//! the most probable tempo's position belief, kept on the mode it runs in
//! until another one clearly outweighs it ([`PHASE_SWITCH`]); the caller
//! reports a beat where that phase wraps. The tempo is the
//! posterior-weighted period around the reported hypothesis: the most
//! probable one, except that once a tempo is claimed a slower hypothesis
//! must clearly outweigh it ([`super::hold`]) to take over; the beats
//! follow the reported hypothesis.
//!
//! Storage: each period's positions live in a ring; advancing every
//! position is a change of the ring's head, not a copy.
//!
//! Real-time safety: sized in `new` for the widest range the configuration
//! allows (30–300 BPM); `set_range` rebuilds the active part in place;
//! `step` never allocates.

use super::hold::TempoHold;

/// Tempo-change stiffness at a beat (madmom's transition λ).
const LAMBDA: f32 = 100.0;
/// Transition weights below this are dropped (banded matrix).
const TRANS_MIN: f32 = 1.0e-4;
/// Probability per beat of jumping to any period (tempo changes between
/// songs).
const JUMP_P: f32 = 1.0e-2;
/// The beat region is the first `P / BEAT_REGION` positions, exactly: the
/// whole ones and a last one in part (its share of a position is
/// `(P mod BEAT_REGION) / BEAT_REGION`).
///
/// Why exact: rounded to whole positions, the region's share of a period
/// jumps between neighbouring periods (2/39 = 0.051 at period 39, 3/40 =
/// 0.075 at 40). Between onsets the likelihood ratio is below 1, so the
/// periods with the smallest share lose least, and for the first second
/// period 39 (144 BPM at 48 kHz) led on 23 of the 30 development excerpts
/// whatever their tempo: many first claims were at that tempo, then moved.
/// Exact shares remove the plateau; with the observation retuned for it
/// (`OBS_SCALE`, `OBS_FLOOR` in `signal`) every development-corpus score
/// rose (docs/eval.md, "The exact beat region, kept").
const BEAT_REGION: u32 = 16;
/// Widest range any configuration may ask for.
const RANGE_MIN_BPM: f32 = 30.0;
const RANGE_MAX_BPM: f32 = 300.0;
/// Metrical-level prior: a tempo above [`PRIOR_KNEE_BPM`] whose half is
/// also in the range loses this many nats of likelihood per second per
/// octave above the knee, so it must be clearly better supported than its
/// half. (Sixteenth-note hats make a 105 BPM funk groove look like 210;
/// 174 BPM drum and bass must stay at 174.)
const PRIOR_NATS_PER_S: f32 = 5.0;
const PRIOR_KNEE_BPM: f32 = 180.0;
/// The starting belief over tempo (after a start, a long silence or a
/// collapse): uniform in log tempo — every octave of the range as likely,
/// where one per integer period would put twice the mass on the octave
/// 55–110 BPM as on 110–215 — times a log-Gaussian around
/// [`START_CENTRE_BPM`], [`START_OCTAVES`] wide (60 and 240 BPM start at a
/// quarter of 120's weight, 85 and 170 BPM at 0.7). Only the start: the
/// evidence of a few beats outweighs it, and no tempo is favoured after
/// that (a prior applied at every beat cost tempo accuracy on the
/// development corpus).
///
/// Why: a uniform belief over integer periods starts with most mass on
/// the slow end, and a slow hypothesis loses none of it until its first
/// beat region passes an onset-free hop, so for the first second the
/// most probable tempo was about the slowest of the range (56 BPM on
/// most development recordings) and the right one took over only after
/// 2–3 s. Measured on the development corpus: first tempo 1.56 → 1.31 s,
/// tempo lock 2.8 → 2.5 s, beat lock 3.7 → 3.3 s; synthetic lock 1.76 →
/// 1.26 s (widths 0.5–1.5 octaves all gave 1.1–1.3 s first tempo).
const START_CENTRE_BPM: f32 = 120.0;
const START_OCTAVES: f32 = 0.6;
/// The phase leaves the mode it runs in only for one with this many times
/// its belief.
const PHASE_SWITCH: f32 = 2.0;
/// A mode is followed once it holds this many times its share of the
/// belief (a flat belief has no mode to follow).
const RUN_SHARE: f32 = 1.2;
/// Hops between exact recomputations of the marginals.
const RESYNC_HOPS: u32 = 256;
/// Most periods kept; wider ranges keep a log-spaced subset.
const MAX_TEMPI: usize = 256;

pub(super) struct BeatStates {
    hop_s: f32,
    /// Per active tempo: period (hops), offset of its ring in `fwd`, ring
    /// slot of position 0, first/len/offset of its transition row in
    /// `trans`. (The beat region follows from the period: [`BEAT_REGION`].)
    period: Vec<u32>,
    off: Vec<u32>,
    head: Vec<u32>,
    row: Vec<(u32, u32, u32)>,
    trans: Vec<f32>,
    fwd: Vec<f32>,
    wrapped: Vec<f32>,
    mixed: Vec<f32>,
    /// Per active tempo: the metrical-level prior applied at each beat,
    /// and the starting belief ([`START_OCTAVES`]).
    prior: Vec<f32>,
    start: Vec<f32>,
    /// Posterior mass per tempo after the last step.
    marg: Vec<f32>,
    hops_since_sync: u32,
    n: usize,
    n_states: usize,
    range: (f32, f32),
    /// The most probable tempo and the phase estimate in [0, 1).
    best: (usize, f32),
    /// The last phase estimate, once there is one (its mode is followed).
    phase_run: Option<f32>,
    /// Hops the most probable tempo has stayed within 4 %.
    tempo_held: u32,
    /// Which hypothesis's tempo is reported.
    report: TempoHold,
    /// Set by the caller while a tempo is claimed: slower rivals must then
    /// clearly outweigh the reported hypothesis.
    pub(super) hold: bool,
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
            row: vec![(0, 0, 0); cap_tempi],
            // A row spans at most ±9.3 % of its period (TRANS_MIN at λ 100).
            trans: vec![0.0; cap_tempi * (2 * (p_hi as usize / 10 + 2) + 1).min(cap_tempi)],
            fwd: vec![0.0; cap_states],
            wrapped: vec![0.0; cap_tempi],
            mixed: vec![0.0; cap_tempi],
            prior: vec![1.0; cap_tempi],
            start: vec![0.0; cap_tempi],
            marg: vec![0.0; cap_tempi],
            hops_since_sync: 0,
            n: 0,
            n_states: 0,
            range: (0.0, 0.0),
            best: (0, 0.0),
            phase_run: None,
            tempo_held: 0,
            report: TempoHold::new(),
            hold: false,
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
        self.choose_periods(p_lo, p_hi);
        self.lay_out_states();
        self.set_priors(lo);
        self.set_transitions();
        self.reset();
    }

    /// All integer periods in `[p_lo, p_hi]`, or a log-spaced subset of
    /// them when there are more than the capacity.
    fn choose_periods(&mut self, p_lo: u32, p_hi: u32) {
        let cap = self.period.len();
        let span = (p_hi - p_lo + 1) as usize;
        let n = span.min(cap);
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
    }

    /// One state per phase position of every tempo, tempo after tempo, and
    /// each tempo's beat region.
    fn lay_out_states(&mut self) {
        let mut off = 0u32;
        for i in 0..self.n {
            let p = self.period[i];
            self.off[i] = off;
            self.head[i] = 0;
            off += p;
        }
        self.n_states = off as usize;
    }

    /// The prior per beat (a per-second penalty above the knee, times the
    /// period) and the starting belief over the tempi, for a range from
    /// `lo` BPM.
    fn set_priors(&mut self, lo: f32) {
        let k = self.n;
        let knee = PRIOR_KNEE_BPM.max(2.0 * lo);
        for i in 0..k {
            let beat_s = self.period[i] as f32 * self.hop_s;
            let bpm = 60.0 / beat_s;
            let above = (bpm / knee).log2().max(0.0);
            self.prior[i] = (-PRIOR_NATS_PER_S * above * beat_s).exp();
            let off = (bpm / START_CENTRE_BPM).log2() / START_OCTAVES;
            self.start[i] = (-0.5 * off * off).exp() / self.period[i] as f32;
        }
        let sum: f32 = self.start[..k].iter().sum();
        if sum > 0.0 && sum.is_finite() {
            self.start[..k].iter_mut().for_each(|v| *v /= sum);
        } else {
            self.start[..k]
                .iter_mut()
                .for_each(|v| *v = 1.0 / k.max(1) as f32);
        }
    }

    /// Banded transition rows, normalised over the active tempi.
    fn set_transitions(&mut self) {
        let k = self.n;
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
    }

    /// The starting belief over the tempi, every phase equally likely.
    pub(super) fn reset(&mut self) {
        for i in 0..self.n {
            let (o, p) = (self.off[i] as usize, self.period[i] as usize);
            let per_tempo = self.start[i];
            let u = per_tempo / p.max(1) as f32;
            self.fwd[o..o + p].iter_mut().for_each(|v| *v = u);
            self.head[i] = 0;
            self.marg[i] = per_tempo;
        }
        self.best = (self.n / 2, 0.0);
        self.phase_run = None;
        self.tempo_held = 0;
        self.report.reset();
        self.hops_since_sync = 0;
    }

    /// Advance one hop with the likelihood ratio `r` (≥ 0) of a beat in this
    /// hop, then decode the tempo and the phase.
    ///
    /// Cost: the posterior per period (`marg`) and the total are kept up to
    /// date from the few states a hop changes (position 0 and the beat
    /// regions); the whole state vector is only rescaled when the total
    /// leaves a wide range or every [`RESYNC_HOPS`] hops.
    pub(super) fn step(&mut self, r: f32) {
        let n = self.n;
        if n == 0 {
            return;
        }
        // Slices of the fields, so that the loops keep their pointers in
        // registers (a store into `fwd` could otherwise alias the vectors'
        // headers in `self`, and every index would reload them).
        let period = &self.period[..n];
        let off = &self.off[..n];
        let prior = &self.prior[..n];
        let head = &mut self.head[..n];
        let wrapped = &mut self.wrapped[..n];
        let mixed = &mut self.mixed[..n];
        let marg = &mut self.marg[..n];
        let fwd = &mut self.fwd[..];
        // Advance every ring; the mass that wraps to position 0 is mixed
        // across periods.
        let mut total_wrapped = 0.0;
        for i in 0..n {
            let h = head[i] + 1;
            head[i] = if h == period[i] { 0 } else { h };
            let v = fwd[(off[i] + head[i]) as usize];
            wrapped[i] = v;
            mixed[i] = 0.0;
            total_wrapped += v;
        }
        mix_rows(mixed, wrapped, &self.row[..n], &self.trans, 1.0 - JUMP_P);
        let jump = JUMP_P * total_wrapped / n as f32;
        for i in 0..n {
            let v = (mixed[i] + jump) * prior[i];
            fwd[(off[i] + head[i]) as usize] = v;
            marg[i] += v - wrapped[i];
        }
        // Observation: the beat region of every period.
        let r = if r.is_finite() {
            r.clamp(0.0, 1.0e6)
        } else {
            1.0
        };
        // r^(k / BEAT_REGION): the observation of a partial last position
        // worth k / BEAT_REGION of one (k = 0: none).
        let mut part = [1.0f32; BEAT_REGION as usize];
        let root = r.powf(1.0 / BEAT_REGION as f32);
        for k in 1..part.len() {
            part[k] = part[k - 1] * root;
        }
        let mut total = 0.0;
        for i in 0..n {
            let (o, p, h) = (off[i], period[i], head[i]);
            let mut gain = 0.0;
            let mut scale = |pos: u32, r: f32| {
                let slot = if h >= pos { h - pos } else { h + p - pos };
                let v = &mut fwd[(o + slot) as usize];
                gain += *v * (r - 1.0);
                *v *= r;
            };
            // P / BEAT_REGION positions: the whole ones, then the part.
            let (whole, last) = (p / BEAT_REGION, (p % BEAT_REGION) as usize);
            for pos in 0..whole {
                scale(pos, r);
            }
            if last > 0 {
                scale(whole, part[last]);
            }
            marg[i] = (marg[i] + gain).max(0.0);
            total += marg[i];
        }
        self.hops_since_sync += 1;
        let due = !(1.0e-20..=1.0e20).contains(&total)
            || !total.is_finite()
            || self.hops_since_sync >= RESYNC_HOPS;
        if due && !self.resync() {
            self.reset();
            return;
        }
        self.decode();
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

    /// The most probable tempo, and the phase of the beat in it.
    ///
    /// Beats are decoded from the tempo that is reported (not from the
    /// single most probable state, which jumps between tempo and phase
    /// hypotheses: missed and doubled beats). Within that tempo the phase
    /// is the centroid of the position belief within an eighth of a period
    /// of a mode, so a second hypothesis does not drag the estimate between
    /// the two. The mode is the one the phase ran into (the last phase
    /// advanced by a hop) unless the most probable mode elsewhere holds
    /// [`PHASE_SWITCH`] times its mass: two hypotheses of nearly equal
    /// belief (a sixteenth-note hat a quarter beat from the kick) must not
    /// take turns, or every turn forward is an extra beat and every turn
    /// back a missed one.
    fn decode(&mut self) {
        let n = self.n;
        let mut bi = 0;
        for i in 1..n {
            if self.marg[i] > self.marg[bi] {
                bi = i;
            }
        }
        let bi = self.report.update(
            &self.period[..n],
            &self.marg[..n],
            bi,
            self.hold,
            self.hop_s,
        );
        let (o, p, h) = (
            self.off[bi] as usize,
            self.period[bi] as usize,
            self.head[bi] as usize,
        );
        let ring = &self.fwd[o..o + p];
        let mut top = (0usize, f32::MIN);
        for (slot, &v) in ring.iter().enumerate() {
            if v > top.1 {
                top = (slot, v);
            }
        }
        let half = (p / 8).max(1);
        let mut pick = mode(ring, h, top.0, half);
        // A phase of another tempo hypothesis says nothing about this one,
        // and while the tempo still moves between hypotheses the phase is
        // free to move too: follow a mode once the tempo has held a beat.
        let same_tempo = (p as f32 / self.best_period().max(1) as f32 - 1.0).abs() <= 0.04;
        self.tempo_held = if same_tempo {
            self.tempo_held.saturating_add(1)
        } else {
            0
        };
        if let Some(last) = self.phase_run.filter(|_| self.tempo_held as usize >= p) {
            // Where the last phase runs to in this period's positions.
            let ahead = (last * p as f32 + 1.0).rem_euclid(p as f32);
            let slot = (h + p - (ahead.round() as usize % p)) % p;
            let run = mode(ring, h, slot, half);
            let apart = (pick.1 - run.1).rem_euclid(p as f32);
            let apart = apart.min(p as f32 - apart);
            // A mode is one when it holds clearly more than its share of
            // the period's belief (early on the belief is nearly flat).
            let share = (2 * half + 1) as f32 / p as f32 * self.marg[bi];
            let held = run.0 > RUN_SHARE * share;
            if held && apart > half as f32 && pick.0 < PHASE_SWITCH * run.0 {
                pick = run;
            }
        }
        let phase = (pick.1 / p as f32).rem_euclid(1.0);
        let phase = if phase.is_finite() {
            phase.min(0.999_999)
        } else {
            0.0
        };
        self.best = (bi, phase);
        self.phase_run = Some(phase);
    }

    /// Tests: set the belief per tempo to `mass(bpm)` (every phase alike)
    /// and take one reporting decision; the reported tempo in BPM.
    #[cfg(test)]
    pub(super) fn report_for(&mut self, mass: impl Fn(f32) -> f32) -> f32 {
        let mut bi = 0;
        for i in 0..self.n {
            self.marg[i] = mass(60.0 / (self.period[i] as f32 * self.hop_s));
            if self.marg[i] > self.marg[bi] {
                bi = i;
            }
        }
        self.report.update(
            &self.period[..self.n],
            &self.marg[..self.n],
            bi,
            self.hold,
            self.hop_s,
        );
        self.tempo().0
    }

    /// Tests: the active periods and the belief in each.
    #[cfg(test)]
    pub(super) fn belief(&self) -> (&[u32], &[f32]) {
        (&self.period[..self.n], &self.marg[..self.n])
    }

    /// Longest period (hops) any range can have.
    pub(super) fn max_period(&self) -> usize {
        period_bounds(self.hop_s, RANGE_MIN_BPM, RANGE_MAX_BPM).1 as usize
    }

    /// Posterior-weighted tempo (BPM) around the reported period, and the
    /// posterior mass within ±4 % of it.
    pub(super) fn tempo(&self) -> (f32, f32) {
        let n = self.n;
        if n == 0 {
            return (0.0, 0.0);
        }
        let bi = match self.report.shown(n) {
            Some(s) => s,
            None => (0..n).fold(0, |b, i| if self.marg[i] > self.marg[b] { i } else { b }),
        };
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

    /// Phase in [0, 1) of the beat (0 on the beat).
    pub(super) fn phase(&self) -> f32 {
        self.best.1
    }

    /// Beat period (hops) of the most probable tempo.
    pub(super) fn best_period(&self) -> u32 {
        self.period.get(self.best.0).copied().unwrap_or(0)
    }
}

crate::dsp::lanes::multiversion! {
    /// The wrapped mass of tempo `j`, times `keep`, spread over its
    /// transition row: `mixed[first + m] += keep · wrapped[j] · trans[t_off
    /// + m]`, row after row (the scalar loop's order, so the same bits;
    /// the AVX2 build only takes eight positions at a time).
    fn mix_rows(
        mixed: &mut [f32],
        wrapped: &[f32],
        rows: &[(u32, u32, u32)],
        trans: &[f32],
        keep: f32,
    ) {
        for (&(first, len, t_off), &w) in rows.iter().zip(wrapped) {
            let v = keep * w;
            let (first, len, t_off) = (first as usize, len as usize, t_off as usize);
            let (Some(m), Some(t)) = (
                mixed.get_mut(first..first + len),
                trans.get(t_off..t_off + len),
            ) else {
                continue;
            };
            for (m, &t) in m.iter_mut().zip(t) {
                *m += v * t;
            }
        }
    }
}

/// The belief mass within `half` slots of `centre` in a period's ring, and
/// its centroid as a position (0 = the beat; a later slot is an earlier
/// position, `head` the slot of position 0).
fn mode(ring: &[f32], head: usize, centre: usize, half: usize) -> (f32, f32) {
    let p = ring.len() as isize;
    let (mut sum, mut moment) = (0.0f32, 0.0f32);
    for d in -(half as isize)..=half as isize {
        let v = ring[(centre as isize + d).rem_euclid(p) as usize];
        sum += v;
        moment -= v * d as f32;
    }
    let pos = (head as isize - centre as isize).rem_euclid(p) as f32;
    (sum, pos + if sum > 0.0 { moment / sum } else { 0.0 })
}

/// Shortest and longest period (hops) for a BPM range.
fn period_bounds(hop_s: f32, min_bpm: f32, max_bpm: f32) -> (u32, u32) {
    let lo = ((60.0 / (max_bpm * hop_s)).floor() as u32).max(2);
    let hi = ((60.0 / (min_bpm * hop_s)).ceil() as u32).max(lo);
    (lo, hi)
}
