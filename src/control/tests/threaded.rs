//! Control on its own thread beside the probe thread and a supervisor
//! that answers switches later: who waits for whom, and what is listed
//! meanwhile.

use super::*;
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

    /// Control over `devices` (a clone shares their counters and gates),
    /// started.
    fn on(devices: &FakeDevices) -> Self {
        Running::start(controller_with(None, devices.clone()).0)
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
    let c = Running::on(&devices);
    let (ask, next) = (|client, command| c.ask(client, command), || c.next());

    // Control carries out requests in order: client 2's answer means the
    // three asks before it were taken while the probe ran.
    ask(1, Command::ListDevices { probe: true });
    ask(3, Command::ListDevices { probe: true });
    ask(1, Command::ListDevices { probe: true });
    ask(2, Command::SetFft { enabled: false });
    // Client 1's repeat is answered at once: every request gets one answer
    // (tester ad AD3: a repeat that got none held its place in the
    // WebSocket side's count of requests for good).
    let r = next();
    assert_eq!(r.client, 1);
    assert!(refused(&r, "runs already"), "{:?}", r.responses);
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
    assert!(c.quiet(), "client 1 asked twice, answered twice");
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
    let c = Running::on(&devices);
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
    let c = Running::on(&devices);
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
    let c = Running::on(&devices);
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

/// A reload control refuses (a client's change came in between the
/// supervisor's check and control's turn) leaves control's base for the
/// supervisor's next reload to compare with: before, the supervisor had
/// taken the refused file as its base, and the same file sent again was
/// "nothing to apply" (tester ad AD2).
#[test]
fn a_reload_control_refuses_is_compared_against_what_control_kept() {
    let (ctl, _) = controller_with(None, FakeDevices::default());
    let shared = ctl.shared.clone();
    let kept = ctl.base.clone();
    let c = Running::start(ctl);
    let mut bad = kept.clone();
    bad.autoscale.strength = 1.5;
    *shared.reload.lock().unwrap() = Some(bad);
    let r = c.next();
    assert_eq!(r.client, RELOAD_CLIENT);
    assert!(refused(&r, "autoscale.strength"), "{:?}", r.responses);
    assert!(shared.reload_refused.lock().unwrap().take() == Some(kept));
    // One that applies leaves nothing for the supervisor.
    let mut good = shared.config();
    good.autoscale.strength = 0.5;
    *shared.reload.lock().unwrap() = Some(good);
    let r = c.next();
    assert_eq!(r.client, RELOAD_CLIENT);
    assert!(!refused(&r, ""), "{:?}", r.responses);
    assert!(shared.reload_refused.lock().unwrap().is_none());
}
