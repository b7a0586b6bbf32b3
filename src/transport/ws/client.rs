//! One connected client: its non-blocking socket, its bounded outbound
//! queues, its inbound budgets and whether it may change settings.
//!
//! Outbound, in the order they go out:
//! - meta, as a flag: a client is owed the current meta, never a backlog of
//!   old ones (a client that changes settings 200 times a second cannot fill
//!   anyone's queue with metas);
//! - replies to this client (answers, errors, device and preset lists): at
//!   most [`REPLY_CAP`]; a client that lets more pile up is not reading and
//!   is closed;
//! - frames (snapshots, FFT, audio, events, status): at most [`FRAME_CAP`],
//!   the oldest dropped first (O(1)). A frame is handed to the socket only
//!   while less than [`BACKLOG_BYTES`] are on their way to the client (in
//!   tungstenite's buffer and the kernel's send queue), and one that waited
//!   longer than [`FRAME_MAX_AGE`] is dropped instead of sent: a client on a
//!   link a little too slow gets fewer frames, each of them recent, instead
//!   of every frame later and later. The recorder's announcements are kept
//!   (they say what changed, not what is).
//!
//! Inbound: per turn at most [`READ_BYTES_PER_TURN`] bytes and
//! [`MESSAGES_PER_TURN`] messages; per second [`READ_BYTES_PER_S`] bytes
//! and `ws.max-messages-per-s`
//! (token bucket), beyond which messages are dropped, and a client that
//! keeps going past [`FLOOD_FACTOR`] times the limit is closed. Error replies
//! are themselves rate-limited ([`ERRORS_PER_S`]).
//!
//! A client that has something on its way and takes less than
//! [`PROGRESS_BYTES`] of it in `ws.stall-timeout-s` is closed: one that
//! stopped reading, not one that reads slowly.

use super::conn::Conn;
use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tungstenite::{Error as WsError, Message, Utf8Bytes, WebSocket};

/// Most replies waiting for one client.
pub const REPLY_CAP: usize = 64;
/// Most frames waiting for one client.
pub const FRAME_CAP: usize = 128;
/// Most bytes on their way to one client (tungstenite's buffer and the
/// kernel's unacknowledged send queue) before frames wait in its queue:
/// about 0.3 s of an Ultra listener's traffic (75 KB/s with the
/// snapshots), and still its whole rate over a link with 300 ms of round
/// trip.
pub const BACKLOG_BYTES: usize = 24 * 1024;
/// A frame that waited this long in a client's queue is dropped, not sent.
pub const FRAME_MAX_AGE: Duration = Duration::from_millis(200);
/// A client with something on its way must take this many bytes per
/// `ws.stall-timeout-s` to count as reading.
pub const PROGRESS_BYTES: u64 = 4096;
/// Bytes read from one client per broadcaster turn.
pub const READ_BYTES_PER_TURN: usize = 16 * 1024;
/// Bytes read per turn from a client that has not authenticated (an `auth`
/// message is small).
pub const READ_BYTES_PER_TURN_UNAUTHORIZED: usize = 2 * 1024;
/// Bytes read from one client per second (bursts of one second's worth):
/// beyond that its socket is left alone and TCP slows the sender down. A
/// stream of frames that never completes a message (100 000 empty
/// continuation frames) is held to this rate too.
pub const READ_BYTES_PER_S: f64 = 1024.0 * 1024.0;
/// The same for a client that has not authenticated.
pub const READ_BYTES_PER_S_UNAUTHORIZED: f64 = 64.0 * 1024.0;
/// Messages handled from one client per broadcaster turn.
pub const MESSAGES_PER_TURN: usize = 32;
/// A client whose messages keep arriving this many times faster than
/// `ws.max-messages-per-s` (for a whole second's budget) is closed.
pub const FLOOD_FACTOR: f64 = 4.0;
/// Error replies per second to one client (bursts of [`ERROR_BURST`]).
pub const ERRORS_PER_S: f64 = 5.0;
/// Error replies in a burst.
pub const ERROR_BURST: f64 = 10.0;
/// Wrong tokens before the connection is closed.
pub const MAX_AUTH_FAILURES: u32 = 3;

/// How a write round went.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    /// Everything went out.
    Drained,
    /// The socket is full; the rest waits.
    Behind,
    /// The connection is gone.
    Closed,
}

/// What the rate limit says about one inbound message.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Handle it.
    Admit,
    /// Drop it.
    Drop,
    /// Drop it and close the client: it floods.
    Flood,
}

/// A token bucket: `rate` per second, bursts of `burst`.
#[derive(Debug)]
pub struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64) -> Self {
        Bucket {
            tokens: burst,
            at: Instant::now(),
        }
    }

    /// Take one token; the level may go below zero down to `-debt`, and a
    /// take that would go further takes nothing. Returns the level after
    /// taking: below zero means there was no whole token. (With no debt a
    /// refused take leaves the bucket as it was, so it still refills at
    /// `rate` while the takes keep coming.)
    fn take(&mut self, rate: f64, burst: f64, debt: f64, now: Instant) -> f64 {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        let refilled = (self.tokens + dt * rate).min(burst);
        let level = refilled - 1.0;
        self.tokens = if level >= -debt { level } else { refilled };
        level
    }
}

/// A connected client.
pub struct Client {
    /// Unique id (replies from control are addressed by it).
    pub id: u64,
    /// The socket.
    pub ws: WebSocket<Conn>,
    /// May change settings.
    pub authorized: bool,
    /// It had the token (or loopback) when it connected: its place in the
    /// [`Registry`](super::registry::Registry) is a privileged one.
    pub privileged_place: bool,
    /// Address.
    pub peer: SocketAddr,
    /// Owed the current meta.
    pub meta_due: bool,
    replies: VecDeque<Message>,
    frames: VecDeque<Queued>,
    /// The bytes the client had acknowledged when it last made progress.
    acked: u64,
    /// When it last took [`PROGRESS_BYTES`], or had nothing on its way.
    progress_at: Instant,
    /// Something is on its way to it or waits in its queues.
    outstanding: bool,
    /// tungstenite's buffer was empty after the last flush.
    drained: bool,
    /// The kernel still held unacknowledged bytes at the last look.
    unacked_left: bool,
    /// Frames dropped for this client.
    pub drops: u64,
    inbound: Bucket,
    errors: Bucket,
    read_tokens: f64,
    read_at: Instant,
    /// Errors not sent because of the error rate limit.
    pub errors_suppressed: u64,
    /// Wrong tokens so far.
    pub auth_failures: u32,
    /// Requests sent to control and not yet answered.
    pub in_flight: u32,
    /// The monitor preset this client listens to.
    pub audio: Option<crate::monitor::Preset>,
    /// The last read stopped at [`MESSAGES_PER_TURN`]: whole messages may
    /// wait in tungstenite's buffer, where `poll` cannot see them, so the
    /// client is read again next turn without waiting for its socket.
    pub more_buffered: bool,
}

impl Client {
    /// Wrap a handshaken socket (made non-blocking here).
    pub fn new(
        id: u64,
        ws: WebSocket<Conn>,
        authorized: bool,
        peer: SocketAddr,
        rate: f64,
    ) -> std::io::Result<Self> {
        let s = ws.get_ref().tcp();
        s.set_nonblocking(true)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(None)?;
        s.set_write_timeout(None)?;
        shrink_send_buffer(s);
        Ok(Client {
            id,
            ws,
            authorized,
            privileged_place: authorized,
            peer,
            meta_due: true,
            replies: VecDeque::with_capacity(8),
            frames: VecDeque::with_capacity(FRAME_CAP),
            acked: 0,
            progress_at: Instant::now(),
            outstanding: false,
            unacked_left: false,
            drained: true,
            drops: 0,
            inbound: Bucket::full(rate.max(1.0)),
            errors: Bucket::full(ERROR_BURST),
            read_tokens: READ_BYTES_PER_S_UNAUTHORIZED,
            read_at: Instant::now(),
            errors_suppressed: 0,
            auth_failures: 0,
            in_flight: 0,
            audio: None,
            more_buffered: false,
        })
    }

    /// How many bytes may be read from this client now (0: leave its
    /// socket alone this turn). A client over its rate waits until a whole
    /// turn's budget has built up again: handing out the few bytes earned
    /// since the last turn would wake the broadcaster for every few bytes
    /// of a flood.
    pub fn read_allowance(&mut self, now: Instant) -> usize {
        let (per_s, per_turn) = if self.authorized {
            (READ_BYTES_PER_S, READ_BYTES_PER_TURN)
        } else {
            (
                READ_BYTES_PER_S_UNAUTHORIZED,
                READ_BYTES_PER_TURN_UNAUTHORIZED,
            )
        };
        let dt = now.saturating_duration_since(self.read_at).as_secs_f64();
        self.read_at = now;
        self.read_tokens = (self.read_tokens + dt * per_s).min(per_s);
        if self.read_tokens < per_turn as f64 {
            0
        } else {
            per_turn
        }
    }

    /// `n` bytes were read.
    pub fn spend_reading(&mut self, n: usize) {
        self.read_tokens -= n as f64;
    }

    /// Queue a frame; when the queue is full the oldest goes. Returns how
    /// many were dropped.
    pub fn push_frame(&mut self, msg: Message) -> u64 {
        self.queue_frame(msg, Instant::now(), false)
    }

    /// Queue a recorder announcement: a frame that is never dropped for
    /// its age (only when the queue is full).
    pub fn push_announcement(&mut self, msg: Message) -> u64 {
        self.queue_frame(msg, Instant::now(), true)
    }

    fn queue_frame(&mut self, msg: Message, at: Instant, keep: bool) -> u64 {
        let dropped = if self.frames.len() >= FRAME_CAP {
            // The oldest frame that is not an announcement (one stuck at
            // the front of a slow client's queue kept the frames behind it
            // from ageing out, and the cap then dropped it: tester r's R7).
            let at = self.frames.iter().position(|q| !q.keep).unwrap_or(0);
            self.frames.remove(at);
            1
        } else {
            0
        };
        self.drops += dropped;
        self.frames.push_back(Queued { at, msg, keep });
        dropped
    }

    /// Queue a reply. False when the reply queue is full: the client is not
    /// reading its answers and must be closed.
    #[must_use]
    pub fn push_reply(&mut self, msg: Message) -> bool {
        if self.replies.len() >= REPLY_CAP {
            return false;
        }
        self.replies.push_back(msg);
        true
    }

    /// Queue an error reply (and `snap_back`, the meta in force, after it)
    /// unless this client already got its share of errors this second. False as for [`Client::push_reply`].
    #[must_use]
    pub fn push_error(&mut self, json: String, snap_back: Option<String>, now: Instant) -> bool {
        if self.errors.take(ERRORS_PER_S, ERROR_BURST, 0.0, now) < 0.0 {
            self.errors_suppressed += 1;
            return true;
        }
        self.push_reply(Message::Text(json.into()))
            && snap_back.is_none_or(|m| self.push_reply(Message::Text(m.into())))
    }

    /// Count one inbound message against `rate` per second.
    pub fn admit(&mut self, rate: f64, now: Instant) -> Admission {
        let rate = rate.max(1.0);
        let level = self
            .inbound
            .take(rate, rate, FLOOD_FACTOR * rate + 1.0, now);
        if level >= 0.0 {
            Admission::Admit
        } else if level <= -FLOOD_FACTOR * rate {
            Admission::Flood
        } else {
            Admission::Drop
        }
    }

    /// Move queued messages into the socket and flush once. `meta` is the
    /// current meta, sent first when due; then the replies; then as many
    /// frames as [`BACKLOG_BYTES`] leaves room for, those older than
    /// [`FRAME_MAX_AGE`] dropped on the way (counted in `drops`).
    pub fn write_out(&mut self, meta: &Utf8Bytes, now: Instant) -> Flow {
        let mut offered = 0usize;
        if self.meta_due {
            offered += meta.len();
            match self.offer(Message::Text(meta.clone())) {
                Offer::Taken => self.meta_due = false,
                Offer::Full(_) => return self.flush(now),
                Offer::Closed => return Flow::Closed,
            }
        }
        while let Some(m) = self.replies.pop_front() {
            let len = m.len();
            match self.offer(m) {
                Offer::Taken => offered += len,
                Offer::Full(m) => {
                    self.replies.push_front(m);
                    return self.flush(now);
                }
                Offer::Closed => return Flow::Closed,
            }
        }
        // What is already on its way: nothing more while tungstenite still
        // holds bytes from an earlier turn.
        let mut room = if !self.drained {
            0
        } else if self.frames.is_empty() {
            BACKLOG_BYTES
        } else {
            BACKLOG_BYTES.saturating_sub(unacknowledged(self.ws.get_ref().tcp()) + offered)
        };
        while room > 0 {
            let Some(q) = self.frames.pop_front() else {
                break;
            };
            if !q.keep && now.saturating_duration_since(q.at) > FRAME_MAX_AGE {
                self.drops += 1;
                continue;
            }
            let len = q.msg.len();
            match self.offer(q.msg) {
                Offer::Taken => room = room.saturating_sub(len),
                Offer::Full(msg) => {
                    self.frames.push_front(Queued { msg, ..q });
                    break;
                }
                Offer::Closed => return Flow::Closed,
            }
        }
        // Frames that already waited too long go now, not when there is
        // room again, also those behind a kept announcement.
        let before = self.frames.len();
        self.frames
            .retain(|q| q.keep || now.saturating_duration_since(q.at) <= FRAME_MAX_AGE);
        self.drops += (before - self.frames.len()) as u64;
        self.flush(now)
    }

    fn offer(&mut self, m: Message) -> Offer {
        match self.ws.write(m) {
            Ok(()) => Offer::Taken,
            Err(WsError::WriteBufferFull(m)) => Offer::Full(*m),
            // The frame is in tungstenite's buffer; the socket is full.
            Err(WsError::Io(e)) if e.kind() == ErrorKind::WouldBlock => Offer::Taken,
            Err(_) => Offer::Closed,
        }
    }

    fn flush(&mut self, now: Instant) -> Flow {
        let flow = match self.ws.flush() {
            Ok(()) => {
                self.drained = true;
                Flow::Drained
            }
            Err(WsError::Io(e)) if e.kind() == ErrorKind::WouldBlock => {
                self.drained = false;
                Flow::Behind
            }
            Err(_) => return Flow::Closed,
        };
        let queued = self.meta_due || !self.replies.is_empty() || !self.frames.is_empty();
        // Everything handed to the kernel: counted as taken (no system call
        // per client and turn for a client that keeps up). If the kernel
        // cannot pass it on, frames queue within a turn or two and the
        // stall is counted from here.
        // A client that had bytes in flight at the last look is asked
        // again until they are gone: a slow one costs a call per turn.
        let ask = !self.drained || queued || self.unacked_left;
        let unacked = if ask {
            unacknowledged(self.ws.get_ref().tcp())
        } else {
            0
        };
        self.unacked_left = unacked > 0;
        let acked = self.ws.get_ref().written().saturating_sub(unacked as u64);
        self.outstanding = !self.drained || unacked > 0 || queued;
        if !self.outstanding {
            // Nothing on its way, as far as is known. Unasked, `acked`
            // also counts what the kernel may still hold: the progress
            // mark stays where it was (moved up to those bytes, it asked
            // a slow client for its whole backlog plus PROGRESS_BYTES
            // within the next stall-timeout: a 48 kbit/s listener was cut
            // after 8 s).
            if ask {
                self.acked = acked;
            }
            self.progress_at = now;
        } else if acked >= self.acked + PROGRESS_BYTES {
            self.acked = acked;
            self.progress_at = now;
        }
        if queued {
            Flow::Behind
        } else {
            flow
        }
    }

    /// How long the client has had something on its way without taking
    /// [`PROGRESS_BYTES`] of it.
    pub fn stalled_for(&self, now: Instant) -> Duration {
        if self.outstanding {
            now.saturating_duration_since(self.progress_at)
        } else {
            Duration::ZERO
        }
    }
}

/// A frame in a client's queue.
struct Queued {
    /// When it was queued.
    at: Instant,
    msg: Message,
    /// Never dropped for its age.
    keep: bool,
}

enum Offer {
    Taken,
    Full(Message),
    Closed,
}

/// Bytes in the socket's send queue that the peer has not acknowledged
/// (`SIOCOUTQ`); 0 when the kernel will not say.
fn unacknowledged(s: &std::net::TcpStream) -> usize {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: the fd is a valid socket owned by `s` for the duration of the
    // call; TIOCOUTQ (SIOCOUTQ on a socket) writes one c_int to the live
    // local it is given.
    let r = unsafe { libc::ioctl(s.as_raw_fd(), libc::TIOCOUTQ, &mut n as *mut libc::c_int) };
    if r == 0 {
        n.max(0) as usize
    } else {
        0
    }
}

/// A small kernel send buffer, so that a client that stops reading shows
/// up as a full socket within seconds instead of after megabytes.
fn shrink_send_buffer(s: &std::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 64 * 1024;
    // SAFETY: the fd is a valid socket owned by `s` for the duration of the
    // call; the option value points to a live c_int of the length given.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            &size as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

#[cfg(test)]
mod tests;
