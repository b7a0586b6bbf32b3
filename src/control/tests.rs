use super::device::ListedDevice;
use super::*;

mod threaded;

/// Lists "default" and "hw:CARD=Test,DEV=0"; counts listings with
/// probe; records every switch; refuses to switch to "default".
/// With `gate`, each probe waits for a message on it, and probes run on a
/// probe thread.
#[derive(Clone, Default)]
struct FakeDevices {
    switched: Arc<Mutex<Vec<String>>>,
    probes: Arc<AtomicU32>,
    gate: Gate,
    switch_gate: Gate,
    /// "probe" / "probed" when a probe starts and ends, "switch" /
    /// "switched" when a switch does.
    log: Arc<Mutex<Vec<&'static str>>>,
    /// Listings without probe.
    plain: Arc<AtomicU32>,
    /// What `in_use_key` says.
    key: Arc<AtomicU32>,
    /// The card `hw:CARD=Test,DEV=0` is not listed.
    card_away: Arc<std::sync::atomic::AtomicBool>,
    /// Switches to the card fail (it is listed but does not open).
    card_fails: Arc<std::sync::atomic::AtomicBool>,
}
impl DeviceOps for FakeDevices {
    fn prober(&self) -> Option<Prober> {
        self.gate.as_ref()?;
        let mut me = self.clone();
        Some(Box::new(move || me.list(true)))
    }
    fn list(&mut self, probe: bool) -> Vec<DeviceItem> {
        if probe {
            self.log.lock().unwrap().push("probe");
            if let Some(gate) = &self.gate {
                let _ = gate.lock().unwrap().recv();
            }
            self.probes.fetch_add(1, Ordering::Relaxed);
            self.log.lock().unwrap().push("probed");
        } else {
            self.plain.fetch_add(1, Ordering::Relaxed);
        }
        self.listed_names()
            .into_iter()
            .enumerate()
            .map(|(index, name)| DeviceItem {
                index,
                name,
                ..Default::default()
            })
            .collect()
    }
    fn listed_names(&mut self) -> Vec<String> {
        if self.card_away.load(Ordering::Relaxed) {
            vec!["default".into()]
        } else {
            vec!["default".into(), "hw:CARD=Test,DEV=0".into()]
        }
    }
    fn in_use_key(&self) -> u64 {
        self.key.load(Ordering::Relaxed).into()
    }
    fn switch(&mut self, device: &ListedDevice) -> Result<SwitchOutcome, String> {
        self.switched.lock().unwrap().push(device.to_string());
        self.log.lock().unwrap().push("switch");
        let log = self.log.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let outcome = if device.as_str() == "default"
            || self.card_fails.load(Ordering::Relaxed)
                && device.as_str() != "plughw:CARD=Configured"
        {
            Err("default is not there".into())
        } else {
            Ok(())
        };
        match &self.switch_gate {
            // The outcome comes when the test says so.
            Some(gate) => {
                let gate = gate.clone();
                std::thread::spawn(move || {
                    let _ = gate.lock().unwrap().recv();
                    log.lock().unwrap().push("switched");
                    let _ = tx.send(outcome);
                });
            }
            None => {
                log.lock().unwrap().push("switched");
                tx.send(outcome).unwrap()
            }
        }
        Ok(rx)
    }
}

/// A gate for [`FakeDevices`], and what opens it once per send.
type Gate = Option<Arc<Mutex<std::sync::mpsc::Receiver<()>>>>;
fn gate() -> (std::sync::mpsc::Sender<()>, Gate) {
    let (release, gate) = std::sync::mpsc::channel();
    (release, Some(Arc::new(Mutex::new(gate))))
}

fn controller_with(
    dir: Option<&std::path::Path>,
    devices: FakeDevices,
) -> (Controller, Arc<ParamsHub>) {
    let mut c = Config::default();
    c.state.dir = dir.map(|d| d.display().to_string()).unwrap_or_default();
    c.audio.device = "plughw:CARD=Configured".into();
    let s = State::from_config(&c);
    let hub = Arc::new(ParamsHub::new(DspParams::from_config(&c)));
    let shared = Shared::new(&c, &s);
    (
        Controller::new(&c, s, hub.clone(), shared, Box::new(devices)),
        hub,
    )
}

fn controller(dir: Option<&std::path::Path>) -> (Controller, Arc<ParamsHub>) {
    controller_with(dir, FakeDevices::default())
}

/// Issue 8, item 1: a PCM name from the network reaches the device layer
/// only if phase4 listed it or the administrator configured it.
#[test]
fn set_device_opens_only_listed_or_configured_devices() {
    let d = tempfile::tempdir().unwrap();
    let devices = FakeDevices::default();
    let (mut ctl, _) = controller_with(Some(d.path()), devices.clone());
    for bad in [
        "file:'|sh -c \"id >> x\"',raw",
        "file:FILE=x",
        "plug:'file:\"|id\"'",
        "{ type file slave.pcm null file \"|id\" }",
        "hw:CARD=Test,DEV=0 ",
        "hw:CARD=Test,DEV=0\n",
        "hw:1,0",
        &"x".repeat(100_000),
    ] {
        let r = ctl.handle(Command::SetDevice {
            index: None,
            name: Some(bad.to_string()),
        });
        assert!(matches!(&r[..], [Response::Error(_)]), "{bad:?} -> {r:?}");
    }
    assert!(devices.switched.lock().unwrap().is_empty());
    ctl.persist(true);
    assert!(!d.path().join(state::STATE_FILE).exists());
    for good in ["hw:CARD=Test,DEV=0", "plughw:CARD=Configured"] {
        let r = ctl.handle(Command::SetDevice {
            index: None,
            name: Some(good.to_string()),
        });
        assert!(
            matches!(&r[..], [Response::MetaChanged, Response::DevicesChanged(l)] if !l.is_empty()),
            "{good}: {r:?}"
        );
    }
    assert_eq!(
        *devices.switched.lock().unwrap(),
        vec!["hw:CARD=Test,DEV=0", "plughw:CARD=Configured"]
    );
}

/// A probe opens every device (~0.3 s each): a second one within
/// PROBE_REUSE is answered from the first.
#[test]
fn a_probe_listing_is_reused_for_two_seconds() {
    let devices = FakeDevices::default();
    let (mut ctl, _) = controller_with(None, devices.clone());
    let first = ctl.handle(Command::ListDevices { probe: true });
    assert!(matches!(&first[..], [Response::Devices(l)] if l.len() == 2));
    assert_eq!(ctl.handle(Command::ListDevices { probe: true }), first);
    assert_eq!(devices.probes.load(Ordering::Relaxed), 1);
    ctl.handle(Command::ListDevices { probe: false });
    assert_eq!(devices.probes.load(Ordering::Relaxed), 1);
    ctl.probed = ctl.probed.take().map(|(at, l)| (at - PROBE_REUSE, l));
    ctl.handle(Command::ListDevices { probe: true });
    assert_eq!(devices.probes.load(Ordering::Relaxed), 2);
}

/// A device opened at 16 kHz puts the default high band (to 16 kHz)
/// over its ceiling; the DSP clamps it. Every change was refused for
/// that band until the band itself was changed; now only what a change
/// adds is refused.
#[test]
fn a_low_device_rate_does_not_make_every_change_fail() {
    let (mut ctl, _) = controller(None);
    ctl.shared.sample_rate.store(16_000, Ordering::Relaxed);
    let r = ctl.handle(Command::SetFft { enabled: false });
    assert!(matches!(&r[..], [Response::MetaChanged]), "{r:?}");
    assert!(!ctl.state.fft.enabled);
    // A reload that brings a problem of its own is still refused, one
    // that only keeps the band is not.
    let base = ctl.base.clone();
    assert_eq!(ctl.shared.reload_problem(&base, &base), None);
    let mut bad = base.clone();
    bad.autoscale.strength = 1.5;
    let p = ctl.shared.reload_problem(&base, &bad);
    assert!(
        p.as_deref()
            .is_some_and(|p| p.contains("autoscale.strength")),
        "{p:?}"
    );
}

/// A new client gets the devices (listed once, on the first greeting)
/// and the presets, whatever happened before.
#[test]
fn a_greeting_sends_the_devices_and_the_presets() {
    let d = tempfile::tempdir().unwrap();
    let (mut ctl, _) = controller(Some(d.path()));
    assert!(ctl.listing.is_none());
    let r = ctl.greeting();
    assert!(
        matches!(&r[..], [Response::Devices(l), Response::Presets(p)] if l.len() == 2 && p.items.is_empty()),
        "{r:?}"
    );
    ctl.handle(Command::SavePreset { name: "a".into() });
    let r = ctl.handle(Command::Hello);
    assert!(
        matches!(&r[..], [Response::Devices(l), Response::Presets(p)] if l.len() == 2 && p.items.len() == 1),
        "{r:?}"
    );
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
            lo_hz: 300.0,
            hi_hz: 200.0,
            commit: true,
        },
        Command::SetWsSnapshotHz {
            hz: f64::NAN,
            commit: true,
        },
        Command::SetBandOnset {
            band: 1,
            sensitivity: None,
            refractory_s: None,
            slow_tau_s: None,
            abs_floor: None,
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

/// Issue 11: out of range is clamped (and said), as the Python server
/// accepts it; the value in force is the nearest allowed one.
#[test]
fn out_of_range_values_are_clamped_and_reported() {
    let (mut ctl, hub) = controller(None);
    let r = ctl.handle(Command::SetAutoscale {
        tau_attack_s: Some(0.01),
        tau_release_s: Some(1.0),
        noise_floor: None,
        strength: Some(0.5),
        master_gain: Some(9.0),
        commit: true,
    });
    assert_eq!(r[0], Response::MetaChanged, "{r:?}");
    let Response::Clamped(c) = &r[1] else {
        panic!("{r:?}")
    };
    let fields: Vec<&str> = c.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(fields, ["tau_release_s", "master_gain"]);
    assert_eq!((c[1].requested, c[1].applied), (9.0, 4.0));
    let p = hub.current();
    assert_eq!(
        (p.tau_release_s, p.strength, p.master_gain),
        (5.0, 0.5, 4.0)
    );
    let r = ctl.handle(Command::SetBand {
        band: 0,
        lo_hz: 10.0,
        hi_hz: 200.0,
        commit: true,
    });
    assert!(matches!(
        &r[..],
        [Response::MetaChanged, Response::Clamped(_)]
    ));
    assert_eq!(hub.current().bands[0].lo_hz, 20.0);
    let r = ctl.handle(Command::SetFilterOrder {
        order: 2,
        commit: true,
    });
    assert_eq!(r, vec![Response::MetaChanged]);
    assert_eq!(hub.current().filter_order, 2);
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

/// Tester q's F9: a sound card chosen at runtime that is not listed at
/// start is looked for while phase4 runs, and capture switches to it once
/// it is listed (once: not again and again).
#[test]
fn a_chosen_card_is_switched_to_when_it_is_listed() {
    for (chosen, listed) in [("hw:CARD=Test,DEV=0", true), ("hw:CARD=Gone,DEV=0", false)] {
        let devices = FakeDevices::default();
        let mut c = Config::default();
        c.audio.device = "plughw:CARD=Configured".into();
        let mut s = State::from_config(&c);
        s.audio.device = chosen.into();
        s.audio.config_device = c.audio.device.clone();
        let hub = Arc::new(ParamsHub::new(DspParams::from_config(&c)));
        let shared = Shared::new(&c, &s);
        let mut ctl = Controller::new(&c, s, hub, shared, Box::new(devices.clone()));
        let first = ctl.adopt_chosen_device();
        assert_eq!(first.is_some(), listed, "{chosen}");
        let switched = devices.switched.lock().unwrap().clone();
        assert_eq!(
            switched,
            if listed {
                vec![chosen.to_string()]
            } else {
                vec![]
            }
        );
        // Not tried again at once, listed or not.
        assert!(ctl.adopt_chosen_device().is_none());
        assert_eq!(devices.switched.lock().unwrap().len(), switched.len());
    }
}

/// Tester r's R3: a chosen card that is listed but fails to open is tried
/// again once it was gone and came back (a card re-plugged), not before,
/// and not never.
#[test]
fn a_chosen_card_that_failed_is_tried_again_after_it_came_back() {
    let devices = FakeDevices::default();
    devices
        .card_fails
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let mut c = Config::default();
    c.audio.device = "plughw:CARD=Configured".into();
    let mut s = State::from_config(&c);
    s.audio.device = "hw:CARD=Test,DEV=0".into();
    s.audio.config_device = c.audio.device.clone();
    let hub = Arc::new(ParamsHub::new(DspParams::from_config(&c)));
    let shared = Shared::new(&c, &s);
    let mut ctl = Controller::new(&c, s, hub, shared, Box::new(devices.clone()));
    let look = |ctl: &mut Controller| {
        // Time has come to look again (ADOPT_EVERY is 10 s); the switch
        // begun last time has ended.
        let _ = ctl.settle_switch();
        ctl.chosen_absent = Some(Instant::now());
        ctl.adopt_chosen_device().is_some()
    };
    assert!(look(&mut ctl), "listed at the first look: tried");
    assert!(!look(&mut ctl), "failed, still listed: not again");
    assert!(!look(&mut ctl));
    devices
        .card_away
        .store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(!look(&mut ctl), "away");
    devices
        .card_away
        .store(false, std::sync::atomic::Ordering::Relaxed);
    assert!(look(&mut ctl), "back: tried again");
    assert_eq!(devices.switched.lock().unwrap().len(), 2);
}
