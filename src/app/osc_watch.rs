//! Watching OSC destinations from the supervisor: a destination that starts
//! refusing datagrams is logged (at most once a minute per destination, with
//! how many failed since), and so is its recovery. The sender thread itself
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
            .map(|d| Watched {
                name: format!("{}:{}", d.host, d.port),
                failed: 0,
                sent: 0,
                failing: false,
                last_log: None,
                unlogged: 0,
            })
            .collect();
        OscWatch { dests }
    }

    /// Compare the counters with the last look and log what changed.
    pub fn check(&mut self, stats: &Stats) {
        for (i, w) in self.dests.iter_mut().enumerate() {
            let s = &stats.osc_dests[i];
            let failed = s.failed.load(Ordering::Relaxed);
            let sent = s.sent.load(Ordering::Relaxed);
            let new_fail = failed - w.failed.min(failed);
            let new_sent = sent - w.sent.min(sent);
            w.failed = failed;
            w.sent = sent;
            if new_fail > 0 {
                w.unlogged += new_fail;
                let due = w.last_log.is_none_or(|t| t.elapsed() >= REPEAT);
                if !w.failing || due {
                    let e = std::io::Error::from_raw_os_error(s.last_errno.load(Ordering::Relaxed));
                    log::warn!(
                        "osc: {} refuses datagrams ({e}); {} failed since the last report; other destinations are unaffected",
                        w.name, w.unlogged
                    );
                    w.unlogged = 0;
                    w.last_log = Some(Instant::now());
                }
                w.failing = true;
            } else if w.failing && new_sent > 0 {
                log::info!("osc: {} accepts datagrams again", w.name);
                w.failing = false;
                w.unlogged = 0;
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
