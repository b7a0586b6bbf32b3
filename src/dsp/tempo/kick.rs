//! The kick check of the beat phase: on four-on-the-floor music an
//! off-beat open hi-hat (or any off-beat part) can be as strong in the beat
//! signal as the kick, and the beat filter may settle a half beat off.
//! The power below [`super::super::onset::LOW_HZ`] — the kick, which plays
//! no part in the beat signal — decides between the chains a quarter, half
//! and three quarters of a beat apart: when one of them has
//! [`SWITCH_RATIO`] times the low-band power of the beat chain over the last
//! [`CHECK_BEATS`] beats, the beat moves onto it (and the tracker adds the
//! low-band power to its beat signal for a while, so the filter stays).
//!
//! Real-time safety: sized in `new`; never allocates.

/// Another chain must have this many times the low-band power.
/// (3× pulled real recordings off good beats: chosen on the development
/// corpus together with the synthetic one.)
const SWITCH_RATIO: f32 = 6.0;
/// Beats of history compared (at most) and needed (at least).
const CHECK_BEATS: usize = 8;
const MIN_BEATS: usize = 4;

pub(super) struct KickPhase {
    ring: Vec<f32>,
    pos: usize,
    seen: usize,
}

impl KickPhase {
    /// History for `CHECK_BEATS` beats of at most `max_period` hops.
    pub(super) fn new(max_period: usize) -> Self {
        KickPhase {
            ring: vec![0.0; (CHECK_BEATS + 2) * max_period.max(1) + 4],
            pos: 0,
            seen: 0,
        }
    }

    pub(super) fn push(&mut self, low_power: f32) {
        let v = if low_power.is_finite() {
            low_power.clamp(0.0, 1.0e6)
        } else {
            0.0
        };
        self.ring[self.pos] = v;
        self.pos = (self.pos + 1) % self.ring.len();
        self.seen = self.seen.saturating_add(1);
    }

    pub(super) fn reset(&mut self) {
        self.ring.iter_mut().for_each(|v| *v = 0.0);
        self.pos = 0;
        self.seen = 0;
    }

    /// Low-band power `ago` hops ago (0 = the newest).
    fn ago(&self, ago: usize) -> f32 {
        let n = self.ring.len();
        self.ring[(self.pos + n - 1 - ago % n) % n]
    }

    /// Mean low-band power just after the beats of the chain whose newest
    /// beat (fully seen) was `ago` hops ago, one `period` apart.
    fn chain(&self, ago: f32, period: f32) -> Option<f32> {
        let limit = self.seen.min(self.ring.len()) as f32 - 3.0;
        let (mut sum, mut n) = (0.0, 0);
        for k in 0..CHECK_BEATS {
            let c = ago + k as f32 * period;
            if c > limit {
                break;
            }
            // From one hop before the beat to two after it.
            let c = c.round() as usize;
            for a in c.saturating_sub(2)..=c + 1 {
                sum += self.ago(a);
            }
            n += 1;
        }
        (n >= MIN_BEATS).then(|| sum / n as f32 + 1.0e-12)
    }

    /// At a beat (this hop) with the given period (hops): the fraction of a
    /// period by which the beat is late against the kick, if another
    /// chain clearly carries it.
    pub(super) fn check(&self, period: f32) -> Option<f32> {
        if !(period.is_finite() && period >= 2.0) {
            return None;
        }
        // The current beat's own low band is not in yet: start one period
        // back.
        let cur = self.chain(period, period)?;
        let mut best = (0.0, cur);
        for f in [0.25, 0.5, 0.75] {
            if let Some(e) = self.chain(period + f * period, period) {
                if e > best.1 {
                    best = (f, e);
                }
            }
        }
        (best.0 > 0.0 && best.1 > SWITCH_RATIO * cur).then_some(best.0)
    }
}
