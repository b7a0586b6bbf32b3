//! The allowed range of every setting a client can change at runtime, in
//! one place: the configuration is validated against them, and values from
//! the WebSocket outside them are clamped to them (the Python server's
//! README ranges, and its code's clamp ranges where it has them).

/// An inclusive `(lo, hi)` range.
pub type Range = (f64, f64);

/// Lowest band edge.
pub const BAND_LO_MIN_HZ: f64 = 20.0;
/// A band's upper edge is more than this above its lower edge.
pub const BAND_MIN_WIDTH_HZ: f64 = 50.0;
/// A band's upper edge is at most this fraction of the sample rate.
pub const BAND_HI_MAX_OF_SR: f64 = 0.45;
/// Smoother release τ (`tau`), s.
pub const TAU_S: Range = (0.005, 2.0);
/// Smoother attack τ (`tau_attack`), s.
pub const TAU_ATTACK_S: Range = (0.001, 2.0);
/// Auto-scaler peak attack, s.
pub const AUTOSCALE_ATTACK_S: Range = (0.001, 1.0);
/// Auto-scaler peak release, s.
pub const AUTOSCALE_RELEASE_S: Range = (5.0, 300.0);
/// Noise floor, linear RMS.
pub const NOISE_FLOOR: Range = (0.0, 0.1);
/// Auto-scale strength.
pub const STRENGTH: Range = (0.0, 1.0);
/// Master gain.
pub const MASTER_GAIN: Range = (0.0, 4.0);
/// Peak smear, octaves.
pub const PEAK_SMEAR_OCT: Range = (0.0, 3.0);
/// Spectral tilt, dB per octave.
pub const TILT_DB_PER_OCT: Range = (-6.0, 12.0);
/// Snapshot rate, Hz.
pub const SNAPSHOT_HZ: Range = (15.0, 240.0);
/// Butterworth prototype order.
pub const FILTER_ORDER: (u32, u32) = (1, 8);
/// Broadband onset sensitivity.
pub const ONSET_SENSITIVITY: Range = (0.0, 1.0);
/// Shortest gap between broadband onsets, s.
pub const ONSET_MIN_GAP_S: Range = (0.01, 1.0);
/// Tempo range, BPM.
pub const BPM: Range = (30.0, 300.0);
/// Tempo lock confidence.
pub const LOCK_CONFIDENCE: Range = (0.0, 1.0);
/// UI peak-hold decay, per second.
pub const PEAK_DECAY_PER_S: Range = (0.01, 5.0);
/// UI layout splits, fraction of the page.
pub const LAYOUT_SPLIT: Range = (0.1, 0.9);

/// Ranges of one band's onset detector.
#[derive(Clone, Copy, Debug)]
pub struct BandOnsetRanges {
    /// Threshold multiple (must stay above 1).
    pub sensitivity: Range,
    /// Refractory time, s.
    pub refractory_s: Range,
    /// Slow envelope τ, s.
    pub slow_tau_s: Range,
    /// Threshold floor.
    pub abs_floor: Range,
}

/// The per-band onset detector's ranges.
pub const BAND_ONSET: BandOnsetRanges = BandOnsetRanges {
    sensitivity: (1.01, 20.0),
    refractory_s: (0.001, 5.0),
    slow_tau_s: (0.001, 10.0),
    abs_floor: (0.0, 1.0),
};
