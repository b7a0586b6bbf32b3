//! Runtime control: validating commands from the WebSocket, applying them
//! through the parameter handoff ([`ParamsHub::publish`]), and persisting
//! state and presets.
//!
//! The [`Controller`] runs on its own thread (`p4-control`), so no command
//! holds up the WebSocket broadcaster; and the slow ones (a device probe,
//! a device switch that waits for the new device) run elsewhere
//! ([`probe`], the supervisor) and are answered when they end, so they do
//! not hold up other clients' commands either. Everything a client may read
//! about the settings is published in [`Shared`] before the answer goes out,
//! so the meta that follows a change already shows it.
//!
//! Every command is checked completely before anything changes: a refused
//! command leaves the parameters, the state and the files as they were.
//!
//! This file holds the controller's life: the state in force, persistence
//! and the control thread. `apply` carries out each command, `settings`
//! says what a settings command changes in the state, `command` checks and
//! clamps commands before that.
//!
//! Never uses transport internals.

mod apply;
pub mod command;
pub mod device;
pub mod presets;
pub mod probe;
pub mod secret;
mod settings;
pub mod state;

pub use command::{
    clamp, validate, Clamped, Command, DeviceItem, DeviceOps, Prober, Response, SwitchOutcome,
};

use crate::config::{self, Config};
use crate::dsp::params::{DspParams, ParamsHub};
use presets::PresetStore;
use state::{Debounce, State, StateWriter};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
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
    /// The base control kept when it refused a reload's configuration
    /// (a client's runtime change that came in between makes it invalid):
    /// the supervisor compares the next reload with it, so that the same
    /// file sent again is applied then, not "nothing to apply" (tester ad
    /// AD2).
    pub reload_refused: Mutex<Option<Config>>,
    /// SIGHUP asked for the presets folder to be read again (whether or not
    /// the configuration file changed).
    pub rescan_presets: AtomicBool,
    /// Requests of [`OSC_INPUT_CLIENT`] handled so far (the OSC input port
    /// bounds what it has in flight with it; its replies go nowhere).
    pub osc_input_handled: AtomicU64,
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
            reload_refused: Mutex::new(None),
            rescan_presets: AtomicBool::new(false),
            osc_input_handled: AtomicU64::new(0),
        })
    }

    /// What is wrong with the configuration `new` would give, re-read on
    /// SIGHUP over `base`, once the runtime state is layered over it the
    /// way [`Controller::rebase`] will (`None`: it will be applied). The
    /// reload asks this before it hands `new` over, so a file that only
    /// fails with the runtime state over it changes nothing at all.
    pub fn reload_problem(&self, base: &Config, new: &Config) -> Option<String> {
        let next = self.state().rebase(base, new).apply(new);
        problem(
            &self.config(),
            &next,
            self.sample_rate.load(Ordering::Relaxed),
        )
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

/// The first problem of the configuration `next` that the one in force,
/// `now`, does not have, both checked at the rate of the open device
/// (`rate`; 0: the configured one), on which the band ceiling depends.
fn problem(now: &Config, next: &Config, rate: u32) -> Option<String> {
    let at_rate = |c: &Config| {
        let mut c = c.clone();
        if rate > 0 {
            c.audio.sample_rate_hz = rate;
        }
        config::validate(&c)
    };
    // What the device's rate alone puts out of range in the settings in
    // force (a 16 kHz microphone and the default 16 kHz high band) is
    // clamped by the DSP and was warned about when the device opened; it
    // must not make every later change fail. Only what the change adds is
    // a problem.
    let known = at_rate(now);
    at_rate(next)
        .into_iter()
        .find(|p| !known.contains(p))
        .map(|p| p.to_string())
}

/// The client id of answers nobody asked for (a reload): only their
/// `MetaChanged` matters, which goes to every client.
pub const RELOAD_CLIENT: u64 = 0;
/// The `client` id of the OSC input port (rig::oscquery::input).
pub const OSC_INPUT_CLIENT: u64 = u64::MAX - 1;

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
    /// When `listing` was made, and [`DeviceOps::in_use_key`] then.
    listed_at: Option<(Instant, u64)>,
    /// The last listing with probe, and when it was made.
    probed: Option<(Instant, Vec<DeviceItem>)>,
    /// Where probes run; `None` before [`spawn`] starts it, or without one
    /// (then control probes itself).
    prober: Option<probe::ProbeThread>,
    /// A device switch the supervisor has not answered yet.
    switching: Option<PendingSwitch>,
    /// A switch asked for while a probe runs, and who asked: it starts
    /// when the probe ends.
    held_switch: Option<(u64, device::ListedDevice)>,
    /// The device chosen at runtime (in the state) was not listed when
    /// last looked for: when it is, capture switches to it once
    /// ([`Controller::adopt_chosen_device`]). When it is next looked for.
    chosen_absent: Option<Instant>,
    /// A switch to the chosen device was begun since it was last seen
    /// away: while it stays listed, it is not tried again.
    adopt_tried: bool,
    /// [`SWITCH_WAIT`]; shorter in tests.
    switch_wait: Duration,
    state_dir: Option<PathBuf>,
    presets: Option<PresetStore>,
    debounce: Debounce,
    /// Writes the state file off this thread; `None` without a state
    /// directory, or if its thread could not start (then the control
    /// thread writes it itself).
    writer: Option<StateWriter>,
}

/// A device switch handed to the supervisor, and who asked for it.
struct PendingSwitch {
    client: u64,
    device: device::ListedDevice,
    outcome: SwitchOutcome,
    /// When the client is told the supervisor has not answered.
    deadline: Instant,
    /// Whether the client was told so. The switch is still followed
    /// after that: the supervisor may yet finish it, and the state must
    /// then name the device capture runs on.
    overdue: bool,
}

/// Longest a client waits for the outcome of its switch (the supervisor's
/// own limit, 3 s to open and 3 s to roll back, is well inside it); after
/// that it is told the supervisor has not answered, and control keeps
/// looking for the outcome at its ordinary pace.
const SWITCH_WAIT: Duration = Duration::from_secs(10);
/// How often control looks for a switch's outcome while one runs.
const SWITCH_POLL: Duration = Duration::from_millis(5);

/// A listing without probe younger than this is answered again instead
/// of opening the sound cards once more.
const LIST_REUSE: Duration = Duration::from_secs(1);
/// A probe listing younger than this is answered again instead of opening
/// every device once more (a probe takes ~0.3 s per device).
const PROBE_REUSE: Duration = Duration::from_secs(2);

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
        let state_dir = base.state_dir();
        // The state names a device capture does not start on: it was not
        // listed (see `layer_at_start`); looked for while this runs.
        let on = shared
            .device
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone();
        let chosen_absent = (!state.audio.device.is_empty()
            && state.audio.config_device == base.audio.device
            && state.audio.device != on)
            .then(Instant::now);
        let writer = state_dir.as_ref().and_then(|dir| {
            StateWriter::spawn(dir.join(state::STATE_FILE))
                .map_err(|e| log::warn!("state: no writer thread ({e}); control writes the state"))
                .ok()
        });
        Controller {
            presets: state_dir.as_deref().map(PresetStore::open),
            writer,
            state_dir,
            base: base.clone(),
            state,
            hub,
            shared,
            devices,
            listing: None,
            listed_at: None,
            probed: None,
            prober: None,
            switching: None,
            held_switch: None,
            chosen_absent,
            adopt_tried: false,
            switch_wait: SWITCH_WAIT,
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
        let rate = self.shared.sample_rate.load(Ordering::Relaxed);
        let cfg = self.effective(&next);
        // The configuration in force (a reload has already swapped `base`).
        if let Some(p) = problem(&self.shared.config(), &cfg, rate) {
            return vec![Response::Error(p)];
        }
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

    /// Carry out one command of `client` ([`Reply::client`]). No responses
    /// means the answer comes later, from the presets' writer (see
    /// [`spawn`]).
    pub fn handle_for(&mut self, client: u64, mut cmd: Command) -> Vec<Response> {
        let clamped = command::clamp(&mut cmd, self.sample_rate());
        let mut r = self.carry_out(client, cmd);
        if !clamped.is_empty() && matches!(r.first(), Some(Response::MetaChanged)) {
            r.push(Response::Clamped(clamped));
        }
        r
    }

    /// Carry out one command of control's own (the greeting; tests), as
    /// [`RELOAD_CLIENT`].
    pub fn handle(&mut self, cmd: Command) -> Vec<Response> {
        self.handle_for(RELOAD_CLIENT, cmd)
    }

    /// List the devices once at start, so the first meta names the device's
    /// index and the first client's greeting needs no round trip.
    pub fn greeting(&mut self) -> Vec<Response> {
        self.handle(Command::Hello)
    }

    /// Hand the state to the writer if a write is due. With `force`, hand
    /// it over if anything is unsaved and wait until it is on disk (before
    /// the service ends, and in tests).
    pub fn persist(&mut self, force: bool) {
        let due = if force {
            let d = self.debounce.dirty();
            self.debounce.clear();
            d
        } else {
            self.debounce.take_due(Instant::now())
        };
        if let (true, Some(dir)) = (due, &self.state_dir) {
            let text = state::file_text(&self.state);
            match &self.writer {
                Some(w) => w.submit(text),
                None => state::save(&dir.join(state::STATE_FILE), &text),
            }
        }
        if let (true, Some(w)) = (force, &self.writer) {
            w.flush();
        }
    }

    /// When the next write is due.
    pub fn next_write(&self) -> Option<Instant> {
        self.debounce.due()
    }
}

/// Start the control thread. It carries out requests in order, answers on
/// `replies` (a preset save or delete is answered there by the presets'
/// writer once its file is written), writes the state when the debounce
/// says so, and writes any unsaved state and presets before it ends (when
/// `requests` closes).
pub fn spawn(
    mut controller: Controller,
    requests: Receiver<Request>,
    replies: Sender<Reply>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .stack_size(crate::rt::PARSER_STACK)
        .name("p4-control".into())
        .spawn(move || {
            if let Some(p) = controller.presets.as_mut() {
                p.start_writer(replies.clone());
            }
            controller.start_prober(replies.clone());
            let _ = replies.send(Reply {
                client: RELOAD_CLIENT,
                responses: controller.greeting(),
            });
            loop {
                let mut wait = controller
                    .next_write()
                    .map(|d| d.saturating_duration_since(Instant::now()))
                    .unwrap_or(Duration::from_millis(200))
                    .min(Duration::from_millis(200));
                if controller.switch_pending() {
                    wait = wait.min(SWITCH_POLL);
                }
                match requests.recv_timeout(wait) {
                    Ok(req) => {
                        let responses = controller.handle_for(req.client, req.command);
                        if req.client == OSC_INPUT_CLIENT {
                            controller
                                .shared
                                .osc_input_handled
                                .fetch_add(1, Ordering::Relaxed);
                        }
                        if !responses.is_empty() {
                            let _ = replies.send(Reply {
                                client: req.client,
                                responses,
                            });
                        }
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
                        *controller
                            .shared
                            .reload_refused
                            .lock()
                            .unwrap_or_else(|e| e.into_inner()) = Some(controller.base.clone());
                        log::error!(
                            "reload: not applied: {e} (a client changed a setting meanwhile; the running configuration stays, and the next SIGHUP tries the file again)"
                        );
                    }
                    let _ = replies.send(Reply {
                        client: RELOAD_CLIENT,
                        responses,
                    });
                }
                if let Some((client, responses)) = controller.settle_switch() {
                    let _ = replies.send(Reply { client, responses });
                }
                if let Some(responses) = controller.adopt_chosen_device() {
                    let _ = replies.send(Reply {
                        client: RELOAD_CLIENT,
                        responses,
                    });
                }
                if let Some(devices) = controller.refresh_listing() {
                    let _ = replies.send(Reply {
                        client: RELOAD_CLIENT,
                        responses: vec![devices],
                    });
                }
                controller.persist(false);
                controller.settle_probe();
                if let Some(p) = controller.presets.as_mut() {
                    if controller
                        .shared
                        .rescan_presets
                        .swap(false, Ordering::Relaxed)
                    {
                        p.rescan();
                    }
                    p.settle();
                    if let Some(list) = p.rescanned() {
                        let _ = replies.send(Reply {
                            client: RELOAD_CLIENT,
                            responses: vec![Response::PresetsChanged(list)],
                        });
                    }
                }
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
            controller.persist(true);
            if let Some(p) = controller.presets.as_mut() {
                p.close();
            }
        })
}

#[cfg(test)]
mod tests;
