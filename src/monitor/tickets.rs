//! Download tickets: a ticket lets one recording be downloaded over HTTP
//! without the control token, for a minute. The page cannot send a header
//! with a plain download link, and the token never goes into a URL; the
//! recorder issues tickets over the authorized WebSocket and the HTTP
//! server honours them.

use super::files::RecordingName;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a download ticket is good for.
pub const TICKET_LIFETIME: Duration = Duration::from_secs(60);
/// Most tickets outstanding (the oldest goes first).
pub const MAX_TICKETS: usize = 64;

/// A ticket that lets one recording be downloaded over HTTP without the
/// control token, for a minute (the page cannot send a header with a plain
/// download link, and the token never goes into a URL).
#[derive(Debug)]
struct Ticket {
    code: String,
    name: RecordingName,
    until: Instant,
}

/// Outstanding download tickets.
#[derive(Debug, Default)]
pub struct Tickets(Mutex<Vec<Ticket>>);

impl Tickets {
    /// A new ticket for `name`.
    pub fn issue(&self, name: &RecordingName) -> std::io::Result<String> {
        let mut bytes = [0u8; 16];
        getrandom::getrandom(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
        let code: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        t.retain(|k| k.until > now);
        if t.len() >= MAX_TICKETS {
            t.remove(0);
        }
        t.push(Ticket {
            code: code.clone(),
            name: name.clone(),
            until: now + TICKET_LIFETIME,
        });
        Ok(code)
    }

    /// Whether `code` is a live ticket for `name`.
    pub fn admits(&self, code: &str, name: &RecordingName) -> bool {
        let t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        t.iter().any(|k| {
            k.until > now
                && &k.name == name
                && k.code.len() == code.len()
                && k.code
                    .bytes()
                    .zip(code.bytes())
                    .fold(0u8, |d, (a, b)| d | (a ^ b))
                    == 0
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_admit_one_name_for_a_while() {
        let t = Tickets::default();
        let a = RecordingName::parse("rec-2026-11-30T16-24-48.123Z.wav").unwrap();
        let b = RecordingName::parse("rec-2026-11-30T16-24-49.123Z.wav").unwrap();
        let code = t.issue(&a).unwrap();
        assert_eq!(code.len(), 32);
        assert!(t.admits(&code, &a));
        assert!(!t.admits(&code, &b));
        assert!(!t.admits("00", &a));
        assert!(!t.admits(&code[..31], &a));
    }
}
