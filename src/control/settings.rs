//! What each settings command changes in the [`State`]: the values it
//! carries, written into a copy of the state in force, which the
//! [`Controller`](super::Controller) then checks as a whole and commits.
//!
//! No checks here: [`validate`](super::command::validate) has run before, and
//! the whole resulting configuration is validated after. Runs on the control
//! thread.

use super::command::Command;
use super::state::State;

/// Write the values `cmd` carries into `s` and say whether the change is
/// final (`commit`; false while a slider is dragged). A command that sets
/// no value (a device, preset or list command) is given back unchanged.
pub(super) fn write(cmd: Command, s: &mut State) -> Result<bool, Command> {
    spectrum(cmd, s)
        .or_else(|cmd| levels(cmd, s))
        .or_else(|cmd| detection(cmd, s))
        .or_else(|cmd| clients(cmd, s))
}

/// `set_fft`, `set_fft_send_raw_db`, `set_n_fft_bins`, `set_fft_tilt`,
/// `set_fft_peak_smear`: the `[fft]` section.
fn spectrum(cmd: Command, s: &mut State) -> Result<bool, Command> {
    let f = &mut s.fft;
    Ok(match cmd {
        Command::SetFft { enabled } => {
            f.enabled = enabled;
            true
        }
        Command::SetFftTilt {
            tilt_db_per_oct,
            commit,
        } => {
            f.tilt_db_per_oct = tilt_db_per_oct;
            commit
        }
        Command::SetFftSendRawDb { send_raw_db } => {
            f.send_raw_db = send_raw_db;
            true
        }
        Command::SetFftPeakSmear {
            peak_smear_oct,
            commit,
        } => {
            f.peak_smear_oct = peak_smear_oct;
            commit
        }
        Command::SetNFftBins { n } => {
            f.n_bins = n as u32;
            true
        }
        other => return Err(other),
    })
}

/// `set_band`, `set_smoothing`, `set_filter_order`, `set_autoscale`: how
/// the three band levels are filtered, smoothed and scaled.
fn levels(cmd: Command, s: &mut State) -> Result<bool, Command> {
    Ok(match cmd {
        Command::SetBand {
            band,
            lo_hz,
            hi_hz,
            commit,
        } => {
            let b = match band {
                0 => &mut s.dsp.low,
                1 => &mut s.dsp.mid,
                _ => &mut s.dsp.high,
            };
            b.lo_hz = lo_hz;
            b.hi_hz = hi_hz;
            commit
        }
        Command::SetSmoothing {
            tau,
            tau_attack,
            commit,
        } => {
            for ((b, t), a) in [&mut s.dsp.low, &mut s.dsp.mid, &mut s.dsp.high]
                .into_iter()
                .zip(tau)
                .zip(tau_attack)
            {
                b.tau_s = t.unwrap_or(b.tau_s);
                b.tau_attack_s = a.unwrap_or(b.tau_attack_s);
            }
            commit
        }
        Command::SetFilterOrder { order, commit } => {
            s.dsp.filter_order = order as u32;
            commit
        }
        Command::SetAutoscale {
            tau_attack_s,
            tau_release_s,
            noise_floor,
            strength,
            master_gain,
            commit,
        } => {
            let a = &mut s.autoscale;
            a.master_gain = master_gain.unwrap_or(a.master_gain);
            a.tau_attack_s = tau_attack_s.unwrap_or(a.tau_attack_s);
            a.tau_release_s = tau_release_s.unwrap_or(a.tau_release_s);
            a.noise_floor = noise_floor.unwrap_or(a.noise_floor);
            a.strength = strength.unwrap_or(a.strength);
            commit
        }
        other => return Err(other),
    })
}

/// `set_onset` (per band and overall) and `set_tempo`: the event detectors.
fn detection(cmd: Command, s: &mut State) -> Result<bool, Command> {
    Ok(match cmd {
        Command::SetBandOnset {
            band,
            sensitivity,
            refractory_s,
            slow_tau_s,
            abs_floor,
            commit,
        } => {
            let b = s.onset.band_mut(band);
            b.sensitivity = sensitivity.unwrap_or(b.sensitivity);
            b.refractory_s = refractory_s.unwrap_or(b.refractory_s);
            b.slow_tau_s = slow_tau_s.unwrap_or(b.slow_tau_s);
            b.abs_floor = abs_floor.unwrap_or(b.abs_floor);
            commit
        }
        Command::SetOnset {
            enabled,
            sensitivity,
            min_gap_s,
            commit,
        } => {
            let o = &mut s.onset;
            o.enabled = enabled.unwrap_or(o.enabled);
            o.sensitivity = sensitivity.unwrap_or(o.sensitivity);
            o.min_gap_s = min_gap_s.unwrap_or(o.min_gap_s);
            commit
        }
        Command::SetTempo {
            enabled,
            min_bpm,
            max_bpm,
            lock_confidence,
            commit,
        } => {
            let t = &mut s.tempo;
            t.enabled = enabled.unwrap_or(t.enabled);
            t.min_bpm = min_bpm.unwrap_or(t.min_bpm);
            t.max_bpm = max_bpm.unwrap_or(t.max_bpm);
            t.lock_confidence = lock_confidence.unwrap_or(t.lock_confidence);
            commit
        }
        other => return Err(other),
    })
}

/// `set_ui` and `set_ws_snapshot_hz`: what the clients are sent and how
/// the browser UIs draw it.
fn clients(cmd: Command, s: &mut State) -> Result<bool, Command> {
    Ok(match cmd {
        Command::SetUi {
            peak_decay_per_s,
            show_onsets,
            layout,
            fft_view,
            fft3d_style,
            palette,
            commit,
        } => {
            let u = &mut s.ui;
            u.peak_decay_per_s = peak_decay_per_s.unwrap_or(u.peak_decay_per_s);
            u.show_onsets = show_onsets.unwrap_or(u.show_onsets);
            u.layout = layout.unwrap_or(u.layout);
            u.fft_view = fft_view.unwrap_or(u.fft_view);
            u.fft3d_style = fft3d_style.unwrap_or(u.fft3d_style);
            u.palette = palette.unwrap_or(u.palette);
            commit
        }
        Command::SetWsSnapshotHz { hz, commit } => {
            s.ws.snapshot_hz = hz;
            commit
        }
        other => return Err(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn state() -> State {
        State::from_config(&Config::default())
    }

    /// Every settings command, each carrying a value other than the one in
    /// `s`; those with a `commit` field say false (a drag).
    fn every_setting(s: &State) -> Vec<Command> {
        vec![
            Command::SetFft {
                enabled: !s.fft.enabled,
            },
            Command::SetFftTilt {
                tilt_db_per_oct: s.fft.tilt_db_per_oct + 0.5,
                commit: false,
            },
            Command::SetFftSendRawDb {
                send_raw_db: !s.fft.send_raw_db,
            },
            Command::SetFftPeakSmear {
                peak_smear_oct: s.fft.peak_smear_oct + 0.25,
                commit: false,
            },
            Command::SetNFftBins {
                n: s.fft.n_bins as i64 + 1,
            },
            Command::SetBand {
                band: 2,
                lo_hz: s.dsp.high.lo_hz + 1.0,
                hi_hz: s.dsp.high.hi_hz - 1.0,
                commit: false,
            },
            Command::SetSmoothing {
                tau: [None, Some(s.dsp.mid.tau_s + 0.1), None],
                tau_attack: [None; 3],
                commit: false,
            },
            Command::SetFilterOrder {
                order: s.dsp.filter_order as i64 + 1,
                commit: false,
            },
            Command::SetAutoscale {
                tau_attack_s: None,
                tau_release_s: None,
                noise_floor: None,
                strength: Some(s.autoscale.strength / 2.0),
                master_gain: None,
                commit: false,
            },
            Command::SetBandOnset {
                band: 1,
                sensitivity: Some(s.onset.mid.sensitivity + 0.5),
                refractory_s: None,
                slow_tau_s: None,
                abs_floor: None,
                commit: false,
            },
            Command::SetOnset {
                enabled: Some(!s.onset.enabled),
                sensitivity: None,
                min_gap_s: None,
                commit: false,
            },
            Command::SetTempo {
                enabled: None,
                min_bpm: Some(s.tempo.min_bpm + 1.0),
                max_bpm: None,
                lock_confidence: None,
                commit: false,
            },
            Command::SetUi {
                peak_decay_per_s: Some(s.ui.peak_decay_per_s + 1.0),
                show_onsets: None,
                layout: None,
                fft_view: None,
                fft3d_style: None,
                palette: None,
                commit: false,
            },
            Command::SetWsSnapshotHz {
                hz: s.ws.snapshot_hz + 1.0,
                commit: false,
            },
        ]
    }

    #[test]
    fn every_settings_command_changes_the_state_and_keeps_its_commit_flag() {
        let before = state();
        for cmd in every_setting(&before) {
            let always_commits = matches!(
                cmd,
                Command::SetFft { .. }
                    | Command::SetFftSendRawDb { .. }
                    | Command::SetNFftBins { .. }
            );
            let mut s = before.clone();
            assert_eq!(write(cmd.clone(), &mut s), Ok(always_commits), "{cmd:?}");
            assert_ne!(s, before, "{cmd:?} changed nothing");
        }
    }

    #[test]
    fn commands_that_set_no_value_are_given_back_and_change_nothing() {
        let before = state();
        for cmd in [
            Command::ListDevices { probe: true },
            Command::Hello,
            Command::SetDevice {
                index: Some(0),
                name: None,
            },
            Command::ListPresets,
            Command::SavePreset { name: "a".into() },
            Command::LoadPreset { name: "a".into() },
            Command::DeletePreset { name: "a".into() },
        ] {
            let mut s = before.clone();
            assert_eq!(write(cmd.clone(), &mut s), Err(cmd));
            assert_eq!(s, before);
        }
    }

    #[test]
    fn a_partial_update_changes_only_the_fields_it_names() {
        let before = state();
        let mut s = before.clone();
        let strength = before.autoscale.strength / 2.0;
        let cmd = Command::SetAutoscale {
            tau_attack_s: None,
            tau_release_s: None,
            noise_floor: None,
            strength: Some(strength),
            master_gain: None,
            commit: true,
        };
        assert_eq!(write(cmd, &mut s), Ok(true));
        let mut expected = before.autoscale;
        expected.strength = strength;
        assert_eq!(s.autoscale, expected);
        assert_eq!(
            State {
                autoscale: before.autoscale,
                ..s
            },
            before
        );
    }
}
