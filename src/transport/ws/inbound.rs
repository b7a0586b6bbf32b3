//! Reading from clients: the second half of the broadcaster's turn.
//!
//! Bounded per client per turn (bytes through [`super::conn::Conn`]'s
//! budget, and messages) and per second (bytes: a client over its rate is
//! not even polled), started at a different client each turn, so a client
//! that floods gets its share and no more. Every message, pings
//! included, counts against the client's rate; a client far over it is
//! closed (1008). A client with [`MAX_IN_FLIGHT_PER_CLIENT`] requests
//! waiting at the control thread is not read until answers come back, and
//! one whose last read stopped at the message cap is read again next turn
//! without waiting for its socket (the rest may sit in tungstenite's
//! buffer, where `poll` cannot see it). Until a client is authorized, only
//! `auth` is looked at.
//! Protocol errors close with the code RFC 6455 gives them: 1002 for a
//! broken frame, 1007 for text that is not UTF-8, 1009 for a message over
//! the size limit.

use super::client::{Admission, MAX_AUTH_FAILURES, MESSAGES_PER_TURN};
use super::guesses::too_many_guesses;
use super::protocol::{Action, Outbound};
use super::registry::canonical_ip;
use super::server::{Broadcaster, MAX_SLEEP};
use crate::control::{Command, Request};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;

/// Requests one client may have waiting at the control thread.
pub const MAX_IN_FLIGHT_PER_CLIENT: u32 = 32;
/// Requests all clients together may have waiting at the control thread.
pub const MAX_IN_FLIGHT: u32 = 256;
/// Largest message looked at from a client that has not authenticated.
pub const MAX_UNAUTHORIZED_MESSAGE: usize = 1024;

/// What to do with a client after reading from it.
enum Outcome {
    Keep,
    /// Close with this code and reason (empty: the connection is gone, no
    /// close frame).
    Close(CloseCode, String),
}

const NOT_AUTHORIZED: &str = "not authorized: changing settings from another machine needs the control token (sudo phase4 token); send {\"type\":\"auth\",\"token\":\"...\"} or connect with ?token=...";

impl Broadcaster {
    /// Sleep until the next snapshot (at most [`MAX_SLEEP`]) or until a
    /// client sends something; then read what arrived, within budgets.
    pub(super) fn sleep_and_read(&mut self) {
        let wait = self
            .next_snapshot
            .saturating_duration_since(Instant::now())
            .min(MAX_SLEEP);
        // To the microsecond: a timeout rounded down to whole milliseconds
        // woke the thread just before the snapshot was due and again for
        // the remainder, two context switches per snapshot instead of one.
        let timeout = nix::sys::time::TimeSpec::from_duration(wait.max(Duration::from_micros(100)));
        // A client over its byte rate is not polled: its data waits in the
        // kernel (and TCP slows it down) instead of waking us at once.
        let now = Instant::now();
        let allowance: Vec<usize> = self
            .clients
            .iter_mut()
            .map(|c| c.read_allowance(now))
            .collect();
        // A client with MAX_IN_FLIGHT_PER_CLIENT requests at the control
        // thread is not read until answers come back: the rest of its burst
        // waits (TCP slows it down) instead of being refused as busy.
        let held: Vec<bool> = self
            .clients
            .iter()
            .map(|c| c.in_flight >= MAX_IN_FLIGHT_PER_CLIENT)
            .collect();
        let polled: Vec<usize> = (0..self.clients.len())
            .filter(|i| allowance[*i] > 0 && !held[*i])
            .collect();
        // Clients with whole messages left in tungstenite's buffer are read
        // this turn whatever their socket says, so the poll must not wait.
        let mut ready: Vec<bool> = self
            .clients
            .iter()
            .zip(&held)
            .map(|(c, &h)| c.more_buffered && !h)
            .collect();
        let buffered = ready.iter().any(|&r| r);
        let timeout = if buffered {
            nix::sys::time::TimeSpec::from_duration(Duration::ZERO)
        } else {
            timeout
        };
        {
            let mut fds: Vec<nix::poll::PollFd> = polled
                .iter()
                .map(|i| {
                    nix::poll::PollFd::new(
                        self.clients[*i].ws.get_ref().tcp().as_fd(),
                        nix::poll::PollFlags::POLLIN,
                    )
                })
                .collect();
            if self.clients.is_empty() {
                // Nobody to send a snapshot to: wait for the acceptor's
                // wake-up (a new client) or the heartbeat's tick, not for
                // the next snapshot (20 wake-ups a second instead of 60).
                std::thread::park_timeout(self.idle_wait());
                return;
            }
            if fds.is_empty() {
                if !buffered {
                    std::thread::sleep(Duration::from(timeout));
                    return;
                }
            } else {
                match nix::poll::ppoll(&mut fds, Some(timeout), None) {
                    Ok(n) if n > 0 => {
                        for (f, i) in fds.iter().zip(&polled) {
                            ready[*i] |= f.revents().is_some_and(|r| !r.is_empty());
                        }
                    }
                    _ if buffered => {}
                    _ => return,
                }
            }
        }
        let n = self.clients.len();
        let start = self.read_from % n.max(1);
        self.read_from = self.read_from.wrapping_add(1);
        let mut closing: Vec<(usize, CloseCode, String)> = Vec::new();
        for k in 0..n {
            let i = (start + k) % n;
            if ready[i] {
                if let Outcome::Close(code, why) = self.read_client(i, allowance[i]) {
                    closing.push((i, code, why));
                }
            }
        }
        // Highest index first: swap_remove then leaves the others in place.
        closing.sort_by_key(|c| std::cmp::Reverse(c.0));
        for (i, code, why) in closing {
            self.remove(i, code, &why);
        }
    }

    /// Read at most `allowance` bytes from client `i`.
    fn read_client(&mut self, i: usize, allowance: usize) -> Outcome {
        self.clients[i].more_buffered = false;
        self.clients[i].ws.get_mut().refill(allowance);
        let outcome = self.read_messages(i);
        let c = &mut self.clients[i];
        let left = c.ws.get_ref().left();
        c.spend_reading(allowance - left);
        outcome
    }

    fn read_messages(&mut self, i: usize) -> Outcome {
        let rate = self.ctx.config.ws.max_messages_per_s;
        for _ in 0..MESSAGES_PER_TURN {
            if self.clients[i].in_flight >= MAX_IN_FLIGHT_PER_CLIENT {
                // Its answers first; what it sent since waits.
                self.clients[i].more_buffered = true;
                return Outcome::Keep;
            }
            let msg = match self.clients[i].ws.read() {
                Ok(m) => m,
                Err(e) => return read_error(e),
            };
            let now = Instant::now();
            match self.clients[i].admit(rate, now) {
                Admission::Admit => {}
                Admission::Drop => {
                    let e = format!("rate limit: at most {rate} messages per second (ws.max-messages-per-s); message dropped");
                    if let Outcome::Close(code, why) = self.refuse(i, e, now) {
                        return Outcome::Close(code, why);
                    }
                    continue;
                }
                Admission::Flood => {
                    return Outcome::Close(
                        CloseCode::Policy,
                        "message flood (far over ws.max-messages-per-s)".into(),
                    )
                }
            }
            let outcome = match msg {
                Message::Text(t) => self.inbound(i, &t, now),
                Message::Binary(_) => self.refuse(
                    i,
                    "binary frames are not accepted; send JSON text".into(),
                    now,
                ),
                // tungstenite queued the answer to a close; it goes out
                // when the client is removed.
                Message::Close(_) => Outcome::Close(CloseCode::Normal, String::new()),
                // Pings are answered by tungstenite (one pong pending at
                // most); pongs need nothing.
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Outcome::Keep,
            };
            if let Outcome::Close(..) = outcome {
                return outcome;
            }
        }
        // Stopped at the cap: more may be buffered (the next read says).
        self.clients[i].more_buffered = true;
        Outcome::Keep
    }

    /// Refuse a message: the error, then the meta in force (snap-back).
    fn refuse(&mut self, i: usize, reason: String, now: Instant) -> Outcome {
        let meta = self.meta_json().to_string();
        let meta = (!meta.is_empty()).then_some(meta);
        if self.clients[i].push_error(Outbound::error(reason).to_json(), meta, now) {
            Outcome::Keep
        } else {
            not_reading()
        }
    }

    /// One text message from client `i`.
    fn inbound(&mut self, i: usize, text: &str, now: Instant) -> Outcome {
        let max = self.ctx.config.ws.max_message_bytes as usize;
        let authorized = self.clients[i].authorized;
        if !authorized && text.len() > MAX_UNAUTHORIZED_MESSAGE {
            return self.refuse(i, NOT_AUTHORIZED.into(), now);
        }
        if text.len() > max {
            return self.refuse(
                i,
                format!(
                    "message too large: {} bytes, limit {max} (ws.max-message-bytes)",
                    text.len()
                ),
                now,
            );
        }
        if let Some(r) = self.audio_inbound(i, text) {
            return match r {
                Ok(()) => Outcome::Keep,
                Err(reason) => self.refuse(i, reason, now),
            };
        }
        let action = match super::parse::parse(text) {
            Ok(a) => a,
            Err(reason) if authorized => return self.refuse(i, reason, now),
            Err(_) => return self.refuse(i, NOT_AUTHORIZED.into(), now),
        };
        match action {
            Action::Auth(t) => self.auth(i, &t, now),
            Action::Command(_) if !authorized => self.refuse(i, NOT_AUTHORIZED.into(), now),
            Action::Command(cmd) => self.forward(i, cmd, now),
        }
    }

    fn auth(&mut self, i: usize, token: &str, now: Instant) -> Outcome {
        let ip = canonical_ip(&self.clients[i].peer);
        let secret = &self.secret;
        let checked = self.registry.check_token(ip, now, || secret.matches(token));
        let c = &mut self.clients[i];
        let ok = match checked {
            Ok(ok) => ok,
            Err(wait) => {
                // Not checked: the address spent its budget of wrong tokens
                // (on any of its connections). Counts as a failure here.
                c.auth_failures += 1;
                if c.auth_failures >= MAX_AUTH_FAILURES {
                    return Outcome::Close(CloseCode::Policy, "too many wrong tokens".into());
                }
                return self.refuse(i, format!("auth: {}", too_many_guesses(wait)), now);
            }
        };
        if ok {
            if !c.authorized {
                // A token holder can cause this as often as it connects
                // (tester o: 75 000 lines a minute from connection churn,
                // and again for every repeated `auth`): once per
                // connection, and rate-limited.
                crate::peer_log!(
                    log::Level::Info,
                    "ws: client {} ({}) authorized",
                    c.id,
                    c.peer
                );
            }
            c.authorized = true;
            let a = Outbound::Auth {
                authorized: true,
                required: true,
            };
            return if c.push_reply(Message::Text(a.to_json().into())) {
                Outcome::Keep
            } else {
                not_reading()
            };
        }
        c.auth_failures += 1;
        // A peer can cause this as often as it connects: rate-limited.
        crate::peer_log!(
            log::Level::Warn,
            "ws: client {} ({}) sent a wrong control token ({} of {MAX_AUTH_FAILURES})",
            c.id,
            c.peer,
            c.auth_failures
        );
        if c.auth_failures >= MAX_AUTH_FAILURES {
            return Outcome::Close(CloseCode::Policy, "too many wrong tokens".into());
        }
        self.refuse(i, "auth: wrong token".into(), now)
    }

    /// Hand a command to the control thread, unless this client (or all
    /// of them) already has too many waiting.
    fn forward(&mut self, i: usize, command: Command, now: Instant) -> Outcome {
        let c = &self.clients[i];
        if c.in_flight >= MAX_IN_FLIGHT_PER_CLIENT || self.in_flight >= MAX_IN_FLIGHT {
            return self.refuse(
                i,
                "busy: wait for the answers to your earlier requests".into(),
                now,
            );
        }
        let request = Request {
            client: c.id,
            command,
        };
        if self.ctx.requests.send(request).is_err() {
            return self.refuse(i, "the service is stopping".into(), now);
        }
        self.clients[i].in_flight += 1;
        self.in_flight += 1;
        Outcome::Keep
    }
}

fn not_reading() -> Outcome {
    Outcome::Close(CloseCode::Policy, "not reading its replies".into())
}

fn read_error(e: tungstenite::Error) -> Outcome {
    use tungstenite::Error as E;
    match e {
        E::Io(e) if e.kind() == std::io::ErrorKind::WouldBlock => Outcome::Keep,
        E::Capacity(e) => Outcome::Close(CloseCode::Size, format!("message too big ({e})")),
        // The peer went away without a close frame: nobody to tell.
        E::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake) => {
            Outcome::Close(CloseCode::Normal, String::new())
        }
        E::Protocol(e) => Outcome::Close(CloseCode::Protocol, format!("protocol error: {e}")),
        E::Utf8(_) => Outcome::Close(CloseCode::Invalid, "text is not valid UTF-8".into()),
        _ => Outcome::Close(CloseCode::Normal, String::new()),
    }
}
