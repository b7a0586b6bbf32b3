//! The running thread graph: rings, workers, the OSC sender, control, the
//! WebSocket and HTTP servers and the capture thread (started in that order
//! by [`Pipeline::start`], in `start.rs`); stopping it, and switching the
//! capture device at runtime.
//!
//! Nothing here waits without a bound: the capture thread is given
//! [`CAPTURE_STOP_WAIT`] to stop, every join is a wait on a deadline, and a
//! device switch is a small state machine the supervisor advances on each
//! tick ([`Pipeline::poll_switches`], [`Pipeline::next_event`]), so that
//! signals, the watchdog and the health line keep going while a new device
//! opens.

mod start;

use super::devices::SwitchRequest;
use crate::capture::thread::{self as capture, BlockTx, CaptureCtx, CaptureEvent, CaptureSpec};
use crate::config::{AudioConfig, Config, MissingDevice};
use crate::control::Shared;
use crate::dsp::biquad::BandPass;
use crate::dsp::params::{DspParams, ParamsHub};
use crate::rt::Wake;
use crate::service::logging::RateLimit;
use crate::stats::{DeviceInfo, Role, Stats};
use crate::transport::osc::Meta;
use anyhow::Context;
use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Blocks each worker's input ring holds: about a quarter second of audio.
pub fn block_ring_capacity(block_frames: u32, sample_rate: u32) -> usize {
    let per_s = sample_rate as f64 / block_frames.max(1) as f64;
    ((per_s * 0.25).ceil() as usize).clamp(16, 256)
}

/// A device switch in progress.
enum Switch {
    /// The capture thread runs on the new device; waiting for it to open.
    Opening {
        name: String,
        new: AudioConfig,
        old: AudioConfig,
        reply: Sender<Result<(), String>>,
        deadline: Instant,
    },
    /// The new device failed; the previous one is reopening.
    RollingBack {
        error: String,
        reply: Sender<Result<(), String>>,
        deadline: Instant,
    },
}

/// The running threads and the handles the supervisor needs.
pub struct Pipeline {
    /// State changes from the current capture thread.
    events: Receiver<CaptureEvent>,
    /// Events a previous capture thread sent before it stopped (logged, but
    /// never taken for news about the current device).
    stale_events: VecDeque<CaptureEvent>,
    switch: Option<Switch>,
    /// Rate limit for "cannot open device" warnings.
    pub open_fail_limit: RateLimit,
    /// The parameter hub (control writes here).
    pub params: Arc<ParamsHub>,
    /// What `/audio/meta` says.
    pub meta: Arc<Mutex<Meta>>,
    /// The settings as control publishes them (WebSocket meta).
    pub shared: Arc<Shared>,
    config: Config,
    stop: Arc<AtomicBool>,
    /// The capture thread has its own stop flag and eventfd, so that a
    /// device switch can stop it alone.
    capture_stop: Arc<AtomicBool>,
    stop_fd: nix::sys::eventfd::EventFd,
    /// Fired with `stop`: the threads that wait on sockets (WebSocket
    /// acceptor, UI server) sleep until it instead of ticking.
    stop_all: crate::rt::StopFd,
    switches: Receiver<SwitchRequest>,
    max_audio_s: Option<f64>,
    stats: Arc<Stats>,
    capture: Option<JoinHandle<Vec<BlockTx>>>,
    /// A capture thread that could not be stopped (stuck in a device's
    /// open, read or close) is still in `capture`, told to stop; when it
    /// has, capture starts again on this.
    resume_on: Option<AudioConfig>,
    threads: Vec<JoinHandle<()>>,
    /// Control and the recorder, which write the state, presets and the
    /// recording's end when they stop: they have [`SAVE_STOP_WAIT`].
    savers: Vec<JoinHandle<()>>,
    wakes: Vec<Arc<Wake>>,
    roles: Vec<Role>,
    last_generation: u64,
}

impl Pipeline {
    /// The threads whose heartbeats the watchdog checks.
    pub fn roles(&self) -> Vec<Role> {
        self.roles.clone()
    }

    /// Recompute `/audio/meta` after a device opened.
    pub fn update_meta(&mut self, info: &DeviceInfo) {
        self.shared.sample_rate.store(info.rate, Ordering::Relaxed);
        let p = self.params.current();
        let mut m = self.meta.lock().unwrap_or_else(|e| e.into_inner());
        *m = meta_for(&p, info.rate, self.config.audio.block_frames);
    }

    /// Refresh meta when the parameters changed.
    pub fn poll_params(&mut self) {
        let p = self.params.current();
        if p.generation != self.last_generation {
            self.last_generation = p.generation;
            let mut m = self.meta.lock().unwrap_or_else(|e| e.into_inner());
            if m.sr > 0 {
                *m = meta_for(&p, m.sr as u32, self.config.audio.block_frames);
            }
        }
    }

    /// Give consumers a moment to send what is still queued (input ended).
    pub fn drain_outputs(&self, wait: Duration) {
        for w in &self.wakes {
            w.wake();
        }
        std::thread::sleep(wait);
    }

    /// The next thing a capture thread reported, if any. Events of the
    /// current capture thread also advance a device switch in progress.
    pub fn next_event(&mut self) -> Option<CaptureEvent> {
        if let Some(ev) = self.stale_events.pop_front() {
            return Some(ev);
        }
        let ev = self.events.try_recv().ok()?;
        self.switch_event(&ev);
        Some(ev)
    }

    /// Carry out device switches control asked for, one at a time, and give
    /// up on a switch whose device does not open in time.
    pub fn poll_switches(&mut self) {
        self.resume_stuck_capture();
        let now = Instant::now();
        match self.switch.take() {
            Some(Switch::Opening {
                name,
                old,
                reply,
                deadline,
                ..
            }) if now >= deadline => {
                let e = format!(
                    "did not open within {:.1} s",
                    SWITCH_OPEN_WAIT.as_secs_f64()
                );
                self.roll_back(&name, old, reply, e);
            }
            Some(Switch::RollingBack {
                error,
                reply,
                deadline,
            }) if now >= deadline => {
                log::warn!(
                    "capture: the previous device did not reopen within {:.1} s; still retrying",
                    SWITCH_OPEN_WAIT.as_secs_f64()
                );
                let _ = reply.send(Err(format!(
                    "{error}; back on the previous device, which has not reopened yet (retrying)"
                )));
            }
            Some(busy) => self.switch = Some(busy),
            None => {
                if let Ok(req) = self.switches.try_recv() {
                    self.begin_switch(req);
                }
            }
        }
    }

    /// Stop the capture thread and take back its ring producers. Waits at
    /// most [`CAPTURE_STOP_WAIT`]; a thread that has not stopped by then is
    /// kept (still asked to stop) and `None` is returned.
    fn stop_capture(&mut self) -> Option<Vec<BlockTx>> {
        let h = self.capture.take()?;
        self.capture_stop.store(true, Ordering::SeqCst);
        let _ = self.stop_fd.write(1);
        wait_until(&h, Instant::now() + CAPTURE_STOP_WAIT);
        if !h.is_finished() {
            log::error!(
                "capture: the capture thread did not stop within {:.1} s",
                CAPTURE_STOP_WAIT.as_secs_f64()
            );
            self.capture = Some(h);
            return None;
        }
        let outputs = h.join().ok();
        // What it said before it stopped is history, not news about the
        // next device.
        while let Ok(ev) = self.events.try_recv() {
            self.stale_events.push_back(ev);
        }
        // A fresh flag and eventfd for the next capture thread.
        self.capture_stop = Arc::new(AtomicBool::new(false));
        if let Ok(fd) = nix::sys::eventfd::EventFd::from_value_and_flags(
            0,
            nix::sys::eventfd::EfdFlags::EFD_NONBLOCK | nix::sys::eventfd::EfdFlags::EFD_CLOEXEC,
        ) {
            self.stop_fd = fd;
        }
        outputs
    }

    fn start_capture(&mut self, audio: &AudioConfig, outputs: Vec<BlockTx>) -> anyhow::Result<()> {
        let (h, events) = spawn_capture(
            audio,
            &self.config,
            self.max_audio_s,
            outputs,
            &self.stats,
            &self.capture_stop,
            &self.stop_fd,
        )?;
        self.capture = Some(h);
        self.events = events;
        Ok(())
    }

    /// Stop the capture thread and start one on `audio`.
    fn restart_capture(&mut self, audio: &AudioConfig) -> Result<(), String> {
        let outputs = self
            .stop_capture()
            .ok_or_else(|| "the capture thread could not be stopped".to_string())?;
        self.start_capture(audio, outputs)
            .map_err(|e| format!("{e:#}"))
    }

    /// Start switching capture to the ALSA PCM `req.name`.
    fn begin_switch(&mut self, req: SwitchRequest) {
        let old = self.config.audio.clone();
        let mut new = old.clone();
        new.device = req.name.to_string();
        new.input.clear();
        new.loop_input = false;
        // A switch that fails rolls back; it never ends the service.
        new.on_missing_device = MissingDevice::Retry;
        // Who asked is said by control (a client's set_device, or the
        // state's chosen card once it is listed).
        log::info!("capture: switching to {:?}", req.name.as_str());
        if let Err(e) = self.restart_capture(&new) {
            let _ = req.reply.send(Err(self.after_failed_restart(e, old)));
            return;
        }
        self.switch = Some(Switch::Opening {
            name: req.name.to_string(),
            new,
            old,
            reply: req.reply,
            deadline: Instant::now() + SWITCH_OPEN_WAIT,
        });
    }

    /// Capture could not be restarted (`e`): when its thread is stuck, it
    /// starts again on `audio` once that thread has ended (see
    /// [`Pipeline::resume_stuck_capture`]). Says what happens, for the
    /// client that asked.
    fn after_failed_restart(&mut self, e: String, audio: AudioConfig) -> String {
        if self.capture.is_some() {
            let why = format!(
                "{e} (its device or sound server does not answer); capture starts again on {:?} when it does",
                source_name(&audio)
            );
            self.resume_on = Some(audio);
            why
        } else {
            format!("{e}; nothing is captured until another device is chosen")
        }
    }

    /// A stuck capture thread ended: start capture on what it was to
    /// resume on.
    fn resume_stuck_capture(&mut self) {
        if self.resume_on.is_none() || !self.capture.as_ref().is_some_and(|h| h.is_finished()) {
            return;
        }
        let Some(audio) = self.resume_on.take() else {
            return;
        };
        let Some(outputs) = self.stop_capture() else {
            return;
        };
        match self.start_capture(&audio, outputs) {
            Ok(()) => log::info!(
                "capture: the stuck capture thread ended; capturing from {:?} again",
                source_name(&audio)
            ),
            Err(e) => log::error!("capture: cannot start again after a stuck thread: {e:#}"),
        }
    }

    /// The switched-to device failed with `error`: go back to `old`.
    fn roll_back(
        &mut self,
        name: &str,
        mut old: AudioConfig,
        reply: Sender<Result<(), String>>,
        error: String,
    ) {
        log::warn!(
            "capture: {name:?} failed ({error}); rolling back to {:?}",
            source_name(&old)
        );
        old.on_missing_device = MissingDevice::Retry;
        if let Err(e) = self.restart_capture(&old) {
            log::error!("capture: cannot restart the previous device: {e}");
            let why = self.after_failed_restart(e, old);
            let _ = reply.send(Err(format!("{error}; {why}")));
            return;
        }
        self.switch = Some(Switch::RollingBack {
            error,
            reply,
            deadline: Instant::now() + SWITCH_OPEN_WAIT,
        });
    }

    /// Advance a switch in progress with an event of the current capture
    /// thread.
    fn switch_event(&mut self, ev: &CaptureEvent) {
        let failure = match ev {
            CaptureEvent::Opened { .. } => None,
            CaptureEvent::OpenFailed { error, .. }
            | CaptureEvent::Fatal { error, .. }
            | CaptureEvent::Gone(error) => Some(error.clone()),
            CaptureEvent::Ended => Some("input ended at once".into()),
        };
        match (self.switch.take(), failure) {
            (
                Some(Switch::Opening {
                    name, new, reply, ..
                }),
                None,
            ) => {
                log::info!("capture: now on {name}");
                self.config.audio = new;
                // The control thread names the device (with its index in
                // the listing) when it takes this reply; naming it here
                // first, without the index, let the broadcaster send a
                // meta with `index: null` in between.
                let _ = reply.send(Ok(()));
            }
            (
                Some(Switch::Opening {
                    name, old, reply, ..
                }),
                Some(e),
            ) => self.roll_back(&name, old, reply, e),
            (Some(Switch::RollingBack { error, reply, .. }), e2) => {
                if let Some(e2) = e2 {
                    log::warn!(
                        "capture: the previous device did not reopen either ({e2}); retrying"
                    );
                }
                let _ = reply.send(Err(format!("{error}; kept the previous device")));
            }
            (None, _) => {}
        }
    }

    /// Stop every thread; wait at most `max` for them, and at most
    /// [`SAVE_STOP_WAIT`] for the ones still writing files.
    pub fn stop(&mut self, max: Duration) {
        self.stop.store(true, Ordering::SeqCst);
        self.capture_stop.store(true, Ordering::SeqCst);
        let _ = self.stop_fd.write(1);
        self.stop_all.fire();
        for w in &self.wakes {
            w.wake();
        }
        let now = Instant::now();
        let deadline = now + max;
        let save_deadline = now + max.max(SAVE_STOP_WAIT);
        let savers = std::mem::take(&mut self.savers);
        let mut handles: Vec<JoinHandle<()>> = std::mem::take(&mut self.threads);
        if let Some(c) = self.capture.take() {
            wait_until(&c, deadline);
            if c.is_finished() {
                let _ = c.join();
            }
        }
        let handles = handles.drain(..).map(|h| (h, deadline));
        for (h, deadline) in handles.chain(savers.into_iter().map(|h| (h, save_deadline))) {
            wait_until(&h, deadline);
            if h.is_finished() {
                let _ = h.join();
            } else {
                log::warn!(
                    "thread {} did not stop in time; exiting without it",
                    h.thread().name().unwrap_or("?")
                );
            }
        }
    }
}

/// How long the threads that write files when they stop (the state, a
/// preset being saved, the end of a recording) have: a slow SD card's write
/// takes a second or more, and the unit's `TimeoutStopSec=5` is the hard
/// bound around it.
pub const SAVE_STOP_WAIT: Duration = Duration::from_millis(3500);

/// How long a switched-to device has to open before the switch is rolled back.
const SWITCH_OPEN_WAIT: Duration = Duration::from_secs(3);

/// How long the capture thread has to stop before a switch gives up on it.
/// It checks its stop flag on every block and every 20 ms while waiting for
/// a device, so this is a bound for a broken thread, not a normal wait.
pub const CAPTURE_STOP_WAIT: Duration = Duration::from_millis(500);

fn source_name(a: &AudioConfig) -> &str {
    if a.input.is_empty() {
        &a.device
    } else {
        &a.input
    }
}

/// Start a capture thread on `audio`, with its own event channel.
fn spawn_capture(
    audio: &AudioConfig,
    config: &Config,
    max_audio_s: Option<f64>,
    outputs: Vec<BlockTx>,
    stats: &Arc<Stats>,
    stop: &Arc<AtomicBool>,
    stop_fd: &nix::sys::eventfd::EventFd,
) -> anyhow::Result<(JoinHandle<Vec<BlockTx>>, Receiver<CaptureEvent>)> {
    let spec = CaptureSpec {
        audio: audio.clone(),
        realtime: config.realtime.clone(),
        max_audio_s,
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let h = capture::spawn(
        spec,
        outputs,
        CaptureCtx {
            stats: stats.clone(),
            stop: stop.clone(),
            stop_fd: stop_fd.as_fd().as_raw_fd(),
            events: tx,
        },
    )
    .context("spawn capture thread")?;
    Ok((h, rx))
}

fn wait_until<T>(h: &JoinHandle<T>, deadline: Instant) {
    while !h.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `/audio/meta` for parameters `p` at `sr`.
pub fn meta_for(p: &DspParams, sr: u32, block: u32) -> Meta {
    let mut bands = [(0.0f32, 0.0f32); 3];
    for (b, bp) in bands.iter_mut().zip(p.bands.iter()) {
        let f = BandPass::new(p.filter_order, bp.lo_hz as f64, bp.hi_hz as f64, sr as f64);
        *b = (f.lo_hz as f32, f.hi_hz as f32);
    }
    Meta {
        sr: sr as i32,
        blocksize: block as i32,
        n_fft_bins: p.n_bins as i32,
        bands,
    }
}
