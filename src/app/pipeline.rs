//! Building and tearing down the thread graph: rings, workers, the OSC
//! sender, control, the WebSocket and HTTP servers and the capture thread,
//! in start order; and switching the capture device at runtime.

use super::devices::{AppDevices, SwitchRequest};
use crate::capture::thread::{self as capture, BlockTx, CaptureCtx, CaptureEvent, CaptureSpec};
use crate::config::{AudioConfig, Config};
use crate::control::state::State;
use crate::control::{Controller, Shared};
use crate::dsp::biquad::BandPass;
use crate::dsp::params::{DspParams, ParamsHub};
use crate::dsp::worker::{self, BandsWorker, FrameTx, SpectrumWorker, WorkerCtx, FRAME_RING};
use crate::rt::Wake;
use crate::service::logging::RateLimit;
use crate::stats::{DeviceInfo, Role, Stats};
use crate::transport::osc::{self, Meta, OscCtx, OscSender};
use crate::transport::ws::{self, WsCtx};
use crate::types::{BandsFrame, Block, SpectrumFrame};
use anyhow::Context;
use ringbuf::traits::Split;
use ringbuf::HeapRb;
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

/// The running threads and the handles the supervisor needs.
pub struct Pipeline {
    /// State changes from the capture thread.
    pub events: Receiver<CaptureEvent>,
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
    events_tx: Sender<CaptureEvent>,
    switches: Receiver<SwitchRequest>,
    max_frames: Option<u64>,
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
        let mut control_tx = None;
        if config.ws.enabled {
            let (req_tx, req_rx) = std::sync::mpsc::channel();
            control_tx = Some(req_tx.clone());
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
                shared: shared.clone(),
                requests: req_tx,
                replies: rep_rx,
            };
            threads.extend(ws::spawn(ctx, bands_ws_rx, spec_ws_rx).with_context(|| {
                format!("WebSocket server on {}:{}", config.ws.bind, config.ws.port)
            })?);
            threads.push(
                crate::transport::http::spawn(&config.ws, stop.clone()).with_context(|| {
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
                control: control_tx,
            },
            rig_pending,
        )?);

        // Capture last: everything downstream is ready for its first block.
        let (ev_tx, ev_rx) = std::sync::mpsc::channel();
        let capture = spawn_capture(
            &config.audio,
            config,
            opts.max_frames,
            block_txs,
            &stats,
            &capture_stop,
            &stop_fd,
            &ev_tx,
        )?;

        Ok(Pipeline {
            events: ev_rx,
            open_fail_limit: RateLimit::new(Duration::from_secs(30)),
            params,
            meta,
            shared,
            config: config.clone(),
            stop,
            capture_stop,
            stop_fd,
            events_tx: ev_tx,
            switches: switch_rx,
            max_frames: opts.max_frames,
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

    /// Carry out device switches control asked for.
    pub fn poll_switches(&mut self) {
        while let Ok(req) = self.switches.try_recv() {
            let r = self.switch_device(&req.name);
            let _ = req.reply.send(r);
        }
    }

    /// Stop the capture thread and take back its ring producers.
    fn stop_capture(&mut self) -> Option<Vec<BlockTx>> {
        let h = self.capture.take()?;
        self.capture_stop.store(true, Ordering::SeqCst);
        let _ = self.stop_fd.write(1);
        let outputs = h.join().ok();
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
        let h = spawn_capture(
            audio,
            &self.config,
            self.max_frames,
            outputs,
            &self.stats,
            &self.capture_stop,
            &self.stop_fd,
            &self.events_tx,
        )?;
        self.capture = Some(h);
        Ok(())
    }

    /// Wait for the capture thread to open its source: the device info, or
    /// why it did not open within `wait`.
    fn wait_opened(&mut self, wait: Duration) -> Result<DeviceInfo, String> {
        match self.events.recv_timeout(wait) {
            Ok(CaptureEvent::Opened { info, .. }) => Ok(info),
            Ok(CaptureEvent::OpenFailed { error, .. }) | Ok(CaptureEvent::Fatal(error)) => {
                Err(error)
            }
            Ok(CaptureEvent::Gone(e)) => Err(e),
            Ok(CaptureEvent::Ended) => Err("input ended at once".into()),
            Err(_) => Err(format!("did not open within {:.1} s", wait.as_secs_f64())),
        }
    }

    /// Switch capture to the ALSA PCM `name`; roll back to the current
    /// source when it does not open in time.
    pub fn switch_device(&mut self, name: &str) -> Result<(), String> {
        let old = self.config.audio.clone();
        let mut new = old.clone();
        new.device = name.to_string();
        new.input.clear();
        new.loop_input = false;
        log::info!("capture: switching to {name:?} (requested over WebSocket)");
        let outputs = self
            .stop_capture()
            .ok_or_else(|| "the capture thread could not be stopped".to_string())?;
        self.start_capture(&new, outputs)
            .map_err(|e| e.to_string())?;
        match self.wait_opened(SWITCH_OPEN_WAIT) {
            Ok(info) => {
                log::info!("capture: now on {} at {} Hz", info.name, info.rate);
                self.stats.set_device_info(info.clone());
                self.config.audio = new;
                self.update_meta(&info);
                *self.shared.device.lock().unwrap_or_else(|e| e.into_inner()) =
                    (None, name.to_string());
                Ok(())
            }
            Err(e) => {
                log::warn!(
                    "capture: {name:?} failed ({e}); rolling back to {:?}",
                    source_name(&old)
                );
                let outputs = self
                    .stop_capture()
                    .ok_or_else(|| "the capture thread could not be stopped".to_string())?;
                self.start_capture(&old, outputs)
                    .map_err(|e| e.to_string())?;
                match self.wait_opened(SWITCH_OPEN_WAIT) {
                    Ok(info) => {
                        self.stats.set_device_info(info.clone());
                        self.update_meta(&info);
                    }
                    Err(e2) => log::warn!(
                        "capture: the previous device did not reopen either ({e2}); retrying"
                    ),
                }
                Err(e)
            }
        }
    }

    /// Stop every thread; wait at most `max` for them.
    pub fn stop(&mut self, max: Duration) {
        self.stop.store(true, Ordering::SeqCst);
        self.capture_stop.store(true, Ordering::SeqCst);
        let _ = self.stop_fd.write(1);
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

fn source_name(a: &AudioConfig) -> &str {
    if a.input.is_empty() {
        &a.device
    } else {
        &a.input
    }
}

#[allow(clippy::too_many_arguments)]
fn spawn_capture(
    audio: &AudioConfig,
    config: &Config,
    max_frames: Option<u64>,
    outputs: Vec<BlockTx>,
    stats: &Arc<Stats>,
    stop: &Arc<AtomicBool>,
    stop_fd: &nix::sys::eventfd::EventFd,
    events: &Sender<CaptureEvent>,
) -> anyhow::Result<JoinHandle<Vec<BlockTx>>> {
    let spec = CaptureSpec {
        audio: audio.clone(),
        realtime: config.realtime.clone(),
        max_frames,
    };
    capture::spawn(
        spec,
        outputs,
        CaptureCtx {
            stats: stats.clone(),
            stop: stop.clone(),
            stop_fd: stop_fd.as_fd().as_raw_fd(),
            events: events.clone(),
        },
    )
    .context("spawn capture thread")
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
