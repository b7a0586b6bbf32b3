//! Device probes off the control thread (`p4-probe`).
//!
//! A probe opens every capture device and listens to each for 0.3 s: a
//! second or more on a box with a few cards and plugins. Run on the
//! control thread, it held up every other client's commands meanwhile (a
//! slider dragged in another browser was answered only after the probe).
//! Control now hands the probe to this thread and goes on with the next
//! request. Clients that ask while a probe runs wait for that same probe
//! (one probe, however many ask), and this thread answers each of them
//! when it is done. Control takes the listing over (its two-second cache,
//! the device index of the meta) the next time it looks
//! ([`ProbeThread::take_done`]).
//!
//! A probe and a device switch never run at once: a probe holds each
//! device open for a moment, and a `hw` device opened by the switch in
//! that moment answers "busy", which failed the switch. Control holds a
//! probe asked for during a switch ([`ProbeThread::ask`] with `start`
//! false, [`ProbeThread::start`] when it ends) and a switch asked for
//! during a probe.

use super::{DeviceItem, Prober, Reply, Response};
use std::sync::mpsc::{self, Sender, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A probe that has not ended in this long is stuck in a device's open or
/// read (a sound server that does not answer, or a plugin deadlocked in
/// its own lock, as PulseAudio's can be when its server goes away). It
/// then holds nothing back: switches go ahead, its clients are told, and a
/// new probe is refused while it is stuck (tester q's F4: every later
/// `set_device` waited for it, for the life of the process).
pub const PROBE_OVERDUE: Duration = Duration::from_secs(10);

/// Most clients one probe answers; a client beyond them is told to ask
/// again. (Each client waits at most once: asking twice while a probe runs
/// gets one answer.)
pub const MAX_WAITING: usize = 64;

/// What control and the probe thread share.
#[derive(Default)]
struct Slot {
    /// Clients to answer when the probe ends (its end answers them all).
    waiting: Vec<u64>,
    /// Whether the probe was handed to the thread and has not ended.
    started: bool,
    /// When it was handed over.
    since: Option<Instant>,
    /// [`PROBE_OVERDUE`] (shorter in tests).
    limit: Duration,
    /// The last probe's listing and when it ended, until control takes it.
    done: Option<(Instant, Vec<DeviceItem>)>,
}

impl Slot {
    fn overdue(&self) -> bool {
        self.started && self.since.is_some_and(|t| t.elapsed() > self.limit)
    }
}

fn stuck_message() -> String {
    format!(
        "the device probe has not ended in {} s: a device or sound server does not answer \
         (list_devices without probe still works)",
        PROBE_OVERDUE.as_secs()
    )
}

/// The probe thread, from control's side.
pub struct ProbeThread {
    jobs: SyncSender<()>,
    slot: Arc<Mutex<Slot>>,
    /// For the clients of a held probe that cannot start.
    replies: Sender<Reply>,
}

fn lock(slot: &Mutex<Slot>) -> MutexGuard<'_, Slot> {
    slot.lock().unwrap_or_else(|e| e.into_inner())
}

impl ProbeThread {
    /// Start the thread; `probe` makes one listing, its answers go to
    /// `replies`. The thread ends when control drops this handle (after
    /// the probe it may be running: nothing waits for it).
    pub fn spawn(probe: Prober, replies: Sender<Reply>) -> std::io::Result<Self> {
        Self::spawn_with(probe, replies, PROBE_OVERDUE)
    }

    fn spawn_with(
        mut probe: Prober,
        replies: Sender<Reply>,
        limit: Duration,
    ) -> std::io::Result<Self> {
        // One job at a time: control hands over a probe only when none runs.
        let (jobs, rx) = mpsc::sync_channel::<()>(1);
        let slot = Arc::new(Mutex::new(Slot {
            limit,
            ..Slot::default()
        }));
        let ours = slot.clone();
        let to_clients = replies.clone();
        std::thread::Builder::new()
            .stack_size(crate::rt::PARSER_STACK)
            .name("p4-probe".into())
            .spawn(move || {
                for () in rx {
                    let listing =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut probe));
                    let (clients, answer) = {
                        let mut s = lock(&ours);
                        let answer = match listing {
                            Ok(l) => {
                                s.done = Some((Instant::now(), l.clone()));
                                Response::Devices(l)
                            }
                            Err(_) => {
                                log::error!("devices: the probe failed; nothing was listed");
                                Response::Error("the device probe failed; ask again".into())
                            }
                        };
                        s.started = false;
                        s.since = None;
                        (std::mem::take(&mut s.waiting), answer)
                    };
                    for client in clients {
                        let _ = to_clients.send(Reply {
                            client,
                            responses: vec![answer.clone()],
                        });
                    }
                }
            })?;
        Ok(ProbeThread {
            jobs,
            slot,
            replies,
        })
    }

    /// `client` wants a probe listing: it is answered from this thread when
    /// the probe that runs now ends, or one started for it (now with
    /// `start`, else at [`Self::start`]). `Err` with the reason when it
    /// will not be.
    pub fn ask(&self, client: u64, start: bool) -> Result<(), String> {
        let mut s = lock(&self.slot);
        if s.overdue() {
            return Err(stuck_message());
        }
        if s.waiting.contains(&client) {
            // Every request gets one answer: the WebSocket side counts a
            // request until it is answered, and a repeat that got none
            // held its place in the shared count of requests for good
            // (tester ad AD3: 40 repeats from each of 9 clients, and every
            // client was told "busy" from then on).
            return Err(
                "a device probe for this client runs already; its listing comes when it ends"
                    .into(),
            );
        }
        if s.waiting.len() >= MAX_WAITING {
            return Err(format!(
                "{MAX_WAITING} clients already wait for the device probe; ask again when it is done"
            ));
        }
        if start {
            self.start_locked(&mut s)?;
        }
        s.waiting.push(client);
        Ok(())
    }

    /// Start the probe that clients wait for, if it was held; if it cannot
    /// start, they are told so.
    pub fn start(&self) {
        let mut s = lock(&self.slot);
        if s.waiting.is_empty() {
            return;
        }
        if let Err(e) = self.start_locked(&mut s) {
            log::error!("devices: {e}");
            for client in std::mem::take(&mut s.waiting) {
                let _ = self.replies.send(Reply {
                    client,
                    responses: vec![Response::Error(e.clone())],
                });
            }
        }
    }

    fn start_locked(&self, s: &mut Slot) -> Result<(), String> {
        if !s.started {
            self.jobs
                .try_send(())
                .map_err(|_| "the device probe is not running (its thread ended)".to_string())?;
            s.started = true;
            s.since = Some(Instant::now());
        }
        Ok(())
    }

    /// Whether a probe runs (or was handed over and has not ended) and
    /// holds switches back: one past [`PROBE_OVERDUE`] does not.
    pub fn running(&self) -> bool {
        let s = lock(&self.slot);
        s.started && !s.overdue()
    }

    /// Tell the clients of a probe past [`PROBE_OVERDUE`] that it will not
    /// answer (once; logged once).
    pub fn expire(&self) {
        let mut s = lock(&self.slot);
        if !s.overdue() || s.waiting.is_empty() {
            return;
        }
        log::warn!(
            "devices: the probe has not ended in {} s; a device or sound server does not answer",
            PROBE_OVERDUE.as_secs()
        );
        for client in std::mem::take(&mut s.waiting) {
            let _ = self.replies.send(Reply {
                client,
                responses: vec![Response::Error(stuck_message())],
            });
        }
    }

    /// The listing of the last probe that ended, and when, once.
    pub fn take_done(&self) -> Option<(Instant, Vec<DeviceItem>)> {
        lock(&self.slot).done.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tester q's F4: a probe stuck in a sound server's library held every
    /// later switch back, for good. Past its limit it holds nothing back,
    /// its clients are told, and a new probe is refused until it ends.
    #[test]
    fn a_stuck_probe_holds_nothing_back_after_its_limit() {
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = Mutex::new(release_rx);
        let probe: Prober = Box::new(move || {
            let _ = release_rx.lock().unwrap().recv();
            Vec::new()
        });
        let (replies, rx) = mpsc::channel();
        let limit = Duration::from_millis(200);
        let p = ProbeThread::spawn_with(probe, replies, limit).unwrap();
        p.ask(7, true).unwrap();
        assert!(p.running(), "a fresh probe holds switches back");
        p.expire();
        assert!(rx.try_recv().is_err(), "nobody is told before the limit");
        std::thread::sleep(limit + Duration::from_millis(50));
        assert!(!p.running(), "past its limit it holds nothing back");
        p.expire();
        let r = rx.try_recv().expect("its client is told");
        assert_eq!(r.client, 7);
        assert!(matches!(&r.responses[0], Response::Error(e) if e.contains("has not ended")));
        p.expire();
        assert!(rx.try_recv().is_err(), "once");
        assert!(p.ask(8, true).unwrap_err().contains("has not ended"));
        // When it does end, probes work again.
        release_tx.send(()).unwrap();
        let t = Instant::now();
        while lock(&p.slot).started && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(p.ask(9, true).is_ok());
        release_tx.send(()).unwrap();
        let r = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(r.client, 9);
        assert!(matches!(r.responses[0], Response::Devices(_)));
    }
}
