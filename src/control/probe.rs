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
use std::time::Instant;

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
    /// The last probe's listing and when it ended, until control takes it.
    done: Option<(Instant, Vec<DeviceItem>)>,
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
    pub fn spawn(mut probe: Prober, replies: Sender<Reply>) -> std::io::Result<Self> {
        // One job at a time: control hands over a probe only when none runs.
        let (jobs, rx) = mpsc::sync_channel::<()>(1);
        let slot = Arc::new(Mutex::new(Slot::default()));
        let ours = slot.clone();
        let to_clients = replies.clone();
        std::thread::Builder::new()
            .stack_size(crate::rt::THREAD_STACK)
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
        if s.waiting.contains(&client) {
            return Ok(());
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
        }
        Ok(())
    }

    /// Whether a probe runs (or was handed over and has not ended).
    pub fn running(&self) -> bool {
        lock(&self.slot).started
    }

    /// The listing of the last probe that ended, and when, once.
    pub fn take_done(&self) -> Option<(Instant, Vec<DeviceItem>)> {
        lock(&self.slot).done.take()
    }
}
