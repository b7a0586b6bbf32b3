//! Wiring the rig outputs into the pipeline, in two steps the supervisor
//! calls: [`taps`] before the workers start (the extra rings they and the
//! capture thread push into, only for what is enabled), and
//! [`spawn_rig_outputs`] once the rest is up (the threads).

use super::hub::{self, HubInputs, HubOutputs, Latest};
use super::{link::LinkFeed, midi, outputs, wled::WledSender, TempoShare};
use crate::capture::thread::BlockTx;
use crate::config::Config;
use crate::control::secret::Secret;
use crate::control::{Request, Shared};
use crate::dsp::worker::{FrameTx, FRAME_RING};
use crate::rt::{touched_ring, Wake};
use crate::stats::{Stats, RIG_DROP_SLOT};
use crate::transport::osc::Meta;
use crate::types::{BandsFrame, Block, SpectrumFrame};
use anyhow::Context;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The producer ends the pipeline pushes into for the rig outputs.
#[derive(Default)]
pub struct RigTaps {
    /// For the bands worker's outputs.
    pub bands: Option<FrameTx<BandsFrame>>,
    /// For the spectrum worker's outputs.
    pub spectrum: Option<FrameTx<SpectrumFrame>>,
    /// For the capture thread's outputs (after the workers').
    pub blocks: Option<BlockTx>,
}

/// The consumer ends, kept until [`spawn_rig_outputs`].
pub struct RigPending {
    inputs: Option<HubInputs>,
}

/// Which outputs `config` turns on ([`outputs`] bits).
pub fn enabled(config: &Config) -> u8 {
    let mut e = 0;
    for (on, bit) in [
        (config.discovery.enabled, outputs::DISCOVERY),
        (config.oscquery.enabled, outputs::OSCQUERY),
        (config.link.enabled, outputs::LINK),
        (config.midi.enabled, outputs::MIDI),
        (config.wled.enabled, outputs::WLED),
        (
            config.oscquery.enabled && config.oscquery.input_port != 0,
            outputs::OSC_INPUT,
        ),
    ] {
        if on {
            e |= bit;
        }
    }
    e
}

/// The rings for what `config` enables; nothing at all when every rig
/// output is off. `block_cap` is the capacity of a worker's block ring.
pub fn taps(config: &Config, block_cap: usize) -> (RigTaps, RigPending) {
    let e = enabled(config);
    let wants_frames = e & (outputs::OSCQUERY | outputs::LINK | outputs::MIDI | outputs::WLED) != 0;
    if !wants_frames {
        return (RigTaps::default(), RigPending { inputs: None });
    }
    let wake = Arc::new(Wake::new());
    // The workers wake this one, which has no thread: `p4-rig` runs on its
    // own 10 ms clock (see `hub`).
    let no_thread = Arc::new(Wake::new());
    let (btx, brx) = touched_ring(FRAME_RING, BandsFrame::default());
    let (stx, srx) = touched_ring(FRAME_RING, SpectrumFrame::zeroed());
    let mut taps = RigTaps {
        bands: Some(FrameTx {
            prod: btx,
            wake: no_thread.clone(),
        }),
        spectrum: Some(FrameTx {
            prod: stx,
            wake: no_thread,
        }),
        blocks: None,
    };
    let mut blocks = None;
    if e & outputs::WLED != 0 {
        let (ptx, prx) = touched_ring(block_cap, Block::zeroed());
        taps.blocks = Some(BlockTx {
            prod: ptx,
            wake: wake.clone(),
            drop_slot: RIG_DROP_SLOT,
            gate: None,
        });
        blocks = Some(prx);
    }
    let inputs = HubInputs {
        blocks,
        bands: Some(brx),
        spectrum: Some(srx),
        wake,
    };
    (
        taps,
        RigPending {
            inputs: Some(inputs),
        },
    )
}

/// What the rig outputs are given by the supervisor.
pub struct RigCtx<'a> {
    /// The configuration in force.
    pub config: &'a Config,
    /// Counters.
    pub stats: &'a Arc<Stats>,
    /// Set to stop.
    pub stop: &'a Arc<AtomicBool>,
    /// Fired with `stop`: wakes the servers that wait on sockets.
    pub stop_fd: &'a crate::rt::StopFd,
    /// SCHED_FIFO priority for pulse timing (MIDI), if real time is on.
    pub rt_priority: Option<u8>,
    /// What `/audio/meta` says.
    pub meta: &'a Arc<Mutex<Meta>>,
    /// The settings in force.
    pub shared: &'a Arc<Shared>,
    /// The way to the control thread (when it runs).
    pub control: Option<ControlAccess>,
}

/// What may change settings: the control thread's queue and the secret
/// its clients must present.
pub struct ControlAccess {
    /// Commands to the control thread.
    pub requests: Sender<Request>,
    /// The control secret (the WebSocket's).
    pub secret: Secret,
}

/// Start the threads of every enabled rig output.
pub fn spawn_rig_outputs(
    ctx: RigCtx<'_>,
    pending: RigPending,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let RigCtx {
        config,
        stats,
        stop,
        stop_fd,
        rt_priority,
        meta,
        shared,
        control,
    } = ctx;
    let e = enabled(config);
    stats.rig.enabled.store(e, Ordering::Relaxed);
    let mut threads = Vec::new();
    if config.discovery.enabled {
        threads.extend(
            super::mdns::spawn(config, stats.clone(), stop.clone()).context("spawn mDNS thread")?,
        );
    }
    let Some(inputs) = pending.inputs else {
        return Ok(threads);
    };
    let mut out = open_senders(config, stats)?;
    if config.midi.enabled {
        let tempo = Arc::new(TempoShare::default());
        out.tempo = Some(tempo.clone());
        threads.push(
            midi::spawn(midi::MidiCtx {
                cfg: config.midi.clone(),
                tempo,
                stats: stats.clone(),
                stop: stop.clone(),
                rt_priority: rt_priority.map(|p| p.saturating_sub(5).max(1)),
            })
            .context("spawn MIDI clock thread")?,
        );
    }
    if config.oscquery.enabled {
        let latest = Arc::new(Latest::default());
        out.latest = Some(latest.clone());
        let live = super::oscquery::Live {
            latest,
            meta: meta.clone(),
            shared: Some(shared.clone()),
            config: Arc::new(config.clone()),
        };
        threads.extend(spawn_oscquery(
            config,
            live,
            control,
            stats,
            (stop, stop_fd),
        )?);
    }
    threads.push(hub::spawn(inputs, out, stats.clone(), stop.clone()).context("spawn p4-rig")?);
    Ok(threads)
}

/// The OSCQuery server's threads, and its OSC input port's when it has one.
fn spawn_oscquery(
    config: &Config,
    live: super::oscquery::Live,
    control: Option<ControlAccess>,
    stats: &Arc<Stats>,
    (stop, stop_fd): (&Arc<AtomicBool>, &crate::rt::StopFd),
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut threads = Vec::new();
    if config.oscquery.input_port != 0 {
        threads.push(spawn_input(
            config,
            live.clone(),
            control,
            stats,
            (stop, stop_fd),
        )?);
    }
    threads.extend(
        super::oscquery::spawn(config, live, stats.clone(), stop.clone(), stop_fd.clone())
            .with_context(|| {
                format!(
                    "OSCQuery server on {}:{}",
                    config.oscquery.bind, config.oscquery.port
                )
            })?,
    );
    Ok(threads)
}

/// The hub's outputs that are sockets of its own: WLED and the Link feed.
fn open_senders(config: &Config, stats: &Arc<Stats>) -> anyhow::Result<HubOutputs> {
    let mut out = HubOutputs::default();
    if config.wled.enabled {
        let w = WledSender::new(&config.wled, config.silence.threshold_dbfs, stats.clone())
            .context("WLED socket")?;
        // A name is resolved off this thread: say which one, not "None".
        let to = match w.destination() {
            Some(addr) => addr.to_string(),
            None => format!(
                "{}:{} (resolving the name)",
                config.wled.host, config.wled.port
            ),
        };
        log::info!(
            "wled: Audio Sync v2 to {to} every {} ms",
            config.wled.interval_ms
        );
        out.wled = Some(w);
    }
    if config.link.enabled {
        out.link = Some(
            LinkFeed::new(config.link.feed_port, config.link.quantum, stats.clone())
                .context("Link feed socket")?,
        );
        log::info!(
            "link: tempo feed to phase4-link on 127.0.0.1:{}",
            config.link.feed_port
        );
    }
    Ok(out)
}

fn spawn_input(
    config: &Config,
    live: super::oscquery::Live,
    control: Option<ControlAccess>,
    stats: &Arc<Stats>,
    (stop, stop_fd): (&Arc<AtomicBool>, &crate::rt::StopFd),
) -> anyhow::Result<JoinHandle<()>> {
    let q = &config.oscquery;
    let control = control.context("the OSC input port needs the control thread (ws.enabled)")?;
    let sock = crate::transport::bind::udp(&q.bind, q.input_port, "osc-in")
        .with_context(|| format!("OSC input port {}:{}", q.bind, q.input_port))?;
    log::info!(
        "osc-in: settings on UDP {}:{}; {}others after {} with the control token",
        q.bind,
        q.input_port,
        if config.ws.trust_loopback {
            "this machine may write, "
        } else {
            ""
        },
        super::oscquery::input::AUTH
    );
    super::oscquery::input::spawn(super::oscquery::input::InputCtx {
        sock,
        live,
        requests: control.requests,
        secret: control.secret,
        trust_loopback: config.ws.trust_loopback,
        max_per_s: q.max_input_per_s,
        stats: stats.clone(),
        stop: stop.clone(),
        stop_fd: stop_fd.clone(),
    })
    .context("spawn OSC input thread")
}
