//! Watching OSC destinations from the supervisor: a destination that starts
//! refusing datagrams is logged (at most once a minute per destination, with
//! how many failed since, also when it comes and goes), and so is its
//! recovery after such a line. The sender thread itself
//! never logs; it only counts.

use crate::config::OscDestination;
use crate::stats::Stats;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How often a destination that keeps failing is reported again.
const REPEAT: Duration = Duration::from_secs(60);

struct Watched {
    name: String,
    failed: u64,
    sent: u64,
    failing: bool,
    last_log: Option<Instant>,
    unlogged: u64,
    /// A "refuses" line went out and no "accepts again" line since.
    reported: bool,
}

/// What one look at a destination's counters logs.
#[derive(Debug, PartialEq)]
enum Line {
    /// It refuses datagrams: this many failed since the last report.
    Refuses(u64),
    /// It accepts them again.
    Accepts,
}

impl Watched {
    fn new(name: String) -> Self {
        Watched {
            name,
            failed: 0,
            sent: 0,
            failing: false,
            last_log: None,
            unlogged: 0,
            reported: false,
        }
    }

    /// At most one "refuses" line per [`REPEAT`] whatever happens between
    /// (tester x: a destination whose reachability flapped every 150 ms
    /// logged two lines per flap, as it was once a minute only while it
    /// kept failing), and an "accepts again" line only after one.
    fn look(&mut self, new_fail: u64, new_sent: u64, now: Instant) -> Option<Line> {
        if new_fail > 0 {
            self.unlogged += new_fail;
            self.failing = true;
            let due = self
                .last_log
                .is_none_or(|t| now.saturating_duration_since(t) >= REPEAT);
            if !due {
                return None;
            }
            self.last_log = Some(now);
            self.reported = true;
            return Some(Line::Refuses(std::mem::take(&mut self.unlogged)));
        }
        if self.failing && new_sent > 0 {
            self.failing = false;
            if std::mem::take(&mut self.reported) {
                return Some(Line::Accepts);
            }
        }
        None
    }
}

/// Per-destination memory of what was last seen and logged.
pub struct OscWatch {
    dests: Vec<Watched>,
}

impl OscWatch {
    /// Watch the configured destinations.
    pub fn new(list: &[OscDestination]) -> Self {
        let dests = list
            .iter()
            .take(crate::config::MAX_OSC_DESTINATIONS)
            .map(|d| Watched::new(format!("{}:{}", d.host, d.port)))
            .collect();
        OscWatch { dests }
    }

    /// Compare the counters with the last look and log what changed.
    pub fn check(&mut self, stats: &Stats) {
        let now = Instant::now();
        for (i, w) in self.dests.iter_mut().enumerate() {
            let s = &stats.osc_dests[i];
            let failed = s.failed.load(Ordering::Relaxed);
            let sent = s.sent.load(Ordering::Relaxed);
            let new_fail = failed - w.failed.min(failed);
            let new_sent = sent - w.sent.min(sent);
            w.failed = failed;
            w.sent = sent;
            match w.look(new_fail, new_sent, now) {
                Some(Line::Refuses(n)) => {
                    let e = std::io::Error::from_raw_os_error(s.last_errno.load(Ordering::Relaxed));
                    log::warn!(
                        "osc: {} refuses datagrams ({e}); {n} failed since the last report; other destinations are unaffected",
                        w.name
                    );
                }
                Some(Line::Accepts) => log::info!("osc: {} accepts datagrams again", w.name),
                None => {}
            }
        }
    }

    /// `name(reason)` of every destination failing now, for the health line.
    pub fn failing(&self, stats: &Stats) -> Vec<String> {
        self.dests
            .iter()
            .enumerate()
            .filter(|(i, w)| w.failing || !stats.osc_dests[*i].resolved.load(Ordering::Relaxed))
            .map(|(i, w)| {
                let s = &stats.osc_dests[i];
                if !s.resolved.load(Ordering::Relaxed) {
                    format!("{}(unresolved)", w.name)
                } else {
                    let e = std::io::Error::from_raw_os_error(s.last_errno.load(Ordering::Relaxed));
                    format!("{}({})", w.name, errno_name(&e))
                }
            })
            .collect()
    }
}

fn errno_name(e: &std::io::Error) -> String {
    e.to_string()
        .split(" (os error")
        .next()
        .unwrap_or("error")
        .replace(' ', "_")
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watched() -> Watched {
        Watched::new("192.0.2.1:9000".into())
    }

    #[test]
    fn a_flapping_destination_is_reported_once_a_minute() {
        let mut w = watched();
        let t0 = Instant::now();
        let mut lines = Vec::new();
        // Down and up every 150 ms for two and a half minutes: 3 failures
        // per look while down, some sent while up.
        for i in 0..1000u32 {
            let now = t0 + Duration::from_millis(150 * u64::from(i));
            let (f, s) = if i % 2 == 0 { (3, 0) } else { (0, 5) };
            if let Some(l) = w.look(f, s, now) {
                lines.push((now.duration_since(t0).as_secs(), l));
            }
        }
        // At 0, 60 and 120 s: one "refuses" line each (with what failed
        // since), one "accepts again" after each.
        assert_eq!(lines.len(), 6, "{lines:?}");
        assert_eq!(lines[0], (0, Line::Refuses(3)));
        assert_eq!(lines[1], (0, Line::Accepts));
        assert_eq!(lines[2].0, 60);
        assert_eq!(lines[2].1, Line::Refuses(3 * 200));
        assert_eq!(lines[3], (60, Line::Accepts));
    }

    #[test]
    fn a_destination_that_stays_down_is_reported_again_after_a_minute() {
        let mut w = watched();
        let t0 = Instant::now();
        assert_eq!(w.look(1, 0, t0), Some(Line::Refuses(1)));
        assert_eq!(w.look(4, 0, t0 + Duration::from_secs(30)), None);
        assert_eq!(
            w.look(5, 0, t0 + Duration::from_secs(61)),
            Some(Line::Refuses(9))
        );
        assert_eq!(
            w.look(0, 3, t0 + Duration::from_secs(62)),
            Some(Line::Accepts)
        );
        assert_eq!(w.look(0, 3, t0 + Duration::from_secs(63)), None);
    }
}
