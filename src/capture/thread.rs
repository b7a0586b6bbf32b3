//! The capture thread (`p4-capture`): opens the source inside itself, then
//! reads, numbers and stamps blocks and pushes each into every worker's ring.
//!
//! A full ring on a clocked source means that worker fell behind: the block is
//! dropped for that worker and counted. A source without a clock (a WAV file
//! read offline, ALSA's `null`/`file` plugins) is simply faster than real time,
//! so there the thread waits for space instead and loses nothing.
//!
//! A device that cannot be opened, or goes away, is retried with backoff
//! (initial delay doubling to the maximum) and the thread recovers by itself
//! when it returns; `audio.on-missing-device = "fail"` makes a device that is
//! missing at start fatal instead.
//!
//! Real-time safety: after a source is open, the loop only reads, converts,
//! bumps atomics and pushes `Copy` blocks into wait-free rings. It never logs:
//! it reports state changes through [`CaptureEvent`]s, sent only when a device
//! opens, fails or goes away (never per block), and the supervisor logs them.

use super::alsa::AlsaSource;
use super::wav_source::WavSource;
use super::{CaptureError, ReadOutcome, Source};
use crate::config::{AudioConfig, MissingDevice, RealtimeConfig};
use crate::rt::{RtGrant, Wake};
use crate::stats::{DeviceInfo, Role, Stats};
use crate::types::Block;
use ringbuf::traits::{Observer, Producer};
use ringbuf::HeapProd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// One worker's input: the ring producer, how to wake the worker, and which
/// drop counter to bump.
pub struct BlockTx {
    /// The ring.
    pub prod: HeapProd<Block>,
    /// Wakes the worker after a push.
    pub wake: Arc<Wake>,
    /// Index into `Stats::ring_drops`.
    pub drop_slot: usize,
    /// Push only while this is set (the monitor's ring: someone listens or
    /// records); `None`: always.
    pub gate: Option<Arc<AtomicBool>>,
}

/// What the capture thread tells the supervisor.
#[derive(Debug)]
pub enum CaptureEvent {
    /// A source opened.
    Opened {
        /// What is open.
        info: DeviceInfo,
        /// SCHED_FIFO for the capture thread.
        rt: RtGrant,
    },
    /// Opening failed; retrying in `retry_s`.
    OpenFailed {
        /// Why.
        error: String,
        /// Next attempt after.
        retry_s: f64,
    },
    /// Capture cannot go on: opening failed and the configuration says not
    /// to retry, or the input cannot be used.
    Fatal {
        /// Why.
        error: String,
        /// Whose fault it is (the exit status depends on it).
        kind: FatalKind,
    },
    /// The device went away while capturing; reopening.
    Gone(String),
    /// The input ended (WAV without loop, or the frame limit was reached).
    Ended,
}

/// Why capture gave up, as far as a restart could help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FatalKind {
    /// The configuration asks for something that is not there or cannot
    /// work (a missing or unusable WAV input, a channel the input does not
    /// have, a missing device with `on-missing-device = "fail"`): restarting
    /// with the same configuration cannot help.
    Config,
    /// Something failed while running (an I/O error reading the input).
    Runtime,
}

impl CaptureError {
    /// Whose fault a fatal failure of this kind is.
    pub fn fatal_kind(&self) -> FatalKind {
        match self {
            CaptureError::Open { .. } | CaptureError::Wav { .. } => FatalKind::Config,
            CaptureError::Gone { .. } | CaptureError::WavIo { .. } => FatalKind::Runtime,
        }
    }
}

/// What the capture thread runs.
#[derive(Clone, Debug)]
pub struct CaptureSpec {
    /// Device or WAV input, format, block size.
    pub audio: AudioConfig,
    /// Scheduling.
    pub realtime: RealtimeConfig,
    /// Stop after this many seconds of audio, counted at the rate of the
    /// source actually open (tests, benchmarks, `--duration`).
    pub max_audio_s: Option<f64>,
}

/// Shared handles the thread needs.
pub struct CaptureCtx {
    /// Counters.
    pub stats: Arc<Stats>,
    /// Set to stop.
    pub stop: Arc<AtomicBool>,
    /// Readable when stopping (wakes a poll on the PCM).
    pub stop_fd: std::os::fd::RawFd,
    /// State changes for the supervisor.
    pub events: Sender<CaptureEvent>,
}

/// Start the capture thread. It returns its ring producers when it ends, so
/// a restarted capture (device switch) can reuse them.
pub fn spawn(
    spec: CaptureSpec,
    outputs: Vec<BlockTx>,
    ctx: CaptureCtx,
) -> std::io::Result<JoinHandle<Vec<BlockTx>>> {
    std::thread::Builder::new()
        .stack_size(crate::rt::THREAD_STACK)
        .name("p4-capture".into())
        .spawn(move || run(spec, outputs, ctx))
}

fn open_source(spec: &CaptureSpec, ctx: &CaptureCtx) -> Result<Box<dyn Source>, CaptureError> {
    let a = &spec.audio;
    if a.input.is_empty() {
        Ok(Box::new(AlsaSource::open(a, ctx.stop_fd)?))
    } else {
        Ok(Box::new(WavSource::open(
            &PathBuf::from(&a.input),
            a.channel,
            a.block_frames as usize,
            a.loop_input,
            ctx.stop.clone(),
            &|| ctx.stats.beat(Role::Capture),
        )?))
    }
}

/// Sleep up to `s` seconds, returning early (false) when stopping. Keeps the
/// heartbeat going: waiting for a missing device is not a hang.
fn sleep_unless_stopped(ctx: &CaptureCtx, s: f64) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs_f64(s);
    while std::time::Instant::now() < deadline {
        if ctx.stop.load(Ordering::Relaxed) {
            return false;
        }
        ctx.stats.beat(Role::Capture);
        std::thread::sleep(Duration::from_millis(20));
    }
    !ctx.stop.load(Ordering::Relaxed)
}

/// Counts audio time across sources (a device switch or a reopen may come
/// back at another rate) and says when the `--duration` limit is reached.
struct AudioClock {
    limit_s: Option<f64>,
    /// Seconds of audio from sources closed before the current one.
    before_s: f64,
    /// Frames from the current source, and its rate.
    frames: u64,
    rate: u32,
    /// Frames of the current source at which the limit is reached.
    limit_frames: u64,
}

impl AudioClock {
    fn new(limit_s: Option<f64>) -> Self {
        AudioClock {
            limit_s,
            before_s: 0.0,
            frames: 0,
            rate: 0,
            limit_frames: u64::MAX,
        }
    }

    /// A source opened at `rate` (not on the real-time path).
    fn opened(&mut self, rate: u32) {
        if self.rate > 0 {
            self.before_s += self.frames as f64 / self.rate as f64;
        }
        self.frames = 0;
        self.rate = rate.max(1);
        self.limit_frames = match self.limit_s {
            Some(s) => ((s - self.before_s).max(0.0) * self.rate as f64).ceil() as u64,
            None => u64::MAX,
        };
    }

    /// `n` more frames; true when the limit is reached.
    #[inline]
    fn advance(&mut self, n: u64) -> bool {
        self.frames += n;
        self.frames >= self.limit_frames
    }
}

fn run(spec: CaptureSpec, mut outputs: Vec<BlockTx>, ctx: CaptureCtx) -> Vec<BlockTx> {
    let stats = &ctx.stats;
    stats.tid[Role::Capture as usize].store(crate::service::gettid(), Ordering::Relaxed);
    stats.pin_hot_thread();
    let mut block = Box::new(Block::zeroed());
    // Block numbers keep rising across capture restarts (device switch), so a
    // consumer never sees them go backwards.
    let mut seq = stats.blocks.load(Ordering::Relaxed);
    let mut frame_pos = 0u64;
    let mut clock = AudioClock::new(spec.max_audio_s);
    let mut delay = spec.audio.retry_initial_s;
    let mut opened_once = false;
    let mut rt_asked = false;
    let fault = crate::rt::fault::Fault::for_role(Role::Capture);
    'open: while !ctx.stop.load(Ordering::Relaxed) {
        stats.beat(Role::Capture);
        let mut src = match open_source(&spec, &ctx) {
            Ok(s) => s,
            Err(_) if ctx.stop.load(Ordering::Relaxed) => break,
            Err(e) => {
                let fatal = matches!(e, CaptureError::Wav { .. })
                    || (!opened_once && spec.audio.on_missing_device == MissingDevice::Fail);
                if fatal {
                    let _ = ctx.events.send(CaptureEvent::Fatal {
                        kind: e.fatal_kind(),
                        error: e.to_string(),
                    });
                    break;
                }
                let _ = ctx.events.send(CaptureEvent::OpenFailed {
                    error: e.to_string(),
                    retry_s: delay,
                });
                if !sleep_unless_stopped(&ctx, delay) {
                    break;
                }
                delay = (delay * 2.0).min(spec.audio.retry_max_s);
                continue;
            }
        };
        delay = spec.audio.retry_initial_s;
        opened_once = true;
        let rt = if !rt_asked && spec.realtime.enabled && src.clocked() {
            rt_asked = true;
            crate::rt::set_realtime_priority(spec.realtime.capture_priority)
        } else if rt_asked {
            stats.grant(&stats.rt_capture)
        } else {
            RtGrant::NotRequested
        };
        stats.set_grant(&stats.rt_capture, rt);
        let clocked = src.clocked();
        let info = src.info();
        clock.opened(info.rate);
        stats.set_device_info(info.clone());
        let _ = ctx.events.send(CaptureEvent::Opened { info, rt });
        stats.device_up.store(true, Ordering::Relaxed);

        // Block numbers restart with this thread; forget what the workers
        // asked for in terms of the previous numbering.
        for tx in &outputs {
            tx.wake.defer_until(0);
        }
        crate::rt::mark_rt_loop(true);
        // The flag is checked on every block, not only by the PCM's poll: a
        // clockless PCM (`null`) always has frames, so its read never polls.
        while !ctx.stop.load(Ordering::Relaxed) {
            stats.beat(Role::Capture);
            fault.check(&ctx.stop);
            match src.read(&mut block) {
                Ok(ReadOutcome::Block) => {
                    block.seq = seq;
                    block.frame_pos = frame_pos;
                    block.clocked = clocked;
                    seq += 1;
                    frame_pos += block.len as u64;
                    push(&mut outputs, &block, clocked, &ctx);
                    stats.blocks.fetch_add(1, Ordering::Relaxed);
                    if clock.advance(block.len as u64) {
                        crate::rt::mark_rt_loop(false);
                        let _ = ctx.events.send(CaptureEvent::Ended);
                        break 'open;
                    }
                }
                Ok(ReadOutcome::Xrun) => {
                    stats.xruns.fetch_add(1, Ordering::Relaxed);
                }
                Ok(ReadOutcome::Suspend) => {
                    stats.suspends.fetch_add(1, Ordering::Relaxed);
                }
                Ok(ReadOutcome::Stopped) => break 'open,
                Ok(ReadOutcome::End) => {
                    crate::rt::mark_rt_loop(false);
                    let _ = ctx.events.send(CaptureEvent::Ended);
                    break 'open;
                }
                Err(e @ CaptureError::WavIo { .. }) => {
                    crate::rt::mark_rt_loop(false);
                    let _ = ctx.events.send(CaptureEvent::Fatal {
                        kind: e.fatal_kind(),
                        error: e.to_string(),
                    });
                    break 'open;
                }
                Err(e) => {
                    crate::rt::mark_rt_loop(false);
                    stats.device_up.store(false, Ordering::Relaxed);
                    stats.reopens.fetch_add(1, Ordering::Relaxed);
                    let _ = ctx.events.send(CaptureEvent::Gone(e.to_string()));
                    drop(src);
                    if !sleep_unless_stopped(&ctx, delay) {
                        break 'open;
                    }
                    continue 'open;
                }
            }
        }
        break;
    }
    crate::rt::mark_rt_loop(false);
    stats.device_up.store(false, Ordering::Relaxed);
    outputs
}

/// Push one block to every worker. Real-time safe.
#[inline]
fn push(outputs: &mut [BlockTx], block: &Block, clocked: bool, ctx: &CaptureCtx) {
    for tx in outputs.iter_mut() {
        if let Some(g) = &tx.gate {
            if !g.load(Ordering::Relaxed) {
                continue;
            }
        }
        if !clocked {
            // No clock to keep up with: wait for the worker instead of dropping.
            while tx.prod.is_full() && !ctx.stop.load(Ordering::Relaxed) {
                tx.wake.wake();
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        if tx.prod.try_push(*block).is_err() {
            ctx.stats.ring_drops[tx.drop_slot].fetch_add(1, Ordering::Relaxed);
        }
        tx.wake.wake_for(block.seq);
    }
}
