//! Runtime control: validating commands from the WebSocket, applying them
//! through the parameter handoff ([`ParamsHub::publish`]), and persisting
//! state and presets.
//!
//! The [`Controller`] runs on its own thread (`p4-control`), so a slow
//! command (a device probe, a device switch that waits for the new device)
//! never holds up the WebSocket broadcaster. Everything a client may read
//! about the settings is published in [`Shared`] before the answer goes out,
//! so the meta that follows a change already shows it.
//!
//! Every command is checked completely before anything changes: a refused
//! command leaves the parameters, the state and the files as they were.
//!
//! Never uses transport internals.

pub mod command;
pub mod presets;
pub mod state;

pub use command::{Command, DeviceItem, DeviceOps, Response};

use crate::config::{self, Config};
use crate::dsp::params::{DspParams, ParamsHub};
use state::{Debounce, State};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What control publishes for readers (the WebSocket meta).
#[derive(Debug)]
pub struct Shared {
    /// The settings in force.
    pub state: Mutex<State>,
    /// The configuration with the state layered over it.
    pub config: Mutex<Config>,
    /// Sample rate of the open device (0 before the first open).
    pub sample_rate: AtomicU32,
    /// The device in use, and its index in the last listing.
    pub device: Mutex<(Option<usize>, String)>,
    /// A configuration re-read on SIGHUP, waiting for the control thread
    /// to layer the runtime state over it ([`Controller::rebase`]).
    pub reload: Mutex<Option<Config>>,
}

impl Shared {
    /// Readers' view of `config` (already layered) and `state`.
    pub fn new(config: &Config, state: &State) -> Arc<Self> {
        let name = if config.audio.input.is_empty() {
            config.audio.device.clone()
        } else {
            config.audio.input.clone()
        };
        Arc::new(Shared {
            state: Mutex::new(state.clone()),
            config: Mutex::new(config.clone()),
            sample_rate: AtomicU32::new(0),
            device: Mutex::new((None, name)),
            reload: Mutex::new(None),
        })
    }

    /// A copy of the settings in force.
    pub fn state(&self) -> State {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A copy of the effective configuration.
    pub fn config(&self) -> Config {
        self.config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The device in use: index in the last listing and name.
    pub fn device(&self) -> (Option<usize>, String) {
        self.device
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The client id of answers nobody asked for (a reload): only their
/// `MetaChanged` matters, which goes to every client.
pub const RELOAD_CLIENT: u64 = 0;

/// A command from one client.
pub struct Request {
    /// Who asked (answers go back to them).
    pub client: u64,
    /// What.
    pub command: Command,
}

/// The answers to one request.
pub struct Reply {
    /// Who asked.
    pub client: u64,
    /// What to tell them (and, for `MetaChanged`, everyone).
    pub responses: Vec<Response>,
}

/// Applies commands; owns the state file and the presets.
pub struct Controller {
    base: Config,
    state: State,
    hub: Arc<ParamsHub>,
    shared: Arc<Shared>,
    devices: Box<dyn DeviceOps>,
    listing: Option<Vec<DeviceItem>>,
    state_dir: Option<PathBuf>,
    debounce: Debounce,
}

impl Controller {
    /// `base` is the configuration as loaded (before the state), `state`
    /// what [`state::layer_at_start`] found.
    pub fn new(
        base: &Config,
        state: State,
        hub: Arc<ParamsHub>,
        shared: Arc<Shared>,
        devices: Box<dyn DeviceOps>,
    ) -> Self {
        Controller {
            state_dir: base.state_dir(),
            base: base.clone(),
            state,
            hub,
            shared,
            devices,
            listing: None,
            debounce: Debounce::default(),
        }
    }

    fn effective(&self, s: &State) -> Config {
        s.apply(&self.base)
    }

    fn sample_rate(&self) -> f64 {
        match self.shared.sample_rate.load(Ordering::Relaxed) {
            0 => self.base.audio.sample_rate_hz as f64,
            sr => sr as f64,
        }
    }

    /// Make `next` the state in force: check it as a whole, publish the
    /// parameters, update readers, schedule the write.
    fn commit_state(&mut self, next: State, commit: bool) -> Vec<Response> {
        let mut cfg = self.effective(&next);
        // The band ceiling depends on the rate of the open device, not the
        // configured one.
        cfg.audio.sample_rate_hz = self.sample_rate() as u32;
        if let Some(p) = config::validate(&cfg).first() {
            return vec![Response::Error(p.to_string())];
        }
        let cfg = self.effective(&next);
        self.hub.publish(DspParams::from_config(&cfg));
        self.state = next;
        *self.shared.state.lock().unwrap_or_else(|e| e.into_inner()) = self.state.clone();
        *self.shared.config.lock().unwrap_or_else(|e| e.into_inner()) = cfg;
        if self.state_dir.is_some() {
            self.debounce.touch(commit, Instant::now());
        }
        vec![Response::MetaChanged]
    }

    /// The configuration file was re-read (SIGHUP) and gave `new`: settings
    /// the edit changed take effect, runtime changes to the others stay.
    pub fn rebase(&mut self, new: Config) -> Vec<Response> {
        let next = self.state.rebase(&self.base, &new);
        let old = std::mem::replace(&mut self.base, new);
        let r = self.commit_state(next, true);
        if matches!(r.first(), Some(Response::Error(_))) {
            self.base = old;
        }
        r
    }

    /// Carry out one command.
    pub fn handle(&mut self, cmd: Command) -> Vec<Response> {
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
            Command::SetSmoothing { tau, commit } => {
                for (b, t) in [&mut s.dsp.low, &mut s.dsp.mid, &mut s.dsp.high]
                    .into_iter()
                    .zip(tau)
                {
                    if let Some(t) = t {
                        b.tau_s = t;
                    }
                }
                self.commit_state(s, commit)
            }
            Command::SetAutoscale {
                tau_attack_s,
                tau_release_s,
                noise_floor,
                strength,
                commit,
            } => {
                let a = &mut s.autoscale;
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
            Command::ListDevices { probe } => {
                let l = self.devices.list(probe);
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
            Command::SavePreset { name } => {
                let Some(dir) = self.state_dir.clone() else {
                    return vec![Response::Error(
                        "presets need a state directory ([state] dir)".into(),
                    )];
                };
                match presets::save(&dir, &name, &self.state) {
                    Ok(()) => vec![Response::Presets(self.presets())],
                    Err(e) => vec![Response::Error(format!("cannot save preset: {e}"))],
                }
            }
            Command::LoadPreset { name } => {
                let Some(dir) = self.state_dir.clone() else {
                    return vec![Response::Error(
                        "presets need a state directory ([state] dir)".into(),
                    )];
                };
                let text = match presets::read(&dir, &name) {
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
        if let Err(e) = self.devices.switch(&name) {
            return vec![Response::Error(format!(
                "cannot switch to {name:?}: {e}; kept the previous device"
            ))];
        }
        {
            let mut d = self.shared.device.lock().unwrap_or_else(|e| e.into_inner());
            d.1 = name.clone();
            d.0 = self
                .listing
                .iter()
                .flatten()
                .find(|i| i.name == name)
                .map(|i| i.index);
        }
        self.state.audio.device = name;
        self.state.audio.config_device = self.base.audio.device.clone();
        *self.shared.state.lock().unwrap_or_else(|e| e.into_inner()) = self.state.clone();
        if self.state_dir.is_some() {
            self.debounce.touch(true, Instant::now());
        }
        vec![Response::MetaChanged]
    }

    fn presets(&self) -> Vec<presets::PresetInfo> {
        self.state_dir
            .as_deref()
            .map(presets::list)
            .unwrap_or_default()
    }

    /// Write the state if a write is due (or `force` and anything is unsaved).
    pub fn persist(&mut self, force: bool) {
        let due = if force {
            let d = self.debounce.dirty();
            self.debounce.clear();
            d
        } else {
            self.debounce.take_due(Instant::now())
        };
        if let (true, Some(dir)) = (due, &self.state_dir) {
            let path = dir.join(state::STATE_FILE);
            let text = format!(
                "# phase4 runtime state: settings changed from the UI, layered over the\n# configuration at start. Written by phase4; delete it to go back to the\n# configuration.\n{}",
                self.state.to_toml()
            );
            match state::write_atomic(&path, &text) {
                Ok(()) => log::debug!("state: saved {}", path.display()),
                Err(e) => log::warn!("state: cannot save: {e}"),
            }
        }
    }

    /// When the next write is due.
    pub fn next_write(&self) -> Option<Instant> {
        self.debounce.due()
    }
}

fn range(name: &str, v: f64, lo: f64, hi: f64) -> Option<String> {
    (!v.is_finite() || v < lo || v > hi).then(|| format!("{name} must be in [{lo}, {hi}], got {v}"))
}

fn opt_range(name: &str, v: Option<f64>, lo: f64, hi: f64) -> Option<String> {
    v.and_then(|v| range(name, v, lo, hi))
}

/// Why `cmd` is refused at sample rate `sr`, or `None` when it is fine.
/// The whole resulting configuration is validated again before it is used.
pub fn validate(cmd: &Command, sr: f64) -> Option<String> {
    match cmd {
        Command::SetBand {
            band, lo_hz, hi_hz, ..
        } => {
            let name = crate::types::BAND_NAMES.get(*band).copied().unwrap_or("?");
            if !lo_hz.is_finite() || *lo_hz < 20.0 {
                Some(format!("{name}: lo_hz must be >= 20, got {lo_hz}"))
            } else if !hi_hz.is_finite() || *hi_hz <= lo_hz + 50.0 {
                Some(format!(
                    "{name}: hi_hz must be > lo_hz + 50 ({}), got {hi_hz}",
                    lo_hz + 50.0
                ))
            } else if *hi_hz > 0.45 * sr {
                Some(format!(
                    "{name}: hi_hz must be <= 0.45 x sample rate ({}), got {hi_hz}",
                    0.45 * sr
                ))
            } else {
                None
            }
        }
        Command::SetSmoothing { tau, .. } => {
            if tau.iter().all(|t| t.is_none()) {
                return Some("tau must name at least one of low, mid, high".into());
            }
            tau.iter()
                .zip(crate::types::BAND_NAMES)
                .find_map(|(t, n)| opt_range(&format!("tau.{n}"), *t, 0.005, 2.0))
        }
        Command::SetAutoscale {
            tau_attack_s,
            tau_release_s,
            noise_floor,
            strength,
            ..
        } => opt_range("tau_attack_s", *tau_attack_s, 0.001, 1.0)
            .or_else(|| opt_range("tau_release_s", *tau_release_s, 5.0, 300.0))
            .or_else(|| opt_range("noise_floor", *noise_floor, 0.0, 0.1))
            .or_else(|| opt_range("strength", *strength, 0.0, 1.0)),
        Command::SetFftPeakSmear { peak_smear_oct, .. } => {
            range("peak_smear_oct", *peak_smear_oct, 0.0, 3.0)
        }
        Command::SetNFftBins { n } => (!(8..=crate::types::MAX_FFT_BINS as i64).contains(n))
            .then(|| format!("n must be in [8, {}], got {n}", crate::types::MAX_FFT_BINS)),
        Command::SetWsSnapshotHz { hz, .. } => range("hz", *hz, 15.0, 240.0),
        Command::SavePreset { name } | Command::LoadPreset { name } => presets::check_name(name),
        Command::SetDevice { name: Some(n), .. } => {
            (n.is_empty() || n.len() > 256 || n.chars().any(|c| c.is_control()))
                .then(|| "device name must be 1-256 printable characters".to_string())
        }
        Command::SetOnset {
            sensitivity,
            min_gap_s,
            ..
        } => opt_range("sensitivity", *sensitivity, 0.0, 1.0)
            .or_else(|| opt_range("min_gap_s", *min_gap_s, 0.01, 1.0)),
        Command::SetTempo {
            min_bpm,
            max_bpm,
            lock_confidence,
            ..
        } => opt_range("min_bpm", *min_bpm, 30.0, 300.0)
            .or_else(|| opt_range("max_bpm", *max_bpm, 30.0, 300.0))
            .or_else(|| opt_range("lock_confidence", *lock_confidence, 0.0, 1.0)),
        _ => None,
    }
}

/// Start the control thread. It carries out requests in order, answers on
/// `replies`, writes the state when the debounce says so, and writes any
/// unsaved state before it ends (when `requests` closes).
pub fn spawn(
    mut controller: Controller,
    requests: Receiver<Request>,
    replies: Sender<Reply>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .stack_size(crate::rt::THREAD_STACK)
        .name("p4-control".into())
        .spawn(move || {
            loop {
                let wait = controller
                    .next_write()
                    .map(|d| d.saturating_duration_since(Instant::now()))
                    .unwrap_or(Duration::from_millis(200))
                    .min(Duration::from_millis(200));
                match requests.recv_timeout(wait) {
                    Ok(req) => {
                        let responses = controller.handle(req.command);
                        let _ = replies.send(Reply {
                            client: req.client,
                            responses,
                        });
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
                let reload = controller
                    .shared
                    .reload
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                if let Some(new) = reload {
                    let responses = controller.rebase(new);
                    if let Some(Response::Error(e)) = responses.first() {
                        log::error!("reload: not applied: {e}");
                    }
                    let _ = replies.send(Reply {
                        client: RELOAD_CLIENT,
                        responses,
                    });
                }
                controller.persist(false);
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
            controller.persist(true);
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoDevices;
    impl DeviceOps for NoDevices {
        fn list(&mut self, _probe: bool) -> Vec<DeviceItem> {
            vec![DeviceItem {
                index: 0,
                name: "default".into(),
                ..Default::default()
            }]
        }
        fn switch(&mut self, name: &str) -> Result<(), String> {
            Err(format!("{name} is not there"))
        }
    }

    fn controller(dir: Option<&std::path::Path>) -> (Controller, Arc<ParamsHub>) {
        let mut c = Config::default();
        c.state.dir = dir.map(|d| d.display().to_string()).unwrap_or_default();
        let s = State::from_config(&c);
        let hub = Arc::new(ParamsHub::new(DspParams::from_config(&c)));
        let shared = Shared::new(&c, &s);
        (
            Controller::new(&c, s, hub.clone(), shared, Box::new(NoDevices)),
            hub,
        )
    }

    #[test]
    fn a_valid_change_reaches_the_workers() {
        let (mut ctl, hub) = controller(None);
        let mut rx = hub.subscribe();
        let r = ctl.handle(Command::SetBand {
            band: 1,
            lo_hz: 300.0,
            hi_hz: 3000.0,
            commit: true,
        });
        assert_eq!(r, vec![Response::MetaChanged]);
        assert!(rx.poll());
        assert_eq!(rx.get().bands[1].lo_hz, 300.0);
    }

    #[test]
    fn a_refused_change_leaves_everything_as_it_was() {
        let (mut ctl, hub) = controller(None);
        let before = hub.current();
        for cmd in [
            Command::SetBand {
                band: 0,
                lo_hz: 10.0,
                hi_hz: 200.0,
                commit: true,
            },
            Command::SetBand {
                band: 2,
                lo_hz: 4000.0,
                hi_hz: 30000.0,
                commit: true,
            },
            Command::SetAutoscale {
                tau_attack_s: Some(0.01),
                tau_release_s: Some(1.0),
                noise_floor: None,
                strength: None,
                commit: true,
            },
            Command::SetNFftBins { n: 4 },
            Command::SetWsSnapshotHz {
                hz: f64::NAN,
                commit: true,
            },
            Command::SavePreset {
                name: "../x".into(),
            },
            Command::SetDevice {
                index: None,
                name: Some("hw:9".into()),
            },
        ] {
            let r = ctl.handle(cmd.clone());
            assert!(matches!(r[0], Response::Error(_)), "{cmd:?} -> {r:?}");
        }
        assert_eq!(hub.current(), before);
    }

    #[test]
    fn presets_save_and_load_through_the_same_checks() {
        let d = tempfile::tempdir().unwrap();
        let (mut ctl, hub) = controller(Some(d.path()));
        ctl.handle(Command::SetFftPeakSmear {
            peak_smear_oct: 1.5,
            commit: true,
        });
        assert!(matches!(
            ctl.handle(Command::SavePreset {
                name: "wide".into()
            })[0],
            Response::Presets(_)
        ));
        ctl.handle(Command::SetFftPeakSmear {
            peak_smear_oct: 0.0,
            commit: true,
        });
        assert_eq!(
            ctl.handle(Command::LoadPreset {
                name: "wide".into()
            }),
            vec![Response::MetaChanged]
        );
        assert_eq!(hub.current().peak_smear_oct, 1.5);
        ctl.persist(true);
        assert!(d.path().join(state::STATE_FILE).exists());
    }
}
