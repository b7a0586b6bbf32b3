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
        .stack_size(crate::rt::PARSER_STACK)
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

/// Why the real-time loop ended.
enum End {
    /// The thread was told to stop while the source waited.
    Stopped,
    /// The input ended, or the `--duration` limit is reached.
    Ended,
    /// The input cannot go on (an I/O error reading a WAV file).
    Fatal(CaptureError),
    /// The device went away.
    Gone(CaptureError),
}

/// How one pass of the open → stream loop ended.
enum Next {
    /// Open the source again (it failed to open, or went away).
    Reopen,
    /// Stop the thread (stop requested, input ended, or a fatal error).
    Stop,
}

/// The capture thread's state across sources: block numbering, the audio
/// clock for `--duration`, the reopen backoff and whether real-time priority
/// was already asked for.
struct Capture {
    spec: CaptureSpec,
    outputs: Vec<BlockTx>,
    ctx: CaptureCtx,
    block: Box<Block>,
    seq: u64,
    frame_pos: u64,
    clock: AudioClock,
    delay: f64,
    opened_once: bool,
    rt_asked: bool,
    /// The last device went away (or stalled): the next one is reported
    /// up only once it delivers a block, so a device that opens and stays
    /// silent (a suspended sound server's sink, a digital input with no
    /// clock) is not shown up between its reopens.
    await_block: bool,
    fault: crate::rt::fault::Fault,
}

fn run(spec: CaptureSpec, outputs: Vec<BlockTx>, ctx: CaptureCtx) -> Vec<BlockTx> {
    let stats = &ctx.stats;
    stats.tid[Role::Capture as usize].store(crate::service::gettid(), Ordering::Relaxed);
    stats.pin_hot_thread();
    let mut cap = Capture {
        // Block numbers keep rising across capture restarts (device switch),
        // so a consumer never sees them go backwards.
        seq: stats.blocks.load(Ordering::Relaxed),
        frame_pos: 0,
        clock: AudioClock::new(spec.max_audio_s),
        delay: spec.audio.retry_initial_s,
        opened_once: false,
        rt_asked: false,
        await_block: false,
        fault: crate::rt::fault::Fault::for_role(Role::Capture),
        block: Box::new(Block::zeroed()),
        spec,
        outputs,
        ctx,
    };
    while !cap.ctx.stop.load(Ordering::Relaxed) {
        cap.ctx.stats.beat(Role::Capture);
        let next = match cap.open() {
            Ok(src) => cap.stream(src),
            Err(next) => next,
        };
        if let Next::Stop = next {
            break;
        }
    }
    crate::rt::mark_rt_loop(false);
    cap.ctx.stats.device_up.store(false, Ordering::Relaxed);
    cap.outputs
}

impl Capture {
    /// Open the source, or say what to do instead: retry after the backoff
    /// delay (reported), or stop (stopping, or a failure that a retry cannot
    /// mend: a bad WAV input, or a missing device with
    /// `on-missing-device = "fail"` before it was ever open).
    fn open(&mut self) -> Result<Box<dyn Source>, Next> {
        self.waiting_for();
        let stats = &self.ctx.stats;
        stats
            .opening_since_ns
            .store(crate::rt::now_ns().max(1), Ordering::Relaxed);
        let opened = open_source(&self.spec, &self.ctx);
        stats.opening_since_ns.store(0, Ordering::Relaxed);
        let e = match opened {
            Ok(src) => {
                self.delay = self.spec.audio.retry_initial_s;
                self.opened_once = true;
                return Ok(src);
            }
            Err(_) if self.ctx.stop.load(Ordering::Relaxed) => return Err(Next::Stop),
            Err(e) => e,
        };
        // A WAV input that played before and is reopened (it changed format
        // while it played) may be caught half rewritten: tried again, as a
        // device is. Bad from the start, it is the configuration's fault.
        let fatal = !self.opened_once
            && (matches!(e, CaptureError::Wav { .. })
                || self.spec.audio.on_missing_device == MissingDevice::Fail);
        if fatal {
            self.fatal(&e);
            return Err(Next::Stop);
        }
        let _ = self.ctx.events.send(CaptureEvent::OpenFailed {
            error: e.to_string(),
            retry_s: self.delay,
        });
        if !sleep_unless_stopped(&self.ctx, self.delay) {
            return Err(Next::Stop);
        }
        self.delay = (self.delay * 2.0).min(self.spec.audio.retry_max_s);
        Err(Next::Reopen)
    }

    /// The device description names the input being opened or waited
    /// for, from before the first try, so that STATUS= and the health line
    /// say which one ("waiting for capture device hw:1"), also while an
    /// open takes its time (a FIFO without a writer, a server's plugin):
    /// before, a device never opened showed "-", and after a switch the
    /// previous one was named. A listing reads it too: it never opens the
    /// device capture is opening (a probe may run while a switch that has
    /// not finished in 10 s opens its device). The other fields describe
    /// no open device until one opens; reopening the same device keeps
    /// them (its card and device stay protected from a listing). Off the
    /// real-time path: before an open.
    fn waiting_for(&self) {
        let a = &self.spec.audio;
        let wanted = if a.input.is_empty() {
            &a.device
        } else {
            &a.input
        };
        let stats = &self.ctx.stats;
        if stats.device_info().name != *wanted {
            stats.set_device_info(DeviceInfo {
                name: wanted.clone(),
                ..DeviceInfo::default()
            });
        }
    }

    /// A source is open: ask for real-time priority the first time a clocked
    /// source opens (a clockless one would spin), publish what is open and
    /// tell the supervisor.
    fn announce(&mut self, src: &dyn Source) {
        let (spec, stats) = (&self.spec, &self.ctx.stats);
        let rt = if !self.rt_asked && spec.realtime.enabled && src.clocked() {
            self.rt_asked = true;
            crate::rt::set_realtime_priority(spec.realtime.capture_priority)
        } else if self.rt_asked {
            stats.grant(&stats.rt_capture)
        } else {
            RtGrant::NotRequested
        };
        stats.set_grant(&stats.rt_capture, rt);
        let info = src.info();
        self.clock.opened(info.rate);
        stats.set_device_info(info.clone());
        let _ = self.ctx.events.send(CaptureEvent::Opened { info, rt });
        stats.device_up.store(!self.await_block, Ordering::Relaxed);
        // Block numbers restart with this thread; forget what the workers
        // asked for in terms of the previous numbering.
        for tx in &self.outputs {
            tx.wake.defer_until(0);
        }
    }

    /// The real-time loop: read, number, stamp and push blocks until the
    /// source ends, goes away or the thread is told to stop.
    fn stream(&mut self, mut src: Box<dyn Source>) -> Next {
        self.announce(src.as_ref());
        let clocked = src.clocked();
        crate::rt::mark_rt_loop(true);
        // The flag is checked on every block, not only by the PCM's poll: a
        // clockless PCM (`null`) always has frames, so its read never polls.
        while !self.ctx.stop.load(Ordering::Relaxed) {
            self.ctx.stats.beat(Role::Capture);
            self.fault.check(&self.ctx.stop);
            let read = src.read(&mut self.block);
            if let Some(end) = self.on_read(read, clocked) {
                // Off the real-time path before anything is said about it.
                crate::rt::mark_rt_loop(false);
                return self.after(end, src);
            }
        }
        Next::Stop
    }

    /// What one read gave: a block goes out to the workers, an xrun or a
    /// suspend is counted, and anything else ends the loop. Real-time safe.
    #[inline]
    fn on_read(&mut self, read: Result<ReadOutcome, CaptureError>, clocked: bool) -> Option<End> {
        let stats = &self.ctx.stats;
        match read {
            Ok(ReadOutcome::Block) => {
                let block = &mut self.block;
                block.seq = self.seq;
                block.frame_pos = self.frame_pos;
                block.clocked = clocked;
                self.seq += 1;
                self.frame_pos += block.len as u64;
                push(&mut self.outputs, block, clocked, &self.ctx);
                stats.blocks.fetch_add(1, Ordering::Relaxed);
                if self.await_block {
                    self.await_block = false;
                    stats.device_up.store(true, Ordering::Relaxed);
                }
                if self.clock.advance(block.len as u64) {
                    return Some(End::Ended);
                }
                None
            }
            Ok(ReadOutcome::Xrun) => {
                stats.xruns.fetch_add(1, Ordering::Relaxed);
                None
            }
            Ok(ReadOutcome::Suspend) => {
                stats.suspends.fetch_add(1, Ordering::Relaxed);
                None
            }
            Ok(ReadOutcome::Waiting) => None,
            Ok(ReadOutcome::Stopped) => Some(End::Stopped),
            Ok(ReadOutcome::End) => Some(End::Ended),
            Err(e @ CaptureError::WavIo { .. }) => Some(End::Fatal(e)),
            Err(e) => Some(End::Gone(e)),
        }
    }

    /// Off the real-time path: report how the loop ended and, for a device
    /// that went away, close it and wait the backoff delay before reopening.
    fn after(&mut self, end: End, src: Box<dyn Source>) -> Next {
        match end {
            End::Stopped => Next::Stop,
            End::Ended => {
                let _ = self.ctx.events.send(CaptureEvent::Ended);
                Next::Stop
            }
            End::Fatal(e) => {
                self.fatal(&e);
                Next::Stop
            }
            End::Gone(e) => {
                let stats = &self.ctx.stats;
                stats.device_up.store(false, Ordering::Relaxed);
                self.await_block = true;
                stats.reopens.fetch_add(1, Ordering::Relaxed);
                let _ = self.ctx.events.send(CaptureEvent::Gone(e.to_string()));
                drop(src);
                if sleep_unless_stopped(&self.ctx, self.delay) {
                    Next::Reopen
                } else {
                    Next::Stop
                }
            }
        }
    }

    fn fatal(&self, e: &CaptureError) {
        let _ = self.ctx.events.send(CaptureEvent::Fatal {
            kind: e.fatal_kind(),
            error: e.to_string(),
        });
    }
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
