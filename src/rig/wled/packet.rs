//! The WLED Audio Sync v2 packet: 44 bytes, little endian, the layout of
//! the `audioSyncPacket` struct in WLED's audio-reactive usermod
//! (`usermods/audioreactive/audio_reactive.cpp`, "V2" struct). Offsets:
//!
//! | offset | size | field | phase4 sends |
//! |---|---|---|---|
//! | 0 | 6 | header `"00002\0"` | always |
//! | 6 | 2 | reserved (WLED-MM: sound pressure, 8.8 fixed point) | the level, 0..255 |
//! | 8 | 4 | `sampleRaw` f32 | volume, 0..255 |
//! | 12 | 4 | `sampleSmth` f32 | smoothed volume, 0..255 |
//! | 16 | 1 | `samplePeak` u8 | 1 after a beat or low-band onset |
//! | 17 | 1 | reserved (WLED-MM: `frameCounter`) | rolling packet counter |
//! | 18 | 16 | `fftResult[16]` u8 | the 16 GEQ channels, 0..254 |
//! | 34 | 2 | reserved (WLED-MM: `zeroCrossingCount` u16) | zero crossings in 23 ms |
//! | 36 | 4 | `FFT_Magnitude` f32 | magnitude of the strongest bin |
//! | 40 | 4 | `FFT_MajorPeak` f32 | its frequency, Hz (1..11025) |
//!
//! WLED takes a packet as v2 only when it is exactly 44 bytes and starts
//! with the 6-byte header; it reads the struct with the ESP32's native
//! (little-endian) byte order.

/// Size of a v2 packet.
pub const PACKET_LEN: usize = 44;
/// The v2 header, NUL included.
pub const HEADER: [u8; 6] = *b"00002\0";

/// What one Audio Sync v2 packet carries.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AudioSync {
    /// Sound pressure as WLED-MM's 8.8 fixed point (0..255).
    pub pressure: f32,
    /// Volume now, 0..255 (WLED: `sampleRaw` or `rawSampleAgc`).
    pub sample_raw: f32,
    /// Smoothed volume, 0..255 (WLED: `sampleAvg` or `sampleAgc`).
    pub sample_smth: f32,
    /// A peak (beat) since the last packet.
    pub sample_peak: bool,
    /// Rolling counter, so a receiver can drop duplicates.
    pub frame_counter: u8,
    /// The 16 GEQ channels, 0..=254 (WLED never sends 255).
    pub fft_result: [u8; 16],
    /// Zero crossings in the newest 23 ms.
    pub zero_crossings: u16,
    /// Magnitude of the strongest FFT bin.
    pub fft_magnitude: f32,
    /// Frequency of the strongest FFT bin, Hz.
    pub fft_major_peak: f32,
}

impl AudioSync {
    /// The packet bytes.
    pub fn encode(&self) -> [u8; PACKET_LEN] {
        let mut b = [0u8; PACKET_LEN];
        b[0..6].copy_from_slice(&HEADER);
        let p = self.pressure.clamp(0.0, 255.0);
        b[6] = p as u8;
        b[7] = ((p - p.floor()) * 256.0) as u8;
        b[8..12].copy_from_slice(&self.sample_raw.to_le_bytes());
        b[12..16].copy_from_slice(&self.sample_smth.to_le_bytes());
        b[16] = self.sample_peak as u8;
        b[17] = self.frame_counter;
        for (d, s) in b[18..34].iter_mut().zip(self.fft_result) {
            *d = s.min(254);
        }
        b[34..36].copy_from_slice(&self.zero_crossings.to_le_bytes());
        b[36..40].copy_from_slice(&self.fft_magnitude.to_le_bytes());
        b[40..44].copy_from_slice(&self.fft_major_peak.to_le_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_land_at_wleds_offsets() {
        let mut geq = [0u8; 16];
        for (i, g) in geq.iter_mut().enumerate() {
            *g = 10 * i as u8;
        }
        geq[15] = 255;
        let p = AudioSync {
            pressure: 12.5,
            sample_raw: 100.0,
            sample_smth: 80.5,
            sample_peak: true,
            frame_counter: 7,
            fft_result: geq,
            zero_crossings: 0x1234,
            fft_magnitude: 512.0,
            fft_major_peak: 440.0,
        }
        .encode();
        assert_eq!(p.len(), 44);
        assert_eq!(&p[..6], b"00002\0");
        assert_eq!((p[6], p[7]), (12, 128));
        assert_eq!(f32::from_le_bytes(p[8..12].try_into().unwrap()), 100.0);
        assert_eq!(f32::from_le_bytes(p[12..16].try_into().unwrap()), 80.5);
        assert_eq!((p[16], p[17]), (1, 7));
        assert_eq!(p[18 + 3], 30);
        assert_eq!(p[18 + 15], 254, "255 is never sent");
        assert_eq!(u16::from_le_bytes([p[34], p[35]]), 0x1234);
        assert_eq!(f32::from_le_bytes(p[36..40].try_into().unwrap()), 512.0);
        assert_eq!(f32::from_le_bytes(p[40..44].try_into().unwrap()), 440.0);
    }
}
