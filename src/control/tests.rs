use super::device::ListedDevice;
use super::*;

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
        vec!["default".into(), "hw:CARD=Test,DEV=0".into()]
    }
    fn in_use_key(&self) -> u64 {
        self.key.load(Ordering::Relaxed).into()
    }
    fn switch(&mut self, device: &ListedDevice) -> Result<SwitchOutcome, String> {
        self.switched.lock().unwrap().push(device.to_string());
        self.log.lock().unwrap().push("switch");
        let log = self.log.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let outcome = if device.as_str() == "default" {
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

/// The control thread running a controller, as the service runs it.
struct Running {
    requests: Option<std::sync::mpsc::Sender<Request>>,
    replies: std::sync::mpsc::Receiver<Reply>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    /// Start it and take its greeting.
    fn start(ctl: Controller) -> Self {
        let (req_tx, req_rx) = std::sync::mpsc::channel();
        let (rep_tx, replies) = std::sync::mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = spawn(ctl, req_rx, rep_tx, stop.clone()).unwrap();
        let c = Running {
            requests: Some(req_tx),
            replies,
            stop,
            thread: Some(thread),
        };
        assert_eq!(c.next().client, RELOAD_CLIENT, "the greeting");
        c
    }

    fn ask(&self, client: u64, command: Command) {
        let req = Request { client, command };
        self.requests.as_ref().unwrap().send(req).unwrap();
    }

    /// The next reply (within 10 s).
    fn next(&self) -> Reply {
        self.replies.recv_timeout(Duration::from_secs(10)).unwrap()
    }

    /// Whether no reply waits.
    fn quiet(&self) -> bool {
        self.replies.try_recv().is_err()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.requests.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A gate for [`FakeDevices`], and what opens it once per send.
type Gate = Option<Arc<Mutex<std::sync::mpsc::Receiver<()>>>>;
fn gate() -> (std::sync::mpsc::Sender<()>, Gate) {
    let (release, gate) = std::sync::mpsc::channel();
    (release, Some(Arc::new(Mutex::new(gate))))
}

/// `set_device` by name.
fn set_device(name: &str) -> Command {
    Command::SetDevice {
        index: None,
        name: Some(name.into()),
    }
}

/// Whether `r` tells of a switch that happened.
fn switched(r: &Reply) -> bool {
    matches!(
        &r.responses[..],
        [Response::MetaChanged, Response::DevicesChanged(_)]
    )
}

/// Whether `r` is one error that says `what`.
fn refused(r: &Reply, what: &str) -> bool {
    matches!(&r.responses[..], [Response::Error(e)] if e.contains(what))
}

/// A probe takes ~0.3 s per device. It runs on the probe thread: another
/// client's command is answered while it runs, every client that asked
/// meanwhile gets the one probe's listing, and control then answers from
/// it for two seconds.
#[test]
fn a_probe_does_not_hold_up_other_clients() {
    let (release, g) = gate();
    let devices = FakeDevices {
        gate: g,
        ..Default::default()
    };
    let (ctl, _) = controller_with(None, devices.clone());
    let c = Running::start(ctl);
    let (ask, next) = (|client, command| c.ask(client, command), || c.next());

    // Control carries out requests in order: client 2's answer means the
    // three asks before it were taken while the probe ran.
    ask(1, Command::ListDevices { probe: true });
    ask(3, Command::ListDevices { probe: true });
    ask(1, Command::ListDevices { probe: true });
    ask(2, Command::SetFft { enabled: false });
    let r = next();
    assert_eq!(r.client, 2, "the probe held up another client");
    assert!(matches!(&r.responses[..], [Response::MetaChanged]));
    assert!(c.quiet(), "answered before the probe ended");

    release.send(()).unwrap();
    let mut answered: Vec<u64> = (0..2)
        .map(|_| next())
        .map(|r| {
            assert!(matches!(&r.responses[..], [Response::Devices(l)] if l.len() == 2));
            r.client
        })
        .collect();
    answered.sort();
    assert_eq!(answered, [1, 3], "one answer for each client that asked");
    assert_eq!(
        devices.probes.load(Ordering::Relaxed),
        1,
        "one probe for all"
    );

    // Within two seconds the same listing comes from control at once.
    ask(4, Command::ListDevices { probe: true });
    let r = next();
    assert_eq!(r.client, 4);
    assert!(matches!(&r.responses[..], [Response::Devices(l)] if l.len() == 2));
    assert_eq!(devices.probes.load(Ordering::Relaxed), 1);
    assert!(c.quiet(), "client 1 asked twice, answered once");
}

/// A switch waits for the new device to deliver (seconds, for one that
/// never does). Control does not wait with it: another client's command is
/// answered meanwhile, a second switch is refused while one runs, and the
/// client that asked is answered when the outcome comes.
#[test]
fn a_switch_does_not_hold_up_other_clients() {
    let (release, g) = gate();
    let devices = FakeDevices {
        switch_gate: g,
        ..Default::default()
    };
    let (ctl, _) = controller_with(None, devices.clone());
    let shared = ctl.shared.clone();
    let c = Running::start(ctl);
    let (ask, next) = (|client, command| c.ask(client, command), || c.next());

    ask(1, set_device("hw:CARD=Test,DEV=0"));
    ask(2, Command::SetFft { enabled: false });
    ask(3, set_device("plughw:CARD=Configured"));
    let r = next();
    assert_eq!(r.client, 2, "the switch held up another client");
    assert!(matches!(&r.responses[..], [Response::MetaChanged]));
    let r = next();
    assert_eq!(r.client, 3);
    assert!(refused(&r, "under way"), "{:?}", r.responses);
    assert!(c.quiet(), "answered before the switch ended");
    assert_eq!(
        shared.device().1,
        "plughw:CARD=Configured",
        "not switched yet"
    );

    release.send(()).unwrap();
    let r = next();
    assert_eq!(r.client, 1);
    assert!(switched(&r), "{:?}", r.responses);
    assert_eq!(shared.device().1, "hw:CARD=Test,DEV=0");
    assert_eq!(
        *devices.switched.lock().unwrap(),
        vec!["hw:CARD=Test,DEV=0"],
        "the refused switch never reached the devices"
    );

    // A failed switch is answered with its reason, and the next may start.
    ask(4, set_device("default"));
    release.send(()).unwrap();
    let r = next();
    assert_eq!(r.client, 4);
    assert!(refused(&r, "default is not there"), "{:?}", r.responses);
    assert_eq!(shared.device().1, "hw:CARD=Test,DEV=0");
}

/// A switch the supervisor does not answer in time: the client is told,
/// and control keeps following it. If it happens after all the state names
/// the new device and every client is told (the state used to keep the old
/// name while capture ran on the new one); if it fails, nothing changes.
/// Until it ends, another switch is refused.
#[test]
fn an_overdue_switch_is_still_followed() {
    let (release, g) = gate();
    let devices = FakeDevices {
        switch_gate: g,
        ..Default::default()
    };
    let (mut ctl, _) = controller_with(None, devices.clone());
    ctl.switch_wait = Duration::from_millis(100);
    let shared = ctl.shared.clone();
    let c = Running::start(ctl);

    c.ask(1, set_device("hw:CARD=Test,DEV=0"));
    let r = c.next();
    assert_eq!(r.client, 1);
    assert!(refused(&r, "has not ended"), "{:?}", r.responses);
    c.ask(2, set_device("plughw:CARD=Configured"));
    let r = c.next();
    assert_eq!(r.client, 2);
    assert!(refused(&r, "under way"), "{:?}", r.responses);
    assert_eq!(shared.device().1, "plughw:CARD=Configured");

    release.send(()).unwrap();
    let r = c.next();
    assert_eq!(
        r.client, RELOAD_CLIENT,
        "an overdue outcome goes to everyone"
    );
    assert!(switched(&r), "{:?}", r.responses);
    assert_eq!(shared.device().1, "hw:CARD=Test,DEV=0");
    assert!(c.quiet());

    // One that fails late changes nothing; the next switch may start.
    c.ask(3, set_device("default"));
    assert!(refused(&c.next(), "has not ended"));
    release.send(()).unwrap();
    let r = c.next();
    assert_eq!(r.client, RELOAD_CLIENT);
    assert!(refused(&r, "default is not there"), "{:?}", r.responses);
    assert_eq!(shared.device().1, "hw:CARD=Test,DEV=0");
    c.ask(4, set_device("plughw:CARD=Configured"));
    release.send(()).unwrap();
    let r = c.next();
    assert_eq!(r.client, 4);
    assert!(switched(&r), "{:?}", r.responses);
    assert_eq!(shared.device().1, "plughw:CARD=Configured");
}

/// A probe holds each device open for a moment, and a `hw` device the
/// switch opens then answers "busy": the switch failed. A switch asked for
/// while a probe runs starts when the probe ends, and a probe asked for
/// while a switch runs starts when the switch ends; other clients are
/// answered meanwhile.
#[test]
fn a_probe_and_a_switch_never_overlap() {
    let (release_probe, probe_gate) = gate();
    let (release_switch, switch_gate) = gate();
    let devices = FakeDevices {
        gate: probe_gate,
        switch_gate,
        ..Default::default()
    };
    let (ctl, _) = controller_with(None, devices.clone());
    let c = Running::start(ctl);
    let log = || devices.log.lock().unwrap().clone();
    let settled = |what: &[&str]| {
        // What has not happened cannot be awaited: give it time to.
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(log(), what);
    };

    // A switch during a probe.
    c.ask(1, Command::ListDevices { probe: true });
    c.ask(2, set_device("hw:CARD=Test,DEV=0"));
    c.ask(3, Command::SetFft { enabled: false });
    assert_eq!(c.next().client, 3, "held up by the probe or the switch");
    c.ask(4, set_device("plughw:CARD=Configured"));
    assert!(refused(&c.next(), "under way"));
    settled(&["probe"]);
    release_probe.send(()).unwrap();
    assert!(matches!(&c.next().responses[..], [Response::Devices(_)]));
    settled(&["probe", "probed", "switch"]);
    release_switch.send(()).unwrap();
    let r = c.next();
    assert_eq!(r.client, 2);
    assert!(switched(&r), "{:?}", r.responses);

    // A probe during a switch (the listing above is reused for 2 s).
    std::thread::sleep(PROBE_REUSE);
    c.ask(5, set_device("plughw:CARD=Configured"));
    c.ask(6, Command::ListDevices { probe: true });
    c.ask(7, Command::SetFft { enabled: true });
    assert_eq!(c.next().client, 7, "held up by the probe or the switch");
    settled(&["probe", "probed", "switch", "switched", "switch"]);
    release_switch.send(()).unwrap();
    assert_eq!(c.next().client, 5);
    release_probe.send(()).unwrap();
    let r = c.next();
    assert_eq!(r.client, 6);
    assert!(matches!(&r.responses[..], [Response::Devices(_)]));
    assert_eq!(
        log(),
        ["probe", "probed", "switch", "switched", "switch", "switched", "probe", "probed"]
    );
}

/// A plain listing opens the sound cards for a moment, and any client may
/// ask for one: the last one is answered again for [`LIST_REUSE`] unless
/// capture's device changed since (four
/// read-only clients asking 200 times a second each held another client's
/// slider up to 230 ms), and while a switch runs (a card the listing held
/// would answer the switch "busy").
#[test]
fn listings_are_reused_for_a_second_and_during_a_switch() {
    let (release, g) = gate();
    let devices = FakeDevices {
        switch_gate: g,
        ..Default::default()
    };
    let (ctl, _) = controller_with(None, devices.clone());
    let c = Running::start(ctl);
    let listings = || devices.plain.load(Ordering::Relaxed);
    let list = |client| {
        c.ask(client, Command::ListDevices { probe: false });
        let r = c.next();
        assert_eq!(r.client, client);
        assert!(matches!(&r.responses[..], [Response::Devices(l)] if l.len() == 2));
    };
    let greeted = listings();
    for client in 1..=50 {
        list(client);
    }
    assert_eq!(listings(), greeted, "listed again within a second");
    std::thread::sleep(LIST_REUSE);
    list(51);
    assert_eq!(listings(), greeted + 1);
    // Capture's device opened (or closed) since: listed again at once.
    devices.key.store(7, Ordering::Relaxed);
    list(51);
    list(51);
    assert_eq!(listings(), greeted + 2);

    std::thread::sleep(LIST_REUSE);
    c.ask(52, set_device("hw:CARD=Test,DEV=0"));
    list(53);
    assert_eq!(listings(), greeted + 2, "listed while the switch ran");
    release.send(()).unwrap();
    assert!(switched(&c.next()));
    assert_eq!(listings(), greeted + 3, "the switch's own listing");
}

/// The listing made at start comes before capture opens its device (the
/// device in use then reads "capture is opening it"), and every new client
/// was greeted with it: when capture's device opens, closes or changes,
/// control lists again for everyone, at most once a second.
#[test]
fn the_listing_follows_capture_s_device() {
    let devices = FakeDevices::default();
    let (ctl, _) = controller_with(None, devices.clone());
    let c = Running::start(ctl);
    let greeted = devices.plain.load(Ordering::Relaxed);
    std::thread::sleep(LIST_REUSE + Duration::from_millis(300));
    assert!(c.quiet(), "listed again with nothing changed");
    devices.key.store(1, Ordering::Relaxed);
    let r = c.next();
    assert_eq!(r.client, RELOAD_CLIENT);
    assert!(matches!(&r.responses[..], [Response::DevicesChanged(l)] if l.len() == 2));
    assert_eq!(devices.plain.load(Ordering::Relaxed), greeted + 1);
    // A second change within the second waits for it.
    let t = Instant::now();
    devices.key.store(2, Ordering::Relaxed);
    assert_eq!(c.next().client, RELOAD_CLIENT);
    assert!(t.elapsed() >= LIST_REUSE / 2, "{:?}", t.elapsed());
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
