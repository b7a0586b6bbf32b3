//! The reference each band's rise is measured against: the last few frames
//! of a log-filtered spectrum, each max-filtered across ±1 band, and their
//! per-band maximum (see the parent module's docs, "The onset reference"
//! in docs/eval.md for why).

/// How far back the onset detector's reference reaches: a band must rise
/// above its largest value (max-filtered across ±1 band) over the frames of
/// the last this many seconds (3 hops at 44.1 and 48 kHz), not only the
/// previous frame's. A held note below ~140 Hz does not fit the 21 ms window
/// a few times over: its leakage and its mirror image interfere, and the
/// log bands far from it (600–1200 Hz) swing with its phase every 2–7 hops;
/// against the previous frame alone a held 110 Hz sine gave 75 onsets in
/// 10 s, 40 Hz 133.
pub(super) const ONSET_REFERENCE_S: f32 = 0.035;
/// The same for the beat tracker's input (4 hops): the same swings of every
/// bass note made up much of the beat signal between the beats. Chosen on
/// the development corpus: 30 ms and 50–80 ms gave lower tempo accuracy
/// (docs/eval.md, "The onset reference").
pub(super) const BEAT_REFERENCE_S: f32 = 0.045;

/// Whole hops in `s` seconds, at least one.
pub(super) fn hops_in(s: f32, hop_s: f32) -> usize {
    ((s / hop_s).round() as usize).clamp(1, 16)
}

/// The last few frames of a log-filtered spectrum, each max-filtered across
/// ±1 band.
pub(super) struct Recent {
    rows: Vec<f32>,
    /// Per band, the largest value over the kept frames.
    max: Vec<f32>,
    n: usize,
    k: usize,
    next: usize,
    filled: usize,
}

impl Recent {
    pub(super) fn new(n: usize, k: usize) -> Self {
        Recent {
            rows: vec![0.0; n * k],
            max: vec![f32::MIN; n],
            n,
            k,
            next: 0,
            filled: 0,
        }
    }

    /// Every band's largest value over the kept frames.
    #[inline]
    pub(super) fn references(&self) -> &[f32] {
        &self.max
    }

    /// The newest kept frame, one value per band.
    #[inline]
    pub(super) fn latest_row(&self) -> &[f32] {
        let row = (self.next + self.k - 1) % self.k;
        &self.rows[row * self.n..][..self.n]
    }

    /// Keep `s` (one value per band), max-filtered across ±1 band, in place
    /// of the oldest frame.
    pub(super) fn push(&mut self, s: &[f32]) {
        let n = self.n.min(s.len());
        max_across_neighbours(&mut self.rows[self.next * self.n..][..n], &s[..n]);
        self.next = (self.next + 1) % self.k;
        self.filled = (self.filled + 1).min(self.k);
        let kept = &self.rows[..self.n * self.filled];
        max_over_rows(&mut self.max, kept);
    }

    pub(super) fn clear(&mut self) {
        self.next = 0;
        self.filled = 0;
    }
}

crate::dsp::lanes::multiversion! {
    /// `row[b]` = the largest of `s[b − 1]`, `s[b]`, `s[b + 1]` (those that
    /// exist). Written as shifted slices so that it vectorises; a maximum
    /// is exact, so the order does not change the result.
    fn max_across_neighbours(row: &mut [f32], s: &[f32]) {
        let n = row.len().min(s.len());
        match n {
            0 => {}
            1 => row[0] = s[0].max(f32::MIN),
            _ => {
                row[0] = s[0].max(s[1]).max(f32::MIN);
                row[n - 1] = s[n - 2].max(s[n - 1]).max(f32::MIN);
                let mid = s[..n - 2].iter().zip(&s[1..n - 1]).zip(&s[2..n]);
                for (r, ((&a, &b), &c)) in row[1..n - 1].iter_mut().zip(mid) {
                    *r = a.max(b).max(c);
                }
            }
        }
    }
}

crate::dsp::lanes::multiversion! {
    /// `max[b]` = the largest `rows[r · n + b]` over the whole rows (`n` =
    /// `max.len()`), `f32::MIN` with none; row by row, so the maxima run
    /// over contiguous memory.
    fn max_over_rows(max: &mut [f32], rows: &[f32]) {
        max.fill(f32::MIN);
        for row in rows.chunks_exact(max.len().max(1)) {
            for (m, &v) in max.iter_mut().zip(row) {
                *m = m.max(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_maxima_are_those_of_a_plain_fold() {
        // Against the loops they replaced: a fold over the neighbours that
        // exist, and a fold over every kept row.
        let value = |i: usize| ((i * 7919 % 257) as f32 - 128.0) * 0.37;
        for n in [1, 2, 3, 8, 9, 97] {
            let s: Vec<f32> = (0..n).map(value).collect();
            let mut row = vec![0.0; n];
            max_across_neighbours(&mut row, &s);
            for b in 0..n {
                let want = s[b.saturating_sub(1)..=(b + 1).min(n - 1)]
                    .iter()
                    .fold(f32::MIN, |m, &v| m.max(v));
                assert_eq!(row[b], want, "n {n} band {b}");
            }
            for rows in 0..4 {
                let kept: Vec<f32> = (0..n * rows).map(|i| value(i + 3)).collect();
                let mut max = vec![0.0; n];
                max_over_rows(&mut max, &kept);
                for b in 0..n {
                    let want = (0..rows).fold(f32::MIN, |m, r| m.max(kept[r * n + b]));
                    assert_eq!(max[b], want, "n {n} rows {rows} band {b}");
                }
            }
        }
    }
}
