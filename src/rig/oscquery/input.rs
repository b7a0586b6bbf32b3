//! The OSC input port (`p4-osc-in`, off by default: `oscquery.input-port`):
//! OSC messages to the writable settings of the OSCQuery namespace
//! (`<prefix>/settings/dsp/low/lo-hz f`, ...) become the WebSocket
//! protocol's commands and go to the control thread, which validates them
//! exactly as it validates WebSocket commands (the command first, then the
//! whole resulting configuration) before anything changes.
//!
//! Who may write follows the WebSocket's rule, with the same secret
//! ([`crate::control::secret`]): a sender on this machine may when
//! `ws.trust-loopback` is on; any other sender must first send
//! `/phase4/auth s:TOKEN` with the control token (`phase4 token`), which
//! opens a session for its address and port ([`SESSION_IDLE`] long, renewed
//! by use; at most [`MAX_SESSIONS`]). UDP source addresses can be forged on
//! a LAN, and the token travels in clear like `?token=` over plain HTTP:
//! this is as strong as the WebSocket's control and no stronger
//! (docs/operations.md says so).
//!
//! Bounded: datagrams over [`MAX_DATAGRAM`] bytes are dropped unread (which
//! also bounds bundle nesting); datagrams from senders that may not write
//! (authentication attempts included) are looked at only
//! [`UNTRUSTED_PER_SENDER_PER_S`] times a second per sending address and
//! [`UNTRUSTED_PER_S`] times a second in all, before they are decoded (so
//! one host guessing tokens cannot crowd out another's authentication; a
//! flood from many forged addresses still meets the overall cap); at most
//! `oscquery.max-input-per-s` messages a second are taken from the senders
//! that may write, and at most [`MAX_IN_FLIGHT`] of them wait for the
//! control thread at once. Refusals are counted and logged at most every
//! few seconds.

mod arrival;
mod budget;

use super::setting_at;
use super::Live;
use crate::control::secret::Secret;
use crate::control::{Command, Request, OSC_INPUT_CLIENT};
use crate::service::logging::RateLimit;
use crate::stats::Stats;
use arrival::{from_this_machine, receive};
use budget::{Bucket, Senders};
use rosc::{OscMessage, OscPacket, OscType};
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The authentication address.
pub const AUTH: &str = "/phase4/auth";
/// Largest datagram taken.
pub const MAX_DATAGRAM: usize = 1536;
/// Most messages taken from one datagram (bundles).
pub const MAX_PER_PACKET: usize = 32;
/// An authenticated sender stays so this long after its last message.
pub const SESSION_IDLE: Duration = Duration::from_secs(600);
/// Most authenticated senders at once (the oldest is dropped).
pub const MAX_SESSIONS: usize = 64;
/// Datagrams a second looked at from senders that may not write, all
/// together (authentication attempts are among them).
pub const UNTRUSTED_PER_S: f64 = 50.0;
/// The same again, kept for addresses that were quiet for the last second
/// ([`QUIET_FOR`]): senders that each stay within their own
/// budget but together spend [`UNTRUSTED_PER_S`] do not keep a host that
/// tries once a second from authenticating.
pub const UNTRUSTED_QUIET_PER_S: f64 = 50.0;
/// How long an address must have sent nothing to be quiet.
pub const QUIET_FOR: Duration = Duration::from_secs(1);
/// The same from any one address (all its ports together; an IPv6
/// sender's whole /64).
pub const UNTRUSTED_PER_SENDER_PER_S: f64 = 5.0;
/// Addresses whose budget is remembered; a new one takes the place of the
/// one heard from least recently (and starts with a full budget, so
/// forgetting only ever favours the sender).
pub const UNTRUSTED_SENDERS: usize = 64;
/// Most of this port's commands waiting for the control thread.
pub const MAX_IN_FLIGHT: u64 = 32;

/// Everything the input thread is given.
pub struct InputCtx {
    /// The socket, bound.
    pub sock: UdpSocket,
    /// Settings in force and the sample rate.
    pub live: Live,
    /// Commands to the control thread.
    pub requests: Sender<Request>,
    /// The control secret (the WebSocket's).
    pub secret: Secret,
    /// Senders on loopback may write without the token
    /// (`ws.trust-loopback`).
    pub trust_loopback: bool,
    /// Most messages per second.
    pub max_per_s: f64,
    /// Counters.
    pub stats: Arc<Stats>,
    /// Set to stop.
    pub stop: Arc<AtomicBool>,
    /// Fired with `stop`: ends the wait for a datagram.
    pub stop_fd: crate::rt::StopFd,
}

/// Why a message was not applied.
#[derive(Debug, PartialEq)]
pub enum Refusal {
    /// Not a settings address.
    UnknownAddress(String),
    /// The sender may not write (no session, wrong token).
    NotAllowed,
    /// The value is wrong (type, count, range).
    Invalid(String),
    /// Over the rate, or the control thread has enough of ours waiting.
    Busy,
    /// A second `/phase4/auth` in one datagram (never looked at).
    ExtraAuth,
}

/// Who may write: loopback (when trusted) and authenticated senders.
pub struct Gate {
    secret: Secret,
    trust_loopback: bool,
    sessions: HashMap<SocketAddr, Instant>,
}

impl Gate {
    /// A gate for `secret`.
    pub fn new(secret: Secret, trust_loopback: bool) -> Self {
        Gate {
            secret,
            trust_loopback,
            sessions: HashMap::new(),
        }
    }

    /// `/phase4/auth` from `from`; true when the token was right.
    pub fn auth(&mut self, from: SocketAddr, args: &[OscType], now: Instant) -> bool {
        let ok = matches!(args, [OscType::String(t)] if self.secret.matches(t));
        if ok {
            self.sessions
                .retain(|_, t| now.duration_since(*t) < SESSION_IDLE);
            if self.sessions.len() >= MAX_SESSIONS && !self.sessions.contains_key(&from) {
                if let Some(oldest) = self
                    .sessions
                    .iter()
                    .min_by_key(|(_, t)| **t)
                    .map(|(a, _)| *a)
                {
                    self.sessions.remove(&oldest);
                }
            }
            self.sessions.insert(from, now);
        }
        ok
    }

    /// Whether `from` may write now (renews its session). `via_lo`: the
    /// datagram came in on the loopback interface.
    pub fn allows(&mut self, from: SocketAddr, via_lo: bool, now: Instant) -> bool {
        if self.trust_loopback && from_this_machine(from.ip(), via_lo) {
            return true;
        }
        match self.sessions.get_mut(&from) {
            Some(t) if now.duration_since(*t) < SESSION_IDLE => {
                *t = now;
                true
            }
            Some(_) => {
                self.sessions.remove(&from);
                false
            }
            None => false,
        }
    }
}

/// The command one message asks for, checked like a WebSocket command at
/// sample rate `sr`.
pub fn command_for(live: &Live, m: &OscMessage, sr: f64) -> Result<Command, Refusal> {
    let cfg = live.settings();
    let setting =
        setting_at(&cfg, &m.addr).ok_or_else(|| Refusal::UnknownAddress(m.addr.clone()))?;
    let cmd = setting.command(&m.args, &cfg).map_err(Refusal::Invalid)?;
    match crate::control::validate(&cmd, sr) {
        Some(e) => Err(Refusal::Invalid(e)),
        None => Ok(cmd),
    }
}

/// The messages of one datagram into `out` (cleared first), bundles
/// flattened, at most [`MAX_PER_PACKET`]; false when the datagram is over
/// [`MAX_DATAGRAM`] bytes or is not OSC.
pub fn decode(datagram: &[u8], out: &mut Vec<OscMessage>) -> bool {
    out.clear();
    if datagram.len() > MAX_DATAGRAM {
        return false;
    }
    match rosc::decoder::decode_udp(datagram) {
        Ok((_, p)) => {
            messages(p, out);
            true
        }
        Err(_) => false,
    }
}

fn messages(p: OscPacket, out: &mut Vec<OscMessage>) {
    match p {
        OscPacket::Message(m) if out.len() < MAX_PER_PACKET => out.push(m),
        OscPacket::Message(_) => {}
        OscPacket::Bundle(b) => {
            for c in b.content {
                messages(c, out);
            }
        }
    }
}

impl Input {
    /// Waits for a datagram or the stop (at most [`IDLE_WAIT_MS`], a
    /// fallback): true when the socket has one. Waking every 100 ms to
    /// look at the stop flag held up a stop by as much.
    fn wait(&self) -> bool {
        use nix::poll::{poll, PollFd, PollFlags};
        use std::os::fd::AsFd;
        let mut fds = [
            PollFd::new(self.ctx.sock.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.ctx.stop_fd.as_fd(), PollFlags::POLLIN),
        ];
        matches!(poll(&mut fds, IDLE_WAIT_MS), Ok(n) if n > 0)
            && fds[1].revents().is_none_or(|r| r.is_empty())
            && fds[0].revents().is_some_and(|r| !r.is_empty())
    }
}

/// Longest wait for a datagram before the stop flag is looked at again.
const IDLE_WAIT_MS: u16 = 1000;

/// Start `p4-osc-in`.
pub fn spawn(ctx: InputCtx) -> std::io::Result<JoinHandle<()>> {
    // Not redundant with the poll: a datagram that poll reports may still
    // be dropped at the read (a bad UDP checksum is found only then), and
    // the read would then wait for the next one with the stop unseen.
    ctx.sock
        .set_read_timeout(Some(Duration::from_millis(100)))?;
    arrival::ask_for_arrival(&ctx.sock)?;
    std::thread::Builder::new()
        .stack_size(crate::rt::PARSER_STACK)
        .name("p4-osc-in".into())
        .spawn(move || run(ctx))
}

/// The input thread's state: who may write, the rate budgets, and how
/// many of its commands went to the control thread.
struct Input {
    ctx: InputCtx,
    gate: Gate,
    budget: Bucket,
    untrusted: Bucket,
    quiet: Bucket,
    senders: Senders,
    refilled: Instant,
    warn: RateLimit,
    sent: u64,
}

fn run(ctx: InputCtx) {
    let mut input = Input {
        gate: Gate::new(ctx.secret.clone(), ctx.trust_loopback),
        budget: Bucket::new(ctx.max_per_s),
        untrusted: Bucket::new(UNTRUSTED_PER_S),
        quiet: Bucket::new(UNTRUSTED_QUIET_PER_S),
        senders: Senders::new(),
        refilled: Instant::now(),
        warn: RateLimit::new(Duration::from_secs(5)),
        sent: 0,
        ctx,
    };
    let mut buf = [0u8; MAX_DATAGRAM + 1];
    let mut msgs = Vec::with_capacity(MAX_PER_PACKET);
    while !input.ctx.stop.load(Ordering::Relaxed) {
        if !input.wait() {
            continue;
        }
        let Ok((n, from, via_lo)) = receive(&input.ctx.sock, &mut buf) else {
            continue;
        };
        let now = Instant::now();
        let Some(allowed) = input.admit(n, from, via_lo, now) else {
            input.refused();
            continue;
        };
        if !decode(&buf[..n], &mut msgs) {
            input.refused();
            continue;
        }
        let sr = input.sample_rate();
        // One token looked at per datagram: the budgets count datagrams,
        // and a bundle of guesses would otherwise multiply them.
        let mut auth_looked_at = false;
        for m in msgs.drain(..) {
            if m.addr == AUTH && std::mem::replace(&mut auth_looked_at, true) {
                input.refused();
                input.warn_refused(&m.addr, from, Refusal::ExtraAuth);
                continue;
            }
            input.handle(m, from, allowed, now, sr);
        }
    }
}

impl Input {
    /// The cheap checks, before anything is decoded: a datagram that is
    /// too big, or from a sender that may not write once its address's
    /// share or the untrusted share is spent, is refused (`None`).
    /// Otherwise whether its sender may write.
    fn admit(&mut self, n: usize, from: SocketAddr, via_lo: bool, now: Instant) -> Option<bool> {
        let dt = now.duration_since(self.refilled).as_secs_f64();
        self.budget.refill(dt);
        self.untrusted.refill(dt);
        self.quiet.refill(dt);
        self.refilled = now;
        let allowed = self.gate.allows(from, via_lo, now);
        if n > MAX_DATAGRAM || !allowed && !self.untrusted_ok(from, now) {
            return None;
        }
        Some(allowed)
    }

    /// A datagram from a sender that may not write: its address's share,
    /// then the shared budget, or the quiet addresses' reserve when the
    /// shared one is spent.
    fn untrusted_ok(&mut self, from: SocketAddr, now: Instant) -> bool {
        match self.senders.take(from.ip(), now) {
            None => false,
            Some(quiet) => self.untrusted.take() || quiet && self.quiet.take(),
        }
    }

    /// The rate in force: the open device's, else the configured one.
    fn sample_rate(&self) -> f64 {
        let live = &self.ctx.live;
        match live
            .shared
            .as_ref()
            .map_or(0, |s| s.sample_rate.load(Ordering::Relaxed))
        {
            0 => live.config.audio.sample_rate_hz as f64,
            sr => sr as f64,
        }
    }

    /// Commands of this port the control thread has taken so far.
    fn handled(&self) -> u64 {
        self.ctx
            .live
            .shared
            .as_ref()
            .map_or(self.sent, |s| s.osc_input_handled.load(Ordering::Relaxed))
    }

    /// One message: an authentication, or a write that goes to the control
    /// thread when its sender may write, the budgets allow it and it is a
    /// valid setting.
    fn handle(&mut self, m: OscMessage, from: SocketAddr, allowed: bool, now: Instant, sr: f64) {
        let result = if m.addr == AUTH {
            if self.gate.auth(from, &m.args, now) {
                crate::peer_log!(log::Level::Info, "osc-in: {from} authenticated");
                return;
            }
            Err(Refusal::NotAllowed)
        } else if !allowed && !self.gate.allows(from, false, now) {
            Err(Refusal::NotAllowed)
        } else if self.sent.saturating_sub(self.handled()) >= MAX_IN_FLIGHT || !self.budget.take() {
            Err(Refusal::Busy)
        } else {
            command_for(&self.ctx.live, &m, sr)
        };
        match result {
            Ok(command) => {
                let request = Request {
                    client: OSC_INPUT_CLIENT,
                    command,
                };
                if self.ctx.requests.send(request).is_ok() {
                    self.sent += 1;
                }
                self.ctx.stats.rig.osc_in_ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(why) => {
                self.refused();
                self.warn_refused(&m.addr, from, why);
            }
        }
    }

    fn refused(&self) {
        self.ctx
            .stats
            .rig
            .osc_in_refused
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Log a refusal, at most every few seconds.
    fn warn_refused(&mut self, addr: &str, from: SocketAddr, why: Refusal) {
        let Some(held) = self.warn.allow() else {
            return;
        };
        let why = match why {
            Refusal::UnknownAddress(_) => "no such setting".to_string(),
            Refusal::NotAllowed => {
                "not allowed (send /phase4/auth with the control token first)".to_string()
            }
            Refusal::Invalid(e) => e,
            Refusal::Busy => "too many writes (oscquery.max-input-per-s)".into(),
            Refusal::ExtraAuth => "one /phase4/auth per datagram is looked at".into(),
        };
        log::warn!(
            "osc-in: refused {} from {from}: {why} ({held} similar suppressed)",
            crate::control::device::shorten(addr),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn loopback_writes_others_need_the_token() {
        let now = Instant::now();
        let mut g = Gate::new(Secret::configured("s3cret"), true);
        assert!(g.allows(addr("127.0.0.1:5000"), true, now));
        assert!(g.allows(addr("[::1]:5000"), true, now));
        // Not from the link (review z: 127/8 comes in from there with
        // route_localnet and accept_local set).
        assert!(!g.allows(addr("127.0.0.1:5000"), false, now));
        // Loopback through a dual-stack socket (`bind = "::"`) when it came
        // in on the loopback interface (tester x: refused, though the
        // start-up line said this machine may write), not from a network,
        // where the address is forged (review y).
        assert!(g.allows(addr("[::ffff:127.0.0.1]:5000"), true, now));
        assert!(!g.allows(addr("[::ffff:127.0.0.1]:5000"), false, now));
        assert!(!g.allows(addr("[::ffff:192.0.2.7]:5000"), true, now));
        let lan = addr("192.0.2.7:5000");
        assert!(!g.allows(lan, false, now));
        assert!(!g.auth(lan, &[OscType::String("wrong".into())], now));
        assert!(!g.auth(lan, &[OscType::Int(1)], now));
        assert!(!g.allows(lan, false, now));
        assert!(g.auth(lan, &[OscType::String("s3cret".into())], now));
        assert!(g.allows(lan, false, now));
        assert!(
            !g.allows(addr("192.0.2.7:5001"), false, now),
            "another port is another sender"
        );
        assert!(!g.allows(lan, false, now + SESSION_IDLE + Duration::from_secs(1)));
    }

    #[test]
    fn no_token_means_loopback_only_and_sessions_are_bounded() {
        let now = Instant::now();
        let mut g = Gate::new(Secret::configured(""), true);
        assert!(!g.auth(addr("192.0.2.7:1"), &[OscType::String(String::new())], now));
        let mut g = Gate::new(Secret::configured("t"), false);
        assert!(
            !g.allows(addr("127.0.0.1:1"), false, now),
            "loopback not trusted"
        );
        for i in 0..(MAX_SESSIONS + 10) {
            let a = SocketAddr::from(([192, 0, 2, 1], 1000 + i as u16));
            assert!(g.auth(
                a,
                &[OscType::String("t".into())],
                now + Duration::from_millis(i as u64)
            ));
        }
        assert_eq!(g.sessions.len(), MAX_SESSIONS);
        assert!(
            !g.allows(addr("192.0.2.1:1000"), false, now),
            "the oldest went first"
        );
    }
}
