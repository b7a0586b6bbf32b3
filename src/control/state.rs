//! Runtime state on disk: `state.toml` in the state directory, layered over
//! the configuration at start, written atomically (temp file, fsync, rename,
//! fsync of the directory) and debounced.
//!
//! The state file uses the configuration's own section and key names, so a
//! user who reads it knows what each line does; it holds only what the UI can
//! change. The configuration file itself is never written (it is a dpkg
//! conffile).
//!
//! Runs on the control thread and at start-up; never on a real-time thread.

use super::device::{DeviceCatalog, ListedDevice};
use crate::config::{
    self, AutoscaleConfig, BandConfig, Config, OnsetConfig, TempoConfig, UiConfig,
};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

mod debounce;

pub use debounce::{Debounce, COMMIT_DEBOUNCE, DRAG_DEBOUNCE, MAX_DELAY};

/// File name of the runtime state inside the state directory.
pub const STATE_FILE: &str = "state.toml";
/// Largest state file read (phase4 writes about 1 KiB).
pub const MAX_STATE_BYTES: u64 = 64 * 1024;

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
                log::warn!("state: ignoring the device in the state file: {e}");
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

/// Why a state or preset file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The text is not a state of this version.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Layer TOML `text` (a whole or partial state) over `base`, and check that
/// the configuration it gives is valid. Missing keys keep `base`'s values.
pub fn merge_text(base: &State, text: &str, config: &Config) -> Result<State, String> {
    let overlay: toml::Table = toml::from_str(text).map_err(|e| e.message().to_string())?;
    let mut merged = toml::Table::try_from(base).map_err(|e| e.to_string())?;
    merge_tables(&mut merged, overlay);
    let state: State = toml::Value::Table(merged)
        .try_into()
        .map_err(|e: toml::de::Error| e.message().to_string())?;
    let problems = config::validate(&state.apply(config));
    if let Some(p) = problems.first() {
        return Err(p.to_string());
    }
    Ok(state)
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

/// The configuration to start with: `config` with the state in `dir` layered
/// over it. A state file that cannot be used (not UTF-8, too large, not
/// TOML, out-of-range values) is moved aside with a warning and the service
/// starts on the configuration alone. A device named in the state is used
/// only if `listed` (the names phase4 enumerates; called only when needed)
/// holds it or the configuration names it (see [`State::chosen_device`]).
pub fn layer_at_start(config: &Config, listed: impl FnOnce() -> Vec<String>) -> (Config, State) {
    let base = State::from_config(config);
    let Some(dir) = config.state_dir() else {
        return (config.clone(), base);
    };
    let path = dir.join(STATE_FILE);
    let text = match read_bounded(&path) {
        Ok(Some(t)) => t,
        Ok(None) => return (config.clone(), base),
        Err(Unusable::Io(e)) => {
            log::warn!(
                "state: cannot read {}: {e}; starting on the configuration",
                path.display()
            );
            return (config.clone(), base);
        }
        Err(Unusable::Content(reason)) => {
            move_aside(&dir, &path, &reason);
            return (config.clone(), base);
        }
    };
    match merge_text(&base, &text, config) {
        Ok(mut state) => {
            log::info!(
                "state: runtime settings from {} layered over the configuration",
                path.display()
            );
            let mut layered = state.apply(config);
            let wanted =
                !state.audio.device.is_empty() && state.audio.config_device == config.audio.device;
            let catalog = if wanted {
                DeviceCatalog::new(listed(), &config.audio.device)
            } else {
                DeviceCatalog::default()
            };
            match state.chosen_device(config, &catalog) {
                Some(d) => layered.audio.device = d.to_string(),
                None if wanted => {
                    // Forget it, on disk too: the name is not kept around
                    // for a later version or a tired admin to trip over.
                    state.audio = AudioState::default();
                    if let Err(e) = write_atomic(&path, &file_text(&state)) {
                        log::warn!("state: cannot rewrite {}: {e}", path.display());
                    }
                }
                None => {}
            }
            (layered, state)
        }
        Err(reason) => {
            move_aside(&dir, &path, &reason);
            (config.clone(), base)
        }
    }
}

enum Unusable {
    /// Could not be read (permissions, I/O): left where it is.
    Io(std::io::Error),
    /// Read, but cannot be a state file: moved aside.
    Content(String),
}

/// The text of `path` (`None` when there is none), read no further than
/// [`MAX_STATE_BYTES`].
fn read_bounded(path: &Path) -> Result<Option<String>, Unusable> {
    use std::io::Read;
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Unusable::Io(e)),
    };
    match f.metadata() {
        Ok(m) if !m.is_file() => return Err(Unusable::Content("not a regular file".into())),
        Ok(_) => {}
        Err(e) => return Err(Unusable::Io(e)),
    }
    let mut bytes = Vec::new();
    f.take(MAX_STATE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(Unusable::Io)?;
    if bytes.len() as u64 > MAX_STATE_BYTES {
        return Err(Unusable::Content(format!(
            "larger than {} KiB",
            MAX_STATE_BYTES / 1024
        )));
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|e| Unusable::Content(format!("not UTF-8 text ({e})")))
}

/// Rename an unusable state file to `state.toml.corrupt-<unix time>`.
fn move_aside(dir: &Path, path: &Path, reason: &str) {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let aside = dir.join(format!("{STATE_FILE}.corrupt-{stamp}"));
    match std::fs::rename(path, &aside) {
        Ok(()) => log::warn!(
            "state: {} is unusable ({reason}); moved aside to {}, starting on the configuration",
            path.display(),
            aside.display()
        ),
        Err(e) => log::warn!(
            "state: {} is unusable ({reason}) and could not be moved aside ({e}); starting on the configuration",
            path.display()
        ),
    }
}

/// The text of the state file for `state`.
pub fn file_text(state: &State) -> String {
    format!(
        "# phase4 runtime state: settings changed from the UI, layered over the\n# configuration at start. Written by phase4; delete it to go back to the\n# configuration.\n{}",
        state.to_toml()
    )
}

/// Write `text` to `path` atomically: a temp file in the same directory,
/// fsync, rename over the old file, fsync the directory. A crash leaves
/// either the old file or the new one, never half of one.
pub fn write_atomic(path: &Path, text: &str) -> Result<(), StateError> {
    let io = |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
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
    }

    #[test]
    fn a_corrupt_state_file_is_moved_aside_and_the_config_used() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::default();
        c.state.dir = dir.path().display().to_string();
        std::fs::write(dir.path().join(STATE_FILE), "[[[ garbage").unwrap();
        let (layered, _) = layer_at_start(&c, Vec::new);
        assert_eq!(layered, c);
        assert!(!dir.path().join(STATE_FILE).exists());
        let moved = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("state.toml.corrupt-")
            });
        assert!(moved);
    }

    #[test]
    fn state_round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::default();
        c.state.dir = dir.path().display().to_string();
        let mut s = State::from_config(&c);
        s.dsp.low.hi_hz = 200.0;
        s.fft.enabled = true;
        write_atomic(&dir.path().join(STATE_FILE), &s.to_toml()).unwrap();
        let (layered, loaded) = layer_at_start(&c, Vec::new);
        assert_eq!(loaded, s);
        assert_eq!(layered.dsp.low.hi_hz, 200.0);
        assert!(layered.fft.enabled);
    }

    fn state_file(dir: &Path, device: &str, config_device: &str) -> Config {
        let mut c = Config::default();
        c.state.dir = dir.display().to_string();
        let mut s = State::from_config(&c);
        s.audio.device = device.into();
        s.audio.config_device = config_device.into();
        s.fft.enabled = true;
        write_atomic(&dir.join(STATE_FILE), &s.to_toml()).unwrap();
        c
    }

    #[test]
    fn the_configured_device_wins_when_it_was_changed_since() {
        let dir = tempfile::tempdir().unwrap();
        let c = state_file(dir.path(), "hw:1", "default");
        let listed = || vec!["hw:1".to_string()];
        assert_eq!(layer_at_start(&c, listed).0.audio.device, "hw:1");
        let mut c2 = c.clone();
        c2.audio.device = "hw:2".into();
        assert_eq!(layer_at_start(&c2, listed).0.audio.device, "hw:2");
    }

    /// Issue 8, item 1: the state file is not trusted to name a PCM.
    #[test]
    fn a_state_file_naming_an_unlisted_device_keeps_the_rest_but_not_the_device() {
        for bad in [
            "file:'|sh -c \"id >> x\"',raw",
            "file:FILE=/var/lib/phase4/state.toml",
            "{ type file slave.pcm null file \"|id\" }",
            "hw:1 ",
        ] {
            let dir = tempfile::tempdir().unwrap();
            let c = state_file(dir.path(), bad, "default");
            let (layered, state) = layer_at_start(&c, || vec!["hw:1".to_string()]);
            assert_eq!(layered.audio.device, "default", "{bad:?}");
            assert!(layered.fft.enabled, "the rest of the state is kept");
            assert_eq!(state.audio, AudioState::default());
            assert!(!state.to_toml().contains("file:"));
            let on_disk = std::fs::read_to_string(dir.path().join(STATE_FILE)).unwrap();
            assert!(!on_disk.contains(bad.trim()), "{on_disk}");
            assert!(on_disk.contains("enabled = true"), "{on_disk}");
        }
    }

    #[test]
    fn a_state_file_that_is_not_utf8_or_too_large_is_moved_aside() {
        for bytes in [
            b"[fft]\nenabled = true\n\xff\xfe".to_vec(),
            vec![b'#'; MAX_STATE_BYTES as usize + 1],
        ] {
            let dir = tempfile::tempdir().unwrap();
            let mut c = Config::default();
            c.state.dir = dir.path().display().to_string();
            std::fs::write(dir.path().join(STATE_FILE), &bytes).unwrap();
            let (layered, _) = layer_at_start(&c, Vec::new);
            assert_eq!(layered, c);
            assert!(!dir.path().join(STATE_FILE).exists());
            let aside: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with("state.toml.corrupt-")
                })
                .collect();
            assert_eq!(aside.len(), 1);
            assert_eq!(std::fs::read(aside[0].path()).unwrap(), bytes);
        }
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
