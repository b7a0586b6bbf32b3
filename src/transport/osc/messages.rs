//! The OSC address space (see the table in the parent module) and the
//! prebuilt messages the sender overwrites in place.

use crate::types::MAX_FFT_BINS;
use rosc::{OscMessage, OscPacket, OscType};

/// Every address (without prefix) that `osc.addresses` may list.
pub const ADDRESSES: [&str; 13] = [
    "meta",
    "lmh",
    "level",
    "bpm",
    "tempo",
    "onset/low",
    "onset/mid",
    "onset/high",
    "fft",
    "spectral",
    "onset",
    "beat",
    "silence",
];

// Indices into ADDRESSES.
pub(super) const META: usize = 0;
pub(super) const LMH: usize = 1;
pub(super) const LEVEL: usize = 2;
pub(super) const BPM: usize = 3;
pub(super) const TEMPO: usize = 4;
pub(super) const ONSET_LOW: usize = 5;
pub(super) const FFT: usize = 8;
pub(super) const SPECTRAL: usize = 9;
pub(super) const ONSET: usize = 10;
pub(super) const BEAT: usize = 11;
pub(super) const SILENCE: usize = 12;

/// Prebuilt messages whose arguments are overwritten in place.
pub(super) struct Messages {
    pub(super) m: Vec<OscMessage>,
}

impl Messages {
    pub(super) fn new(prefix: &str) -> Self {
        let f = OscType::Float(0.0);
        let i = OscType::Int(0);
        let args: [Vec<OscType>; 13] = [
            vec![
                i.clone(),
                i.clone(),
                i.clone(),
                f.clone(),
                f.clone(),
                f.clone(),
                f.clone(),
                f.clone(),
                f.clone(),
            ],
            vec![f.clone(); 3],
            vec![f.clone(); 2],
            vec![f.clone()],
            vec![f.clone(); 3],
            vec![OscType::Int(1)],
            vec![OscType::Int(1)],
            vec![OscType::Int(1)],
            Vec::with_capacity(MAX_FFT_BINS),
            vec![f.clone(); 4],
            vec![f.clone()],
            vec![i.clone(), f.clone(), f.clone()],
            vec![i],
        ];
        let m = ADDRESSES
            .iter()
            .zip(args)
            .map(|(a, args)| OscMessage {
                addr: format!("{prefix}/{a}"),
                args,
            })
            .collect();
        Messages { m }
    }

    /// The most bytes one frame's datagrams can take: every message once,
    /// the spectrum at its most bins, plus a bundle's header and sizes.
    pub(super) fn most_bytes_per_frame(&mut self) -> usize {
        let fft = &mut self.m[FFT].args;
        fft.clear();
        fft.resize(MAX_FFT_BINS, OscType::Float(0.0));
        let mut scratch = Vec::new();
        let mut total = 16 + 4 * ADDRESSES.len();
        for m in &self.m {
            scratch.clear();
            let _ = rosc::encoder::encode_into(&OscPacket::Message(m.clone()), &mut scratch);
            total += scratch.len();
        }
        self.m[FFT].args.clear();
        total
    }

    pub(super) fn set_f(&mut self, msg: usize, arg: usize, v: f32) {
        self.m[msg].args[arg] = OscType::Float(v);
    }

    pub(super) fn set_i(&mut self, msg: usize, arg: usize, v: i32) {
        self.m[msg].args[arg] = OscType::Int(v);
    }
}

/// A message with no address and no arguments (allocates nothing): what
/// is left in a message's place while it is encoded or in a bundle.
pub(super) fn empty_message() -> OscMessage {
    OscMessage {
        addr: String::new(),
        args: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_message_has_the_python_servers_argument_types() {
        let m = Messages::new("/audio");
        let meta = &m.m[META];
        assert_eq!(meta.addr, "/audio/meta");
        let types: String = meta
            .args
            .iter()
            .map(|a| match a {
                OscType::Int(_) => 'i',
                OscType::Float(_) => 'f',
                _ => '?',
            })
            .collect();
        assert_eq!(types, "iiiffffff");
    }
}
