//! Download tickets: a ticket lets one recording be downloaded over HTTP
//! without the control token. The page cannot send a header with a plain
//! download link, and the token never goes into a URL; the recorder issues
//! tickets over the authorized WebSocket and the HTTP server honours them.
//!
//! A ticket nobody has used is good for `[record] link-s` (by default
//! [`TICKET_LIFETIME`]) from any address. Its first use pins it to that
//! exact address (not an IPv6 host's /64, as the per-address caps count:
//! on a venue's Wi-Fi every machine is in the same /64), and from then on
//! it is good from that address only, until [`RESUME_LIFETIME`] after it was issued: a
//! browser resumes a broken download with the same URL, often minutes
//! later, and a copied URL is worth nothing to another machine once the
//! download has started.

use super::files::RecordingName;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a ticket nobody has used yet is good for, by default.
pub const TICKET_LIFETIME: Duration = Duration::from_secs(60);
/// How long after its issue a used ticket is good for, from the address
/// that used it (a 2 GiB download at 2 MB/s takes 17 minutes, and a resume
/// may come well after the break).
pub const RESUME_LIFETIME: Duration = Duration::from_secs(60 * 60);
/// Most tickets outstanding (the oldest unused one goes first, then the
/// oldest).
pub const MAX_TICKETS: usize = 64;

#[derive(Debug)]
struct Ticket {
    code: String,
    name: RecordingName,
    issued: Instant,
    /// The address that used it first.
    holder: Option<IpAddr>,
}

impl Ticket {
    fn live(&self, unused: Duration, now: Instant) -> bool {
        let life = match self.holder {
            None => unused,
            Some(_) => RESUME_LIFETIME,
        };
        now.saturating_duration_since(self.issued) < life
    }
}

/// Outstanding download tickets.
#[derive(Debug)]
pub struct Tickets {
    held: Mutex<Vec<Ticket>>,
    /// How long a ticket nobody has used is good for.
    unused: Duration,
}

impl Default for Tickets {
    fn default() -> Self {
        Tickets::new(TICKET_LIFETIME)
    }
}

impl Tickets {
    /// No tickets yet; each is good for `unused` until its first use (at
    /// most [`RESUME_LIFETIME`]).
    pub fn new(unused: Duration) -> Self {
        Tickets {
            held: Mutex::new(Vec::new()),
            unused: unused.min(RESUME_LIFETIME),
        }
    }

    /// How long a ticket nobody has used is good for.
    pub fn unused_lifetime(&self) -> Duration {
        self.unused
    }

    /// A new ticket for `name`.
    pub fn issue(&self, name: &RecordingName) -> std::io::Result<String> {
        self.issue_at(name, Instant::now())
    }

    fn issue_at(&self, name: &RecordingName, now: Instant) -> std::io::Result<String> {
        let mut bytes = [0u8; 16];
        getrandom::getrandom(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
        let code: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut t = self.held.lock().unwrap_or_else(|e| e.into_inner());
        t.retain(|k| k.live(self.unused, now));
        if t.len() >= MAX_TICKETS {
            // The oldest nobody has used goes first: a used one may be a
            // download that breaks and has to resume.
            let oldest = t.iter().position(|k| k.holder.is_none()).unwrap_or(0);
            t.remove(oldest);
        }
        t.push(Ticket {
            code: code.clone(),
            name: name.clone(),
            issued: now,
            holder: None,
        });
        Ok(code)
    }

    /// Whether `code` is a live ticket for `name` that the address `peer`
    /// may use; its first use pins it to `peer` (the exact address, an
    /// IPv4 one as such also when a dual-stack socket shows it mapped).
    pub fn admits(&self, code: &str, name: &RecordingName, peer: IpAddr) -> bool {
        self.admits_at(code, name, peer, Instant::now())
    }

    fn admits_at(&self, code: &str, name: &RecordingName, peer: IpAddr, now: Instant) -> bool {
        let mut t = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let Some(k) = t.iter_mut().find(|k| {
            &k.name == name
                && k.code.len() == code.len()
                && k.code
                    .bytes()
                    .zip(code.bytes())
                    .fold(0u8, |d, (a, b)| d | (a ^ b))
                    == 0
        }) else {
            return false;
        };
        if !k.live(self.unused, now) || k.holder.is_some_and(|h| h != peer) {
            return false;
        }
        k.holder = Some(peer);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> (RecordingName, RecordingName) {
        (
            RecordingName::parse("rec-2026-11-30T16-24-48.123Z.wav").unwrap(),
            RecordingName::parse("rec-2026-11-30T16-24-49.123Z.wav").unwrap(),
        )
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn tickets_admit_one_name_for_a_while() {
        let t = Tickets::default();
        let (a, b) = names();
        let me = ip("192.168.1.20");
        let code = t.issue(&a).unwrap();
        assert_eq!(code.len(), 32);
        assert!(!t.admits(&code, &b, me));
        assert!(!t.admits("00", &a, me));
        assert!(!t.admits(&code[..31], &a, me));
        assert!(t.admits(&code, &a, me));
        assert!(t.admits(&code, &a, me));
    }

    #[test]
    fn an_unused_ticket_lasts_a_minute() {
        let t = Tickets::default();
        let (a, _) = names();
        let t0 = Instant::now();
        let code = t.issue_at(&a, t0).unwrap();
        let late = t0 + TICKET_LIFETIME + Duration::from_millis(1);
        assert!(!t.admits_at(&code, &a, ip("10.0.0.1"), late));
        // A refusal does not pin it or bring it back.
        assert!(!t.admits_at(&code, &a, ip("10.0.0.1"), t0 + RESUME_LIFETIME / 2));
    }

    #[test]
    fn an_unused_ticket_lasts_what_record_link_s_says() {
        let t = Tickets::new(Duration::from_secs(10));
        assert_eq!(t.unused_lifetime(), Duration::from_secs(10));
        let (a, _) = names();
        let t0 = Instant::now();
        let late = t0 + Duration::from_millis(10_001);
        let unused = t.issue_at(&a, t0).unwrap();
        assert!(!t.admits_at(&unused, &a, ip("10.0.0.1"), late));
        // A used one still resumes for the hour, whatever the setting.
        let used = t.issue_at(&a, t0).unwrap();
        assert!(t.admits_at(&used, &a, ip("10.0.0.1"), t0 + Duration::from_secs(9)));
        assert!(t.admits_at(&used, &a, ip("10.0.0.1"), late));
        // Never longer than a used ticket lasts.
        assert_eq!(
            Tickets::new(RESUME_LIFETIME * 2).unused_lifetime(),
            RESUME_LIFETIME
        );
    }

    #[test]
    fn a_used_ticket_resumes_from_its_address_only_for_an_hour() {
        let t = Tickets::default();
        let (a, _) = names();
        let t0 = Instant::now();
        let code = t.issue_at(&a, t0).unwrap();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(t.admits_at(&code, &a, ip("192.168.1.20"), at(5)));
        // Another machine, even within the first minute: refused.
        assert!(!t.admits_at(&code, &a, ip("192.168.1.21"), at(6)));
        // The same one resumes long after the minute.
        assert!(t.admits_at(&code, &a, ip("192.168.1.20"), at(30 * 60)));
        assert!(!t.admits_at(&code, &a, ip("192.168.1.21"), at(30 * 60)));
        assert!(!t.admits_at(&code, &a, ip("192.168.1.20"), at(60 * 60)));
    }

    #[test]
    fn the_oldest_unused_ticket_goes_when_there_are_too_many() {
        let t = Tickets::default();
        let (a, _) = names();
        let me = ip("127.0.0.1");
        let used = t.issue(&a).unwrap();
        assert!(t.admits(&used, &a, me));
        let unused = t.issue(&a).unwrap();
        let rest: Vec<String> = (0..MAX_TICKETS - 1).map(|_| t.issue(&a).unwrap()).collect();
        // The download under way keeps its ticket; the oldest unused went.
        assert!(t.admits(&used, &a, me));
        assert!(!t.admits(&unused, &a, me));
        assert!(rest.iter().all(|c| t.admits(c, &a, me)));
        // All of them used now: the oldest goes.
        t.issue(&a).unwrap();
        assert!(!t.admits(&used, &a, me));
        assert!(rest.iter().all(|c| t.admits(c, &a, me)));
    }
}
