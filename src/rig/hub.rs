//! `p4-rig`: the one consumer of the pipeline for every rig output.
//!
//! Every 10 ms (or sooner when WLED's next packet is due) it drains its
//! rings: audio blocks for WLED's analysis, bands frames (low-band onsets
//! are WLED's peaks; latest values for OSCQuery) and spectrum frames (tempo
//! for Link and MIDI, beats, latest values). Its producers never wake it
//! per block: the block ring's wake is deferred for ever and the frame
//! rings' wake has no thread. Only a clockless source with a full ring
//! (lossless backpressure) wakes it early. Not a real-time thread.

use super::link::LinkFeed;
use super::midi::clock::TempoSnapshot;
use super::wled::WledSender;
use super::TempoShare;
use crate::rt::Wake;
use crate::stats::Stats;
use crate::types::{onset_bits, BandsFrame, Block, SpectrumFrame};
use ringbuf::traits::Consumer;
use ringbuf::HeapCons;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest sleep between two drains.
const TICK: Duration = Duration::from_millis(10);

/// The newest feature frames, for OSCQuery's VALUE and LISTEN.
#[derive(Default)]
pub struct Latest {
    inner: Mutex<LatestInner>,
}

/// See [`Latest`].
#[derive(Clone, Copy)]
pub struct LatestInner {
    /// Newest bands frame.
    pub bands: BandsFrame,
    /// Newest spectrum frame.
    pub spectrum: SpectrumFrame,
    /// Bumped on every update.
    pub generation: u64,
    /// Strength of the latest broadband onset.
    pub last_onset: Option<f32>,
    /// Index, tempo and confidence of the latest beat.
    pub last_beat: Option<(u32, f32, f32)>,
}

impl Default for LatestInner {
    fn default() -> Self {
        LatestInner {
            bands: BandsFrame::default(),
            spectrum: SpectrumFrame::zeroed(),
            generation: 0,
            last_onset: None,
            last_beat: None,
        }
    }
}

impl Latest {
    /// A copy of the newest frames.
    pub fn get(&self) -> LatestInner {
        self.inner.lock().map(|g| *g).unwrap_or_default()
    }

    /// Run `f` on the newest frames without copying them.
    pub fn with<R>(&self, f: impl FnOnce(&LatestInner) -> R) -> Option<R> {
        self.inner.lock().ok().map(|g| f(&g))
    }

    fn update(&self, b: Option<&BandsFrame>, s: Option<&SpectrumFrame>, ev: Events) {
        if let Ok(mut g) = self.inner.lock() {
            if let Some(b) = b {
                g.bands = *b;
            }
            if let Some(s) = s {
                g.spectrum = *s;
            }
            g.last_onset = ev.onset.or(g.last_onset);
            g.last_beat = ev.beat.or(g.last_beat);
            g.generation += 1;
        }
    }
}

/// Events seen in one drain (any frame, not only the newest).
#[derive(Clone, Copy, Default)]
struct Events {
    onset: Option<f32>,
    beat: Option<(u32, f32, f32)>,
}

/// The rings `p4-rig` drains.
pub struct HubInputs {
    /// Audio blocks from capture (WLED on).
    pub blocks: Option<HeapCons<Block>>,
    /// Bands frames from the bands worker.
    pub bands: Option<HeapCons<BandsFrame>>,
    /// Spectrum frames from the spectrum worker.
    pub spectrum: Option<HeapCons<SpectrumFrame>>,
    /// Registered by the thread: capture wakes it only under backpressure.
    pub wake: Arc<Wake>,
}

/// What `p4-rig` feeds.
#[derive(Default)]
pub struct HubOutputs {
    /// WLED Audio Sync.
    pub wled: Option<WledSender>,
    /// The Link feed.
    pub link: Option<LinkFeed>,
    /// Tempo for the MIDI clock thread.
    pub tempo: Option<Arc<TempoShare>>,
    /// Newest frames for OSCQuery.
    pub latest: Option<Arc<Latest>>,
}

/// Start `p4-rig`.
pub fn spawn(
    mut inputs: HubInputs,
    mut out: HubOutputs,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .stack_size(crate::rt::THREAD_STACK)
        .name("p4-rig".into())
        .spawn(move || {
            inputs.wake.register_current();
            inputs.wake.defer_until(u64::MAX);
            stats
                .rig
                .tid_rig
                .store(crate::service::gettid(), Ordering::Relaxed);
            while !stop.load(Ordering::Relaxed) {
                let now = Instant::now();
                drain(&mut inputs, &mut out, &stats, now);
                let mut wait = TICK;
                if let Some(w) = out.wled.as_mut() {
                    w.tick(now);
                    wait = wait.min(w.next_due().saturating_duration_since(Instant::now()));
                }
                std::thread::park_timeout(wait.max(Duration::from_millis(1)));
            }
        })
}

fn drain(inputs: &mut HubInputs, out: &mut HubOutputs, stats: &Stats, now: Instant) {
    if let Some(blocks) = inputs.blocks.as_mut() {
        while let Some(b) = blocks.try_pop() {
            if let Some(w) = out.wled.as_mut() {
                w.push(b.samples(), b.sample_rate);
            }
        }
    }
    if let Some(bands) = inputs.bands.as_mut() {
        let mut newest = None;
        while let Some(f) = bands.try_pop() {
            if f.band_onsets & onset_bits::LOW != 0 {
                if let Some(w) = out.wled.as_mut() {
                    w.peak();
                }
            }
            newest = Some(f);
        }
        if let (Some(f), Some(l)) = (newest, out.latest.as_ref()) {
            l.update(Some(&f), None, Events::default());
        }
    }
    if let Some(spec) = inputs.spectrum.as_mut() {
        // Frames are 4 KiB: look at each in place, copy only the newest.
        let mut newest: Option<(u64, crate::types::TempoState)> = None;
        let mut last_full: Option<SpectrumFrame> = None;
        let mut ev = Events::default();
        while let Some(f) = spec.try_pop() {
            if f.tempo.beat {
                if let Some(w) = out.wled.as_mut() {
                    w.peak();
                }
                ev.beat = Some((f.tempo.beat_index, f.tempo.bpm, f.tempo.confidence));
            }
            if f.onset {
                ev.onset = Some(f.onset_strength);
            }
            newest = Some((f.t_capture_ns, f.tempo));
            if out.latest.is_some() {
                last_full = Some(f);
            }
        }
        if let Some((t_ns, t)) = newest {
            stats.rig.bpm.set(if t.locked { t.bpm } else { 0.0 });
            if let Some(l) = out.link.as_mut() {
                l.update(&t, t_ns, now);
            }
            if let Some(share) = out.tempo.as_ref() {
                share.set(TempoSnapshot {
                    bpm: t.bpm,
                    phase: t.phase,
                    t_ns,
                    locked: t.locked,
                });
            }
        }
        if let (Some(f), Some(l)) = (last_full.as_ref(), out.latest.as_ref()) {
            l.update(None, Some(f), ev);
        }
    }
}
