//! The periodic health line and the one-line systemd STATUS.

use crate::service::cpu::CpuMeter;
use crate::stats::{LatencySummary, Role, Stats, N_ROLES, ROLE_NAMES};
use std::sync::atomic::Ordering;

/// Keeps the previous readings so each health line reports its interval.
#[derive(Default)]
pub struct Health {
    last_latency: Option<Vec<u64>>,
    cpu: CpuMeter,
    last_xruns: u64,
    last_drops: [u64; 2],
    last_blocks: u64,
    last_held: u64,
    rig: crate::rig::status::RigCpu,
}

/// One interval's figures.
#[derive(Clone, Debug, Default)]
pub struct HealthReport {
    /// The line as logged.
    pub line: String,
    /// Latency over the interval.
    pub latency: LatencySummary,
    /// CPU percent of one core, per thread.
    pub cpu_pct: [f64; N_ROLES],
}

impl Health {
    /// Start counting now.
    pub fn new() -> Self {
        Self::default()
    }

    /// Read the threads' CPU now for the next line (before they stop).
    pub fn checkpoint(&mut self, stats: &Stats) {
        self.cpu.checkpoint(&stats.role_tids());
    }

    /// Build the line for the interval since the last call.
    pub fn report(&mut self, stats: &Stats) -> HealthReport {
        let latency = stats.latency.summary_since(self.last_latency.as_deref());
        self.last_latency = Some(stats.latency.snapshot());
        let cpu = self.cpu.sample(&stats.role_tids());
        let cpu_pct: [f64; N_ROLES] = std::array::from_fn(|i| cpu.pct(cpu.roles_s[i]));
        let xruns = stats.xruns.load(Ordering::Relaxed);
        let drops = [
            stats.ring_drops[0].load(Ordering::Relaxed),
            stats.ring_drops[1].load(Ordering::Relaxed),
        ];
        let blocks = stats.blocks.load(Ordering::Relaxed);
        let held = crate::service::peer_lines::peer_lines_held();
        let dev = stats.device_info();
        let cpu_txt: Vec<String> = (0..N_ROLES)
            .filter(|i| stats.tid[*i].load(Ordering::Relaxed) != 0)
            .map(|i| format!("{}={:.2}", ROLE_NAMES[i], cpu_pct[i]))
            .chain([format!("other={:.2}", cpu.pct(cpu.other_s))])
            .collect();
        let mut line = format!(
            "health: device={} {} up={} rate={} blocks={}(+{}) xruns={}(+{}) suspends={} reopens={} ring_drops=bands:{}(+{}),spectrum:{}(+{}) frame_drops={} latency_us p50={} p95={} p99={} max={} n={} cpu%[{}] ws_clients={} osc_sent={} osc_failed={} rt_capture={} rt_workers={} mlock={} rt_cpu={} peer_lines_held={}(+{})",
            field_value(&dev.name),
            dev.access,
            if stats.delivering() { "yes" } else { "no" },
            dev.rate,
            blocks,
            blocks - self.last_blocks,
            xruns,
            xruns - self.last_xruns,
            stats.suspends.load(Ordering::Relaxed),
            stats.reopens.load(Ordering::Relaxed),
            drops[0],
            drops[0] - self.last_drops[0],
            drops[1],
            drops[1] - self.last_drops[1],
            stats.frame_drops.load(Ordering::Relaxed),
            latency.p50_us,
            latency.p95_us,
            latency.p99_us,
            latency.max_us,
            latency.count,
            cpu_txt.join(" "),
            stats.ws_clients.load(Ordering::Relaxed),
            stats.osc_sent.load(Ordering::Relaxed),
            stats.osc_failed.load(Ordering::Relaxed),
            stats.grant(&stats.rt_capture).as_str(),
            stats.grant(&stats.rt_workers).as_str(),
            stats.grant(&stats.mem_locked).as_str(),
            match (stats.pinned_cpu(), stats.rt_cpu_refused.load(Ordering::Relaxed)) {
                (Some(cpu), _) => cpu.to_string(),
                (None, 0) => "off".into(),
                (None, _) => "refused".into(),
            },
            held,
            held - self.last_held,
        );
        // The rig outputs that are on (nothing when all are off).
        line += &self.rig.health_fields(stats);
        self.last_xruns = xruns;
        self.last_drops = drops;
        self.last_blocks = blocks;
        self.last_held = held;
        HealthReport {
            line,
            latency,
            cpu_pct,
        }
    }
}

/// A value for the health line's `key=value` fields: `-` when empty, quoted
/// and escaped when it has a space, a quote, a backslash or a control
/// character (a PCM name comes from the ALSA configuration: `x up=yes`
/// would otherwise read as two fields).
fn field_value(v: &str) -> std::borrow::Cow<'_, str> {
    if v.is_empty() {
        "-".into()
    } else if v
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\\')
    {
        format!("{v:?}").into()
    } else {
        v.into()
    }
}

/// The one-line STATUS= for systemd: control characters (a WAV path may
/// hold a newline, and an open error repeats the device's name) are
/// escaped, since the notify protocol reads a newline as the start of
/// another assignment (`WATCHDOG=trigger` would fail the service).
pub fn status_line(stats: &Stats, stale: &[Role]) -> String {
    let line = status_text(stats, stale);
    if line.chars().any(char::is_control) {
        line.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().collect()
                } else {
                    c.to_string()
                }
            })
            .collect()
    } else {
        line
    }
}

fn status_text(stats: &Stats, stale: &[Role]) -> String {
    let dev = stats.device_info();
    let lat = stats.latency.summary_since(None);
    if !stale.is_empty() {
        let names: Vec<&str> = stale.iter().map(|r| ROLE_NAMES[*r as usize]).collect();
        return format!("degraded: no progress from {}", names.join(", "));
    }
    if let Some(ns) = stats.opening_for_ns().filter(|ns| *ns > 1_000_000_000) {
        return format!(
            "degraded: opening capture device {}: no answer for {:.0} s",
            if dev.name.is_empty() { "-" } else { &dev.name },
            ns as f64 / 1e9
        );
    }
    if !stats.device_up.load(Ordering::Relaxed) {
        let why = stats
            .open_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        // A device that is there and refuses the configuration (64
        // channels, a format it lacks) says so, not only "waiting".
        return format!(
            "degraded: waiting for capture device {} (retrying{}{})",
            if dev.name.is_empty() { "-" } else { &dev.name },
            if why.is_empty() { "" } else { ": " },
            why
        );
    }
    format!(
        "{} {} Hz {} | clients {} | xruns {} | suspends {} | reopens {} | latency p99 {:.2} ms",
        dev.name,
        dev.rate,
        dev.access,
        stats.ws_clients.load(Ordering::Relaxed),
        stats.xruns.load(Ordering::Relaxed),
        stats.suspends.load(Ordering::Relaxed),
        stats.reopens.load(Ordering::Relaxed),
        lat.p99_us as f64 / 1000.0
    )
}

#[cfg(test)]
mod tests {
    use super::{field_value, status_line};
    use crate::stats::Stats;

    /// Tester q's F7: a device that is there and refuses the configuration
    /// (64 channels) was shown as only "waiting for capture device".
    #[test]
    fn the_status_says_why_capture_is_retrying() {
        let stats = Stats::default();
        assert!(status_line(&stats, &[]).ends_with("(retrying)"));
        *stats.open_error.lock().unwrap() =
            "cannot open capture device 'pmon': 64 channels: Invalid argument (22)".into();
        let line = status_line(&stats, &[]);
        assert!(
            line.contains("(retrying: cannot open capture device 'pmon': 64 channels"),
            "{line}"
        );
    }

    /// Tester r's R4: a WAV path (or an open error naming the device)
    /// with a newline put `WATCHDOG=trigger` on a line of its own in the
    /// notify datagram.
    #[test]
    fn the_status_is_one_line_whatever_the_device_is_called() {
        let stats = Stats::default();
        *stats.open_error.lock().unwrap() = "cannot open 'x\nWATCHDOG=trigger': no".into();
        let line = status_line(&stats, &[]);
        assert!(
            !line.contains('\n') && line.contains("x\\nWATCHDOG=trigger"),
            "{line}"
        );
    }

    /// Tester q's F6: a PCM named `x up=yes` made the health line read
    /// `device=x up=yes rw up=no`.
    #[test]
    fn a_device_name_cannot_add_fields_to_the_health_line() {
        assert_eq!(field_value(""), "-");
        assert_eq!(field_value("hw:CARD=USB,DEV=0"), "hw:CARD=USB,DEV=0");
        assert_eq!(field_value("x up=yes"), "\"x up=yes\"");
        assert_eq!(field_value("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
        // What has a space or a tab is quoted: one field for a reader that
        // honours quotes.
        for name in ["x up=yes", "tab\there", "é ü"] {
            let v = field_value(name);
            assert!(v.starts_with('"') && v.ends_with('"'), "{v}");
        }
    }
}
