//! The worker loop (`p4-bands`, `p4-spectrum`): wait for blocks without
//! spinning, process them, push feature frames to every output ring.
//!
//! Real-time safety: after start-up the loop pops `Copy` blocks from a
//! wait-free ring, runs a [`Processor`] (which never allocates), pushes
//! `Copy` frames and parks when the ring is empty. The only exception is a
//! change of sample rate (a device switch): the processor is rebuilt, which
//! allocates once, off the steady state.

use super::bands::BandsProcessor;
use super::params::{DspParams, ParamsRx};
use super::spectrum::SpectrumProcessor;
use crate::rt::{RtGrant, Wake};
use crate::stats::{Role, Stats};
use crate::types::{BandsFrame, Block, SpectrumFrame};
use ringbuf::traits::{Consumer, Observer, Producer};
use ringbuf::{HeapCons, HeapProd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Longest a worker parks before looking at the stop flag and beating.
const PARK: Duration = Duration::from_millis(50);

/// A block → frame processor run by a worker.
pub trait Processor: Send + 'static {
    /// What it produces.
    type Frame: Copy + Send + 'static;
    /// Process one block; `each` gets every frame it completes.
    fn process(&mut self, block: &Block, params: &mut ParamsRx, each: &mut dyn FnMut(&Self::Frame));
    /// Sample rate it was built for.
    fn sample_rate(&self) -> u32;
    /// Rebuild for a new sample rate (allocates; device switch only).
    fn rebuild(&mut self, sample_rate: u32, params: &DspParams);
    /// Blocks of `block_len` frames still needed before the next frame is
    /// produced (the worker is not woken for the ones before).
    fn blocks_until_frame(&self, _block_len: usize) -> u64 {
        1
    }
}

/// The bands worker's processor plus its last frame.
pub struct BandsWorker {
    proc: BandsProcessor,
    sr: u32,
    block_frames: usize,
    fft_window: usize,
    frame: BandsFrame,
}

impl BandsWorker {
    /// Build for `sr` and `block_frames`.
    pub fn new(sr: u32, block_frames: usize, fft_window: usize, p: &DspParams) -> Self {
        BandsWorker {
            proc: BandsProcessor::new(sr, block_frames, fft_window, p),
            sr,
            block_frames,
            fft_window,
            frame: BandsFrame::default(),
        }
    }

    /// The band edges in use.
    pub fn effective_bands(&self) -> [(f64, f64); 3] {
        self.proc.effective_bands()
    }
}

impl Processor for BandsWorker {
    type Frame = BandsFrame;

    #[inline]
    fn process(&mut self, block: &Block, params: &mut ParamsRx, each: &mut dyn FnMut(&BandsFrame)) {
        self.frame = self.proc.process(block, params);
        each(&self.frame);
    }

    fn sample_rate(&self) -> u32 {
        self.sr
    }

    fn rebuild(&mut self, sample_rate: u32, params: &DspParams) {
        *self = BandsWorker::new(sample_rate, self.block_frames, self.fft_window, params);
    }
}

/// The spectrum worker's processor.
pub struct SpectrumWorker {
    proc: SpectrumProcessor,
    sr: u32,
    window: usize,
    hop: usize,
}

impl SpectrumWorker {
    /// Build for `sr` with an FFT of `window` every `hop`.
    pub fn new(sr: u32, window: usize, hop: usize, p: &DspParams) -> Self {
        SpectrumWorker {
            proc: SpectrumProcessor::new(sr, window, hop, p),
            sr,
            window,
            hop,
        }
    }
}

impl Processor for SpectrumWorker {
    type Frame = SpectrumFrame;

    #[inline]
    fn process(
        &mut self,
        block: &Block,
        params: &mut ParamsRx,
        each: &mut dyn FnMut(&SpectrumFrame),
    ) {
        self.proc.process(block, params, each);
    }

    fn sample_rate(&self) -> u32 {
        self.sr
    }

    fn rebuild(&mut self, sample_rate: u32, params: &DspParams) {
        *self = SpectrumWorker::new(sample_rate, self.window, self.hop, params);
    }

    fn blocks_until_frame(&self, block_len: usize) -> u64 {
        self.proc.frames_until_frame().div_ceil(block_len.max(1)) as u64
    }
}

/// One consumer of a worker's frames.
pub struct FrameTx<F> {
    /// The ring.
    pub prod: HeapProd<F>,
    /// Wakes the consumer.
    pub wake: Arc<Wake>,
}

/// What a worker thread is given.
pub struct WorkerCtx {
    /// Which worker.
    pub role: Role,
    /// Counters and heartbeats.
    pub stats: Arc<Stats>,
    /// Set to stop.
    pub stop: Arc<AtomicBool>,
    /// The worker registers itself here so the capture thread can wake it.
    pub wake: Arc<Wake>,
    /// SCHED_FIFO priority to ask for, if any.
    pub rt_priority: Option<u8>,
}

/// Start a worker thread named `p4-<role>`.
pub fn spawn<P: Processor>(
    proc: P,
    input: HeapCons<Block>,
    outputs: Vec<FrameTx<P::Frame>>,
    params: ParamsRx,
    ctx: WorkerCtx,
) -> std::io::Result<JoinHandle<()>> {
    let name = format!("p4-{}", crate::stats::ROLE_NAMES[ctx.role as usize]);
    // On the heap before the thread starts: the processors are several KiB
    // (the spectrum worker's FFT scratch and tables inline), and a debug
    // build keeps copies of every by-value move in the frames of the
    // worker's small stack (rt::THREAD_STACK); only the pointer moves now.
    let proc = Box::new(proc);
    std::thread::Builder::new()
        .stack_size(crate::rt::THREAD_STACK)
        .name(name)
        .spawn(move || run(proc, input, outputs, params, ctx))
}

// Boxed on purpose: see `spawn` (the frame of this function is the stack).
#[allow(clippy::boxed_local)]
fn run<P: Processor>(
    mut proc: Box<P>,
    mut input: HeapCons<Block>,
    mut outputs: Vec<FrameTx<P::Frame>>,
    mut params: ParamsRx,
    ctx: WorkerCtx,
) {
    ctx.wake.register_current();
    let stats = &ctx.stats;
    stats.tid[ctx.role as usize].store(crate::service::gettid(), Ordering::Relaxed);
    stats.pin_hot_thread();
    if let Some(prio) = ctx.rt_priority {
        let g = crate::rt::set_realtime_priority(prio);
        // Several workers share one flag: any refusal shows.
        if stats.grant(&stats.rt_workers) != RtGrant::Refused {
            stats.set_grant(&stats.rt_workers, g);
        }
    }
    let fault = crate::rt::fault::Fault::for_role(ctx.role);
    crate::rt::mark_rt_loop(true);
    // Since when the worker has run without finding its ring empty.
    let mut busy_since = crate::rt::now_ns();
    while !ctx.stop.load(Ordering::Relaxed) {
        stats.beat(ctx.role);
        fault.check(&ctx.stop);
        let mut last: Option<(u64, usize)> = None;
        // The last clocked block's (frames, rate): how long a pause lasts.
        let mut clocked: Option<(u32, u32)> = None;
        // The blocks there now, not until the ring is empty: a worker
        // slower than real time would never get back to its heartbeat
        // (tester u: a 96 kHz spectrum at 88 % of a core stopped the
        // watchdog pings for good while it ran and sent frames).
        for _ in 0..input.occupied_len() {
            let Some(block) = input.try_pop() else { break };
            last = Some((block.seq, block.len as usize));
            if block.clocked {
                // (Without a clock blocks come as fast as they are read,
                // and a full output ring holds the worker back instead.)
                clocked = Some((block.len, block.sample_rate));
            }
            if block.sample_rate != 0 && block.sample_rate != proc.sample_rate() {
                // A new sample rate (device switch) rebuilds the processor:
                // the one place this loop allocates, outside the steady state.
                crate::rt::mark_rt_loop(false);
                params.poll();
                proc.rebuild(block.sample_rate, params.get());
                crate::rt::mark_rt_loop(true);
            }
            proc.process(&block, &mut params, &mut |frame| {
                for out in outputs.iter_mut() {
                    if !block.clocked {
                        // No clock to keep up with: wait for the consumer
                        // rather than drop (see `Block::clocked`).
                        while out.prod.is_full() && !ctx.stop.load(Ordering::Relaxed) {
                            out.wake.wake();
                            std::thread::sleep(Duration::from_micros(100));
                        }
                    }
                    if out.prod.try_push(*frame).is_err() {
                        stats.frame_drops.fetch_add(1, Ordering::Relaxed);
                    }
                    out.wake.wake();
                }
            });
        }
        let Some((seq, len)) = last else {
            std::thread::park_timeout(PARK);
            busy_since = crate::rt::now_ns();
            continue;
        };
        // Nothing to do until the block that completes the next frame.
        ctx.wake.defer_until(seq + proc.blocks_until_frame(len));
        let Some((frames, rate)) = clocked else {
            continue;
        };
        if crate::rt::now_ns().saturating_sub(busy_since) > BUSY_NS {
            // Slower than real time on a clocked input: a SCHED_FIFO thread
            // that never waits starves every thread below it on its CPU
            // (the OSC sender: `/audio/lmh` stopped). A block's time off
            // (at least 1 ms) per 20 ms; it loses blocks instead (counted
            // in ring_drops).
            std::thread::sleep(block_time(frames, rate).max(Duration::from_millis(1)));
            busy_since = crate::rt::now_ns();
        }
    }
    crate::rt::mark_rt_loop(false);
}

/// How long a worker may run without once finding its ring empty before
/// it takes a pause (a turn in real time takes microseconds; a period of
/// many blocks, tens of them).
const BUSY_NS: u64 = 20_000_000;

/// How long a block of `frames` at `rate` lasts (at most 20 ms: a pause,
/// not a stop). Worked out only when a worker pauses, not per block.
fn block_time(frames: u32, rate: u32) -> Duration {
    let ns = u64::from(frames) * 1_000_000_000 / u64::from(rate.max(1));
    Duration::from_nanos(ns.min(20_000_000))
}

/// Frames a worker's output ring holds.
pub const FRAME_RING: usize = 64;

/// Most spectrum hops one block may hold (`fft.hop-frames` is at least
/// `audio.block-frames` over this): a block then completes at most one
/// frame more than this (a frame of events after its last hop), about a
/// quarter of the ring, so a consumer that wakes a block late still finds
/// every frame.
pub const MAX_HOPS_PER_BLOCK: u32 = (FRAME_RING / 4) as u32;

/// Drain helper for consumers: pop what the ring holds now (not what
/// arrives meanwhile, so a consumer slower than its producer still gets
/// back to its loop and heartbeat), calling `f` on each.
pub fn drain<F: Copy>(cons: &mut HeapCons<F>, mut f: impl FnMut(&F)) -> usize {
    let mut n = 0;
    for _ in 0..cons.occupied_len() {
        let Some(x) = cons.try_pop() else { break };
        f(&x);
        n += 1;
    }
    n
}
