//! Plain data shared by every part of the pipeline: audio blocks going into the
//! workers and feature frames coming out of them.
//!
//! Everything here is `Copy` and fixed-size so that it can travel through the
//! preallocated SPSC rings without touching the heap. Capacities are compile-time
//! maxima; the live sizes (`len`, `n_bins`) say how much of each array is valid.

/// Largest block (ALSA period) the pipeline accepts, in frames.
pub const MAX_BLOCK_FRAMES: usize = 2048;
/// Largest number of log-spectrum bins (`fft.n-bins`).
pub const MAX_FFT_BINS: usize = 1024;
/// Marker for a log bin that no FFT bin falls into (raw dB stream only).
pub const EMPTY_BIN_DB: f32 = -1000.0;

/// Index of each band in `[low, mid, high]` arrays.
pub const LOW: usize = 0;
/// Index of the mid band.
pub const MID: usize = 1;
/// Index of the high band.
pub const HIGH: usize = 2;
/// Band names in index order, as used on the wire.
pub const BAND_NAMES: [&str; 3] = ["low", "mid", "high"];

/// One period of mono audio as captured, converted to f32 in [-1, 1].
#[derive(Clone, Copy)]
pub struct Block {
    /// Block counter since the source started (gaps mean dropped blocks).
    pub seq: u64,
    /// CLOCK_MONOTONIC time, in ns, at which the last frame was captured.
    pub t_capture_ns: u64,
    /// Position of the first frame in the stream, in frames since start.
    pub frame_pos: u64,
    /// Sample rate of the stream the block came from.
    pub sample_rate: u32,
    /// Valid frames in `samples`.
    pub len: u32,
    /// Whether the source has a clock. Blocks from a clockless source (a
    /// file, ALSA's null/file plugins) are passed on losslessly: a full ring
    /// downstream makes the producer wait instead of dropping.
    pub clocked: bool,
    /// Mono samples; only `..len` are valid.
    pub samples: [f32; MAX_BLOCK_FRAMES],
}

impl Block {
    /// An empty block, for preallocating scratch space.
    pub const fn zeroed() -> Self {
        Block {
            seq: 0,
            t_capture_ns: 0,
            frame_pos: 0,
            sample_rate: 0,
            len: 0,
            clocked: true,
            samples: [0.0; MAX_BLOCK_FRAMES],
        }
    }

    /// The valid samples.
    pub fn samples(&self) -> &[f32] {
        &self.samples[..self.len as usize]
    }

    /// Stream time of the block's first frame, in seconds.
    pub fn time_s(&self) -> f64 {
        if self.sample_rate == 0 {
            0.0
        } else {
            self.frame_pos as f64 / self.sample_rate as f64
        }
    }
}

/// Per-band onset flags in [`BandsFrame::band_onsets`].
pub mod onset_bits {
    /// Low-band onset in this block.
    pub const LOW: u8 = 1;
    /// Mid-band onset in this block.
    pub const MID: u8 = 2;
    /// High-band onset in this block.
    pub const HIGH: u8 = 4;
}

/// What the bands worker computes for every block.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BandsFrame {
    /// Sequence number of the block this frame was computed from.
    pub seq: u64,
    /// Capture time stamp of that block (CLOCK_MONOTONIC ns).
    pub t_capture_ns: u64,
    /// Stream time of the block's first frame, in seconds.
    pub time_s: f64,
    /// Auto-scaled low/mid/high in [0, 1] (what `/audio/lmh` carries).
    pub lmh: [f32; 3],
    /// Smoothed band RMS before auto-scaling (linear).
    pub lmh_raw: [f32; 3],
    /// Block RMS in dBFS (a full-scale sine reads -3.01).
    pub rms_dbfs: f32,
    /// Block peak in dBFS.
    pub peak_dbfs: f32,
    /// Per-band onsets in this block ([`onset_bits`]).
    pub band_onsets: u8,
    /// Running count of band onsets since start, per band (so a client that
    /// samples frames cannot miss one).
    pub band_onset_count: [u32; 3],
    /// Silence state after this block.
    pub silent: bool,
}

/// Tempo and beat state, as tracked on the onset-strength signal.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TempoState {
    /// Tempo in BPM; 0 while not locked.
    pub bpm: f32,
    /// Confidence in [0, 1].
    pub confidence: f32,
    /// Beat phase in [0, 1): 0 on the beat.
    pub phase: f32,
    /// Whether a tempo is claimed.
    pub locked: bool,
    /// A beat falls in this frame.
    pub beat: bool,
    /// Number of beats emitted since start (index of the latest beat).
    pub beat_index: u32,
    /// When `beat`: how long before the end of this frame's window the beat
    /// fell, in seconds (≥ 0), so offline output can place it exactly.
    pub beat_lag_s: f32,
}

/// What the spectrum worker computes for every hop.
#[derive(Clone, Copy)]
pub struct SpectrumFrame {
    /// Hop counter since start.
    pub seq: u64,
    /// Capture time stamp of the newest block in the window.
    pub t_capture_ns: u64,
    /// Stream time of the end of the analysis window, in seconds.
    pub time_s: f64,
    /// Whether `bins` holds a log spectrum (`fft.enabled`).
    pub has_bins: bool,
    /// Whether `bins` is raw dB (with [`EMPTY_BIN_DB`] for empty bins) or the
    /// post-processed [0, 1] stream.
    pub raw_db: bool,
    /// `fft.db-floor` when the frame was made: OSC clamps raw-dB empty
    /// bins ([`EMPTY_BIN_DB`]) to it, as the Python server does.
    pub db_floor: f32,
    /// Valid entries in `bins`.
    pub n_bins: u16,
    /// The log spectrum as it goes on the wire.
    pub bins: [f32; MAX_FFT_BINS],
    /// Spectral centroid in Hz.
    pub centroid_hz: f32,
    /// Spectral flatness (geometric / arithmetic mean of power), in [0, 1].
    pub flatness: f32,
    /// Frequency below which 85 % of the power lies, in Hz.
    pub rolloff_hz: f32,
    /// Spectral flux (half-wave rectified log-magnitude difference).
    pub flux: f32,
    /// Broadband onset in this hop.
    pub onset: bool,
    /// Strength of that onset (detection function over threshold), else 0.
    pub onset_strength: f32,
    /// When `onset`: how long before the end of the window the onset fell,
    /// in seconds (≥ 0).
    pub onset_lag_s: f32,
    /// Running count of broadband onsets since start.
    pub onset_count: u32,
    /// Tempo and beat state after this hop.
    pub tempo: TempoState,
    /// Whether this frame only carries an onset or a beat the detectors
    /// found between two spectrum hops (where their hop is shorter than the
    /// spectrum's): its spectrum and shape are the last hop's, not sent
    /// again; its time is the end of the block in which the event was found.
    pub events_only: bool,
}

impl SpectrumFrame {
    /// An empty frame, for preallocating.
    pub const fn zeroed() -> Self {
        SpectrumFrame {
            seq: 0,
            t_capture_ns: 0,
            time_s: 0.0,
            has_bins: false,
            raw_db: false,
            db_floor: -100.0,
            n_bins: 0,
            bins: [0.0; MAX_FFT_BINS],
            centroid_hz: 0.0,
            flatness: 0.0,
            rolloff_hz: 0.0,
            flux: 0.0,
            onset: false,
            onset_strength: 0.0,
            onset_lag_s: 0.0,
            onset_count: 0,
            tempo: TempoState {
                bpm: 0.0,
                confidence: 0.0,
                phase: 0.0,
                locked: false,
                beat: false,
                beat_index: 0,
                beat_lag_s: 0.0,
            },
            events_only: false,
        }
    }

    /// The valid bins.
    pub fn bins(&self) -> &[f32] {
        &self.bins[..self.n_bins as usize]
    }
}
