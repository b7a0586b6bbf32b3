//! Which tempo hypothesis of the beat state filter is reported (and whose
//! phase gives the beats): the most probable one, except that once a tempo
//! has been claimed for [`TEMPO_HOLD_AGE_S`] and the reported hypothesis
//! has stood that long, a *slower* hypothesis (further than 4 % away)
//! replaces it only once it has held [`TEMPO_SWITCH`] times its belief for
//! [`TEMPO_SWITCH_BEATS`] beats of the reported tempo, or at once with
//! [`TEMPO_SWITCH_AT_ONCE`] times; a faster one as soon as it is the most
//! probable.
//!
//! Why: on the development corpus the claimed tempo often flipped for a
//! few beats to a slower relative (2:3, 1:2 — a slower hypothesis has
//! wider beat regions and fewer beats at which a missing onset costs it,
//! so on a busy or syncopated passage it gains for a while) and back, and
//! every flip restarts the tempo lock (and, when the beats followed the
//! flip, the beat lock): median tempo lock 2.5 → 2.2 s, beat lock 3.3 →
//! 3.1 s, excerpts locked within 2 s 11 → 13 of 30, other scores equal or
//! up to +0.002. Held in both directions it also reached 1.9 s, but it
//! delayed synthetic corrections towards faster tempi (dnb_174 back from
//! 115 to 174 BPM, the 100 → 128 change) by 0.1–0.2 s. The age (since the
//! claim and since the last move) keeps the hold off a claim that is still
//! settling: a first claim is often at a 3:2 or 2:1 relative and corrected
//! within a second (hiphop_00042, pop_00096; with 0.5 s rock_120_noisy
//! locked later). Factors 1.3–2 gave the same median.
//!
//! Why the lead must last: the factor alone still let a slower relative
//! through for a fraction of a beat on a busy passage (blues_00047 at
//! 155 BPM: its 2:3 relative led by 1.5× for 18 hops, from just before a
//! beat to just after it), and a beat fell out each time (the reported
//! phase jumps to the other hypothesis's and back without wrapping). A
//! lead of two beats of the reported tempo, unless the rival holds five
//! times the belief (a new song: the old tempo's evidence is gone), raised
//! every averaged score of the development corpus at every sample rate
//! (48 kHz: beat F 0.867 → 0.872, CMLt 0.792 → 0.805, AMLt 0.877 → 0.891,
//! acc1 0.803 → 0.814, acc2 0.943 → 0.951, weak-pulse beat F 0.731 →
//! 0.748; docs/eval.md, "A slower rival must lead for two beats"). Its
//! cost is a claim at double the tempo corrected later (pop_00096 reaches
//! its 91 BPM at 3.2 s instead of 2.8 s). Without the second condition the
//! relock after a change to a slower song came up to a second later (8 kHz
//! stream beat relock 3.1 → 4.5 s); 1, 1.5 and 3 beats gained less. No
//! synthetic figure moves.
//!
//! Real-time safety: a few integers; `update` is one pass over the active
//! periods and never allocates.

/// Belief a slower hypothesis needs, relative to the reported one, to
/// replace it once the hold applies.
const TEMPO_SWITCH: f32 = 1.5;
/// Beats of the reported tempo for which a slower hypothesis must keep
/// [`TEMPO_SWITCH`] times its belief, without a break, to replace it.
const TEMPO_SWITCH_BEATS: f32 = 2.0;
/// Belief with which a slower hypothesis replaces the reported one at once.
const TEMPO_SWITCH_AT_ONCE: f32 = 5.0;
/// The hold applies once a tempo has been claimed this long and the
/// reported hypothesis has stood this long.
const TEMPO_HOLD_AGE_S: f32 = 1.0;

pub(super) struct TempoHold {
    /// The reported hypothesis (an index into the active periods), and hops
    /// since it last moved to another one more than 4 % away.
    shown: Option<usize>,
    shown_hops: u32,
    /// Hops a tempo has been claimed without a break.
    hold_hops: u32,
    /// Hops in a row in which a hypothesis further than 4 % away has
    /// outweighed the reported one by the factor the hold asks for.
    lead_hops: u32,
}

impl TempoHold {
    pub(super) const fn new() -> Self {
        TempoHold {
            shown: None,
            shown_hops: 0,
            hold_hops: 0,
            lead_hops: 0,
        }
    }

    pub(super) fn reset(&mut self) {
        *self = Self::new();
    }

    /// The reported hypothesis, if there is one among `n` active periods.
    pub(super) fn shown(&self, n: usize) -> Option<usize> {
        self.shown.filter(|&s| s < n)
    }

    /// Move the reported hypothesis, given the active `period`s (hops),
    /// their posterior `marg`, the most probable one `bi` and whether a
    /// tempo is claimed (`hold`): onto the most probable period within 4 %
    /// of it (a drifting tempo), and onto `bi` when that is further away —
    /// at once when it is faster or nothing is held, when slower after
    /// [`TEMPO_SWITCH_BEATS`] beats with [`TEMPO_SWITCH`] times the belief
    /// or at once with [`TEMPO_SWITCH_AT_ONCE`] times.
    /// Returns the reported hypothesis.
    pub(super) fn update(
        &mut self,
        period: &[u32],
        marg: &[f32],
        bi: usize,
        hold: bool,
        hop_s: f32,
    ) -> usize {
        let n = period.len().min(marg.len());
        let Some(s) = self.shown(n).filter(|_| bi < n) else {
            *self = TempoHold {
                shown: Some(bi),
                ..Self::new()
            };
            return bi;
        };
        let ps = period[s] as f32;
        let mut local = s;
        for i in 0..n {
            let near = (period[i] as f32 / ps - 1.0).abs() <= 0.04;
            if near && marg[i] > marg[local] {
                local = i;
            }
        }
        let far = (period[bi] as f32 / period[local] as f32 - 1.0).abs() > 0.04;
        self.hold_hops = if hold {
            self.hold_hops.saturating_add(1)
        } else {
            0
        };
        let age_s = self.shown_hops.min(self.hold_hops) as f32 * hop_s;
        let aged = age_s >= TEMPO_HOLD_AGE_S;
        let slower = period[bi] > period[local];
        let held = hold && aged && slower;
        let k = if held { TEMPO_SWITCH } else { 1.0 };
        let leads = far && marg[bi] > k * marg[local];
        self.lead_hops = if leads {
            self.lead_hops.saturating_add(1)
        } else {
            0
        };
        // Hops the lead must have lasted before this one: none unless the
        // hold applies, and none against a rival that holds
        // TEMPO_SWITCH_AT_ONCE times the belief.
        let need = if held && marg[bi] <= TEMPO_SWITCH_AT_ONCE * marg[local] {
            (TEMPO_SWITCH_BEATS * period[local] as f32) as u32
        } else {
            0
        };
        if leads && self.lead_hops > need {
            (self.shown, self.shown_hops, self.lead_hops) = (Some(bi), 0, 0);
            bi
        } else {
            self.shown = Some(local);
            self.shown_hops = self.shown_hops.saturating_add(1);
            local
        }
    }
}
