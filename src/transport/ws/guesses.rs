//! The budget of wrong control tokens per address: a few tries, then one
//! back every few seconds, remembered across connections for a bounded
//! number of addresses (see [`Registry::check_token`](super::registry::Registry::check_token)).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Wrong control tokens one address may send before it must wait (each
/// comes back after [`GUESS_REFILL`]).
pub const GUESS_BURST: f64 = 5.0;
/// How long one wrong token's place in [`GUESS_BURST`] takes to come back.
pub const GUESS_REFILL: Duration = Duration::from_secs(5);
/// Addresses (IPv6: /64s) whose wrong tokens are remembered; beyond them,
/// new addresses share one budget.
pub const GUESS_ADDRESSES: usize = 1024;

#[derive(Debug, Default)]
pub(super) struct Guesses {
    /// Per address: what was left, and when.
    spent: HashMap<IpAddr, (f64, Instant)>,
    /// The budget addresses share once [`GUESS_ADDRESSES`] are remembered.
    overflow: Option<(f64, Instant)>,
}

impl Guesses {
    fn refilled((left, at): (f64, Instant), now: Instant) -> f64 {
        let back = now.saturating_duration_since(at).as_secs_f64() / GUESS_REFILL.as_secs_f64();
        (left + back).min(GUESS_BURST)
    }

    /// Checks a token with `matches` unless `key`'s budget is spent, and
    /// spends one from it when the token is wrong.
    pub(super) fn check(
        &mut self,
        key: IpAddr,
        now: Instant,
        matches: impl FnOnce() -> bool,
    ) -> Result<bool, Duration> {
        if !self.spent.contains_key(&key) && self.spent.len() >= GUESS_ADDRESSES {
            // Forget the addresses whose budget is whole again: the same
            // as never heard from.
            self.spent
                .retain(|_, b| Self::refilled(*b, now) < GUESS_BURST);
        }
        let shared = !self.spent.contains_key(&key) && self.spent.len() >= GUESS_ADDRESSES;
        let before = if shared {
            self.overflow
        } else {
            self.spent.get(&key).copied()
        };
        let had = before.map_or(GUESS_BURST, |b| Self::refilled(b, now));
        if had < 1.0 {
            return Err(GUESS_REFILL.mul_f64(1.0 - had));
        }
        let ok = matches();
        if !ok {
            let left = (had - 1.0, now);
            if shared {
                self.overflow = Some(left);
            } else {
                self.spent.insert(key, left);
            }
        }
        Ok(ok)
    }
}

/// What an address whose budget of wrong tokens is spent is told.
pub fn too_many_guesses(wait: Duration) -> String {
    format!(
        "too many wrong control tokens from this address; the next is checked in {} s",
        wait.as_secs_f64().ceil().max(1.0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guess_table_is_bounded_and_new_addresses_then_share_a_budget() {
        let mut g = Guesses::default();
        let t0 = Instant::now();
        let addr = |i: usize| IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
        for i in 0..GUESS_ADDRESSES {
            assert_eq!(g.check(addr(i), t0, || false), Ok(false));
        }
        // Table full of addresses still paying back: newcomers share one.
        let n = GUESS_ADDRESSES;
        for i in 0..GUESS_BURST as usize {
            assert_eq!(g.check(addr(n + i), t0, || false), Ok(false));
        }
        assert!(g.check(addr(n + 100), t0, || true).is_err());
        assert_eq!(g.spent.len(), GUESS_ADDRESSES, "the table does not grow");
        // Once their budgets are whole again, they are forgotten.
        let later = t0 + GUESS_REFILL.mul_f64(GUESS_BURST);
        assert_eq!(g.check(addr(n + 100), later, || false), Ok(false));
        assert_eq!(g.spent.len(), 1);
    }
}
