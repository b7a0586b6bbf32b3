//! Out-of-range numbers brought into range ([`clamp`]), one method per
//! family of commands, in the order the fields are reported back.

use super::{Clamped, Command};
use crate::config::ranges as R;
use crate::types::{BAND_NAMES, MAX_FFT_BINS};

/// Bring every number of `cmd` into its documented range (the Python
/// server's behaviour for out-of-range values: clamp, not refuse) at sample
/// rate `sr`. Returns what was changed, for the reply.
pub fn clamp(cmd: &mut Command, sr: f64) -> Vec<Clamped> {
    let mut k = Clamper(Vec::new());
    match cmd {
        Command::SetBand { .. }
        | Command::SetSmoothing { .. }
        | Command::SetFilterOrder { .. }
        | Command::SetAutoscale { .. } => k.levels(cmd, sr),
        Command::SetFftPeakSmear { .. }
        | Command::SetFftTilt { .. }
        | Command::SetNFftBins { .. } => k.spectrum(cmd),
        Command::SetBandOnset { .. } | Command::SetOnset { .. } | Command::SetTempo { .. } => {
            k.detection(cmd)
        }
        Command::SetUi { .. } | Command::SetWsSnapshotHz { .. } => k.clients(cmd),
        // Nothing else carries a number with a range.
        _ => {}
    }
    k.0
}

/// Clamps values into ranges, remembering what it changed.
struct Clamper(Vec<Clamped>);

impl Clamper {
    fn f(&mut self, field: &str, v: &mut f64, (lo, hi): R::Range) {
        if v.is_finite() && (*v < lo || *v > hi) {
            let applied = v.clamp(lo, hi);
            self.0.push(Clamped {
                field: field.into(),
                requested: *v,
                applied,
            });
            *v = applied;
        }
    }

    fn opt(&mut self, field: &str, v: &mut Option<f64>, r: R::Range) {
        if let Some(v) = v.as_mut() {
            self.f(field, v, r);
        }
    }

    fn i(&mut self, field: &str, v: &mut i64, lo: i64, hi: i64) {
        if *v < lo || *v > hi {
            let applied = (*v).clamp(lo, hi);
            self.0.push(Clamped {
                field: field.into(),
                requested: *v as f64,
                applied: applied as f64,
            });
            *v = applied;
        }
    }

    /// `set_band`, `set_smoothing`, `set_filter_order`, `set_autoscale`;
    /// leaves any other command as it is.
    fn levels(&mut self, cmd: &mut Command, sr: f64) {
        match cmd {
            Command::SetBand { lo_hz, hi_hz, .. } => self.band_edges(lo_hz, hi_hz, sr),
            Command::SetSmoothing {
                tau, tau_attack, ..
            } => {
                for (i, n) in BAND_NAMES.iter().enumerate() {
                    self.opt(&format!("tau.{n}"), &mut tau[i], R::TAU_S);
                    self.opt(
                        &format!("tau_attack.{n}"),
                        &mut tau_attack[i],
                        R::TAU_ATTACK_S,
                    );
                }
            }
            Command::SetFilterOrder { order, .. } => self.i(
                "order",
                order,
                R::FILTER_ORDER.0 as i64,
                R::FILTER_ORDER.1 as i64,
            ),
            Command::SetAutoscale {
                tau_attack_s,
                tau_release_s,
                noise_floor,
                strength,
                master_gain,
                ..
            } => {
                self.opt("tau_attack_s", tau_attack_s, R::AUTOSCALE_ATTACK_S);
                self.opt("tau_release_s", tau_release_s, R::AUTOSCALE_RELEASE_S);
                self.opt("noise_floor", noise_floor, R::NOISE_FLOOR);
                self.opt("strength", strength, R::STRENGTH);
                self.opt("master_gain", master_gain, R::MASTER_GAIN);
            }
            _ => {}
        }
    }

    /// A band-pass's edges at sample rate `sr`: the lower edge into range,
    /// then a band narrower than the minimum widened upwards.
    fn band_edges(&mut self, lo_hz: &mut f64, hi_hz: &mut f64, sr: f64) {
        let top = R::BAND_HI_MAX_OF_SR * sr;
        self.f(
            "lo_hz",
            lo_hz,
            (R::BAND_LO_MIN_HZ, top - R::BAND_MIN_WIDTH_HZ - 1.0),
        );
        // A band narrower than the minimum is widened upwards (the
        // Python server refuses only hi <= lo, which stays an error).
        if hi_hz.is_finite() && lo_hz.is_finite() && *hi_hz > *lo_hz {
            self.f("hi_hz", hi_hz, (*lo_hz + R::BAND_MIN_WIDTH_HZ + 1.0, top));
        }
    }

    /// `set_fft_peak_smear`, `set_fft_tilt`, `set_n_fft_bins`; leaves any
    /// other command as it is.
    fn spectrum(&mut self, cmd: &mut Command) {
        match cmd {
            Command::SetFftPeakSmear { peak_smear_oct, .. } => {
                self.f("peak_smear_oct", peak_smear_oct, R::PEAK_SMEAR_OCT)
            }
            Command::SetFftTilt {
                tilt_db_per_oct, ..
            } => self.f("tilt_db_per_oct", tilt_db_per_oct, R::TILT_DB_PER_OCT),
            Command::SetNFftBins { n } => self.i("n", n, 8, MAX_FFT_BINS as i64),
            _ => {}
        }
    }

    /// `set_onset` (with a band or without) and `set_tempo`; leaves any
    /// other command as it is.
    fn detection(&mut self, cmd: &mut Command) {
        match cmd {
            Command::SetBandOnset {
                sensitivity,
                refractory_s,
                slow_tau_s,
                abs_floor,
                ..
            } => {
                let r = &R::BAND_ONSET;
                self.opt("sensitivity", sensitivity, r.sensitivity);
                self.opt("refractory_s", refractory_s, r.refractory_s);
                self.opt("slow_tau_s", slow_tau_s, r.slow_tau_s);
                self.opt("abs_floor", abs_floor, r.abs_floor);
            }
            Command::SetOnset {
                sensitivity,
                min_gap_s,
                ..
            } => {
                self.opt("sensitivity", sensitivity, R::ONSET_SENSITIVITY);
                self.opt("min_gap_s", min_gap_s, R::ONSET_MIN_GAP_S);
            }
            Command::SetTempo {
                min_bpm,
                max_bpm,
                lock_confidence,
                ..
            } => {
                self.opt("min_bpm", min_bpm, R::BPM);
                self.opt("max_bpm", max_bpm, R::BPM);
                self.opt("lock_confidence", lock_confidence, R::LOCK_CONFIDENCE);
            }
            _ => {}
        }
    }

    /// `set_ui` and `set_ws_snapshot_hz`; leaves any other command as it is.
    fn clients(&mut self, cmd: &mut Command) {
        match cmd {
            Command::SetUi {
                peak_decay_per_s,
                layout,
                ..
            } => {
                self.opt("peak_decay_per_s", peak_decay_per_s, R::PEAK_DECAY_PER_S);
                if let Some(l) = layout.as_mut() {
                    self.f("layout.split_x", &mut l.split_x, R::LAYOUT_SPLIT);
                    self.f("layout.split_y", &mut l.split_y, R::LAYOUT_SPLIT);
                }
            }
            Command::SetWsSnapshotHz { hz, .. } => {
                // Whole frames per second, as the Python server keeps it.
                if hz.is_finite() {
                    *hz = hz.round();
                }
                self.f("hz", hz, R::SNAPSHOT_HZ)
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    // These pin what clamping reports, in order, for every family of
    // commands, and what the command carries afterwards. They were run
    // against main's single clamp too.
    use super::*;

    const SR: f64 = 48_000.0;

    fn clamped(mut cmd: Command) -> (Vec<(String, f64, f64)>, Command) {
        let c = clamp(&mut cmd, SR);
        let list = c.into_iter().map(|c| (c.field, c.requested, c.applied));
        (list.collect(), cmd)
    }

    fn fields(list: &[(&str, f64, f64)]) -> Vec<(String, f64, f64)> {
        list.iter()
            .map(|(f, r, a)| (f.to_string(), *r, *a))
            .collect()
    }

    #[test]
    fn a_band_is_brought_under_the_ceiling_and_widened_upwards() {
        let top = R::BAND_HI_MAX_OF_SR * SR;
        let band = |lo_hz, hi_hz| Command::SetBand {
            band: 0,
            lo_hz,
            hi_hz,
            commit: true,
        };
        assert_eq!(
            clamped(band(10.0, 40.0)),
            (
                fields(&[("lo_hz", 10.0, 20.0), ("hi_hz", 40.0, 71.0)]),
                band(20.0, 71.0)
            )
        );
        assert_eq!(
            clamped(band(30_000.0, 40_000.0)),
            (
                fields(&[("lo_hz", 30_000.0, top - 51.0), ("hi_hz", 40_000.0, top)]),
                band(top - 51.0, top)
            )
        );
        // hi <= lo is left for validate to refuse.
        assert_eq!(clamped(band(100.0, 50.0)), (vec![], band(100.0, 50.0)));
    }

    #[test]
    fn level_fields_are_clamped_and_reported_in_order() {
        let (list, _) = clamped(Command::SetSmoothing {
            tau: [Some(9.0), None, Some(0.0)],
            tau_attack: [None, Some(5.0), None],
            commit: true,
        });
        let expected = [
            ("tau.low", 9.0, 2.0),
            ("tau_attack.mid", 5.0, 2.0),
            ("tau.high", 0.0, 0.005),
        ];
        assert_eq!(list, fields(&expected));
        let (list, _) = clamped(Command::SetFilterOrder {
            order: 0,
            commit: true,
        });
        assert_eq!(list, fields(&[("order", 0.0, 1.0)]));
        let (list, _) = clamped(Command::SetAutoscale {
            tau_attack_s: Some(2.0),
            tau_release_s: Some(1.0),
            noise_floor: Some(0.5),
            strength: Some(-1.0),
            master_gain: Some(9.0),
            commit: true,
        });
        let expected = [
            ("tau_attack_s", 2.0, 1.0),
            ("tau_release_s", 1.0, 5.0),
            ("noise_floor", 0.5, 0.1),
            ("strength", -1.0, 0.0),
            ("master_gain", 9.0, 4.0),
        ];
        assert_eq!(list, fields(&expected));
    }

    #[test]
    fn spectrum_fields_are_clamped_but_not_a_number_is_left_for_validate() {
        let (list, _) = clamped(Command::SetFftPeakSmear {
            peak_smear_oct: 5.0,
            commit: true,
        });
        assert_eq!(list, fields(&[("peak_smear_oct", 5.0, 3.0)]));
        let (list, _) = clamped(Command::SetFftTilt {
            tilt_db_per_oct: 20.0,
            commit: true,
        });
        assert_eq!(list, fields(&[("tilt_db_per_oct", 20.0, 12.0)]));
        let (list, _) = clamped(Command::SetFftTilt {
            tilt_db_per_oct: f64::NAN,
            commit: true,
        });
        assert_eq!(list, vec![]);
        let (list, cmd) = clamped(Command::SetNFftBins { n: 2000 });
        assert_eq!(list, fields(&[("n", 2000.0, MAX_FFT_BINS as f64)]));
        assert_eq!(
            cmd,
            Command::SetNFftBins {
                n: MAX_FFT_BINS as i64
            }
        );
    }

    #[test]
    fn detector_fields_are_clamped_and_reported_in_order() {
        let (list, _) = clamped(Command::SetBandOnset {
            band: 2,
            sensitivity: Some(30.0),
            refractory_s: Some(9.0),
            slow_tau_s: Some(20.0),
            abs_floor: Some(2.0),
            commit: true,
        });
        let expected = [
            ("sensitivity", 30.0, 20.0),
            ("refractory_s", 9.0, 5.0),
            ("slow_tau_s", 20.0, 10.0),
            ("abs_floor", 2.0, 1.0),
        ];
        assert_eq!(list, fields(&expected));
        let (list, _) = clamped(Command::SetOnset {
            enabled: None,
            sensitivity: Some(2.0),
            min_gap_s: Some(0.0),
            commit: true,
        });
        let expected = [("sensitivity", 2.0, 1.0), ("min_gap_s", 0.0, 0.01)];
        assert_eq!(list, fields(&expected));
        let (list, _) = clamped(Command::SetTempo {
            enabled: None,
            min_bpm: Some(10.0),
            max_bpm: Some(400.0),
            lock_confidence: Some(2.0),
            commit: true,
        });
        let expected = [
            ("min_bpm", 10.0, 30.0),
            ("max_bpm", 400.0, 300.0),
            ("lock_confidence", 2.0, 1.0),
        ];
        assert_eq!(list, fields(&expected));
    }

    #[test]
    fn client_fields_are_clamped_and_the_snapshot_rate_rounded_first() {
        let (list, _) = clamped(Command::SetUi {
            peak_decay_per_s: Some(9.0),
            show_onsets: None,
            layout: Some(crate::config::UiLayout {
                split_x: 0.0,
                split_y: 1.0,
                ..Default::default()
            }),
            fft_view: None,
            fft3d_style: None,
            palette: None,
            commit: true,
        });
        let expected = [
            ("peak_decay_per_s", 9.0, 5.0),
            ("layout.split_x", 0.0, 0.1),
            ("layout.split_y", 1.0, 0.9),
        ];
        assert_eq!(list, fields(&expected));
        let hz = |hz| Command::SetWsSnapshotHz { hz, commit: true };
        assert_eq!(
            clamped(hz(300.4)),
            (fields(&[("hz", 300.0, 240.0)]), hz(240.0))
        );
        assert_eq!(clamped(hz(59.6)), (vec![], hz(60.0)));
    }

    #[test]
    fn commands_without_ranged_numbers_are_left_alone() {
        for untouched in [
            Command::SetFft { enabled: true },
            Command::SetDevice {
                index: Some(-5),
                name: None,
            },
            Command::ListPresets,
        ] {
            assert_eq!(clamped(untouched.clone()), (vec![], untouched));
        }
    }
}
