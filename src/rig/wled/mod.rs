//! WLED Audio Sync v2 out: every `wled.interval-ms` (20 ms, WLED's own
//! rate) one 44-byte packet to WLED's multicast group 239.0.0.1:11988, so
//! WLED controllers set to "Receive" react to phase4's input.
//!
//! [`geq`] is WLED's analysis on phase4's audio, [`packet`] the wire layout.
//! The sender lives in the `p4-rig` thread: it takes the audio blocks and
//! phase4's beats and low-band onsets (as WLED's `samplePeak`), sends with a
//! non-blocking socket and counts what the network refused.

pub mod geq;
pub mod packet;

use crate::config::WledConfig;
use crate::stats::Stats;
use geq::GeqAnalyzer;
use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often an unresolvable `wled.host` is tried again.
const RESOLVE_EVERY: Duration = Duration::from_secs(30);

/// Sends Audio Sync packets.
pub struct WledSender {
    cfg: WledConfig,
    sock: UdpSocket,
    dest: Option<SocketAddr>,
    resolved_at: Instant,
    analyzer: Option<GeqAnalyzer>,
    gate_dbfs: f32,
    interval: Duration,
    last: Instant,
    peak: bool,
    stats: Arc<Stats>,
}

fn resolve(host: &str, port: u16) -> Option<SocketAddr> {
    (host, port).to_socket_addrs().ok()?.find(|a| a.is_ipv4())
}

/// Choose the interface multicast leaves through (IP_MULTICAST_IF).
fn set_multicast_if(sock: &UdpSocket, addr: Ipv4Addr) -> std::io::Result<()> {
    let a = libc::in_addr {
        s_addr: u32::from_ne_bytes(addr.octets()),
    };
    // SAFETY: a valid socket and a pointer to an in_addr of the given size.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            &a as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::in_addr>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl WledSender {
    /// Open the socket. `gate_dbfs` is phase4's silence threshold.
    pub fn new(cfg: &WledConfig, gate_dbfs: f64, stats: Arc<Stats>) -> std::io::Result<Self> {
        let local: Ipv4Addr = cfg.interface.parse().unwrap_or(Ipv4Addr::UNSPECIFIED);
        let sock = UdpSocket::bind((local, 0))?;
        sock.set_nonblocking(true)?;
        sock.set_broadcast(true)?;
        sock.set_multicast_ttl_v4(cfg.ttl)?;
        if !local.is_unspecified() {
            set_multicast_if(&sock, local)?;
        }
        let dest = resolve(&cfg.host, cfg.port);
        if dest.is_none() {
            log::warn!(
                "wled: cannot resolve {:?}; retrying every {} s",
                cfg.host,
                RESOLVE_EVERY.as_secs()
            );
        }
        Ok(WledSender {
            cfg: cfg.clone(),
            sock,
            dest,
            resolved_at: Instant::now(),
            analyzer: None,
            gate_dbfs: gate_dbfs as f32,
            interval: Duration::from_millis(cfg.interval_ms as u64),
            last: Instant::now(),
            peak: false,
            stats,
        })
    }

    /// Where packets go (once resolved).
    pub fn destination(&self) -> Option<SocketAddr> {
        self.dest
    }

    /// Take one block of input.
    pub fn push(&mut self, samples: &[f32], sample_rate: u32) {
        if sample_rate == 0 {
            return;
        }
        if self
            .analyzer
            .as_ref()
            .is_none_or(|a| a.sample_rate() != sample_rate)
        {
            // First block, or a device switch to a new rate.
            self.analyzer = Some(GeqAnalyzer::new(
                sample_rate,
                self.gate_dbfs,
                self.cfg.gain as f32,
            ));
        }
        if let Some(a) = self.analyzer.as_mut() {
            a.push(samples);
        }
    }

    /// A beat or low-band onset happened (WLED's `samplePeak`).
    pub fn peak(&mut self) {
        self.peak = true;
    }

    /// When the next packet is due.
    pub fn next_due(&self) -> Instant {
        self.last + self.interval
    }

    /// Send a packet if one is due.
    pub fn tick(&mut self, now: Instant) {
        if now < self.next_due() {
            return;
        }
        let dt = now
            .duration_since(self.last)
            .as_secs_f32()
            .clamp(0.001, 1.0);
        self.last = if now.duration_since(self.next_due()) < self.interval {
            self.next_due()
        } else {
            now
        };
        if self.dest.is_none() && self.resolved_at.elapsed() >= RESOLVE_EVERY {
            self.resolved_at = Instant::now();
            self.dest = resolve(&self.cfg.host, self.cfg.port);
        }
        let (Some(a), Some(dest)) = (self.analyzer.as_mut(), self.dest) else {
            return;
        };
        let packet = a.analyze(dt, self.peak);
        self.peak = false;
        match self.sock.send_to(&packet.encode(), dest) {
            Ok(_) => self.stats.rig.wled_sent.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.stats.rig.wled_failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}
