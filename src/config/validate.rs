//! Range checks on a parsed [`Config`]. Returns every problem, not the first.
//! The analysis settings are checked here; the network outputs and
//! services (`[osc]`, `[ws]`, `[monitor]`, `[record]`) in [`services`].

use super::ranges as R;
use super::{Config, Problem};
use crate::dsp::worker::MAX_HOPS_PER_BLOCK;

mod services;
use services::{monitor, osc, ws};

pub(super) struct Checker {
    pub(super) problems: Vec<Problem>,
}

impl Checker {
    pub(super) fn fail(&mut self, key: &str, value: impl ToString, allowed: impl Into<String>) {
        self.problems.push(Problem {
            key: key.to_string(),
            value: value.to_string(),
            allowed: allowed.into(),
            line: None,
        });
    }

    pub(super) fn range_f(&mut self, key: &str, v: f64, lo: f64, hi: f64) {
        if !v.is_finite() || v < lo || v > hi {
            self.fail(key, short_f(v), format!("must be between {lo} and {hi}"));
        }
    }

    pub(super) fn range_u(&mut self, key: &str, v: u64, lo: u64, hi: u64) {
        if v < lo || v > hi {
            self.fail(key, v, format!("must be between {lo} and {hi}"));
        }
    }
}

/// `v` as a problem line shows it: `1e300`, not 301 digits.
fn short_f(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && a.is_finite() && !(1e-6..1e9).contains(&a) {
        format!("{v:e}")
    } else {
        v.to_string()
    }
}

/// Everything wrong with `c`, as problems without line numbers.
pub fn validate(c: &Config) -> Vec<Problem> {
    let mut k = Checker {
        problems: Vec::new(),
    };
    audio(&mut k, c);
    realtime(&mut k, c);
    dsp(&mut k, c);
    autoscale(&mut k, c);
    fft(&mut k, c);
    onset(&mut k, c);
    ui(&mut k, c);
    tempo(&mut k, c);
    silence(&mut k, c);
    osc(&mut k, c);
    ws(&mut k, c);
    monitor(&mut k, c);
    k.range_f("health.interval-s", c.health.interval_s, 1.0, 86_400.0);
    // No file system path holds a NUL: such a setting could only fail
    // later, when the service starts, with a warning instead of an error.
    for (key, path) in [
        ("state.dir", &c.state.dir),
        ("ws.web-dir", &c.ws.web_dir),
        ("audio.input", &c.audio.input),
    ] {
        if path.contains('\0') {
            k.fail(key, format!("{path:?}"), "a path without NUL bytes");
        }
    }
    super::rig::check(c, &mut k);
    k.problems
}

/// Problems only a configuration *file* can have, on top of [`validate`]:
/// its path settings must be absolute. A relative one would be resolved
/// against whatever directory the process runs in (`/` under systemd), so
/// the service and `phase4 token` run from a shell would use different
/// directories. Not part of [`validate`], which also checks the command
/// line's overrides: a relative `--input` means the shell's directory.
pub(super) fn file_paths(c: &Config) -> Vec<Problem> {
    let mut k = Checker {
        problems: Vec::new(),
    };
    for (key, path) in [
        ("state.dir", &c.state.dir),
        ("ws.web-dir", &c.ws.web_dir),
        ("audio.input", &c.audio.input),
    ] {
        if !path.is_empty() && !path.contains('\0') && !path.starts_with('/') {
            k.fail(
                key,
                format!("{path:?}"),
                "an absolute path (starting with '/'): a relative one would depend on the \
                 directory phase4 is started from",
            );
        }
    }
    k.problems
}

/// `[audio]`: rates, sizes, channels, the device retry.
fn audio(k: &mut Checker, c: &Config) {
    let a = &c.audio;
    if a.device.trim().is_empty() && a.input.is_empty() {
        k.fail(
            "audio.device",
            "\"\"",
            "an ALSA PCM name such as \"default\" or \"hw:1,0\"",
        );
    }
    if let Some(want) = super::device_name_problem(&a.device) {
        k.fail(
            "audio.device",
            format!("{:?}", crate::control::device::shorten(&a.device)),
            want,
        );
    }
    k.range_u(
        "audio.sample-rate-hz",
        a.sample_rate_hz as u64,
        8_000,
        384_000,
    );
    k.range_u(
        "audio.block-frames",
        a.block_frames as u64,
        16,
        crate::types::MAX_BLOCK_FRAMES as u64,
    );
    k.range_u("audio.periods", a.periods as u64, 2, 32);
    k.range_u("audio.channels", a.channels as u64, 0, 64);
    if a.channel < -1 || a.channel > 63 {
        k.fail(
            "audio.channel",
            a.channel,
            "-1 (mix to mono) or a channel index 0..63",
        );
    } else if a.channels > 0 && a.channel >= a.channels as i32 {
        k.fail(
            "audio.channel",
            a.channel,
            format!("must be below audio.channels ({})", a.channels),
        );
    }
    k.range_f("audio.retry-initial-s", a.retry_initial_s, 0.01, 60.0);
    k.range_f("audio.retry-max-s", a.retry_max_s, 0.01, 600.0);
    if a.retry_max_s < a.retry_initial_s {
        k.fail(
            "audio.retry-max-s",
            a.retry_max_s,
            "must be at least audio.retry-initial-s",
        );
    }
}

/// `[realtime]`: FIFO priorities (`cpu` is checked by its parser).
fn realtime(k: &mut Checker, c: &Config) {
    let r = &c.realtime;
    k.range_u(
        "realtime.capture-priority",
        r.capture_priority as u64,
        1,
        99,
    );
    k.range_u("realtime.worker-priority", r.worker_priority as u64, 1, 99);
}

/// `[dsp]`: the filter order and the three bands, below the Nyquist cap
/// of the configured rate.
fn dsp(k: &mut Checker, c: &Config) {
    let a = &c.audio;
    k.range_u(
        "dsp.filter-order",
        c.dsp.filter_order as u64,
        R::FILTER_ORDER.0 as u64,
        R::FILTER_ORDER.1 as u64,
    );
    let nyquist_cap = R::BAND_HI_MAX_OF_SR * a.sample_rate_hz as f64;
    for (name, b) in ["low", "mid", "high"].iter().zip(c.dsp.bands()) {
        let key = |leaf: &str| format!("dsp.{name}.{leaf}");
        if !b.lo_hz.is_finite() || b.lo_hz < R::BAND_LO_MIN_HZ {
            k.fail(&key("lo-hz"), b.lo_hz, "must be at least 20 Hz");
        }
        if !b.hi_hz.is_finite() || b.hi_hz <= b.lo_hz + R::BAND_MIN_WIDTH_HZ {
            k.fail(
                &key("hi-hz"),
                b.hi_hz,
                format!(
                    "must be above lo-hz + 50 ({} Hz)",
                    b.lo_hz + R::BAND_MIN_WIDTH_HZ
                ),
            );
        } else if b.hi_hz > nyquist_cap {
            k.fail(
                &key("hi-hz"),
                b.hi_hz,
                format!("must be at most 0.45 x sample rate ({nyquist_cap} Hz)"),
            );
        }
        k.range_f(&key("tau-s"), b.tau_s, R::TAU_S.0, R::TAU_S.1);
        k.range_f(
            &key("tau-attack-s"),
            b.tau_attack_s,
            R::TAU_ATTACK_S.0,
            R::TAU_ATTACK_S.1,
        );
    }
}

/// `[autoscale]`.
fn autoscale(k: &mut Checker, c: &Config) {
    let s = &c.autoscale;
    k.range_f(
        "autoscale.tau-attack-s",
        s.tau_attack_s,
        R::AUTOSCALE_ATTACK_S.0,
        R::AUTOSCALE_ATTACK_S.1,
    );
    k.range_f(
        "autoscale.tau-release-s",
        s.tau_release_s,
        R::AUTOSCALE_RELEASE_S.0,
        R::AUTOSCALE_RELEASE_S.1,
    );
    k.range_f(
        "autoscale.noise-floor",
        s.noise_floor,
        R::NOISE_FLOOR.0,
        R::NOISE_FLOOR.1,
    );
    k.range_f(
        "autoscale.strength",
        s.strength,
        R::STRENGTH.0,
        R::STRENGTH.1,
    );
    k.range_f(
        "autoscale.master-gain",
        s.master_gain,
        R::MASTER_GAIN.0,
        R::MASTER_GAIN.1,
    );
}

/// `[fft]`.
fn fft(k: &mut Checker, c: &Config) {
    let f = &c.fft;
    let w = f.window_frames;
    if !(64..=16384).contains(&w) || !w.is_power_of_two() {
        k.fail(
            "fft.window-frames",
            w,
            "must be a power of two between 64 and 16384",
        );
    }
    if f.hop_frames < 16 || f.hop_frames > w {
        k.fail(
            "fft.hop-frames",
            f.hop_frames,
            format!("must be between 16 and fft.window-frames ({w})"),
        );
    } else if c.audio.block_frames.div_ceil(f.hop_frames) > MAX_HOPS_PER_BLOCK {
        // A block runs the spectrum once per hop it holds, and its frames
        // must fit the rings to the senders.
        let least = c.audio.block_frames.div_ceil(MAX_HOPS_PER_BLOCK);
        k.fail(
            "fft.hop-frames",
            f.hop_frames,
            format!(
                "must be at least audio.block-frames / {MAX_HOPS_PER_BLOCK} ({least}): \
                 one block may hold at most {MAX_HOPS_PER_BLOCK} spectrum hops"
            ),
        );
    }
    k.range_u(
        "fft.n-bins",
        f.n_bins as u64,
        8,
        crate::types::MAX_FFT_BINS as u64,
    );
    k.range_f(
        "fft.f-min-hz",
        f.f_min_hz,
        1.0,
        0.25 * c.audio.sample_rate_hz as f64,
    );
    k.range_f("fft.db-floor", f.db_floor, -200.0, -1.0);
    if !f.db_ceiling.is_finite() || f.db_ceiling <= f.db_floor || f.db_ceiling > 20.0 {
        k.fail(
            "fft.db-ceiling",
            f.db_ceiling,
            format!("must be above fft.db-floor ({}) and at most 20", f.db_floor),
        );
    }
    k.range_f(
        "fft.peak-smear-oct",
        f.peak_smear_oct,
        R::PEAK_SMEAR_OCT.0,
        R::PEAK_SMEAR_OCT.1,
    );
    k.range_f(
        "fft.tilt-db-per-oct",
        f.tilt_db_per_oct,
        R::TILT_DB_PER_OCT.0,
        R::TILT_DB_PER_OCT.1,
    );
}

/// `[onset]` and its three band detectors.
fn onset(k: &mut Checker, c: &Config) {
    k.range_f(
        "onset.sensitivity",
        c.onset.sensitivity,
        R::ONSET_SENSITIVITY.0,
        R::ONSET_SENSITIVITY.1,
    );
    k.range_f(
        "onset.min-gap-s",
        c.onset.min_gap_s,
        R::ONSET_MIN_GAP_S.0,
        R::ONSET_MIN_GAP_S.1,
    );
    for (name, b) in ["low", "mid", "high"].iter().zip(c.onset.bands()) {
        let key = |leaf: &str| format!("onset.{name}.{leaf}");
        let r = &R::BAND_ONSET;
        k.range_f(
            &key("sensitivity"),
            b.sensitivity,
            r.sensitivity.0,
            r.sensitivity.1,
        );
        k.range_f(
            &key("refractory-s"),
            b.refractory_s,
            r.refractory_s.0,
            r.refractory_s.1,
        );
        k.range_f(
            &key("slow-tau-s"),
            b.slow_tau_s,
            r.slow_tau_s.0,
            r.slow_tau_s.1,
        );
        k.range_f(&key("abs-floor"), b.abs_floor, r.abs_floor.0, r.abs_floor.1);
    }
}

/// `[ui]`.
fn ui(k: &mut Checker, c: &Config) {
    let u = &c.ui;
    k.range_f(
        "ui.peak-decay-per-s",
        u.peak_decay_per_s,
        R::PEAK_DECAY_PER_S.0,
        R::PEAK_DECAY_PER_S.1,
    );
    k.range_f(
        "ui.layout.split-x",
        u.layout.split_x,
        R::LAYOUT_SPLIT.0,
        R::LAYOUT_SPLIT.1,
    );
    k.range_f(
        "ui.layout.split-y",
        u.layout.split_y,
        R::LAYOUT_SPLIT.0,
        R::LAYOUT_SPLIT.1,
    );
    if !super::Card::ALL
        .iter()
        .all(|c| u.layout.quadrants.contains(c))
    {
        k.fail(
            "ui.layout.quadrants",
            format!("{:?}", u.layout.quadrants),
            "each of \"bars\", \"lines\", \"scene\", \"fft\" once",
        );
    }
}

/// `[tempo]`: the range must hold every tempo folded into it.
fn tempo(k: &mut Checker, c: &Config) {
    let t = &c.tempo;
    k.range_f("tempo.min-bpm", t.min_bpm, R::BPM.0, R::BPM.1);
    k.range_f("tempo.max-bpm", t.max_bpm, R::BPM.0, R::BPM.1);
    if t.max_bpm.is_finite() && t.min_bpm.is_finite() && t.max_bpm < 1.9 * t.min_bpm {
        k.fail(
            "tempo.max-bpm",
            t.max_bpm,
            format!(
                "must be at least 1.9 x tempo.min-bpm ({}) so that every tempo folds into the range",
                1.9 * t.min_bpm
            ),
        );
    }
    k.range_f(
        "tempo.lock-confidence",
        t.lock_confidence,
        R::LOCK_CONFIDENCE.0,
        R::LOCK_CONFIDENCE.1,
    );
}

/// `[silence]`.
fn silence(k: &mut Checker, c: &Config) {
    k.range_f(
        "silence.threshold-dbfs",
        c.silence.threshold_dbfs,
        -160.0,
        0.0,
    );
    k.range_f("silence.hold-s", c.silence.hold_s, 0.0, 600.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_and_tiny_values_are_shown_short() {
        assert_eq!(short_f(1e300), "1e300");
        assert_eq!(short_f(-2.5e-320), "-2.5e-320");
        assert_eq!(short_f(0.25), "0.25");
        assert_eq!(short_f(86_401.0), "86401");
        assert_eq!(short_f(f64::NAN), "NaN");
        assert_eq!(short_f(0.0), "0");
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(validate(&Config::default()), vec![]);
    }

    #[test]
    fn a_path_with_a_nul_byte_is_rejected() {
        let mut c = Config::default();
        c.state.dir = "\0".into();
        c.ws.web_dir = "/srv/\0web".into();
        c.audio.input = "a\0.wav".into();
        let keys: Vec<_> = validate(&c).into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["state.dir", "ws.web-dir", "audio.input"]);
    }

    #[test]
    fn a_device_name_is_held_to_256_bytes_and_shown_short() {
        let mut c = Config::default();
        c.audio.device = "é".repeat(128);
        assert_eq!(validate(&c), vec![]);
        c.audio.device.push('x');
        let p = validate(&c);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].allowed.contains("at most 256 bytes"), "{p:?}");
        assert!(p[0].value.len() < 200, "{p:?}");
    }

    #[test]
    fn a_hop_too_short_for_the_block_is_rejected() {
        let mut c = Config::default();
        c.audio.block_frames = 2048;
        c.fft.hop_frames = 128;
        assert_eq!(validate(&c), vec![]);
        c.fft.hop_frames = 127;
        let p = validate(&c);
        assert!(
            p.iter()
                .any(|p| p.key == "fft.hop-frames" && p.allowed.contains("at least")),
            "{p:?}"
        );
        c.audio.block_frames = 256;
        c.fft.hop_frames = 16;
        assert_eq!(validate(&c), vec![]);
    }

    #[test]
    fn band_above_nyquist_cap_is_rejected() {
        let mut c = Config::default();
        c.audio.sample_rate_hz = 22_050;
        let p = validate(&c);
        assert!(p.iter().any(|p| p.key == "dsp.high.hi-hz"), "{p:?}");
    }
}
