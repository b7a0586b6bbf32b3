//! Stage 1 of the tracker, the beat signal: the detector's group fluxes,
//! each divided by its own running mean, summed with weights, smoothed and
//! normalised again, turned into the likelihood ratio of a beat in this hop
//! (the filter's input); and the same normalisation of the fluxes taken
//! against the previous frame alone, which the confidence reads (against
//! the 45 ms reference stationary noise turns into sparse peaks and would
//! read like music). See the module documentation of `tempo`.

use super::super::onset::{one_pole, BEAT_GROUPS};

/// Weights of the frequency groups in the beat signal.
pub const GROUP_WEIGHTS: [f32; BEAT_GROUPS] = [2.0, 1.0, 1.0, 1.0];
/// Floor of the running means that normalise the groups and their sum: a
/// flux this small is numerical noise (a steady tone), not a beat.
pub(super) const GROUP_FLOOR: f32 = 0.01;
/// The running means start from typical music values (the median over
/// the synthetic and development recordings) with the weight of
/// [`NORM_PRIOR_S`] of signal, so the first onsets after a start or a
/// silence are judged against a sensible scale rather than against
/// themselves (or against silence). They are the medians of the signal
/// taken against the previous frame alone (the confidence's); the filter's
/// own signal (against 45 ms) has medians 2–4 times lower
/// ([0.028, 0.020, 0.023, 0.016], sum 3.4), so for it the start is
/// cautious: starting from its own medians was measured and was not
/// better (docs/eval.md, "The onset reference").
const GROUP_PRIOR: [f32; BEAT_GROUPS] = [0.11, 0.064, 0.064, 0.036];
const SUM_PRIOR: f32 = 4.2;
const NORM_PRIOR_S: f32 = 0.25;
/// Memory of the running means that normalise the groups and their sum.
const NORM_TAU_S: f32 = 2.0;
/// Likelihood ratio of a beat: `max(x / OBS_SCALE, OBS_FLOOR)^OBS_GAMMA`,
/// `x` the normalised beat signal (1 on average). Set with the exact beat
/// region (`dbn::BEAT_REGION`; it was 1.5 and 0.2 with the rounded one):
/// the higher floor lets a hypothesis survive a beat with no onset (a
/// weak or syncopated beat costs it at most `0.35^0.7`), and every
/// setting of scale 1.2–1.65, floor 0.3–0.4 and gamma 0.65–0.75 met the
/// same eight targets on the development corpus; this one keeps the
/// synthetic lock times (docs/eval.md, "The exact beat region, kept").
const OBS_SCALE: f32 = 1.25;
const OBS_FLOOR: f32 = 0.35;
/// Share of the log-likelihood from the weighted sum; the rest is the
/// weighted geometric mean of the groups' own likelihoods (a beat where
/// several groups have an onset counts more than one loud group).
const OBS_SUM_SHARE: f32 = 0.3;
const OBS_GAMMA: f32 = 0.7;

/// The beat signal's state.
pub(super) struct BeatSignal {
    a_norm: f32,
    prior_hops: f32,
    /// The filter's beat signal (`OnsetOut::beat_groups`).
    signal: Normalised,
    /// Each group's own beat evidence, smoothed and normalised like the sum.
    group_evidence: [Smoothed; BEAT_GROUPS],
    /// The confidence's (`OnsetOut::agree_groups`).
    agree_signal: Normalised,
}

impl BeatSignal {
    pub(super) fn new(hop_s: f32) -> Self {
        BeatSignal {
            a_norm: one_pole(hop_s, NORM_TAU_S),
            prior_hops: NORM_PRIOR_S / hop_s,
            signal: Normalised::START,
            group_evidence: [Smoothed::start(1.0); BEAT_GROUPS],
            agree_signal: Normalised::START,
        }
    }

    /// Take one hop (`n_seen` hops of signal so far, this one included):
    /// the likelihood ratio of a beat in it, and the confidence's signal
    /// (1 on average).
    pub(super) fn observe(
        &mut self,
        groups: &[f32; BEAT_GROUPS],
        agree_groups: &[f32; BEAT_GROUPS],
        n_seen: u32,
    ) -> (f32, f32) {
        let a = self.a_norm.max(1.0 / (self.prior_hops + n_seen as f32));
        let w_total: f32 = GROUP_WEIGHTS.iter().sum();
        let mut v = [0.0; BEAT_GROUPS];
        let x = self.signal.push(groups, a, &mut v);
        let mut log_coinc = 0.0;
        for ((&v, w), e) in v.iter().zip(GROUP_WEIGHTS).zip(&mut self.group_evidence) {
            let xg = e.push(v, a);
            log_coinc += w / w_total * (xg / OBS_SCALE).max(OBS_FLOOR).ln();
        }
        let agree_x = self
            .agree_signal
            .push(agree_groups, a, &mut [0.0; BEAT_GROUPS]);
        let log_sum = (x / OBS_SCALE).max(OBS_FLOOR).ln();
        let r = (OBS_GAMMA * (OBS_SUM_SHARE * log_sum + (1.0 - OBS_SUM_SHARE) * log_coinc)).exp();
        (r, agree_x)
    }

    /// Forget all history (back to the start values).
    pub(super) fn reset(&mut self) {
        self.signal = Normalised::START;
        self.group_evidence = [Smoothed::start(1.0); BEAT_GROUPS];
        self.agree_signal = Normalised::START;
    }
}

/// A weighted sum of the groups, each divided by its own running mean,
/// smoothed over three hops and divided by the sum's running mean (1 on
/// average).
#[derive(Clone, Copy)]
struct Normalised {
    group_mean: [f32; BEAT_GROUPS],
    sum: Smoothed,
}

impl Normalised {
    const START: Normalised = Normalised {
        group_mean: GROUP_PRIOR,
        sum: Smoothed::start(SUM_PRIOR),
    };

    /// Take one hop's groups (running means updated with weight `a`): each
    /// group over its mean into `v`, and the normalised sum.
    fn push(&mut self, groups: &[f32; BEAT_GROUPS], a: f32, v: &mut [f32; BEAT_GROUPS]) -> f32 {
        let mut sum = 0.0;
        for (i, (&g, w)) in groups.iter().zip(GROUP_WEIGHTS).enumerate() {
            let g = if g.is_finite() {
                g.clamp(0.0, 1.0e3)
            } else {
                0.0
            };
            let m = &mut self.group_mean[i];
            *m += a * (g - *m);
            v[i] = g / (*m + GROUP_FLOOR);
            sum += w * v[i];
        }
        self.sum.push(sum, a)
    }
}

/// A value smoothed over three hops (¼, ½, ¼) and divided by its own
/// running mean (1 on average).
#[derive(Clone, Copy)]
struct Smoothed {
    prev: [f32; 2],
    mean: f32,
}

impl Smoothed {
    const fn start(mean: f32) -> Self {
        Smoothed {
            prev: [0.0; 2],
            mean,
        }
    }

    /// Take one hop's value (the running mean updated with weight `a`).
    fn push(&mut self, v: f32, a: f32) -> f32 {
        let smooth = 0.25 * (v + self.prev[1]) + 0.5 * self.prev[0];
        self.prev = [v, self.prev[0]];
        self.mean += a * (smooth - self.mean);
        smooth / (self.mean + GROUP_FLOOR)
    }
}
