//! Causal beat tracking and tempo on the onset detection function.
//!
//! Real-time safety: state is allocated in `new`; `process` never allocates,
//! locks, logs or blocks.
//!
//! (Initial version: the API the spectrum worker calls. The tracker is filled
//! in by the musical-features work.)

use super::params::DspParams;
use crate::types::TempoState;

/// Beat tracker fed one onset-detection value per hop.
pub struct BeatTracker {
    hop_period_s: f32,
    state: TempoState,
}

impl BeatTracker {
    /// A tracker called once every `hop_period_s`.
    pub fn new(hop_period_s: f32) -> Self {
        BeatTracker {
            hop_period_s,
            state: TempoState::default(),
        }
    }

    /// Feed one hop: the ODF value and the window's RMS level in dBFS.
    pub fn process(&mut self, _odf: f32, _rms_dbfs: f32, _p: &DspParams) -> TempoState {
        let _ = self.hop_period_s;
        self.state.beat = false;
        self.state
    }

    /// Forget all history.
    pub fn reset(&mut self) {
        self.state = TempoState::default();
    }
}
