//! Audio sources and the capture thread.
//!
//! A [`Source`] delivers mono f32 blocks: [`alsa::AlsaSource`] from an ALSA
//! PCM (mmap or read access, any of four sample formats, any channel count),
//! [`wav_source::WavSource`] from a WAV file paced at real time. The capture thread
//! ([`thread`]) opens the source inside itself, stamps and numbers blocks and
//! pushes them into one preallocated ring per worker.
//!
//! Never uses dsp, transport or control.

pub mod alsa;
pub mod alsa_log;
pub mod chain;
pub mod convert;
pub mod devices;
pub mod holders;
pub mod pcm_conf;
pub mod thread;
pub mod wav;
pub mod wav_source;

use crate::stats::DeviceInfo;
use crate::types::Block;

/// Why a source could not deliver.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The device could not be opened or configured.
    #[error("cannot open capture device '{device}': {reason}")]
    Open {
        /// PCM name.
        device: String,
        /// What alsa-lib said.
        reason: String,
    },
    /// The device went away while capturing (unplugged, ENODEV).
    #[error("capture device '{device}' is gone: {reason}")]
    Gone {
        /// PCM name.
        device: String,
        /// What alsa-lib said.
        reason: String,
    },
    /// A WAV input that cannot be used (missing, not a WAV, a format or
    /// channel it does not have): the configuration's fault.
    #[error("cannot use WAV input {path}: {reason}")]
    Wav {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// Reading a WAV input failed while playing it.
    #[error("reading WAV input {path} failed: {reason}")]
    WavIo {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// What a read produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// `block` holds new samples.
    Block,
    /// An overrun was recovered; no block this time.
    Xrun,
    /// A suspend was recovered; no block this time.
    Suspend,
    /// The stop event fired.
    Stopped,
    /// The input ended (WAV without loop).
    End,
    /// The source has nothing yet (a FIFO whose writer pauses); no block
    /// this time, ask again.
    Waiting,
}

/// Something that delivers mono blocks.
pub trait Source {
    /// What is open.
    fn info(&self) -> DeviceInfo;
    /// Whether the source is paced by a clock (a sound card, or the WAV
    /// input's real-time pacing). A clocked source gets SCHED_FIFO and drops
    /// blocks for a worker that fell behind; a clockless one (ALSA's
    /// null/file plugins, whose poll is always ready) is never made FIFO,
    /// since it would spin, and waits for ring space instead of dropping.
    fn clocked(&self) -> bool;
    /// Fill `block.samples[..block_frames]` and `block.len`, stamping
    /// `block.t_capture_ns`. Blocks until data is there or `stop` fires.
    ///
    /// Real-time safety: implementations neither allocate nor lock here.
    fn read(&mut self, block: &mut Block) -> Result<ReadOutcome, CaptureError>;
}
