//! Runtime state on disk: `state.toml` in the state directory, layered over
//! the configuration at start, written atomically (temp file, fsync, rename,
//! fsync of the directory) and debounced.
//!
//! The state file uses the configuration's own section and key names, so a
//! user who reads it knows what each line does; it holds only what the UI can
//! change. The configuration file itself is never written (it is a dpkg
//! conffile).
//!
//! This file holds the state itself and how partial states merge; `file`
//! reads and writes it on disk, `debounce` says when, and `writer` writes
//! it on a thread of its own.
//!
//! Runs on the control thread and at start-up; never on a real-time thread.

use super::device::{DeviceCatalog, ListedDevice};
use crate::config::{
    self, AutoscaleConfig, BandConfig, Config, OnsetConfig, TempoConfig, UiConfig,
};
use serde::{Deserialize, Serialize};

mod debounce;
mod file;
mod writer;

pub use debounce::{Debounce, COMMIT_DEBOUNCE, DRAG_DEBOUNCE, MAX_DELAY};
pub use file::{file_text, layer_at_start, write_atomic, StateError, MAX_STATE_BYTES, STATE_FILE};
pub use writer::{save, StateWriter};

/// `[audio]` in the state: the device chosen at runtime.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct AudioState {
    /// PCM chosen with `set_device` (empty: none chosen, use the config).
    pub device: String,
    /// The configured device it replaced. If the configuration (or
    /// `--device`) names another device at the next start, the
    /// configuration wins: someone changed it on purpose.
    pub config_device: String,
}

/// `[dsp]` in the state.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DspState {
    /// Butterworth order of the band-passes (`set_filter_order`).
    pub filter_order: u32,
    /// Low band.
    pub low: BandConfig,
    /// Mid band.
    pub mid: BandConfig,
    /// High band.
    pub high: BandConfig,
}

/// `[fft]` in the state: what `set_fft*` and `set_n_fft_bins` change.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FftState {
    /// Spectrum on.
    pub enabled: bool,
    /// Log bins.
    pub n_bins: u32,
    /// Raw dB on the wire.
    pub send_raw_db: bool,
    /// Peak smear in octaves.
    pub peak_smear_oct: f64,
    /// Spectral tilt, dB per octave (`set_fft_tilt`).
    pub tilt_db_per_oct: f64,
}

/// `[ws]` in the state.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WsState {
    /// Snapshot rate.
    pub snapshot_hz: f64,
}

/// Everything the UI can change, in the configuration's vocabulary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct State {
    /// Device chosen at runtime.
    #[serde(default)]
    pub audio: AudioState,
    /// Bands and their smoothing.
    pub dsp: DspState,
    /// Auto-scaler.
    pub autoscale: AutoscaleConfig,
    /// Spectrum.
    pub fft: FftState,
    /// Onsets.
    pub onset: OnsetConfig,
    /// Tempo.
    pub tempo: TempoConfig,
    /// Snapshot rate.
    pub ws: WsState,
    /// Settings kept for the browser UIs.
    pub ui: UiConfig,
}

impl State {
    /// The state a configuration implies (nothing chosen at runtime yet).
    pub fn from_config(c: &Config) -> Self {
        State {
            audio: AudioState::default(),
            dsp: DspState {
                filter_order: c.dsp.filter_order,
                low: c.dsp.low,
                mid: c.dsp.mid,
                high: c.dsp.high,
            },
            autoscale: c.autoscale,
            fft: FftState {
                enabled: c.fft.enabled,
                n_bins: c.fft.n_bins,
                send_raw_db: c.fft.send_raw_db,
                peak_smear_oct: c.fft.peak_smear_oct,
                tilt_db_per_oct: c.fft.tilt_db_per_oct,
            },
            onset: c.onset,
            tempo: c.tempo,
            ws: WsState {
                snapshot_hz: c.ws.snapshot_hz,
            },
            ui: c.ui,
        }
    }

    /// `c` with this state's sound settings layered over it. The device is
    /// not among them: a name read from the file must first become a
    /// [`ListedDevice`] ([`State::chosen_device`]).
    pub fn apply(&self, c: &Config) -> Config {
        let mut c = c.clone();
        c.dsp.filter_order = self.dsp.filter_order;
        c.dsp.low = self.dsp.low;
        c.dsp.mid = self.dsp.mid;
        c.dsp.high = self.dsp.high;
        c.autoscale = self.autoscale;
        c.fft.enabled = self.fft.enabled;
        c.fft.n_bins = self.fft.n_bins;
        c.fft.send_raw_db = self.fft.send_raw_db;
        c.fft.peak_smear_oct = self.fft.peak_smear_oct;
        c.fft.tilt_db_per_oct = self.fft.tilt_db_per_oct;
        c.onset = self.onset;
        c.tempo = self.tempo;
        c.ws.snapshot_hz = self.ws.snapshot_hz;
        c.ui = self.ui;
        c
    }

    /// The device chosen at runtime, if one was and it may still be used:
    /// the configuration still names the device it replaced (else the
    /// configuration wins: someone changed it on purpose), and the name is
    /// one `catalog` admits (else it is ignored with a warning: a state file
    /// is not trusted to name arbitrary PCMs).
    pub fn chosen_device(&self, c: &Config, catalog: &DeviceCatalog) -> Option<ListedDevice> {
        if self.audio.device.is_empty() || self.audio.config_device != c.audio.device {
            return None;
        }
        match catalog.admit(&self.audio.device) {
            Ok(d) => Some(d),
            Err(e) => {
                // A sound card's name is kept and looked for (the caller
                // says so): no warning that it is ignored.
                if !crate::control::device::is_card_name(&self.audio.device) {
                    log::warn!("state: ignoring the device in the state file: {e}");
                }
                None
            }
        }
    }

    /// This state after the configuration changed from `old` to `new` (a
    /// SIGHUP reload): every setting the edit changed takes the new file's
    /// value, because someone changed it on purpose; every other setting
    /// keeps its runtime value. Compared key by key.
    pub fn rebase(&self, old: &Config, new: &Config) -> State {
        let tree = |s: &State| toml::Table::try_from(s).unwrap_or_default();
        let (was, now) = (
            tree(&State::from_config(old)),
            tree(&State::from_config(new)),
        );
        let mut mine = tree(self);
        take_changed(&mut mine, &was, &now);
        toml::Value::Table(mine)
            .try_into()
            .unwrap_or_else(|_| self.clone())
    }

    /// TOML text of this state.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }
}

/// Layer TOML `text` (a whole or partial state) over `base`, and check that
/// the configuration it gives is valid. Missing keys keep `base`'s values.
pub fn merge_text(base: &State, text: &str, config: &Config) -> Result<State, String> {
    let overlay: toml::Table = toml::from_str(text).map_err(|e| config::syntax_message(&e))?;
    let mut merged = toml::Table::try_from(base).map_err(|e| e.to_string())?;
    merge_tables(&mut merged, overlay);
    let state: State = toml::Value::Table(merged)
        .try_into()
        .map_err(|e: toml::de::Error| config::syntax_message(&e))?;
    let problems = config::validate(&state.apply(config));
    if let Some(p) = problems.first() {
        return Err(p.to_string());
    }
    Ok(state)
}

/// Most settings of a state file that [`merge_text_fitting`] lets fall back
/// to the configuration's values before it refuses the file.
const MAX_UNFIT: usize = 32;

/// The highest sample rate phase4 accepts: a state whose values are valid
/// at it is sane in itself (see [`merge_text_fitting`]).
const HIGHEST_RATE_HZ: u32 = 384_000;

/// [`merge_text`] for the state file at start: a setting it holds that no
/// longer fits this configuration (the sample rate was lowered, and a band
/// edge kept from before is over the new ceiling) takes the
/// configuration's value instead, and the reasons are returned, so one
/// stale value does not cost every other runtime setting. A file that is
/// wrong in itself still refuses the whole file: not TOML, wrong types, a
/// value no configuration allows (checked at the highest sample rate), or
/// problems that dropping the keys they name does not cure.
pub fn merge_text_fitting(
    base: &State,
    text: &str,
    config: &Config,
) -> Result<(State, Vec<String>), String> {
    let mut widest = config.clone();
    widest.audio.sample_rate_hz = HIGHEST_RATE_HZ;
    merge_text(&State::from_config(&widest), text, &widest)?;
    let mut overlay: toml::Table = toml::from_str(text).map_err(|e| config::syntax_message(&e))?;
    let mut unfit = Vec::new();
    loop {
        let mut merged = toml::Table::try_from(base).map_err(|e| e.to_string())?;
        merge_tables(&mut merged, overlay.clone());
        let state: State = toml::Value::Table(merged)
            .try_into()
            .map_err(|e: toml::de::Error| config::syntax_message(&e))?;
        let problems = config::validate(&state.apply(config));
        let Some(p) = problems.first() else {
            return Ok((state, unfit));
        };
        if unfit.len() >= MAX_UNFIT || !remove_key(&mut overlay, &p.key) {
            return Err(p.to_string());
        }
        unfit.push(p.to_string());
    }
}

/// Remove the leaf at dotted `key` from `t`; whether it was there.
fn remove_key(t: &mut toml::Table, key: &str) -> bool {
    match key.split_once('.') {
        None => t.remove(key).is_some(),
        Some((head, rest)) => match t.get_mut(head) {
            Some(toml::Value::Table(sub)) => remove_key(sub, rest),
            _ => false,
        },
    }
}

/// Set every leaf of `into` where `was` and `now` differ to `now`'s value.
fn take_changed(into: &mut toml::Table, was: &toml::Table, now: &toml::Table) {
    for (k, v) in now {
        match (into.get_mut(k), was.get(k), v) {
            (Some(toml::Value::Table(a)), Some(toml::Value::Table(w)), toml::Value::Table(n)) => {
                take_changed(a, w, n)
            }
            (_, w, v) if w != Some(v) => {
                into.insert(k.clone(), v.clone());
            }
            _ => {}
        }
    }
}

fn merge_tables(into: &mut toml::Table, from: toml::Table) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge_tables(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_state_keeps_the_configured_values_for_the_rest() {
        let c = Config::default();
        let base = State::from_config(&c);
        let s = merge_text(&base, "[dsp.mid]\nlo-hz = 300.0\n", &c).unwrap();
        assert_eq!(s.dsp.mid.lo_hz, 300.0);
        assert_eq!(s.dsp.mid.hi_hz, c.dsp.mid.hi_hz);
        assert_eq!(s.autoscale, c.autoscale);
    }

    #[test]
    fn an_invalid_state_is_refused() {
        let c = Config::default();
        let base = State::from_config(&c);
        assert!(merge_text(&base, "[autoscale]\nstrength = 7.0\n", &c).is_err());
        assert!(merge_text(&base, "this is not toml", &c).is_err());
        assert!(merge_text(&base, "[bogus]\nx = 1\n", &c).is_err());
        // The parser gives a NUL in a comment no message of its own (found
        // by fuzz/state_file): the reason must still say something.
        let e = merge_text(&base, "#[dsp]\0\0\nlo-hz = 1.0\n", &c).unwrap_err();
        assert!(
            e.contains("control character") && e.contains("byte 6"),
            "{e}"
        );
    }

    #[test]
    fn a_reload_takes_what_the_file_changed_and_keeps_the_rest() {
        let old = Config::default();
        let mut runtime = State::from_config(&old);
        runtime.dsp.low.lo_hz = 40.0; // changed in the UI
        runtime.autoscale.strength = 0.5; // changed in the UI
        let mut new = old.clone();
        new.dsp.low.hi_hz = 200.0; // changed in the file
        new.autoscale.strength = 0.8; // changed in both: the file wins
        let s = runtime.rebase(&old, &new);
        assert_eq!(s.dsp.low.lo_hz, 40.0);
        assert_eq!(s.dsp.low.hi_hz, 200.0);
        assert_eq!(s.autoscale.strength, 0.8);
        assert_eq!(s.tempo, runtime.tempo);
    }
}
