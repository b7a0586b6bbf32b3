//! The DSP parameters as one `Copy` value, and the lock-free handoff that
//! brings a new value to each worker.
//!
//! The control side owns a [`ParamsHub`]; every worker owns a [`ParamsRx`].
//! Publishing pushes a whole new [`DspParams`] into each worker's small SPSC
//! ring; the worker drains its ring at the top of a block and keeps the last
//! value. Nothing on the worker side locks or allocates. Everything that a new
//! value changes (filter coefficients, the log-bin map) is recomputed in
//! place in preallocated storage.

use crate::config::Config;
use ringbuf::traits::{Consumer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};
use std::sync::Mutex;

/// Parameters of one band.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BandParams {
    /// Lower −3 dB edge.
    pub lo_hz: f32,
    /// Upper −3 dB edge.
    pub hi_hz: f32,
    /// Smoother time constant while the level falls.
    pub tau_s: f32,
    /// Smoother time constant while it rises.
    pub tau_attack_s: f32,
}

/// Parameters of one band's onset detector (see [`super::onset::BandOnsets`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BandOnsetParams {
    /// Threshold as a multiple of the running mean novelty.
    pub sensitivity: f32,
    /// Shortest time between two onsets.
    pub refractory_s: f32,
    /// Slow envelope time constant.
    pub slow_tau_s: f32,
    /// Lowest threshold.
    pub abs_floor: f32,
}

/// Everything a worker needs to know, as one plain value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DspParams {
    /// Incremented on every publish.
    pub generation: u64,
    /// Butterworth prototype order.
    pub filter_order: u32,
    /// Low, mid, high.
    pub bands: [BandParams; 3],
    /// Peak follower attack.
    pub tau_attack_s: f32,
    /// Peak follower release.
    pub tau_release_s: f32,
    /// Noise floor (linear RMS).
    pub noise_floor: f32,
    /// Auto-scale strength.
    pub strength: f32,
    /// Final gain on L/M/H and the post-processed spectrum.
    pub master_gain: f32,
    /// Log spectrum on.
    pub fft_enabled: bool,
    /// Log bins.
    pub n_bins: u32,
    /// Lowest log bin edge.
    pub f_min_hz: f32,
    /// Raw-mode floor.
    pub db_floor: f32,
    /// Raw-mode ceiling.
    pub db_ceiling: f32,
    /// Raw dB on the wire.
    pub send_raw_db: bool,
    /// Peak smear in octaves.
    pub peak_smear_oct: f32,
    /// Spectral tilt before the per-bin auto-scaler, dB per octave.
    pub tilt_db_per_oct: f32,
    /// Onsets on.
    pub onset_enabled: bool,
    /// Broadband onset sensitivity.
    pub onset_sensitivity: f32,
    /// Minimum gap between broadband onsets.
    pub onset_min_gap_s: f32,
    /// The per-band onset detectors.
    pub band_onset: [BandOnsetParams; 3],
    /// Tempo tracking on.
    pub tempo_enabled: bool,
    /// Tempo range.
    pub min_bpm: f32,
    /// Tempo range.
    pub max_bpm: f32,
    /// Confidence to lock.
    pub lock_confidence: f32,
    /// Silence threshold.
    pub silence_threshold_dbfs: f32,
    /// Silence hold.
    pub silence_hold_s: f32,
}

impl DspParams {
    /// The parameters a configuration asks for.
    pub fn from_config(c: &Config) -> Self {
        let band = |b: crate::config::BandConfig| BandParams {
            lo_hz: b.lo_hz as f32,
            hi_hz: b.hi_hz as f32,
            tau_s: b.tau_s as f32,
            tau_attack_s: b.tau_attack_s as f32,
        };
        let onset = |b: crate::config::BandOnsetConfig| BandOnsetParams {
            sensitivity: b.sensitivity as f32,
            refractory_s: b.refractory_s as f32,
            slow_tau_s: b.slow_tau_s as f32,
            abs_floor: b.abs_floor as f32,
        };
        DspParams {
            generation: 0,
            filter_order: c.dsp.filter_order,
            bands: [band(c.dsp.low), band(c.dsp.mid), band(c.dsp.high)],
            tau_attack_s: c.autoscale.tau_attack_s as f32,
            tau_release_s: c.autoscale.tau_release_s as f32,
            noise_floor: c.autoscale.noise_floor as f32,
            strength: c.autoscale.strength as f32,
            master_gain: c.autoscale.master_gain as f32,
            fft_enabled: c.fft.enabled,
            n_bins: c.fft.n_bins,
            f_min_hz: c.fft.f_min_hz as f32,
            db_floor: c.fft.db_floor as f32,
            db_ceiling: c.fft.db_ceiling as f32,
            send_raw_db: c.fft.send_raw_db,
            peak_smear_oct: c.fft.peak_smear_oct as f32,
            tilt_db_per_oct: c.fft.tilt_db_per_oct as f32,
            onset_enabled: c.onset.enabled,
            onset_sensitivity: c.onset.sensitivity as f32,
            onset_min_gap_s: c.onset.min_gap_s as f32,
            band_onset: c.onset.bands().map(onset),
            tempo_enabled: c.tempo.enabled,
            min_bpm: c.tempo.min_bpm as f32,
            max_bpm: c.tempo.max_bpm as f32,
            lock_confidence: c.tempo.lock_confidence as f32,
            silence_threshold_dbfs: c.silence.threshold_dbfs as f32,
            silence_hold_s: c.silence.hold_s as f32,
        }
    }
}

/// Capacity of each worker's parameter ring. A burst of slider moves larger
/// than this between two blocks keeps the newest value pending (see
/// [`ParamsHub::publish`]).
const PARAM_RING: usize = 16;

/// The control side of the handoff.
pub struct ParamsHub {
    inner: Mutex<HubInner>,
}

struct HubInner {
    current: DspParams,
    txs: Vec<HeapProd<DspParams>>,
}

/// A worker's side of the handoff.
pub struct ParamsRx {
    rx: HeapCons<DspParams>,
    current: DspParams,
}

impl ParamsHub {
    /// A hub holding `initial`, with no workers yet.
    pub fn new(initial: DspParams) -> Self {
        ParamsHub {
            inner: Mutex::new(HubInner {
                current: initial,
                txs: Vec::new(),
            }),
        }
    }

    /// A new receiver for a worker, starting at the current value.
    pub fn subscribe(&self) -> ParamsRx {
        let (tx, rx) = HeapRb::<DspParams>::new(PARAM_RING).split();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.txs.push(tx);
        ParamsRx {
            rx,
            current: inner.current,
        }
    }

    /// The current value.
    pub fn current(&self) -> DspParams {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).current
    }

    /// Publish a new value to every worker. Returns the new generation.
    ///
    /// If a worker's ring is full (the worker is stalled), the oldest values
    /// stay queued and this one is not delivered to that worker; the next
    /// publish will try again. Workers always end on the newest value they
    /// received, and the hub's `current` is always the newest published.
    pub fn publish(&self, mut p: DspParams) -> u64 {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        p.generation = inner.current.generation + 1;
        inner.current = p;
        for tx in inner.txs.iter_mut() {
            let _ = tx.try_push(p);
        }
        p.generation
    }

    /// Change the current value with `f` and publish it.
    pub fn update(&self, f: impl FnOnce(&mut DspParams)) -> DspParams {
        let mut p = self.current();
        f(&mut p);
        self.publish(p);
        self.current()
    }
}

impl ParamsRx {
    /// Take any new values; true when the parameters changed.
    ///
    /// Real-time safe: pops `Copy` values from a wait-free ring.
    pub fn poll(&mut self) -> bool {
        let mut changed = false;
        while let Some(p) = self.rx.try_pop() {
            self.current = p;
            changed = true;
        }
        changed
    }

    /// The newest value received.
    pub fn get(&self) -> &DspParams {
        &self.current
    }

    /// A receiver that never changes (offline analysis).
    pub fn fixed(p: DspParams) -> Self {
        let (_tx, rx) = HeapRb::<DspParams>::new(1).split();
        ParamsRx { rx, current: p }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_see_the_newest_value() {
        let hub = ParamsHub::new(DspParams::from_config(&Config::default()));
        let mut rx = hub.subscribe();
        assert!(!rx.poll());
        hub.update(|p| p.strength = 0.5);
        hub.update(|p| p.strength = 0.25);
        assert!(rx.poll());
        assert_eq!(rx.get().strength, 0.25);
        assert_eq!(rx.get().generation, 2);
    }
}
