//! Budgets for log lines a peer on the network can cause as often as it
//! likes ([`crate::peer_log`]): a few a second from each place in the code,
//! a shared few a second beyond each place's first, and a count of every
//! line held back for the health line.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Lines a second that one place in the code may log for [`crate::peer_log`].
pub const PEER_LINES_PER_S: u32 = 5;

/// Lines a second that all [`crate::peer_log`] call sites together may log
/// beyond each site's first (there are over 30; tester x had eleven of them
/// at their 5 a second at once, 55 lines a second from one client).
pub const ALL_PEER_LINES_PER_S: u32 = 10;

/// The budget all [`crate::peer_log`] call sites share.
pub static ALL_PEER_LINES: SiteLimit = SiteLimit::with_limit(ALL_PEER_LINES_PER_S);

/// Every [`crate::peer_log`] line held back since the start, for the
/// health line: a place's own count comes only with its next line, which
/// the last burst at that place never has (review z: 18 of 23 refusals in
/// one burst were never counted anywhere).
static PEER_LINES_HELD: AtomicU64 = AtomicU64::new(0);

/// How many [`crate::peer_log`] lines were held back since the start.
pub fn peer_lines_held() -> u64 {
    PEER_LINES_HELD.load(Ordering::Relaxed)
}

/// The budget of one [`crate::peer_log`] call site: at most
/// [`PEER_LINES_PER_S`] lines in each second of the monotonic clock, and a
/// count of what was held back. Lock-free (a `static` shared by every
/// thread and task that reaches the call site); two threads crossing into
/// a new second at once may let one extra line through, never fewer.
pub struct SiteLimit {
    second: AtomicU64,
    used: AtomicU32,
    held: AtomicU64,
    limit: u32,
}

impl SiteLimit {
    /// An unused budget (for a `static`).
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        Self::with_limit(PEER_LINES_PER_S)
    }

    /// An unused budget of `limit` lines a second.
    pub const fn with_limit(limit: u32) -> Self {
        SiteLimit {
            second: AtomicU64::new(u64::MAX),
            used: AtomicU32::new(0),
            held: AtomicU64::new(0),
            limit,
        }
    }

    /// `Some(n)` when a line may go out now (`n` were held back since the
    /// last one that went out), `None` when it must be held back.
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(crate::rt::now_ns())
    }

    fn allow_at(&self, now_ns: u64) -> Option<u64> {
        self.allow_nth_at(now_ns).map(|(held, _)| held)
    }

    /// As [`Self::allow_at`], with how many lines this second took before.
    fn allow_nth_at(&self, now_ns: u64) -> Option<(u64, u32)> {
        let second = now_ns / 1_000_000_000;
        let seen = self.second.load(Ordering::Relaxed);
        if seen != second
            && self
                .second
                .compare_exchange(seen, second, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.used.store(0, Ordering::Relaxed);
        }
        let before = self.used.fetch_add(1, Ordering::Relaxed);
        if before < self.limit {
            Some((self.held.swap(0, Ordering::Relaxed), before))
        } else {
            self.held.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// Whether a [`crate::peer_log`] line from `site` may go out now: `Some(n)`
/// when both `site`'s budget and the shared one allow it (`n` of the
/// site's lines were held back since its last one).
pub fn peer_allow(site: &SiteLimit) -> Option<u64> {
    peer_allow_at(site, &ALL_PEER_LINES, &PEER_LINES_HELD, crate::rt::now_ns())
}

/// As [`peer_allow`], with the shared budget and the count of all lines
/// held back given.
fn peer_allow_at(
    site: &SiteLimit,
    all: &SiteLimit,
    held_total: &AtomicU64,
    now_ns: u64,
) -> Option<u64> {
    let allowed = site_and_shared(site, all, now_ns);
    if allowed.is_none() {
        held_total.fetch_add(1, Ordering::Relaxed);
    }
    allowed
}

fn site_and_shared(site: &SiteLimit, all: &SiteLimit, now_ns: u64) -> Option<u64> {
    let (held, before) = site.allow_nth_at(now_ns)?;
    // A site's first line in a second goes out whatever the others used
    // (review y: with the shared budget first come, first served, a flood of
    // refusals held back every other line, a recording that stopped on a
    // full disk and the wrong tokens of whoever flooded among them). It
    // still counts against the shared budget.
    let shared = all.allow_at(now_ns).is_some();
    if before == 0 || shared {
        Some(held)
    } else {
        // Allowed by the site, not by the shared budget: the site's next
        // line counts it.
        site.held.fetch_add(held + 1, Ordering::Relaxed);
        None
    }
}

/// Log a line that a peer on the network can cause as often as it likes (a
/// refused request, a handshake dropped, a client connected or gone): at
/// most [`PEER_LINES_PER_S`] a second from each call site, of which only
/// the first in each second goes out whatever the others logged; the rest
/// share [`ALL_PEER_LINES_PER_S`] a second with every other site. The
/// first line a site logs after some of its lines were held back says how
/// many. One client could
/// otherwise write thousands of lines a second, and journald's own rate
/// limit (10 000 per 30 s by default) would then drop phase4's other
/// messages, the health lines among them.
///
/// `peer_log!(log::Level::Info, "http: refused a request: {why}")`
#[macro_export]
macro_rules! peer_log {
    ($lvl:expr, $($arg:tt)+) => {{
        static SITE: $crate::service::peer_lines::SiteLimit =
            $crate::service::peer_lines::SiteLimit::new();
        if let Some(held) = $crate::service::peer_lines::peer_allow(&SITE) {
            if held == 0 {
                log::log!($lvl, $($arg)+);
            } else {
                log::log!($lvl, "{} ({held} similar line(s) held back)", format_args!($($arg)+));
            }
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_call_site_together_logs_a_few_lines_a_second() {
        // Eleven sites at once (tester x's flood): 55 lines a second
        // before; now each site's first and what is left of the shared ten
        // (which the first lines count against); each site's next line
        // counts what it held back.
        let sites: Vec<SiteLimit> = (0..11).map(|_| SiteLimit::new()).collect();
        let all = SiteLimit::with_limit(ALL_PEER_LINES_PER_S);
        let held = AtomicU64::new(0);
        let t0 = 7_000_000_000;
        let mut out = vec![0u64; sites.len()];
        for k in 0..100 {
            for (i, s) in sites.iter().enumerate() {
                out[i] += u64::from(peer_allow_at(s, &all, &held, t0 + k * 1_000_000).is_some());
            }
        }
        // The first lines of the eleven spent the shared budget; the
        // health line counts every other one (review z: the tail of a
        // burst was counted nowhere).
        assert_eq!(out, vec![1; 11]);
        assert_eq!(held.load(Ordering::Relaxed), 11 * 100 - 11);
        let t1 = t0 + 1_000_000_000;
        for s in &sites {
            assert_eq!(peer_allow_at(s, &all, &held, t1), Some(99));
        }
        // A site that was quiet meanwhile is heard at once, however spent
        // the shared budget is (review y).
        let quiet = SiteLimit::new();
        for s in &sites {
            let _ = peer_allow_at(s, &all, &held, t1 + 1);
        }
        assert_eq!(peer_allow_at(&quiet, &all, &held, t1 + 2), Some(0));
        assert_eq!(peer_allow_at(&quiet, &all, &held, t1 + 3), None);
        assert_eq!(
            peer_allow_at(&quiet, &all, &held, t1 + 1_000_000_000),
            Some(1)
        );
    }

    #[test]
    fn a_few_sites_share_the_budget_beyond_their_first_lines() {
        // Two sites flooding: each its first line, then the rest of the ten
        // between them, never more than its own five.
        let sites = [SiteLimit::new(), SiteLimit::new()];
        let all = SiteLimit::with_limit(ALL_PEER_LINES_PER_S);
        let held = AtomicU64::new(0);
        let t0 = 9_000_000_000;
        let mut out = 0;
        for k in 0..100 {
            for s in &sites {
                out += u32::from(peer_allow_at(s, &all, &held, t0 + k * 1_000_000).is_some());
            }
        }
        assert_eq!(out, 2 * PEER_LINES_PER_S);
        assert_eq!(held.load(Ordering::Relaxed), 200 - u64::from(out));
    }

    #[test]
    fn a_call_site_logs_a_few_lines_a_second_and_counts_the_rest() {
        let site = SiteLimit::new();
        let t0 = 7_000_000_000u64;
        for _ in 0..PEER_LINES_PER_S {
            assert_eq!(site.allow_at(t0), Some(0));
        }
        for k in 0..1000u64 {
            assert_eq!(site.allow_at(t0 + k * 900_000), None);
        }
        // The next second: the first line says how many were held back.
        assert_eq!(site.allow_at(t0 + 1_000_000_000), Some(1000));
        assert_eq!(site.allow_at(t0 + 1_000_000_001), Some(0));
    }
}
