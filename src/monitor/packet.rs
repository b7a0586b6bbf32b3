//! One Opus packet as it travels from `p4-monitor` to the broadcaster, and
//! its binary WebSocket frame (docs/protocol.md, "Monitor stream"):
//!
//! ```text
//! [2:u8][n:u8][header: n bytes][one Opus packet]
//! header (n = 28, little endian):
//!   0  u8   header version (1)
//!   1  u8   preset (0 low, 1 medium, 2 high, 3 ultra)
//!   2  u16  frame length in samples at 48 kHz (960 = 20 ms)
//!   4  u32  sequence number (per preset, +1 per frame)
//!   8  u64  capture time of the frame's first sample, CLOCK_MONOTONIC ns
//!  16  u64  when the server sent it, CLOCK_MONOTONIC ns (for a client's clock estimate)
//!  24  u32  rate the encoder ran at (48000, or the capture rate when Opus takes it)
//! ```
//!
//! Clients must read `n` and skip headers longer than they know (later
//! versions only append fields).

use super::Preset;

/// Type byte of a monitor frame (FFT frames start with 1).
pub const AUDIO_FRAME_TYPE: u8 = 2;
/// Header version.
pub const HEADER_VERSION: u8 = 1;
/// Header length.
pub const HEADER_LEN: usize = 28;
/// Largest Opus packet (RFC 6716: 1275 bytes per frame).
pub const MAX_PACKET: usize = 1275;

/// One encoded frame. `Copy`, fixed size: it travels through a
/// preallocated ring.
#[derive(Clone, Copy)]
pub struct AudioPacket {
    /// Which stream.
    pub preset: Preset,
    /// Frame counter of that stream.
    pub seq: u32,
    /// Capture time of the first sample (CLOCK_MONOTONIC ns).
    pub t_capture_ns: u64,
    /// Frame length in samples at 48 kHz.
    pub frame_48k: u16,
    /// Encoder input rate.
    pub rate: u32,
    /// Valid bytes in `data`.
    pub len: u16,
    /// The Opus packet.
    pub data: [u8; MAX_PACKET],
}

impl AudioPacket {
    /// The Opus bytes.
    pub fn opus(&self) -> &[u8] {
        &self.data[..self.len as usize]
    }

    /// The binary WebSocket frame, sent at `t_send_ns`, into `out`.
    pub fn write_frame(&self, t_send_ns: u64, out: &mut Vec<u8>) {
        out.clear();
        out.reserve(2 + HEADER_LEN + self.len as usize);
        out.push(AUDIO_FRAME_TYPE);
        out.push(HEADER_LEN as u8);
        out.push(HEADER_VERSION);
        out.push(self.preset as u8);
        out.extend_from_slice(&self.frame_48k.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.t_capture_ns.to_le_bytes());
        out.extend_from_slice(&t_send_ns.to_le_bytes());
        out.extend_from_slice(&self.rate.to_le_bytes());
        out.extend_from_slice(self.opus());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frame_has_the_documented_layout() {
        let mut p = AudioPacket {
            preset: Preset::High,
            seq: 0x0102_0304,
            t_capture_ns: 7,
            frame_48k: 960,
            rate: 48_000,
            len: 3,
            data: [0; MAX_PACKET],
        };
        p.data[..3].copy_from_slice(&[0xaa, 0xbb, 0xcc]);
        let mut out = Vec::new();
        p.write_frame(9, &mut out);
        assert_eq!(out[0], 2);
        assert_eq!(out[1] as usize, HEADER_LEN);
        assert_eq!(out.len(), 2 + HEADER_LEN + 3);
        let h = &out[2..2 + HEADER_LEN];
        assert_eq!(h[0], 1);
        assert_eq!(h[1], 2);
        assert_eq!(u16::from_le_bytes([h[2], h[3]]), 960);
        assert_eq!(u32::from_le_bytes(h[4..8].try_into().unwrap()), 0x0102_0304);
        assert_eq!(u64::from_le_bytes(h[8..16].try_into().unwrap()), 7);
        assert_eq!(u64::from_le_bytes(h[16..24].try_into().unwrap()), 9);
        assert_eq!(u32::from_le_bytes(h[24..28].try_into().unwrap()), 48_000);
        assert_eq!(&out[2 + HEADER_LEN..], &[0xaa, 0xbb, 0xcc]);
    }
}
