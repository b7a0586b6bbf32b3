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
use super::wav::WavSource;
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
    /// Opening failed and the configuration says not to retry.
    Fatal(String),
    /// The device went away while capturing; reopening.
    Gone(String),
    /// The input ended (WAV without loop, or the frame limit was reached).
    Ended,
}

/// What the capture thread runs.
#[derive(Clone, Debug)]
pub struct CaptureSpec {
    /// Device or WAV input, format, block size.
    pub audio: AudioConfig,
    /// Scheduling.
    pub realtime: RealtimeConfig,
    /// Stop after this many frames (tests, benchmarks).
    pub max_frames: Option<u64>,
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

fn run(spec: CaptureSpec, mut outputs: Vec<BlockTx>, ctx: CaptureCtx) -> Vec<BlockTx> {
    let stats = &ctx.stats;
    stats.tid[Role::Capture as usize].store(crate::service::gettid(), Ordering::Relaxed);
    let mut block = Box::new(Block::zeroed());
    // Block numbers keep rising across capture restarts (device switch), so a
    // consumer never sees them go backwards.
    let mut seq = stats.blocks.load(Ordering::Relaxed);
    let mut frame_pos = 0u64;
    let mut delay = spec.audio.retry_initial_s;
    let mut opened_once = false;
    let mut rt_asked = false;
    let fault = crate::rt::fault::Fault::for_role(Role::Capture);
    'open: while !ctx.stop.load(Ordering::Relaxed) {
        stats.beat(Role::Capture);
        let mut src = match open_source(&spec, &ctx) {
            Ok(s) => s,
            Err(e) => {
                let fatal = matches!(e, CaptureError::Wav { .. })
                    || (!opened_once && spec.audio.on_missing_device == MissingDevice::Fail);
                if fatal {
                    let _ = ctx.events.send(CaptureEvent::Fatal(e.to_string()));
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
        stats.set_device_info(info.clone());
        let _ = ctx.events.send(CaptureEvent::Opened { info, rt });
        stats.device_up.store(true, Ordering::Relaxed);

        // Block numbers restart with this thread; forget what the workers
        // asked for in terms of the previous numbering.
        for tx in &outputs {
            tx.wake.defer_until(0);
        }
        crate::rt::mark_rt_loop(true);
        loop {
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
                    if spec.max_frames.is_some_and(|m| frame_pos >= m) {
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
    }
    crate::rt::mark_rt_loop(false);
    stats.device_up.store(false, Ordering::Relaxed);
    outputs
}

/// Push one block to every worker. Real-time safe.
#[inline]
fn push(outputs: &mut [BlockTx], block: &Block, clocked: bool, ctx: &CaptureCtx) {
    for tx in outputs.iter_mut() {
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
