//! Why a command is refused ([`validate`]), one function per family of
//! commands. The checks of each command run in a fixed order and the first
//! problem is the answer, so a client always gets the same error text for
//! the same message.

use super::super::device::MAX_DEVICE_NAME;
use super::super::presets::PresetName;
use super::Command;
use crate::config::ranges as R;
use crate::types::{BAND_NAMES, MAX_FFT_BINS};

fn range(name: &str, v: f64, (lo, hi): R::Range) -> Option<String> {
    (!v.is_finite() || v < lo || v > hi).then(|| format!("{name} must be in [{lo}, {hi}], got {v}"))
}

fn opt_range(name: &str, v: Option<f64>, r: R::Range) -> Option<String> {
    v.and_then(|v| range(name, v, r))
}

/// A partial update must change something where the Python server says so
/// (`set_onset` with a band) and for phase4's own partial messages.
fn some_field(type_: &str, given: &[bool], fields: &str) -> Option<String> {
    (!given.iter().any(|g| *g)).then(|| format!("{type_} needs at least one of {fields}"))
}

/// Why `cmd` is refused at sample rate `sr`, or `None` when it is fine. Run
/// after [`clamp`](super::clamp), so what is left are values no clamp can
/// fix (a band with hi <= lo, a missing field, a bad name). The whole
/// resulting configuration is validated again before it is used.
pub fn validate(cmd: &Command, sr: f64) -> Option<String> {
    match cmd {
        Command::SetBand { .. }
        | Command::SetSmoothing { .. }
        | Command::SetFilterOrder { .. }
        | Command::SetAutoscale { .. } => levels(cmd, sr),
        Command::SetFftPeakSmear { .. }
        | Command::SetFftTilt { .. }
        | Command::SetNFftBins { .. } => spectrum(cmd),
        Command::SetBandOnset { .. } | Command::SetOnset { .. } => onset(cmd),
        Command::SetTempo { .. } => tempo(cmd),
        Command::SetUi { .. } | Command::SetWsSnapshotHz { .. } => clients(cmd),
        Command::SavePreset { name }
        | Command::LoadPreset { name }
        | Command::DeletePreset { name } => PresetName::parse(name).err(),
        Command::SetDevice { index, name } => device_choice(index, name),
        Command::SetFft { .. }
        | Command::SetFftSendRawDb { .. }
        | Command::ListDevices { .. }
        | Command::ListPresets
        | Command::Hello => None,
    }
}

/// `set_band`, `set_smoothing`, `set_filter_order`, `set_autoscale`; any
/// other command has nothing to check here.
fn levels(cmd: &Command, sr: f64) -> Option<String> {
    match cmd {
        Command::SetBand {
            band, lo_hz, hi_hz, ..
        } => band_edges(*band, *lo_hz, *hi_hz, sr),
        Command::SetSmoothing {
            tau, tau_attack, ..
        } => {
            tau.iter()
                .zip(BAND_NAMES)
                .find_map(|(t, n)| opt_range(&format!("tau.{n}"), *t, R::TAU_S))
                .or_else(|| {
                    tau_attack.iter().zip(BAND_NAMES).find_map(|(t, n)| {
                        opt_range(&format!("tau_attack.{n}"), *t, R::TAU_ATTACK_S)
                    })
                })
        }
        Command::SetFilterOrder { order, .. } => {
            let (lo, hi) = R::FILTER_ORDER;
            (!(lo as i64..=hi as i64).contains(order))
                .then(|| format!("filter_order must be in {lo}..{hi}, got {order}"))
        }
        Command::SetAutoscale {
            tau_attack_s,
            tau_release_s,
            noise_floor,
            strength,
            master_gain,
            ..
        } => opt_range("tau_attack_s", *tau_attack_s, R::AUTOSCALE_ATTACK_S)
            .or_else(|| opt_range("tau_release_s", *tau_release_s, R::AUTOSCALE_RELEASE_S))
            .or_else(|| opt_range("noise_floor", *noise_floor, R::NOISE_FLOOR))
            .or_else(|| opt_range("strength", *strength, R::STRENGTH))
            .or_else(|| opt_range("master_gain", *master_gain, R::MASTER_GAIN)),
        _ => None,
    }
}

/// A band-pass's edges at sample rate `sr`: the lower edge first, then the
/// width, then the ceiling (0.45 × the rate).
fn band_edges(band: usize, lo_hz: f64, hi_hz: f64, sr: f64) -> Option<String> {
    let name = BAND_NAMES.get(band).copied().unwrap_or("?");
    let top = R::BAND_HI_MAX_OF_SR * sr;
    if !lo_hz.is_finite() || lo_hz < R::BAND_LO_MIN_HZ {
        Some(format!("{name}: lo_hz must be >= 20, got {lo_hz}"))
    } else if !hi_hz.is_finite() || hi_hz <= lo_hz + R::BAND_MIN_WIDTH_HZ {
        Some(format!("{name}: hi_hz must be > lo_hz, got {hi_hz}"))
    } else if hi_hz > top {
        Some(format!(
            "{name}: hi_hz must be <= 0.45 x sample rate ({top}), got {hi_hz}"
        ))
    } else {
        None
    }
}

/// `set_fft_peak_smear`, `set_fft_tilt`, `set_n_fft_bins`; any other
/// command has nothing to check here.
fn spectrum(cmd: &Command) -> Option<String> {
    match cmd {
        Command::SetFftPeakSmear { peak_smear_oct, .. } => {
            range("peak_smear_oct", *peak_smear_oct, R::PEAK_SMEAR_OCT)
        }
        Command::SetFftTilt {
            tilt_db_per_oct, ..
        } => range("tilt_db_per_oct", *tilt_db_per_oct, R::TILT_DB_PER_OCT),
        Command::SetNFftBins { n } => (!(8..=MAX_FFT_BINS as i64).contains(n))
            .then(|| format!("n must be in [8, {MAX_FFT_BINS}], got {n}")),
        _ => None,
    }
}

/// `set_onset`, with a band or without: at least one field, then each given
/// one in range. Any other command has nothing to check here.
fn onset(cmd: &Command) -> Option<String> {
    match cmd {
        Command::SetBandOnset {
            sensitivity,
            refractory_s,
            slow_tau_s,
            abs_floor,
            ..
        } => {
            let r = &R::BAND_ONSET;
            some_field(
                "set_onset",
                &[
                    sensitivity.is_some(),
                    refractory_s.is_some(),
                    slow_tau_s.is_some(),
                    abs_floor.is_some(),
                ],
                "sensitivity, refractory_s, slow_tau_s, abs_floor",
            )
            .or_else(|| opt_range("sensitivity", *sensitivity, r.sensitivity))
            .or_else(|| opt_range("refractory_s", *refractory_s, r.refractory_s))
            .or_else(|| opt_range("slow_tau_s", *slow_tau_s, r.slow_tau_s))
            .or_else(|| opt_range("abs_floor", *abs_floor, r.abs_floor))
        }
        Command::SetOnset {
            enabled,
            sensitivity,
            min_gap_s,
            ..
        } => some_field(
            "set_onset",
            &[
                enabled.is_some(),
                sensitivity.is_some(),
                min_gap_s.is_some(),
            ],
            "band (with sensitivity, refractory_s, slow_tau_s, abs_floor), or enabled, sensitivity, min_gap_s",
        )
        .or_else(|| opt_range("sensitivity", *sensitivity, R::ONSET_SENSITIVITY))
        .or_else(|| opt_range("min_gap_s", *min_gap_s, R::ONSET_MIN_GAP_S)),
        _ => None,
    }
}

/// `set_tempo`: at least one field, then each given one in range. Any other
/// command has nothing to check here.
fn tempo(cmd: &Command) -> Option<String> {
    let Command::SetTempo {
        enabled,
        min_bpm,
        max_bpm,
        lock_confidence,
        ..
    } = cmd
    else {
        return None;
    };
    some_field(
        "set_tempo",
        &[
            enabled.is_some(),
            min_bpm.is_some(),
            max_bpm.is_some(),
            lock_confidence.is_some(),
        ],
        "enabled, min_bpm, max_bpm, lock_confidence",
    )
    .or_else(|| opt_range("min_bpm", *min_bpm, R::BPM))
    .or_else(|| opt_range("max_bpm", *max_bpm, R::BPM))
    .or_else(|| opt_range("lock_confidence", *lock_confidence, R::LOCK_CONFIDENCE))
}

/// `set_ui` and `set_ws_snapshot_hz`; any other command has nothing to
/// check here.
fn clients(cmd: &Command) -> Option<String> {
    match cmd {
        Command::SetUi {
            peak_decay_per_s,
            layout,
            ..
        } => opt_range("peak_decay_per_s", *peak_decay_per_s, R::PEAK_DECAY_PER_S).or_else(|| {
            layout.and_then(|l| {
                range("layout.split_x", l.split_x, R::LAYOUT_SPLIT)
                    .or_else(|| range("layout.split_y", l.split_y, R::LAYOUT_SPLIT))
            })
        }),
        Command::SetWsSnapshotHz { hz, .. } => range("hz", *hz, R::SNAPSHOT_HZ),
        _ => None,
    }
}

/// `set_device`'s index or name, before the name is checked against the
/// devices phase4 lists ([`ListedDevice`](super::super::device::ListedDevice)).
fn device_choice(index: &Option<i64>, name: &Option<String>) -> Option<String> {
    match (index, name) {
        (None, None) => Some("set_device needs index or name".into()),
        (Some(i), None) if *i < 0 => Some("device index must be >= 0".into()),
        (_, Some(n)) if n.is_empty() || n.len() > MAX_DEVICE_NAME => Some(format!(
            "device name must be 1-{MAX_DEVICE_NAME} bytes; pick one from list_devices"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_updates_that_change_nothing_are_refused() {
        let none = Command::SetAutoscale {
            tau_attack_s: None,
            tau_release_s: None,
            noise_floor: None,
            strength: None,
            master_gain: None,
            commit: true,
        };
        // The Python server answers an empty set_autoscale with meta.
        assert!(validate(&none, 48_000.0).is_none());
        let onset = Command::SetOnset {
            enabled: None,
            sensitivity: None,
            min_gap_s: None,
            commit: true,
        };
        assert!(validate(&onset, 48_000.0).is_some());
        let tempo = Command::SetTempo {
            enabled: None,
            min_bpm: None,
            max_bpm: None,
            lock_confidence: None,
            commit: true,
        };
        assert!(validate(&tempo, 48_000.0).is_some());
        let one = Command::SetAutoscale {
            tau_attack_s: None,
            tau_release_s: None,
            noise_floor: None,
            strength: Some(0.5),
            master_gain: None,
            commit: true,
        };
        assert_eq!(validate(&one, 48_000.0), None);
    }

    // The tests below pin the exact text of every refusal and which problem
    // wins when a command has several (the first check in the command's
    // order). They were run against main's single validate too.

    const SR: f64 = 48_000.0;

    fn band(band: usize, lo_hz: f64, hi_hz: f64) -> Command {
        Command::SetBand {
            band,
            lo_hz,
            hi_hz,
            commit: true,
        }
    }

    fn autoscale(tau_release_s: Option<f64>, strength: Option<f64>, gain: Option<f64>) -> Command {
        Command::SetAutoscale {
            tau_attack_s: None,
            tau_release_s,
            noise_floor: None,
            strength,
            master_gain: gain,
            commit: true,
        }
    }

    fn band_onset(sensitivity: Option<f64>, abs_floor: Option<f64>) -> Command {
        Command::SetBandOnset {
            band: 0,
            sensitivity,
            refractory_s: None,
            slow_tau_s: None,
            abs_floor,
            commit: true,
        }
    }

    fn onset(enabled: Option<bool>, min_gap_s: Option<f64>) -> Command {
        Command::SetOnset {
            enabled,
            sensitivity: None,
            min_gap_s,
            commit: true,
        }
    }

    fn tempo(max_bpm: Option<f64>, lock_confidence: Option<f64>) -> Command {
        Command::SetTempo {
            enabled: None,
            min_bpm: None,
            max_bpm,
            lock_confidence,
            commit: true,
        }
    }

    fn ui(peak_decay_per_s: Option<f64>, split: Option<(f64, f64)>) -> Command {
        Command::SetUi {
            peak_decay_per_s,
            show_onsets: None,
            layout: split.map(|(split_x, split_y)| crate::config::UiLayout {
                split_x,
                split_y,
                ..Default::default()
            }),
            fft_view: None,
            fft3d_style: None,
            palette: None,
            commit: true,
        }
    }

    fn device(index: Option<i64>, name: Option<&str>) -> Command {
        Command::SetDevice {
            index,
            name: name.map(str::to_string),
        }
    }

    fn assert_refused(cases: Vec<(Command, String)>) {
        for (cmd, text) in cases {
            assert_eq!(validate(&cmd, SR), Some(text), "{cmd:?}");
        }
    }

    #[test]
    fn band_refusals_check_the_lower_edge_then_the_width_then_the_ceiling() {
        let top = crate::config::ranges::BAND_HI_MAX_OF_SR * SR;
        assert_refused(vec![
            (
                band(0, 10.0, 5.0),
                "low: lo_hz must be >= 20, got 10".into(),
            ),
            (
                band(7, f64::NAN, 5.0),
                "?: lo_hz must be >= 20, got NaN".into(),
            ),
            (
                band(1, 100.0, 150.0),
                "mid: hi_hz must be > lo_hz, got 150".into(),
            ),
            (
                band(2, 100.0, 30_000.0),
                format!("high: hi_hz must be <= 0.45 x sample rate ({top}), got 30000"),
            ),
        ]);
        assert_eq!(validate(&band(0, 20.0, 200.0), SR), None);
    }

    #[test]
    fn level_refusals_name_the_first_field_out_of_range() {
        assert_refused(vec![
            (
                Command::SetSmoothing {
                    tau: [None, Some(9.0), None],
                    tau_attack: [Some(9.0), None, None],
                    commit: true,
                },
                "tau.mid must be in [0.005, 2], got 9".into(),
            ),
            (
                Command::SetSmoothing {
                    tau: [None; 3],
                    tau_attack: [None, None, Some(0.0)],
                    commit: false,
                },
                "tau_attack.high must be in [0.001, 2], got 0".into(),
            ),
            (
                Command::SetFilterOrder {
                    order: 9,
                    commit: true,
                },
                "filter_order must be in 1..8, got 9".into(),
            ),
            (
                autoscale(Some(1.0), Some(2.0), None),
                "tau_release_s must be in [5, 300], got 1".into(),
            ),
            (
                autoscale(None, None, Some(f64::INFINITY)),
                "master_gain must be in [0, 4], got inf".into(),
            ),
        ]);
    }

    #[test]
    fn spectrum_refusals_keep_their_text() {
        let max_bins = crate::types::MAX_FFT_BINS;
        assert_refused(vec![
            (
                Command::SetFftPeakSmear {
                    peak_smear_oct: f64::NAN,
                    commit: true,
                },
                "peak_smear_oct must be in [0, 3], got NaN".into(),
            ),
            (
                Command::SetFftTilt {
                    tilt_db_per_oct: -7.0,
                    commit: true,
                },
                "tilt_db_per_oct must be in [-6, 12], got -7".into(),
            ),
            (
                Command::SetNFftBins { n: 7 },
                format!("n must be in [8, {max_bins}], got 7"),
            ),
        ]);
    }

    #[test]
    fn detector_refusals_ask_for_a_field_before_checking_ranges() {
        assert_refused(vec![
            (
                band_onset(None, None),
                "set_onset needs at least one of sensitivity, refractory_s, slow_tau_s, abs_floor"
                    .into(),
            ),
            (
                band_onset(Some(1.0), Some(2.0)),
                "sensitivity must be in [1.01, 20], got 1".into(),
            ),
            (
                onset(None, None),
                "set_onset needs at least one of band (with sensitivity, refractory_s, \
                 slow_tau_s, abs_floor), or enabled, sensitivity, min_gap_s"
                    .into(),
            ),
            (
                onset(Some(true), Some(2.0)),
                "min_gap_s must be in [0.01, 1], got 2".into(),
            ),
            (
                tempo(None, None),
                "set_tempo needs at least one of enabled, min_bpm, max_bpm, lock_confidence".into(),
            ),
            (
                tempo(Some(400.0), Some(2.0)),
                "max_bpm must be in [30, 300], got 400".into(),
            ),
        ]);
        assert_eq!(validate(&tempo(Some(120.0), None), SR), None);
    }

    #[test]
    fn client_device_and_preset_refusals_keep_their_text() {
        assert_refused(vec![
            (
                ui(Some(0.0), Some((0.0, 0.0))),
                "peak_decay_per_s must be in [0.01, 5], got 0".into(),
            ),
            (
                ui(None, Some((0.5, 0.95))),
                "layout.split_y must be in [0.1, 0.9], got 0.95".into(),
            ),
            (
                Command::SetWsSnapshotHz {
                    hz: 10.0,
                    commit: true,
                },
                "hz must be in [15, 240], got 10".into(),
            ),
            (device(None, None), "set_device needs index or name".into()),
            (device(Some(-1), None), "device index must be >= 0".into()),
            (
                device(Some(-1), Some("")),
                "device name must be 1-256 bytes; pick one from list_devices".into(),
            ),
            (
                Command::SavePreset {
                    name: "../x".into(),
                },
                "preset name may only hold letters, digits, '_', '-' and spaces (not '.')".into(),
            ),
            (
                Command::LoadPreset { name: "".into() },
                "preset name must be 1-64 characters".into(),
            ),
            (
                Command::DeletePreset { name: "  ".into() },
                "preset name must not be only spaces".into(),
            ),
        ]);
    }

    #[test]
    fn commands_with_nothing_to_check_or_nothing_wrong_pass() {
        for fine in [
            Command::SetFft { enabled: true },
            Command::SetFftSendRawDb { send_raw_db: true },
            Command::ListDevices { probe: true },
            Command::ListPresets,
            Command::Hello,
            device(Some(0), None),
            // The name wins over the index.
            device(Some(-1), Some("hw:0")),
            ui(None, Some((0.5, 0.5))),
        ] {
            assert_eq!(validate(&fine, SR), None, "{fine:?}");
        }
    }
}
