//! Carrying out one checked command: the settings that become a new state,
//! the device commands and the preset commands. Runs on the control thread
//! (`p4-control`), like the rest of [`Controller`].

use super::command::{validate, Command, DeviceItem, Response};
use super::device::{DeviceCatalog, ListedDevice};
use super::presets::{self, PresetName, PresetStore};
use super::{state, Controller, PROBE_REUSE};
use std::time::Instant;

impl Controller {
    pub(super) fn carry_out(&mut self, cmd: Command) -> Vec<Response> {
        if let Some(reason) = validate(&cmd, self.sample_rate()) {
            return vec![Response::Error(reason)];
        }
        let mut s = self.state.clone();
        match cmd {
            Command::SetFft { enabled } => {
                s.fft.enabled = enabled;
                self.commit_state(s, true)
            }
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
                self.commit_state(s, commit)
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
                self.commit_state(s, commit)
            }
            Command::SetFftTilt {
                tilt_db_per_oct,
                commit,
            } => {
                s.fft.tilt_db_per_oct = tilt_db_per_oct;
                self.commit_state(s, commit)
            }
            Command::SetFilterOrder { order, commit } => {
                s.dsp.filter_order = order as u32;
                self.commit_state(s, commit)
            }
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
                self.commit_state(s, commit)
            }
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
                self.commit_state(s, commit)
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
                self.commit_state(s, commit)
            }
            Command::SetFftSendRawDb { send_raw_db } => {
                s.fft.send_raw_db = send_raw_db;
                self.commit_state(s, true)
            }
            Command::SetFftPeakSmear {
                peak_smear_oct,
                commit,
            } => {
                s.fft.peak_smear_oct = peak_smear_oct;
                self.commit_state(s, commit)
            }
            Command::SetNFftBins { n } => {
                s.fft.n_bins = n as u32;
                self.commit_state(s, true)
            }
            Command::SetWsSnapshotHz { hz, commit } => {
                s.ws.snapshot_hz = hz;
                self.commit_state(s, commit)
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
                self.commit_state(s, commit)
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
                self.commit_state(s, commit)
            }
            Command::ListDevices { probe: false } => {
                let l = self.devices.list(false);
                self.remember_listing(l.clone());
                vec![Response::Devices(l)]
            }
            Command::ListDevices { probe: true } => {
                let l = match &self.probed {
                    Some((at, l)) if at.elapsed() < PROBE_REUSE => l.clone(),
                    _ => {
                        let l = self.devices.list(true);
                        self.probed = Some((Instant::now(), l.clone()));
                        l
                    }
                };
                self.remember_listing(l.clone());
                vec![Response::Devices(l)]
            }
            Command::Hello => {
                if self.listing.is_none() {
                    let l = self.devices.list(false);
                    self.remember_listing(l);
                }
                vec![
                    Response::Devices(self.listing.clone().unwrap_or_default()),
                    Response::Presets(self.presets()),
                ]
            }
            Command::SetDevice { index, name } => self.set_device(index, name),
            Command::ListPresets => vec![Response::Presets(self.presets())],
            Command::SavePreset { name } => match self.preset_store(&name) {
                Ok((store, name)) => match store.save(&name, &s) {
                    Ok(()) => vec![Response::Presets(store.list())],
                    Err(e) => vec![Response::Error(format!("cannot save preset: {e}"))],
                },
                Err(e) => vec![Response::Error(e)],
            },
            Command::DeletePreset { name } => match self.preset_store(&name) {
                Ok((store, name)) => match store.delete(&name) {
                    Ok(()) => vec![Response::Presets(store.list())],
                    Err(e) => vec![Response::Error(e)],
                },
                Err(e) => vec![Response::Error(e)],
            },
            Command::LoadPreset { name } => {
                let text = match self.preset_store(&name) {
                    Ok((store, name)) => store.read(&name),
                    Err(e) => Err(e),
                };
                let text = match text {
                    Ok(t) => t,
                    Err(e) => return vec![Response::Error(e)],
                };
                match state::merge_text(&self.state, &text, &self.base) {
                    Ok(next) => self.commit_state(next, true),
                    Err(e) => vec![Response::Error(format!("preset {name:?} is invalid: {e}"))],
                }
            }
        }
    }

    /// The preset store and the checked name, or why presets are unavailable.
    fn preset_store(&mut self, name: &str) -> Result<(&mut PresetStore, PresetName), String> {
        let name = PresetName::parse(name)?;
        match self.presets.as_mut() {
            Some(store) => Ok((store, name)),
            None => Err("presets need a state directory ([state] dir)".into()),
        }
    }

    fn remember_listing(&mut self, l: Vec<DeviceItem>) {
        let mut d = self.shared.device.lock().unwrap_or_else(|e| e.into_inner());
        d.0 = l.iter().find(|i| i.name == d.1).map(|i| i.index);
        self.listing = Some(l);
    }

    fn set_device(&mut self, index: Option<i64>, name: Option<String>) -> Vec<Response> {
        let name = match (name, index) {
            (Some(n), _) => n,
            (None, Some(i)) => {
                let Some(l) = &self.listing else {
                    return vec![Response::Error(
                        "no device listing yet; send list_devices first".into(),
                    )];
                };
                match l.iter().find(|d| d.index as i64 == i) {
                    Some(d) => d.name.clone(),
                    None => {
                        return vec![Response::Error(format!(
                            "no device with index {i} in the last listing (0..{})",
                            l.len()
                        ))]
                    }
                }
            }
            (None, None) => return vec![Response::Error("set_device needs index or name".into())],
        };
        let catalog = DeviceCatalog::new(self.devices.listed_names(), &self.base.audio.device);
        let device = match catalog.admit(&name) {
            Ok(d) => d,
            Err(e) => {
                log::warn!("control: refused set_device: {e}");
                return vec![Response::Error(format!("cannot switch: {e}"))];
            }
        };
        self.switch_to(device)
    }

    fn switch_to(&mut self, device: ListedDevice) -> Vec<Response> {
        if let Err(e) = self.devices.switch(&device) {
            return vec![Response::Error(format!(
                "cannot switch to {:?}: {e}; kept the previous device",
                device.as_str()
            ))];
        }
        {
            let mut d = self.shared.device.lock().unwrap_or_else(|e| e.into_inner());
            d.1 = device.to_string();
            d.0 = self
                .listing
                .iter()
                .flatten()
                .find(|i| i.name == device.as_str())
                .map(|i| i.index);
        }
        self.state.audio.device = device.to_string();
        self.state.audio.config_device = self.base.audio.device.clone();
        *self.shared.state.lock().unwrap_or_else(|e| e.into_inner()) = self.state.clone();
        if self.state_dir.is_some() {
            self.debounce.touch(true, Instant::now());
        }
        // Every UI's device list shows the one in use (as the Python
        // server does after a switch).
        let l = self.devices.list(false);
        self.remember_listing(l.clone());
        vec![Response::MetaChanged, Response::DevicesChanged(l)]
    }

    fn presets(&self) -> presets::PresetList {
        self.presets
            .as_ref()
            .map(PresetStore::list)
            .unwrap_or_default()
    }
}
