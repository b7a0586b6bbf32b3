//! Building and tearing down the thread graph: rings, workers, the OSC
//! sender, control, the WebSocket and HTTP servers and the capture thread,
//! in start order; and switching the capture device at runtime.
//!
//! Nothing here waits without a bound: the capture thread is given
//! [`CAPTURE_STOP_WAIT`] to stop, every join is a wait on a deadline, and a
//! device switch is a small state machine the supervisor advances on each
//! tick ([`Pipeline::poll_switches`], [`Pipeline::next_event`]), so that
//! signals, the watchdog and the health line keep going while a new device
//! opens.

use super::devices::{AppDevices, SwitchRequest};
use crate::capture::thread::{self as capture, BlockTx, CaptureCtx, CaptureEvent, CaptureSpec};
use crate::config::{AudioConfig, Config, MissingDevice};
use crate::control::state::State;
use crate::control::{Controller, Shared};
use crate::dsp::biquad::BandPass;
use crate::dsp::params::{DspParams, ParamsHub};
use crate::dsp::worker::{self, BandsWorker, FrameTx, SpectrumWorker, WorkerCtx, FRAME_RING};
use crate::monitor::{self, MonitorHub};
use crate::rt::Wake;
use crate::service::logging::RateLimit;
use crate::stats::{DeviceInfo, Role, Stats};
use crate::transport::osc::{self, Meta, OscCtx, OscSender};
use crate::transport::ws::{self, WsCtx};
use crate::types::{BandsFrame, Block, SpectrumFrame};
use anyhow::Context;
use ringbuf::traits::Split;
use ringbuf::HeapRb;
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
    threads: Vec<JoinHandle<()>>,
    wakes: Vec<Arc<Wake>>,
    roles: Vec<Role>,
    last_generation: u64,
}

impl Pipeline {
    /// Build rings and start every thread. `config` is the configuration
    /// with the runtime `state` already layered over it; `base` is the
    /// configuration as loaded (control layers later changes over it).
    pub fn start(
        config: &Config,
        base: &Config,
        state: &State,
        stats: Arc<Stats>,
        opts: &super::RunOptions,
    ) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let capture_stop = Arc::new(AtomicBool::new(false));
        let stop_fd = nix::sys::eventfd::EventFd::from_value_and_flags(
            0,
            nix::sys::eventfd::EfdFlags::EFD_NONBLOCK | nix::sys::eventfd::EfdFlags::EFD_CLOEXEC,
        )
        .context("eventfd")?;
        let stop_all = crate::rt::StopFd::new().context("eventfd")?;
        let dsp = DspParams::from_config(config);
        let params = Arc::new(ParamsHub::new(dsp));
        let a = &config.audio;
        let sr = a.sample_rate_hz;
        let cap = block_ring_capacity(a.block_frames, sr);
        let rt_worker = config
            .realtime
            .enabled
            .then_some(config.realtime.worker_priority);
        let meta = Arc::new(Mutex::new(Meta::default()));
        pin_hot_threads(config.realtime.cpu, &stats);

        // Output rings: workers → OSC.
        let mut threads = Vec::new();
        let mut wakes = Vec::new();
        let mut roles = vec![Role::Capture, Role::Bands, Role::Spectrum];
        let osc_wake = Arc::new(Wake::new());
        let (bands_osc_tx, bands_osc_rx) = HeapRb::<BandsFrame>::new(FRAME_RING).split();
        let (spec_osc_tx, spec_osc_rx) = HeapRb::<SpectrumFrame>::new(FRAME_RING).split();
        let mut bands_outputs = Vec::new();
        let mut spec_outputs = Vec::new();
        if config.osc.enabled {
            bands_outputs.push(FrameTx {
                prod: bands_osc_tx,
                wake: osc_wake.clone(),
            });
            spec_outputs.push(FrameTx {
                prod: spec_osc_tx,
                wake: osc_wake.clone(),
            });
        }

        // Output rings: workers → WebSocket. The broadcaster sleeps in
        // poll() on its sockets and drains these on its own clock, so it
        // registers no thread to wake: a worker's wake() is then a no-op.
        let ws_wake = Arc::new(Wake::new());
        let (bands_ws_tx, bands_ws_rx) = HeapRb::<BandsFrame>::new(FRAME_RING).split();
        let (spec_ws_tx, spec_ws_rx) = HeapRb::<SpectrumFrame>::new(FRAME_RING).split();
        if config.ws.enabled {
            bands_outputs.push(FrameTx {
                prod: bands_ws_tx,
                wake: ws_wake.clone(),
            });
            spec_outputs.push(FrameTx {
                prod: spec_ws_tx,
                wake: ws_wake.clone(),
            });
        }

        // Rig outputs (issue 13): their rings, only for what is enabled.
        let (rig_taps, rig_pending) = crate::rig::taps(config, cap);
        bands_outputs.extend(rig_taps.bands);
        spec_outputs.extend(rig_taps.spectrum);

        // Workers.
        let mut block_txs = Vec::new();
        let bands_wake = Arc::new(Wake::new());
        let (btx, brx) = HeapRb::<Block>::new(cap).split();
        block_txs.push(BlockTx {
            prod: btx,
            wake: bands_wake.clone(),
            drop_slot: 0,
            gate: None,
        });
        threads.push(
            worker::spawn(
                BandsWorker::new(
                    sr,
                    a.block_frames as usize,
                    config.fft.window_frames as usize,
                    &dsp,
                ),
                brx,
                bands_outputs,
                params.subscribe(),
                WorkerCtx {
                    role: Role::Bands,
                    stats: stats.clone(),
                    stop: stop.clone(),
                    wake: bands_wake.clone(),
                    rt_priority: rt_worker,
                },
            )
            .context("spawn bands worker")?,
        );
        let spec_wake = Arc::new(Wake::new());
        let (stx, srx) = HeapRb::<Block>::new(cap).split();
        block_txs.push(BlockTx {
            prod: stx,
            wake: spec_wake.clone(),
            drop_slot: 1,
            gate: None,
        });
        threads.push(
            worker::spawn(
                SpectrumWorker::new(
                    sr,
                    config.fft.window_frames as usize,
                    config.fft.hop_frames as usize,
                    &dsp,
                ),
                srx,
                spec_outputs,
                params.subscribe(),
                WorkerCtx {
                    role: Role::Spectrum,
                    stats: stats.clone(),
                    stop: stop.clone(),
                    wake: spec_wake.clone(),
                    rt_priority: rt_worker,
                },
            )
            .context("spawn spectrum worker")?,
        );
        wakes.push(bands_wake);
        wakes.push(spec_wake);

        // The monitor stream, recordings and the replay buffer.
        let monitor = spawn_monitor(config, &stats, &stop, &mut block_txs)?;
        let (monitor_link, tickets) = match monitor {
            Some((spawned, wake)) => {
                threads.extend(spawned.threads);
                wakes.push(wake);
                (Some(spawned.link), Some(spawned.tickets))
            }
            None => (None, None),
        };

        // OSC.
        if config.osc.enabled {
            let sender = OscSender::new(&config.osc, stats.clone()).context("OSC socket")?;
            if sender.destinations().is_empty() {
                log::warn!(
                    "osc: no destination could be resolved yet; retrying every {} s",
                    config.osc.resolve_interval_s
                );
            } else {
                log::info!("osc: sending to {:?}", sender.destinations());
            }
            threads.push(
                osc::spawn(
                    sender,
                    bands_osc_rx,
                    spec_osc_rx,
                    OscCtx {
                        stats: stats.clone(),
                        stop: stop.clone(),
                        wake: osc_wake.clone(),
                        meta: meta.clone(),
                        rt_priority: rt_worker.map(|p| p.saturating_sub(5).max(1)),
                    },
                )
                .context("spawn OSC sender")?,
            );
            roles.push(Role::Osc);
            wakes.push(osc_wake);
        } else {
            drop(bands_osc_rx);
            drop(spec_osc_rx);
        }

        // Control, WebSocket and HTTP.
        let shared = Shared::new(config, state);
        let (switch_tx, switch_rx) = std::sync::mpsc::channel();
        let mut control_access = None;
        if config.ws.enabled {
            let (req_tx, req_rx) = std::sync::mpsc::channel();
            // One secret for every door that can change settings.
            let secret = crate::control::secret::load_or_create(config);
            control_access = Some(crate::rig::ControlAccess {
                requests: req_tx.clone(),
                secret: secret.clone(),
            });
            let (rep_tx, rep_rx) = std::sync::mpsc::channel();
            let controller = Controller::new(
                base,
                state.clone(),
                params.clone(),
                shared.clone(),
                Box::new(AppDevices::new(config.audio.clone(), switch_tx)),
            );
            threads.push(
                crate::control::spawn(controller, req_rx, rep_tx, stop.clone())
                    .context("spawn control thread")?,
            );
            let ctx = WsCtx {
                config: config.clone(),
                stats: stats.clone(),
                stop: stop.clone(),
                stop_fd: stop_all.clone(),
                shared: shared.clone(),
                requests: req_tx,
                replies: rep_rx,
                monitor: monitor_link,
                secret,
            };
            threads.extend(ws::spawn(ctx, bands_ws_rx, spec_ws_rx).with_context(|| {
                format!("WebSocket server on {}:{}", config.ws.bind, config.ws.port)
            })?);
            threads.push(
                crate::transport::http::spawn(
                    &config.ws,
                    recordings_access(config, tickets),
                    stop.clone(),
                    stop_all.clone(),
                )
                .with_context(|| {
                    format!(
                        "UI HTTP server on {}:{}",
                        config.ws.bind, config.ws.http_port
                    )
                })?,
            );
            roles.push(Role::Ws);
        } else {
            drop((bands_ws_rx, spec_ws_rx, switch_tx));
        }

        // Rig outputs: mDNS, OSCQuery, Link feed, MIDI clock, WLED.
        block_txs.extend(rig_taps.blocks);
        threads.extend(crate::rig::spawn_rig_outputs(
            crate::rig::RigCtx {
                config,
                stats: &stats,
                stop: &stop,
                rt_priority: rt_worker,
                meta: &meta,
                shared: &shared,
                control: control_access,
            },
            rig_pending,
        )?);

        // Capture last: everything downstream is ready for its first block.
        let (capture, ev_rx) = spawn_capture(
            &config.audio,
            config,
            opts.max_audio_s,
            block_txs,
            &stats,
            &capture_stop,
            &stop_fd,
        )?;

        Ok(Pipeline {
            events: ev_rx,
            stale_events: VecDeque::new(),
            switch: None,
            open_fail_limit: RateLimit::new(Duration::from_secs(30)),
            params,
            meta,
            shared,
            config: config.clone(),
            stop,
            capture_stop,
            stop_fd,
            stop_all,
            switches: switch_rx,
            max_audio_s: opts.max_audio_s,
            stats: stats.clone(),
            capture: Some(capture),
            threads,
            wakes,
            roles,
            last_generation: 0,
        })
    }

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
                let _ = reply.send(Err(error));
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
        log::info!(
            "capture: switching to {:?} (requested over WebSocket)",
            req.name
        );
        if let Err(e) = self.restart_capture(&new) {
            let _ = req.reply.send(Err(e));
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
            let _ = reply.send(Err(error));
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
                *self.shared.device.lock().unwrap_or_else(|e| e.into_inner()) = (None, name);
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
                let _ = reply.send(Err(error));
            }
            (None, _) => {}
        }
    }

    /// Stop every thread; wait at most `max` for them.
    pub fn stop(&mut self, max: Duration) {
        self.stop.store(true, Ordering::SeqCst);
        self.capture_stop.store(true, Ordering::SeqCst);
        let _ = self.stop_fd.write(1);
        self.stop_all.fire();
        for w in &self.wakes {
            w.wake();
        }
        let deadline = Instant::now() + max;
        let mut handles: Vec<JoinHandle<()>> = std::mem::take(&mut self.threads);
        if let Some(c) = self.capture.take() {
            wait_until(&c, deadline);
            if c.is_finished() {
                let _ = c.join();
            }
        }
        for h in handles.drain(..) {
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

/// Start the monitor (`p4-monitor`, `p4-record`) and give capture its
/// gated ring; only with the WebSocket server, which is how anyone listens
/// or records.
fn spawn_monitor(
    config: &Config,
    stats: &Arc<Stats>,
    stop: &Arc<AtomicBool>,
    block_txs: &mut Vec<BlockTx>,
) -> anyhow::Result<Option<(monitor::Spawned, Arc<Wake>)>> {
    if !config.ws.enabled {
        return Ok(None);
    }
    let hub = MonitorHub::new(config);
    let wake = Arc::new(Wake::new());
    let cap = 4 * block_ring_capacity(config.audio.block_frames, config.audio.sample_rate_hz);
    let (tx, rx) = HeapRb::<Block>::new(cap).split();
    block_txs.push(BlockTx {
        prod: tx,
        wake: wake.clone(),
        drop_slot: monitor::MONITOR_DROP_SLOT,
        gate: Some(hub.gate.clone()),
    });
    let spawned = monitor::spawn(config, hub, rx, wake.clone(), stats.clone(), stop.clone())
        .context("spawn monitor threads")?;
    Ok(Some((spawned, wake)))
}

/// What the HTTP server needs to serve recordings.
fn recordings_access(
    config: &Config,
    tickets: Option<Arc<monitor::files::Tickets>>,
) -> Option<crate::transport::http_recordings::Access> {
    Some(crate::transport::http_recordings::Access {
        dir: config.state_dir()?.join(monitor::files::RECORDINGS_DIR),
        tickets: tickets?,
    })
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

/// Choose the CPU the per-block threads will share (`realtime.cpu`) before
/// any of them starts; each keeps itself there at its start.
fn pin_hot_threads(pin: crate::config::CpuPin, stats: &Stats) {
    match crate::rt::resolve_cpu(pin) {
        Ok(Some(cpu)) => {
            stats.rt_cpu.store(cpu as u32 + 1, Ordering::Relaxed);
            log::info!("capture, DSP workers and OSC sender share CPU {cpu} (realtime.cpu)");
        }
        Ok(None) => stats.rt_cpu.store(0, Ordering::Relaxed),
        Err(e) => {
            stats.rt_cpu.store(0, Ordering::Relaxed);
            log::warn!("realtime.cpu: {e}; leaving thread placement to the scheduler");
        }
    }
}
