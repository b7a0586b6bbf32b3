//! The spectrum worker's processing: a Hann-windowed real FFT every hop, the
//! log spectrum (raw dB or post-processed), spectral shape, the broadband
//! onset detector and the beat tracker.
//!
//! Definitions:
//! - window `w` = periodic-free symmetric Hann of `window` frames; the
//!   analysis runs whenever at least `hop` new frames have arrived, on the
//!   newest `window` frames.
//! - rfft power `p_k = |X_k|² · 2 / (Σw)²`: a sine of amplitude A reads A²/2
//!   in its bin, the same scale as the band RMS².
//! - magnitudes handed to the onset detector: `|X_k| · 2 / Σw` (a sine of
//!   amplitude A reads A).
//! - the log spectrum: see [`super::logbins`] and [`super::postprocess`].
//! - spectral shape ([`super::spectral`]) is read from the rfft power
//!   smoothed by a one-pole of τ = [`SHAPE_TAU_S`] across hops.
//!
//! The FFT always runs (onsets, tempo and spectral shape need it);
//! `fft.enabled` only decides whether the log spectrum is computed and sent.
//! The onset detector and the beat tracker see a window of fixed duration
//! every hop of fixed duration at every sample rate
//! ([`super::onset::frontend`]): the spectrum's own magnitudes at
//! 44.1/48 kHz with the default FFT, their own FFT on the history otherwise,
//! run in `process` as each of their hops falls due. Their events reach the
//! next frame, each with its lag from that frame's end (`onset_lag_s`,
//! `beat_lag_s`); a frame reports the strongest onset since the last one
//! (`onset_count` counts every one) and the largest flux.
//!
//! Real-time safety: the FFT plan, window, buffers and bin maps are built in
//! [`SpectrumProcessor::new`]; `process` never allocates, locks, logs or
//! blocks. A bin-count change rebuilds the map in place.

use super::logbins::LogBinMap;
use super::onset::frontend::DetectorFrontEnd;
use super::onset::FluxOnset;
use super::params::{DspParams, ParamsRx};
use super::postprocess::PostProcessor;
use super::spectral;
use super::tempo::BeatTracker;
use crate::types::{Block, SpectrumFrame, TempoState, MAX_FFT_BINS};
use num_complex::Complex32;
use realfft::{RealFftPlanner, RealToComplex};
use std::sync::Arc;

/// Time constant of the power spectrum that spectral shape is read from.
pub const SHAPE_TAU_S: f32 = 0.05;

/// Room for this many more analysis histories after the one in use, so the
/// history moves back to the start of its buffer rarely.
const HISTORY_SPARE: usize = 8;

/// What the detector hops since the last frame found, for the next frame.
#[derive(Clone, Copy, Default)]
struct Detected {
    /// Whether a detector hop ran.
    ran: bool,
    /// The largest flux.
    flux: f32,
    /// Onsets found.
    onsets: u32,
    /// The strongest onset: strength, lag from its hop, and the input frame
    /// count at its hop.
    onset: Option<(f32, f32, u64)>,
    /// The beat: lag from its hop and the input frame count at its hop.
    beat: Option<(f32, u64)>,
}

/// State of the spectrum worker.
pub struct SpectrumProcessor {
    sr: f32,
    window: usize,
    hop: usize,
    fft: Arc<dyn RealToComplex<f32>>,
    hann: Vec<f32>,
    power_corr: f32,
    mag_corr: f32,
    /// The newest input is `history[hist_end - hist_len..hist_end]`; new
    /// blocks are appended after it and the tail is moved back to the
    /// start only when the buffer is full (once every [`HISTORY_SPARE`]
    /// windows, instead of shifting the window by one block every block).
    history: Vec<f32>,
    hist_len: usize,
    hist_end: usize,
    since_hop: usize,
    frames_in: u64,
    fft_in: Vec<f32>,
    fft_out: Vec<Complex32>,
    fft_scratch: Vec<Complex32>,
    power: Vec<f32>,
    shape_power: Vec<f32>,
    shape_alpha: f32,
    mag: Vec<f32>,
    sums: Vec<f32>,
    db: Vec<f32>,
    processed: Vec<f32>,
    map: LogBinMap,
    post: PostProcessor,
    det: DetectorFrontEnd,
    flux: FluxOnset,
    tracker: BeatTracker,
    last_tempo: TempoState,
    last_flux: f32,
    /// The input's DC offset, followed from one detector window to the
    /// next: the tracker's silence is judged around it.
    dc: super::bands::DcOffset,
    detected: Detected,
    onset_count: u32,
    hops: u64,
    applied_generation: u64,
    applied: Option<DspParams>,
    frame: SpectrumFrame,
}

impl SpectrumProcessor {
    /// A processor at `sr` with an FFT of `window` frames every `hop` frames.
    pub fn new(sr: u32, window: usize, hop: usize, p: &DspParams) -> Self {
        let sr_f = sr as f32;
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(window);
        let n_rfft = window / 2 + 1;
        // Symmetric Hann (numpy.hanning), as the Python server uses.
        let hann: Vec<f32> = (0..window)
            .map(|i| {
                0.5 - 0.5
                    * (2.0 * std::f64::consts::PI * i as f64 / (window - 1).max(1) as f64).cos()
                        as f32
            })
            .collect();
        let coh: f32 = hann.iter().sum();
        let hop_s = hop as f32 / sr_f;
        let det = DetectorFrontEnd::new(sr, window, hop);
        // The detectors' own hops fall anywhere in a block: their window
        // may end up to a block before the newest frame.
        let hist_len = if det.reuses_spectrum() {
            window
        } else {
            window.max(det.window() + crate::types::MAX_BLOCK_FRAMES)
        };
        super::lanes::warm_up();
        let mut s = SpectrumProcessor {
            sr: sr_f,
            window,
            hop,
            fft_in: fft.make_input_vec(),
            fft_out: fft.make_output_vec(),
            fft_scratch: fft.make_scratch_vec(),
            fft,
            hann,
            power_corr: 2.0 / (coh * coh).max(1e-12),
            mag_corr: 2.0 / coh.max(1e-12),
            history: vec![0.0; hist_len * (1 + HISTORY_SPARE)],
            hist_len,
            hist_end: hist_len,
            since_hop: 0,
            frames_in: 0,
            power: vec![0.0; n_rfft],
            shape_power: vec![0.0; n_rfft],
            shape_alpha: super::scaler::tau_to_alpha(hop_s, SHAPE_TAU_S),
            mag: vec![0.0; n_rfft],
            sums: vec![0.0; MAX_FFT_BINS],
            db: vec![0.0; MAX_FFT_BINS],
            processed: vec![0.0; MAX_FFT_BINS],
            map: LogBinMap::new(n_rfft, sr_f, p.n_bins as usize, p.f_min_hz),
            post: PostProcessor::new(hop_s),
            flux: FluxOnset::new(det.n_mag(), sr_f, det.hop_s()),
            tracker: BeatTracker::new(det.hop_s()),
            det,
            last_tempo: TempoState::default(),
            last_flux: 0.0,
            dc: Default::default(),
            detected: Detected::default(),
            onset_count: 0,
            hops: 0,
            applied_generation: u64::MAX,
            applied: None,
            frame: SpectrumFrame::zeroed(),
        };
        s.apply(p);
        s
    }

    /// Bring the bin map and post-processor in line with `p`. No allocation.
    pub fn apply(&mut self, p: &DspParams) {
        let layout_changed = self.applied.is_none_or(|o| {
            o.n_bins != p.n_bins || o.f_min_hz != p.f_min_hz || o.fft_enabled != p.fft_enabled
        });
        if layout_changed {
            self.map.rebuild(p.n_bins as usize, p.f_min_hz);
        }
        self.post.configure(p, &self.map, layout_changed);
        self.applied_generation = p.generation;
        self.applied = Some(*p);
    }

    /// Feed one block with the newest parameters; `each` gets every frame
    /// it completes. The block is fed in parts that end where a hop falls
    /// due, so the spectrum and the detectors that reuse it run every hop
    /// on the window ending at that hop (not once per block, nor at the end
    /// of a block that does not divide into hops), each part stamped with
    /// its own end.
    #[inline]
    pub fn process(
        &mut self,
        block: &Block,
        params: &mut ParamsRx,
        each: &mut dyn FnMut(&SpectrumFrame),
    ) {
        params.poll();
        if params.get().generation != self.applied_generation {
            let p = *params.get();
            self.apply(&p);
        }
        let x = block.samples();
        let mut done = 0;
        while done < x.len() {
            // A part ends where the next hop falls due, so every hop is
            // analysed on the window ending at its own frame, whatever the
            // block. (Hops count from the stream's first frame; the ones
            // that fell due while the first window filled are caught up
            // one per part.)
            let hop = self.hop.max(1);
            let to_hop = hop - self.since_hop % hop;
            let part = &x[done..(done + to_hop).min(x.len())];
            done += part.len();
            let ns_before_end = (x.len() - done) as f64 * 1.0e9 / self.sr as f64;
            let t_capture_ns = block.t_capture_ns.saturating_sub(ns_before_end as u64);
            if self.feed(part, block.frame_pos + done as u64, t_capture_ns) {
                each(&self.frame);
            }
        }
    }

    /// Feed `x`, whose last frame is stream frame `end_pos - 1`, captured at
    /// `t_capture_ns`; true when it completed a frame: a hop (analysed on the
    /// window ending with `x`), or an onset or a beat the detectors found
    /// between two hops.
    fn feed(&mut self, x: &[f32], end_pos: u64, t_capture_ns: u64) -> bool {
        self.push_history(x);
        self.frames_in += x.len() as u64;
        if !self.det.reuses_spectrum() {
            self.det.push(x.len());
            while let Some(back) = self.det.next_due() {
                self.detect_own(back);
            }
        }
        self.since_hop += x.len();
        let time_s = end_pos as f64 / self.sr as f64;
        if self.since_hop < self.hop || self.frames_in < self.window as u64 {
            if self.detected.onset.is_none() && self.detected.beat.is_none() {
                return false;
            }
            // An onset or a beat found between two spectrum hops goes out
            // with the block it was found in, as at a hop, not with the
            // next hop.
            let f = &mut self.frame;
            f.events_only = true;
            f.t_capture_ns = t_capture_ns;
            f.time_s = time_s;
            self.report_events();
            return true;
        }
        self.since_hop -= self.hop;
        self.analyse(t_capture_ns, time_s);
        true
    }

    fn push_history(&mut self, x: &[f32]) {
        let w = self.hist_len;
        if x.len() >= w {
            self.history[..w].copy_from_slice(&x[x.len() - w..]);
            self.hist_end = w;
            return;
        }
        if self.hist_end + x.len() > self.history.len() {
            let keep = w - x.len();
            self.history
                .copy_within(self.hist_end - keep..self.hist_end, 0);
            self.hist_end = keep;
        }
        self.history[self.hist_end..self.hist_end + x.len()].copy_from_slice(x);
        self.hist_end += x.len();
    }

    /// The parameters in force.
    fn params(&self) -> DspParams {
        self.applied
            .unwrap_or_else(|| DspParams::from_config(&Default::default()))
    }

    fn analyse(&mut self, t_capture_ns: u64, time_s: f64) {
        let p = self.params();
        let newest = &self.history[self.hist_end - self.window..self.hist_end];
        let (sum, around_dc) =
            super::lanes::window_sums(&mut self.fft_in, newest, &self.hann, self.dc.get());
        // The FFT of a buffer of the planned length cannot fail; on the
        // impossible error the previous spectrum is kept.
        let _ = self.fft.process_with_scratch(
            &mut self.fft_in,
            &mut self.fft_out,
            &mut self.fft_scratch,
        );
        // Spectral shape is read from the power smoothed over ~50 ms: a
        // single periodogram is too noisy (white noise would read a
        // flatness of ~0.56 instead of ~1) and visuals want steady values.
        spectra(
            &self.fft_out,
            &mut self.power,
            &mut self.mag,
            &mut self.shape_power,
            [self.power_corr, self.mag_corr, self.shape_alpha],
        );
        let bin_hz = self.sr / self.window as f32;
        let shape = spectral::shape(&self.shape_power, bin_hz);
        if self.det.reuses_spectrum() {
            // What the tracker calls silence: the level around the DC
            // offset followed from window to window.
            let heard_dbfs = super::bands::heard_dbfs(around_dc, self.window);
            self.dc.follow(sum / self.window as f32, self.det.hop_s());
            let at = self.frames_in;
            detect(
                (&mut self.flux, &mut self.tracker),
                &self.mag,
                heard_dbfs,
                &p,
                at,
                (&mut self.detected, &mut self.last_tempo),
            );
        }
        if self.detected.ran {
            self.last_flux = self.detected.flux;
        }
        self.detected.ran = false;
        self.detected.flux = 0.0;
        self.report_events();

        let f = &mut self.frame;
        f.events_only = false;
        f.seq = self.hops;
        f.t_capture_ns = t_capture_ns;
        f.time_s = time_s;
        f.centroid_hz = shape.centroid_hz;
        f.flatness = shape.flatness;
        f.rolloff_hz = shape.rolloff_hz;
        f.flux = self.last_flux;
        f.has_bins = p.fft_enabled;
        f.raw_db = p.send_raw_db;
        f.db_floor = p.db_floor;
        let n = self.map.n_bins();
        f.n_bins = if p.fft_enabled { n as u16 } else { 0 };
        if p.fft_enabled {
            self.map.reduce(&self.power, &mut self.sums, &mut self.db);
            // The post-processor runs in both modes so that switching the
            // stream does not restart its smoothers and peaks.
            self.post.process(&self.db[..n], &mut self.processed[..n]);
            if p.send_raw_db {
                f.bins[..n].copy_from_slice(&self.db[..n]);
            } else {
                // The master gain scales the post-processed stream only
                // (raw dB is a measurement), as in the Python server.
                let gain = if p.master_gain.is_finite() {
                    p.master_gain.max(0.0)
                } else {
                    1.0
                };
                for (o, v) in f.bins[..n].iter_mut().zip(&self.processed[..n]) {
                    *o = v * gain;
                }
            }
        }
        self.hops += 1;
    }

    /// Move the onset and the beat the detector hops found since the last
    /// frame into the frame, each with its lag from the newest input frame;
    /// the largest flux stays for the next spectrum hop's frame.
    fn report_events(&mut self) {
        let d = &mut self.detected;
        let (onsets, onset, beat) = (d.onsets, d.onset.take(), d.beat.take());
        d.onsets = 0;
        self.onset_count = self.onset_count.wrapping_add(onsets);
        // Seconds from a detector hop at input frame `at` to this frame.
        let (now, sr) = (self.frames_in, self.sr);
        let late = move |at: u64| now.saturating_sub(at) as f32 / sr;
        let f = &mut self.frame;
        f.onset = onset.is_some();
        f.onset_strength = onset.map_or(0.0, |(strength, _, _)| strength);
        f.onset_lag_s = onset.map_or(0.0, |(_, lag, at)| lag + late(at));
        f.onset_count = self.onset_count;
        f.tempo = TempoState {
            beat: beat.is_some(),
            beat_lag_s: beat.map_or(0.0, |(lag, at)| lag + late(at)),
            ..self.last_tempo
        };
    }

    /// One detector hop on the front end's own FFT, its window ending
    /// `back` frames before the newest input frame.
    fn detect_own(&mut self, back: usize) {
        let p = self.params();
        let history = &self.history[self.hist_end - self.hist_len..self.hist_end];
        let hop_s = self.det.hop_s();
        let (mag, around_dc, mean) = self.det.magnitudes(history, back, self.dc.get());
        self.dc.follow(mean, hop_s);
        let at = self.frames_in.saturating_sub(back as u64);
        detect(
            (&mut self.flux, &mut self.tracker),
            mag,
            super::bands::to_dbfs(around_dc.max(0.0).sqrt()),
            &p,
            at,
            (&mut self.detected, &mut self.last_tempo),
        );
    }

    /// The log bin map (for tests and meta).
    pub fn bin_map(&self) -> &LogBinMap {
        &self.map
    }

    /// Frames still needed before the next analysis runs.
    pub fn frames_until_hop(&self) -> usize {
        let to_hop = self.hop.saturating_sub(self.since_hop).max(1);
        let to_window = (self.window as u64).saturating_sub(self.frames_in) as usize;
        to_hop.max(to_window)
    }

    /// Frames still needed before `process` may return a frame: the next
    /// analysis or, where the detectors run their own FFT, their next hop
    /// (what it finds goes out with that block).
    pub fn frames_until_frame(&self) -> usize {
        let hop = self.frames_until_hop();
        if self.det.reuses_spectrum() {
            hop
        } else {
            hop.min(self.det.frames_until_due())
        }
    }

    /// Frames between hops.
    pub fn hop(&self) -> usize {
        self.hop
    }

    /// The rfft power spectrum of the last hop.
    pub fn power(&self) -> &[f32] {
        &self.power
    }
}

/// One hop of the onset detector and the beat tracker on `mag`, at input
/// frame `at`; what it finds is merged into `found` for the next frame.
fn detect(
    (flux, tracker): (&mut FluxOnset, &mut BeatTracker),
    mag: &[f32],
    heard_dbfs: f32,
    p: &DspParams,
    at: u64,
    (found, last_tempo): (&mut Detected, &mut TempoState),
) {
    let mut onset = flux.process(mag, p);
    if !p.onset_enabled {
        onset.onset = None;
    }
    let tempo = if p.tempo_enabled {
        tracker.process(
            &onset.beat_groups,
            &onset.agree_groups,
            onset.low_power,
            heard_dbfs,
            p,
        )
    } else {
        Default::default()
    };
    *last_tempo = tempo;
    found.flux = if found.ran {
        found.flux.max(onset.flux)
    } else {
        onset.flux
    };
    found.ran = true;
    if let Some(strength) = onset.onset {
        found.onsets = found.onsets.saturating_add(1);
        if found.onset.is_none_or(|(s, _, _)| strength > s) {
            found.onset = Some((strength, onset.lag_s, at));
        }
    }
    if tempo.beat {
        found.beat = Some((tempo.beat_lag_s, at));
    }
}

super::lanes::multiversion! {
    /// From the rfft `out`: the corrected power, the corrected magnitudes
    /// and one step of the smoothed power, `[power_corr, mag_corr, alpha]`.
    fn spectra(
        out: &[Complex32],
        power: &mut [f32],
        mag: &mut [f32],
        smoothed: &mut [f32],
        k: [f32; 3],
    ) {
        let bins = out.iter().zip(power.iter_mut()).zip(mag.iter_mut()).zip(smoothed.iter_mut());
        for (((c, pw), m), sp) in bins {
            let n2 = c.re * c.re + c.im * c.im;
            let p = n2 * k[0];
            *pw = p;
            *m = n2.sqrt() * k[1];
            *sp += k[2] * (p - *sp);
        }
    }
}

#[cfg(test)]
mod tests;
