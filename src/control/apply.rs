//! Carrying out one checked command: the settings that become a new state,
//! the device commands and the preset commands. Runs on the control thread
//! (`p4-control`), like the rest of [`Controller`].

use super::command::{validate, Command, DeviceItem, Response};
use super::device::{DeviceCatalog, ListedDevice};
use super::presets::{self, Answer, PresetName, PresetStore};
use super::probe::ProbeThread;
use super::{settings, state, Controller, PendingSwitch, PROBE_REUSE};
use std::sync::mpsc::TryRecvError;
use std::time::Instant;

/// How often a device chosen at runtime and not listed is looked for.
const ADOPT_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

impl Controller {
    /// Carry out `cmd` after [`validate`]: a settings command becomes the new
    /// state in force; the others list, switch or answer.
    pub(super) fn carry_out(&mut self, client: u64, cmd: Command) -> Vec<Response> {
        if let Some(reason) = validate(&cmd, self.sample_rate()) {
            return vec![Response::Error(reason)];
        }
        match cmd {
            Command::ListDevices { probe } => self.list_devices(client, probe),
            Command::Hello => self.hello(),
            Command::SetDevice { index, name } => self.set_device(client, index, name),
            Command::ListPresets => vec![Response::Presets(self.presets())],
            Command::SavePreset { name } => self.save_preset(client, &name),
            Command::DeletePreset { name } => self.delete_preset(client, &name),
            Command::LoadPreset { name } => self.load_preset(&name),
            setting @ (Command::SetFft { .. }
            | Command::SetFftTilt { .. }
            | Command::SetFftSendRawDb { .. }
            | Command::SetFftPeakSmear { .. }
            | Command::SetNFftBins { .. }
            | Command::SetBand { .. }
            | Command::SetSmoothing { .. }
            | Command::SetFilterOrder { .. }
            | Command::SetAutoscale { .. }
            | Command::SetBandOnset { .. }
            | Command::SetOnset { .. }
            | Command::SetTempo { .. }
            | Command::SetUi { .. }
            | Command::SetWsSnapshotHz { .. }) => self.apply_setting(setting),
        }
    }

    /// The state in force with the values `setting` carries, committed (or
    /// refused) as a whole.
    fn apply_setting(&mut self, setting: Command) -> Vec<Response> {
        let mut next = self.state.clone();
        match settings::write(setting, &mut next) {
            Ok(commit) => self.commit_state(next, commit),
            // carry_out sends only settings commands, and settings::write
            // takes every one (its tests go through them all); should that
            // ever break, the client is told rather than left waiting.
            Err(other) => vec![Response::Error(format!(
                "internal error: {other:?} is not a settings command; nothing changed"
            ))],
        }
    }

    /// With `probe`, the last probe's listing while it is younger than
    /// [`PROBE_REUSE`]; otherwise a new probe, answered later by the probe
    /// thread (no responses now), or made here when there is none. Without,
    /// a new listing (it opens the sound cards for a moment), or the last
    /// one while it is younger than [`LIST_REUSE`](super::LIST_REUSE) and
    /// capture's device has not changed since (any client may ask, 200
    /// times a second: the cards would be opened for each, and every other
    /// client's commands wait meanwhile) or while a
    /// switch runs (a card the listing held open would answer the switch
    /// "busy").
    fn list_devices(&mut self, client: u64, probe: bool) -> Vec<Response> {
        let l = if probe {
            self.settle_probe();
            match (&self.probed, &self.prober) {
                (Some((at, l)), _) if at.elapsed() < PROBE_REUSE => l.clone(),
                (_, Some(prober)) => {
                    // Held while a switch runs (see `probe`).
                    return match prober.ask(client, !self.switch_holds_probes()) {
                        Ok(()) => Vec::new(),
                        Err(e) => vec![Response::Error(e)],
                    };
                }
                (_, None) => {
                    let l = self.devices.list(true);
                    self.probed = Some((Instant::now(), l.clone()));
                    l
                }
            }
        } else if let (true, Some(l)) = (self.listing_reusable(), &self.listing) {
            return vec![Response::Devices(l.clone())];
        } else {
            return vec![Response::Devices(self.fresh_listing())];
        };
        let key = self.devices.in_use_key();
        self.remember_listing(l.clone(), key);
        vec![Response::Devices(l)]
    }

    /// A new listing without probe, kept with what capture's device was
    /// before it was made ([`in_use_key`](super::DeviceOps::in_use_key)).
    fn fresh_listing(&mut self) -> Vec<DeviceItem> {
        let key = self.devices.in_use_key();
        let l = self.devices.list(false);
        self.remember_listing(l.clone(), key);
        l
    }

    /// When capture's device opened, closed or changed since the last
    /// listing (at start the listing is made before capture opens), list
    /// again for every client: at most once a [`LIST_REUSE`](super::LIST_REUSE),
    /// never while a switch runs (the switch lists when it ends).
    pub(super) fn refresh_listing(&mut self) -> Option<Response> {
        let (at, key) = self.listed_at?;
        if at.elapsed() < super::LIST_REUSE
            || self.switch_pending()
            || key == self.devices.in_use_key()
        {
            return None;
        }
        Some(Response::DevicesChanged(self.fresh_listing()))
    }

    /// Start the probe thread, answering on `replies`; without it (no
    /// thread could start, or the device layer probes in place) control
    /// probes itself, as before.
    pub(super) fn start_prober(&mut self, replies: std::sync::mpsc::Sender<super::Reply>) {
        let Some(probe) = self.devices.prober() else {
            return;
        };
        match ProbeThread::spawn(probe, replies) {
            Ok(t) => self.prober = Some(t),
            Err(e) => log::warn!("devices: no probe thread ({e}); control probes itself"),
        }
    }

    /// Take over a probe the probe thread finished: the cache, and the
    /// listing the meta's device index comes from.
    pub(super) fn settle_probe(&mut self) {
        if let Some(p) = self.prober.as_ref() {
            p.expire();
        }
        if let Some((at, l)) = self.prober.as_ref().and_then(ProbeThread::take_done) {
            let key = self.devices.in_use_key();
            self.remember_listing(l.clone(), key);
            self.probed = Some((at, l));
        }
    }

    /// What a new client is told first: the devices (listed now if nothing
    /// was listed yet) and the presets.
    fn hello(&mut self) -> Vec<Response> {
        if self.listing.is_none() {
            self.fresh_listing();
        }
        vec![
            Response::Devices(self.listing.clone().unwrap_or_default()),
            Response::Presets(self.presets()),
        ]
    }

    /// Save the state in force under `name` for `client`. Nothing to send
    /// now when the presets' writer answers once the file is written.
    fn save_preset(&mut self, client: u64, name: &str) -> Vec<Response> {
        let current = self.state.clone();
        let saved = self
            .preset_store(name)
            .and_then(|(store, name)| store.save_for(client, &name, &current));
        answered(saved)
    }

    fn delete_preset(&mut self, client: u64, name: &str) -> Vec<Response> {
        let deleted = self
            .preset_store(name)
            .and_then(|(store, name)| store.delete_for(client, &name));
        answered(deleted)
    }

    /// Merge the preset `name` over the state in force and commit the result
    /// through the same checks as any other change.
    fn load_preset(&mut self, name: &str) -> Vec<Response> {
        let text = match self.preset_store(name) {
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

    /// The preset store and the checked name, or why presets are unavailable.
    fn preset_store(&mut self, name: &str) -> Result<(&mut PresetStore, PresetName), String> {
        let name = PresetName::parse(name)?;
        match self.presets.as_mut() {
            Some(store) => Ok((store, name)),
            None => Err("presets need a state directory ([state] dir)".into()),
        }
    }

    /// Keep `l` as the listing, with
    /// [`in_use_key`](super::DeviceOps::in_use_key) from before it was made
    /// (a probe's: from when it ended).
    fn remember_listing(&mut self, l: Vec<DeviceItem>, key: u64) {
        let mut d = self.shared.device.lock().unwrap_or_else(|e| e.into_inner());
        d.0 = l.iter().find(|i| i.name == d.1).map(|i| i.index);
        self.listing = Some(l);
        self.listed_at = Some((Instant::now(), key));
    }

    fn set_device(
        &mut self,
        client: u64,
        index: Option<i64>,
        name: Option<String>,
    ) -> Vec<Response> {
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
                crate::peer_log!(log::Level::Warn, "control: refused set_device: {e}");
                return vec![Response::Error(format!("cannot switch: {e}"))];
            }
        };
        self.switch_to(client, device)
    }

    /// Hand the switch to the supervisor, or hold it while a device probe
    /// runs (a probe holds each device open for a moment: a `hw` device
    /// would answer the switch "busy"). The answer comes when it is done
    /// ([`Self::settle_switch`]): now, if it already is.
    fn switch_to(&mut self, client: u64, device: ListedDevice) -> Vec<Response> {
        let under_way = self
            .switching
            .as_ref()
            .map(|p| &p.device)
            .or(self.held_switch.as_ref().map(|(_, d)| d));
        if let Some(d) = under_way {
            return vec![Response::Error(format!(
                "a switch to {:?} is under way; try again when it is done",
                d.as_str()
            ))];
        }
        if self.prober.as_ref().is_some_and(ProbeThread::running) {
            self.held_switch = Some((client, device));
            return Vec::new();
        }
        self.begin_switch(client, device)
    }

    fn begin_switch(&mut self, client: u64, device: ListedDevice) -> Vec<Response> {
        let outcome = match self.devices.switch(&device) {
            Ok(o) => o,
            Err(e) => return vec![switch_failed(&device, &e)],
        };
        self.switching = Some(PendingSwitch {
            client,
            device,
            outcome,
            deadline: Instant::now() + self.switch_wait,
            overdue: false,
        });
        match self.settle_switch() {
            Some((_, responses)) => responses,
            None => Vec::new(),
        }
    }

    /// The client and the answers of a switch that ended, or that the
    /// supervisor has not answered within [`SWITCH_WAIT`](super::SWITCH_WAIT);
    /// `None` while it runs, or when none does. A held switch starts here
    /// once the probe it waited for has ended. An outcome that comes after
    /// the client was told goes to everyone
    /// ([`RELOAD_CLIENT`](super::RELOAD_CLIENT)): a switch that happened
    /// after all is kept in the state and shown to every UI, one that
    /// failed is logged.
    pub(super) fn settle_switch(&mut self) -> Option<(u64, Vec<Response>)> {
        if self.held_switch.is_some() && !self.prober.as_ref().is_some_and(ProbeThread::running) {
            let (client, device) = self.held_switch.take()?;
            let responses = self.begin_switch(client, device);
            if !responses.is_empty() {
                self.start_held_probe();
                return Some((client, responses));
            }
        }
        let wait = self.switch_wait;
        let p = self.switching.as_mut()?;
        let outcome = match p.outcome.try_recv() {
            Ok(o) => o,
            Err(TryRecvError::Empty) if p.overdue || Instant::now() < p.deadline => return None,
            Err(TryRecvError::Empty) => {
                p.overdue = true;
                self.start_held_probe();
                let p = self.switching.as_ref()?;
                log::warn!(
                    "control: the switch to {:?} has not ended in {} s",
                    p.device.as_str(),
                    wait.as_secs_f32()
                );
                let overdue = format!(
                    "the switch to {:?} has not ended in {} s: capture stays on the previous device \
                     unless it does, and then every client is told",
                    p.device.as_str(),
                    wait.as_secs_f32()
                );
                return Some((p.client, vec![Response::Error(overdue)]));
            }
            Err(TryRecvError::Disconnected) => Err("the service is stopping".into()),
        };
        let PendingSwitch {
            client,
            device,
            overdue,
            ..
        } = self.switching.take()?;
        self.start_held_probe();
        let client = if overdue {
            match &outcome {
                Ok(()) => log::info!("control: the overdue switch to {device} ended"),
                Err(e) => log::warn!("control: the overdue switch to {device} failed: {e}"),
            }
            super::RELOAD_CLIENT
        } else {
            client
        };
        let responses = match outcome {
            Ok(()) => self.switched_to(device),
            Err(e) => vec![switch_failed(&device, &e)],
        };
        Some((client, responses))
    }

    /// Whether a switch waits for its outcome, or for a probe to end, with
    /// a client waiting (control then looks every
    /// [`SWITCH_POLL`](super::SWITCH_POLL)).
    pub(super) fn switch_pending(&self) -> bool {
        self.held_switch.is_some() || self.switch_holds_probes()
    }

    /// Whether a probe asked for now waits for a switch to end (not for
    /// one already overdue: its client was told, and a supervisor that
    /// never answers would hold the probe for good).
    fn switch_holds_probes(&self) -> bool {
        self.switching.as_ref().is_some_and(|p| !p.overdue)
    }

    /// Whether a plain listing is answered with the last one.
    fn listing_reusable(&self) -> bool {
        self.switch_holds_probes()
            || self.listed_at.is_some_and(|(at, key)| {
                at.elapsed() < super::LIST_REUSE && key == self.devices.in_use_key()
            })
    }

    /// Start a probe that waited for a switch.
    fn start_held_probe(&self) {
        if let Some(p) = &self.prober {
            p.start();
        }
    }

    /// The device chosen at runtime was not listed at start (a USB
    /// interface plugged in late, a cable out): the state keeps it, capture
    /// runs on the configured device, and every [`ADOPT_EVERY`] this looks
    /// for it again. When alsa-lib lists it, capture switches to it, once:
    /// a device listed but failing to open is tried again only after it
    /// was gone and came back. Tester q's F9: the choice was erased from
    /// the state at the first start without the device.
    pub(super) fn adopt_chosen_device(&mut self) -> Option<Vec<Response>> {
        let at = self.chosen_absent?;
        let now = Instant::now();
        if now < at || self.switching.is_some() || self.held_switch.is_some() {
            return None;
        }
        if self.prober.as_ref().is_some_and(ProbeThread::running) {
            return None;
        }
        let wanted = self.state.audio.device.clone();
        let on = self
            .shared
            .device
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone();
        if wanted.is_empty()
            || self.state.audio.config_device != self.base.audio.device
            || on == wanted
        {
            // Chosen otherwise since, or on it already.
            self.chosen_absent = None;
            return None;
        }
        let catalog = DeviceCatalog::new(self.devices.listed_names(), &self.base.audio.device);
        self.chosen_absent = Some(now + ADOPT_EVERY);
        let Ok(device) = catalog.admit(&wanted) else {
            // Away (again): the next time it is listed is worth a try.
            self.adopt_tried = false;
            return None;
        };
        if self.adopt_tried {
            // Listed ever since a switch to it failed: not again until it
            // was gone and came back (a card re-plugged, a server back).
            return None;
        }
        self.adopt_tried = true;
        log::info!("state: {wanted:?}, chosen at runtime, is listed now; switching to it");
        Some(self.begin_switch(super::RELOAD_CLIENT, device))
    }

    /// Capture runs on `device` now: keep it in the state and tell everyone.
    fn switched_to(&mut self, device: ListedDevice) -> Vec<Response> {
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
        self.chosen_absent = None;
        *self.shared.state.lock().unwrap_or_else(|e| e.into_inner()) = self.state.clone();
        if self.state_dir.is_some() {
            self.debounce.touch(true, Instant::now());
        }
        // Every UI's device list shows the one in use (as the Python
        // server does after a switch).
        vec![
            Response::MetaChanged,
            Response::DevicesChanged(self.fresh_listing()),
        ]
    }

    fn presets(&self) -> presets::PresetList {
        self.presets
            .as_ref()
            .map(PresetStore::list)
            .unwrap_or_default()
    }
}

/// The answer to a switch that did not happen; `why` says where capture
/// is now.
fn switch_failed(device: &ListedDevice, why: &str) -> Response {
    Response::Error(format!("cannot switch to {:?}: {why}", device.as_str()))
}

/// The responses for a save or delete: the list when it is done now, the
/// error when it was refused, none when the presets' writer answers later.
fn answered(answer: Result<Answer, String>) -> Vec<Response> {
    match answer {
        Ok(Answer::Now(list)) => vec![Response::Presets(list)],
        Ok(Answer::Later) => Vec::new(),
        Err(e) => vec![Response::Error(e)],
    }
}
