//! Starting the thread graph. [`Pipeline::start`] reads as the start order:
//! the rings from the workers to their consumers, the two DSP workers, the
//! monitor, the OSC sender, control with the WebSocket and HTTP servers, the
//! rig outputs, and the capture thread last, so that everything downstream
//! is ready for its first block.
//!
//! Runs once on the supervisor's thread, before READY; every step that
//! cannot start its thread fails the start with the thread's name.

use super::{spawn_capture, Pipeline};
use crate::app::devices::{AppDevices, SwitchRequest};
use crate::capture::thread::BlockTx;
use crate::config::{Config, CpuPin};
use crate::control::state::State;
use crate::control::{Controller, Shared};
use crate::dsp::params::{DspParams, ParamsHub};
use crate::dsp::worker::{self, BandsWorker, FrameTx, SpectrumWorker, WorkerCtx, FRAME_RING};
use crate::monitor::{self, MonitorHub};
use crate::rig::{ControlAccess, RigPending};
use crate::rt::{touched_ring, StopFd, Wake};
use crate::service::logging::RateLimit;
use crate::stats::{Role, Stats};
use crate::transport::osc::{self, Meta, OscCtx, OscSender};
use crate::transport::ws::{self, WsCtx};
use crate::types::{BandsFrame, Block, SpectrumFrame};
use anyhow::Context;
use ringbuf::HeapCons;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

impl Pipeline {
    /// Build rings and start every thread. `config` is the configuration
    /// with the runtime `state` already layered over it; `base` is the
    /// configuration as loaded (control layers later changes over it).
    pub fn start(
        config: &Config,
        base: &Config,
        state: &State,
        stats: Arc<Stats>,
        opts: &crate::app::RunOptions,
    ) -> anyhow::Result<Self> {
        let mut g = Graph::new(config, stats)?;
        pin_hot_threads(config.realtime.cpu, &g.stats);
        let out = g.output_rings();
        g.spawn_workers(out.bands, out.spectrum)?;
        let monitor = g.spawn_monitor()?;
        g.spawn_osc(out.osc)?;
        let front = g.spawn_front(base, state, out.ws, monitor)?;
        g.block_txs.extend(out.rig_blocks);
        g.spawn_rig(out.rig, &front.shared, front.control)?;
        g.spawn_capture_and_finish(front.shared, front.switches, opts.max_audio_s)
    }
}

/// What the start steps share and what they add to.
struct Graph<'a> {
    config: &'a Config,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    /// Fired with `stop` (threads that wait on sockets sleep until it).
    stop_all: StopFd,
    params: Arc<ParamsHub>,
    meta: Arc<Mutex<Meta>>,
    /// SCHED_FIFO priority of the workers, if real time is on.
    rt_worker: Option<u8>,
    /// Blocks each worker's input ring holds.
    block_cap: usize,
    threads: Vec<JoinHandle<()>>,
    /// Threads that finish writing files when they stop.
    savers: Vec<JoinHandle<()>>,
    wakes: Vec<Arc<Wake>>,
    roles: Vec<Role>,
    /// The capture thread's outputs, in the order it feeds them.
    block_txs: Vec<BlockTx>,
}

/// The rings from the workers to each consumer, made before the workers
/// start (they are given their producers).
struct Outputs {
    bands: Vec<FrameTx<BandsFrame>>,
    spectrum: Vec<FrameTx<SpectrumFrame>>,
    /// The OSC sender's ends and the wake the workers ring.
    osc: Option<(HeapCons<BandsFrame>, HeapCons<SpectrumFrame>, Arc<Wake>)>,
    /// The WebSocket broadcaster's ends.
    ws: Option<(HeapCons<BandsFrame>, HeapCons<SpectrumFrame>)>,
    rig: RigPending,
    rig_blocks: Option<BlockTx>,
}

/// What the control and WebSocket step leaves for the later ones.
struct Front {
    shared: Arc<Shared>,
    switches: Receiver<SwitchRequest>,
    control: Option<ControlAccess>,
}

impl<'a> Graph<'a> {
    fn new(config: &'a Config, stats: Arc<Stats>) -> anyhow::Result<Self> {
        let dsp = DspParams::from_config(config);
        let a = &config.audio;
        Ok(Graph {
            config,
            stats,
            stop: Arc::new(AtomicBool::new(false)),
            stop_all: StopFd::new().context("eventfd")?,
            params: Arc::new(ParamsHub::new(dsp)),
            meta: Arc::new(Mutex::new(Meta::default())),
            rt_worker: config
                .realtime
                .enabled
                .then_some(config.realtime.worker_priority),
            block_cap: super::block_ring_capacity(a.block_frames, a.sample_rate_hz),
            threads: Vec::new(),
            savers: Vec::new(),
            wakes: Vec::new(),
            roles: vec![Role::Capture, Role::Bands, Role::Spectrum],
            block_txs: Vec::new(),
        })
    }

    /// Rings to the OSC sender and the WebSocket broadcaster (for what is
    /// enabled) and to the rig outputs.
    fn output_rings(&self) -> Outputs {
        let mut bands = Vec::new();
        let mut spectrum = Vec::new();
        let osc = self.config.osc.enabled.then(|| {
            let wake = Arc::new(Wake::new());
            let (b, s) = frame_rings(&mut bands, &mut spectrum, &wake);
            (b, s, wake)
        });
        // The broadcaster sleeps in poll() on its sockets and drains its
        // rings on its own clock, so it registers no thread to wake: a
        // worker's wake() is then a no-op.
        let ws = self
            .config
            .ws
            .enabled
            .then(|| frame_rings(&mut bands, &mut spectrum, &Arc::new(Wake::new())));
        let (taps, rig) = crate::rig::taps(self.config, self.block_cap);
        bands.extend(taps.bands);
        spectrum.extend(taps.spectrum);
        Outputs {
            bands,
            spectrum,
            osc,
            ws,
            rig,
            rig_blocks: taps.blocks,
        }
    }

    /// The bands worker and the spectrum worker, each with its input ring
    /// from the capture thread (bands first: it feeds `/audio/lmh`).
    fn spawn_workers(
        &mut self,
        bands: Vec<FrameTx<BandsFrame>>,
        spectrum: Vec<FrameTx<SpectrumFrame>>,
    ) -> anyhow::Result<()> {
        let c = self.config;
        let sr = c.audio.sample_rate_hz;
        let dsp = self.params.current();
        let bands_worker = BandsWorker::new(
            sr,
            c.audio.block_frames as usize,
            c.fft.window_frames as usize,
            &dsp,
        );
        self.spawn_worker(Role::Bands, 0, bands_worker, bands)
            .context("spawn bands worker")?;
        let spectrum_worker = SpectrumWorker::new(
            sr,
            c.fft.window_frames as usize,
            c.fft.hop_frames as usize,
            &dsp,
        );
        self.spawn_worker(Role::Spectrum, 1, spectrum_worker, spectrum)
            .context("spawn spectrum worker")
    }

    fn spawn_worker<P: worker::Processor>(
        &mut self,
        role: Role,
        drop_slot: usize,
        proc: P,
        outputs: Vec<FrameTx<P::Frame>>,
    ) -> std::io::Result<()> {
        let wake = Arc::new(Wake::new());
        let (tx, rx) = touched_ring(self.block_cap, Block::zeroed());
        self.block_txs.push(BlockTx {
            prod: tx,
            wake: wake.clone(),
            drop_slot,
            gate: None,
        });
        let ctx = WorkerCtx {
            role,
            stats: self.stats.clone(),
            stop: self.stop.clone(),
            wake: wake.clone(),
            // The spectrum worker just below the bands worker (which
            // shares its CPU): a spectrum that takes the whole CPU (a hop
            // of 16 at 192 kHz) starved it at the same priority, and
            // `/audio/lmh` stopped with it. Still above the OSC sender, so
            // that the sender wakes once per block, after both; a worker
            // behind real time pauses for it (`worker::run`).
            rt_priority: match role {
                Role::Spectrum => self.rt_worker.map(|p| p.saturating_sub(1).max(1)),
                _ => self.rt_worker,
            },
        };
        self.threads.push(worker::spawn(
            proc,
            rx,
            outputs,
            self.params.subscribe(),
            ctx,
        )?);
        self.wakes.push(wake);
        Ok(())
    }

    /// The monitor stream, recordings and the replay buffer (`p4-monitor`,
    /// `p4-record`), fed through a gated ring; only with the WebSocket
    /// server, which is how anyone listens or records.
    fn spawn_monitor(&mut self) -> anyhow::Result<Option<monitor::Spawned>> {
        let config = self.config;
        if !config.ws.enabled {
            return Ok(None);
        }
        let hub = MonitorHub::new(config);
        let wake = Arc::new(Wake::new());
        let (tx, rx) = touched_ring(4 * self.block_cap, Block::zeroed());
        self.block_txs.push(BlockTx {
            prod: tx,
            wake: wake.clone(),
            drop_slot: monitor::MONITOR_DROP_SLOT,
            gate: Some(hub.gate.clone()),
        });
        let mut spawned = monitor::spawn(
            config,
            hub,
            rx,
            wake.clone(),
            self.stats.clone(),
            self.stop.clone(),
        )
        .context("spawn monitor threads")?;
        self.threads.append(&mut spawned.threads);
        self.savers.extend(spawned.recorder.take());
        self.wakes.push(wake);
        Ok(Some(spawned))
    }

    /// The OSC sender, at a priority just below the workers'.
    fn spawn_osc(
        &mut self,
        rings: Option<(HeapCons<BandsFrame>, HeapCons<SpectrumFrame>, Arc<Wake>)>,
    ) -> anyhow::Result<()> {
        let Some((bands, spectrum, wake)) = rings else {
            return Ok(());
        };
        let osc = &self.config.osc;
        let sender = OscSender::new(osc, self.stats.clone()).context("OSC socket")?;
        if sender.destinations().is_empty() {
            log::warn!(
                "osc: no destination could be resolved yet; retrying every {} s",
                osc.resolve_interval_s
            );
        } else {
            log::info!("osc: sending to {:?}", sender.destinations());
        }
        let ctx = OscCtx {
            stats: self.stats.clone(),
            stop: self.stop.clone(),
            wake: wake.clone(),
            meta: self.meta.clone(),
            rt_priority: self.rt_worker.map(|p| p.saturating_sub(5).max(1)),
        };
        self.threads
            .push(osc::spawn(sender, bands, spectrum, ctx).context("spawn OSC sender")?);
        self.roles.push(Role::Osc);
        self.wakes.push(wake);
        Ok(())
    }

    /// Control, the WebSocket server and the UI's HTTP server (all three
    /// only with `ws.enabled`: the WebSocket is the only way in).
    fn spawn_front(
        &mut self,
        base: &Config,
        state: &State,
        rings: Option<(HeapCons<BandsFrame>, HeapCons<SpectrumFrame>)>,
        monitor: Option<monitor::Spawned>,
    ) -> anyhow::Result<Front> {
        let config = self.config;
        let shared = Shared::new(config, state);
        let (switch_tx, switches) = std::sync::mpsc::channel();
        let Some((bands, spectrum)) = rings else {
            return Ok(Front {
                shared,
                switches,
                control: None,
            });
        };
        let (req_tx, req_rx) = std::sync::mpsc::channel();
        // One secret for every door that can change settings.
        let secret = crate::control::secret::load_or_create(config);
        match crate::control::secret::keep(&secret, self.stop_all.clone()) {
            Ok(keeper) => self.threads.extend(keeper),
            // Not worth a failed start: the token in force still works.
            Err(e) => log::warn!("ws: cannot start the control token's keeper: {e}"),
        }
        let control = Some(ControlAccess {
            requests: req_tx.clone(),
            secret: secret.clone(),
        });
        let (rep_tx, rep_rx) = std::sync::mpsc::channel();
        let controller = Controller::new(
            base,
            state.clone(),
            self.params.clone(),
            shared.clone(),
            Box::new(AppDevices::new(
                config.audio.clone(),
                switch_tx,
                self.stats.clone(),
            )),
        );
        // Control saves the state and the presets when it stops.
        self.savers.push(
            crate::control::spawn(controller, req_rx, rep_tx, self.stop.clone())
                .context("spawn control thread")?,
        );
        let (link, tickets) = match monitor {
            Some(m) => (Some(m.link), Some(m.tickets)),
            None => (None, None),
        };
        let ctx = WsCtx {
            config: config.clone(),
            stats: self.stats.clone(),
            stop: self.stop.clone(),
            stop_fd: self.stop_all.clone(),
            shared: shared.clone(),
            requests: req_tx,
            replies: rep_rx,
            monitor: link,
            secret,
        };
        let ws = &config.ws;
        let (threads, places) = ws::spawn(ctx, bands, spectrum)
            .with_context(|| format!("WebSocket server on {}:{}", ws.bind, ws.port))?;
        self.threads.extend(threads);
        self.threads.push(
            crate::transport::http::spawn(
                ws,
                recordings_access(config, tickets),
                places,
                self.stop.clone(),
                self.stop_all.clone(),
            )
            .with_context(|| format!("UI HTTP server on {}:{}", ws.bind, ws.http_port))?,
        );
        self.roles.push(Role::Ws);
        Ok(Front {
            shared,
            switches,
            control,
        })
    }

    /// mDNS, OSCQuery, the Link feed, MIDI clock and WLED, as enabled.
    fn spawn_rig(
        &mut self,
        pending: RigPending,
        shared: &Arc<Shared>,
        control: Option<ControlAccess>,
    ) -> anyhow::Result<()> {
        let ctx = crate::rig::RigCtx {
            config: self.config,
            stats: &self.stats,
            stop: &self.stop,
            stop_fd: &self.stop_all,
            rt_priority: self.rt_worker,
            meta: &self.meta,
            shared,
            control,
        };
        self.threads
            .extend(crate::rig::spawn_rig_outputs(ctx, pending)?);
        Ok(())
    }

    /// The capture thread, last: everything downstream is ready for its
    /// first block. It has its own stop flag and eventfd, so that a device
    /// switch can stop it alone.
    fn spawn_capture_and_finish(
        self,
        shared: Arc<Shared>,
        switches: Receiver<SwitchRequest>,
        max_audio_s: Option<f64>,
    ) -> anyhow::Result<Pipeline> {
        let config = self.config;
        let capture_stop = Arc::new(AtomicBool::new(false));
        let stop_fd = nix::sys::eventfd::EventFd::from_value_and_flags(
            0,
            nix::sys::eventfd::EfdFlags::EFD_NONBLOCK | nix::sys::eventfd::EfdFlags::EFD_CLOEXEC,
        )
        .context("eventfd")?;
        let (capture, events) = spawn_capture(
            &config.audio,
            config,
            max_audio_s,
            self.block_txs,
            &self.stats,
            &capture_stop,
            &stop_fd,
        )?;
        Ok(Pipeline {
            events,
            stale_events: VecDeque::new(),
            switch: None,
            open_fail_limit: RateLimit::new(Duration::from_secs(30)),
            params: self.params,
            meta: self.meta,
            shared,
            config: config.clone(),
            stop: self.stop,
            capture_stop,
            stop_fd,
            stop_all: self.stop_all,
            switches,
            max_audio_s,
            stats: self.stats,
            capture: Some(capture),
            resume_on: None,
            threads: self.threads,
            savers: self.savers,
            wakes: self.wakes,
            roles: self.roles,
            last_generation: 0,
        })
    }
}

/// A bands ring and a spectrum ring to one consumer woken by `wake`; the
/// producers join the workers' outputs, the consumers are returned.
fn frame_rings(
    bands: &mut Vec<FrameTx<BandsFrame>>,
    spectrum: &mut Vec<FrameTx<SpectrumFrame>>,
    wake: &Arc<Wake>,
) -> (HeapCons<BandsFrame>, HeapCons<SpectrumFrame>) {
    let (btx, brx) = touched_ring(FRAME_RING, BandsFrame::default());
    let (stx, srx) = touched_ring(FRAME_RING, SpectrumFrame::zeroed());
    bands.push(FrameTx {
        prod: btx,
        wake: wake.clone(),
    });
    spectrum.push(FrameTx {
        prod: stx,
        wake: wake.clone(),
    });
    (brx, srx)
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

/// Choose the CPU the per-block threads will share (`realtime.cpu`) before
/// any of them starts; each keeps itself there at its start.
fn pin_hot_threads(pin: CpuPin, stats: &Stats) {
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
