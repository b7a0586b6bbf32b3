//! What the workers computed, as messages to every client: FFT frames and
//! onset and beat events as they come off the rings, and a `snapshot` of
//! the newest features when one is due. Each message is encoded once and
//! shared by every client's queue.

use super::Broadcaster;
use crate::transport::ws::protocol::{self as p, Outbound};
use crate::types::{onset_bits, BAND_NAMES};
use ringbuf::traits::{Consumer, Observer};
use tungstenite::{Message, Utf8Bytes};

impl Broadcaster {
    /// Drain both frame rings, the spectrum's first, then the bands': what
    /// each holds now, so a turn ends even when frames come faster than
    /// they are sent.
    pub(super) fn drain_frames(&mut self) {
        self.drain_spectrum();
        self.drain_bands();
    }

    /// FFT frames (one per spectrum hop: a frame that only carries an
    /// event found between two hops has no new spectrum), broadband onsets
    /// and beats; keeps the newest frame.
    fn drain_spectrum(&mut self) {
        for _ in 0..self.spectrum.occupied_len() {
            let Some(f) = self.spectrum.try_pop() else {
                break;
            };
            if f.has_bins && !f.events_only && !self.clients.is_empty() {
                p::fft_frame(f.bins(), &mut self.fft_buf);
                // Built once, shared by every client's queue.
                let shared = bytes::Bytes::copy_from_slice(&self.fft_buf);
                for c in self.clients.iter_mut() {
                    self.drops += c.push_frame(Message::Binary(shared.clone()));
                }
            }
            if f.onset {
                let ev = Outbound::Onset {
                    band: "broadband",
                    t: f.time_s - f.onset_lag_s as f64,
                    strength: f.onset_strength,
                    count: f.onset_count,
                }
                .to_json();
                self.broadcast_frame(ev);
            }
            if f.tempo.beat {
                let ev = Outbound::Beat {
                    index: f.tempo.beat_index,
                    bpm: f.tempo.bpm,
                    confidence: f.tempo.confidence,
                    t: f.time_s - f.tempo.beat_lag_s as f64,
                }
                .to_json();
                self.broadcast_frame(ev);
            }
            self.latest_spec = f;
        }
    }

    /// Band onsets; keeps the newest frame.
    fn drain_bands(&mut self) {
        for _ in 0..self.bands.occupied_len() {
            let Some(f) = self.bands.try_pop() else { break };
            if f.band_onsets != 0 && !self.clients.is_empty() {
                for (k, bit) in [onset_bits::LOW, onset_bits::MID, onset_bits::HIGH]
                    .iter()
                    .enumerate()
                {
                    if f.band_onsets & bit != 0 {
                        let ev = Outbound::Onset {
                            band: BAND_NAMES[k],
                            t: f.time_s,
                            strength: f.lmh[k],
                            count: f.band_onset_count[k],
                        }
                        .to_json();
                        self.broadcast_frame(ev);
                    }
                }
            }
            self.ctx.stats.note_peak(f.peak_dbfs);
            self.latest_bands = f;
        }
    }

    /// The newest features as a `snapshot`, to everyone.
    pub(super) fn send_snapshot(&mut self) {
        self.snapshot_seq += 1;
        if self.clients.is_empty() {
            return;
        }
        let b = &self.latest_bands;
        let s = &self.latest_spec;
        let finite = |v: f32, floor: f32| if v.is_finite() { v.max(floor) } else { floor };
        let snap = p::Snapshot {
            seq: self.snapshot_seq,
            low: b.lmh[0],
            mid: b.lmh[1],
            high: b.lmh[2],
            low_raw: b.lmh_raw[0],
            mid_raw: b.lmh_raw[1],
            high_raw: b.lmh_raw[2],
            t: self.started.elapsed().as_secs_f64() * 1000.0,
            t_stream: b.time_s,
            bpm: if s.tempo.locked { s.tempo.bpm } else { 0.0 },
            low_onset: u8::from(b.band_onset_count[0] != self.onsets_seen[0]),
            mid_onset: u8::from(b.band_onset_count[1] != self.onsets_seen[1]),
            high_onset: u8::from(b.band_onset_count[2] != self.onsets_seen[2]),
            level: p::Level {
                rms_dbfs: finite(b.rms_dbfs, -160.0),
                peak_dbfs: finite(b.peak_dbfs, -160.0),
            },
            tempo: p::Tempo {
                bpm: if s.tempo.locked { s.tempo.bpm } else { 0.0 },
                confidence: s.tempo.confidence,
                phase: s.tempo.phase,
                locked: s.tempo.locked,
            },
            silent: b.silent,
            band_onsets: p::Lmh {
                low: b.band_onset_count[0],
                mid: b.band_onset_count[1],
                high: b.band_onset_count[2],
            },
            onset_count: s.onset_count,
            beat_index: s.tempo.beat_index,
            spectral: p::Spectral {
                centroid_hz: finite(s.centroid_hz, 0.0),
                flatness: finite(s.flatness, 0.0),
                rolloff_hz: finite(s.rolloff_hz, 0.0),
                flux: finite(s.flux, 0.0),
            },
        };
        self.onsets_seen = b.band_onset_count;
        let json = Outbound::Snapshot(&snap).to_json();
        self.broadcast_frame(json);
    }

    /// Queue `json` for every client. It was encoded once; the clients'
    /// queues share its one buffer (a reference count, no copy each).
    pub(super) fn broadcast_frame(&mut self, json: String) {
        if self.clients.is_empty() {
            return;
        }
        let shared = Utf8Bytes::from(json);
        for c in self.clients.iter_mut() {
            self.drops += c.push_frame(Message::Text(shared.clone()));
        }
    }
}
