//! The tempo feed for `phase4-link` (the separate GPL program that is the
//! Ableton Link peer): phase4's tempo and beat phase as one OSC message to
//! 127.0.0.1:`link.feed-port`, 50 times a second and whenever the lock
//! changes. Loopback only: the feed never leaves the box; Link itself
//! (multicast discovery, session) is `phase4-link`'s business.
//!
//! ```text
//! /phase4/link/tempo  bpm:f phase:f confidence:f locked:i t_ns:h beat:i quantum:f
//! ```
//!
//! `phase` is the beat phase in [0, 1) at CLOCK_MONOTONIC time `t_ns` (the
//! capture time of the newest audio in the analysis), so the receiver can
//! place the beat grid on its own clock however late the datagram arrives.
//! `bpm` is 0 and `locked` 0 while the tracker claims no tempo: the Link
//! session is then left alone.

use crate::stats::Stats;
use crate::types::TempoState;
use rosc::{OscMessage, OscPacket, OscType};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The feed's OSC address.
pub const ADDRESS: &str = "/phase4/link/tempo";
/// Shortest time between two datagrams while nothing changes.
const EVERY: Duration = Duration::from_millis(20);

/// One decoded feed message (what `phase4-link` reads; also used by tests).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FeedMessage {
    /// Tempo, 0 while not locked.
    pub bpm: f32,
    /// Beat phase in [0, 1) at `t_ns`.
    pub phase: f32,
    /// Tracker confidence in [0, 1].
    pub confidence: f32,
    /// Whether a tempo is claimed.
    pub locked: bool,
    /// CLOCK_MONOTONIC ns the phase refers to.
    pub t_ns: u64,
    /// Beats counted since start.
    pub beat: u32,
    /// Beats per bar for aligning the session.
    pub quantum: f32,
}

impl FeedMessage {
    /// As an OSC message.
    pub fn to_osc(&self) -> OscMessage {
        OscMessage {
            addr: ADDRESS.into(),
            args: vec![
                OscType::Float(self.bpm),
                OscType::Float(self.phase),
                OscType::Float(self.confidence),
                OscType::Int(self.locked as i32),
                OscType::Long(self.t_ns as i64),
                OscType::Int(self.beat as i32),
                OscType::Float(self.quantum),
            ],
        }
    }

    /// From an OSC message; `None` unless it is a well-formed feed message.
    pub fn from_osc(m: &OscMessage) -> Option<Self> {
        if m.addr != ADDRESS || m.args.len() != 7 {
            return None;
        }
        let f = |i: usize| match m.args[i] {
            OscType::Float(v) if v.is_finite() => Some(v),
            _ => None,
        };
        let (OscType::Int(locked), OscType::Long(t), OscType::Int(beat)) =
            (&m.args[3], &m.args[4], &m.args[5])
        else {
            return None;
        };
        Some(FeedMessage {
            bpm: f(0)?,
            phase: f(1)?,
            confidence: f(2)?,
            locked: *locked != 0,
            t_ns: u64::try_from(*t).ok()?,
            beat: u32::try_from(*beat).ok()?,
            quantum: f(6)?,
        })
    }
}

/// Sends the feed.
pub struct LinkFeed {
    sock: UdpSocket,
    quantum: f32,
    last_sent: Option<Instant>,
    last_locked: bool,
    stats: Arc<Stats>,
    buf: Vec<u8>,
}

impl LinkFeed {
    /// A socket toward 127.0.0.1:`port`.
    pub fn new(port: u16, quantum: f64, stats: Arc<Stats>) -> std::io::Result<Self> {
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        sock.set_nonblocking(true)?;
        let dest: SocketAddr = (Ipv4Addr::LOCALHOST, port).into();
        // Connected: with nothing bound to the port (phase4-link not
        // running) the kernel's "port unreachable" comes back as the error
        // of the next send, counted in link_failed; an unconnected socket
        // never hears of it.
        sock.connect(dest)?;
        Ok(LinkFeed {
            sock,
            quantum: quantum as f32,
            last_sent: None,
            last_locked: false,
            stats,
            buf: Vec::with_capacity(128),
        })
    }

    /// Tell `phase4-link` the tempo after a spectrum frame captured at `t_ns`.
    pub fn update(&mut self, t: &TempoState, t_ns: u64, now: Instant) {
        let due = self
            .last_sent
            .is_none_or(|s| now.duration_since(s) >= EVERY)
            || t.locked != self.last_locked;
        if !due {
            return;
        }
        self.last_sent = Some(now);
        self.last_locked = t.locked;
        let m = FeedMessage {
            bpm: if t.locked { t.bpm } else { 0.0 },
            phase: if t.locked { t.phase } else { 0.0 },
            confidence: t.confidence,
            locked: t.locked,
            t_ns,
            beat: t.beat_index,
            quantum: self.quantum,
        };
        self.buf.clear();
        let ok = rosc::encoder::encode_into(&OscPacket::Message(m.to_osc()), &mut self.buf).is_ok()
            && self.sock.send(&self.buf).is_ok();
        let c = if ok {
            &self.stats.rig.link_sent
        } else {
            &self.stats.rig.link_failed
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_messages_round_trip_and_junk_is_refused() {
        let m = FeedMessage {
            bpm: 128.0,
            phase: 0.25,
            confidence: 0.9,
            locked: true,
            t_ns: 123_456_789_012,
            beat: 42,
            quantum: 4.0,
        };
        let bytes = rosc::encoder::encode(&OscPacket::Message(m.to_osc())).unwrap();
        let OscPacket::Message(back) = rosc::decoder::decode_udp(&bytes).unwrap().1 else {
            panic!()
        };
        assert_eq!(FeedMessage::from_osc(&back), Some(m));
        let mut bad = m.to_osc();
        bad.args[1] = OscType::Float(f32::NAN);
        assert_eq!(FeedMessage::from_osc(&bad), None);
        bad = m.to_osc();
        bad.args.pop();
        assert_eq!(FeedMessage::from_osc(&bad), None);
        bad = m.to_osc();
        bad.addr = "/audio/tempo".into();
        assert_eq!(FeedMessage::from_osc(&bad), None);
    }
}
