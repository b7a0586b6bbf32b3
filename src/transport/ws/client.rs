//! One connected client: its non-blocking socket, its bounded outbound
//! queue, its inbound rate limit and whether it may change settings.
//!
//! A client that does not read never blocks anyone: writes go to a
//! non-blocking socket; what the kernel will not take waits in tungstenite's
//! bounded buffer and then in a bounded queue, where frames (snapshots, FFT,
//! events) are dropped oldest first. Replies, errors and meta are never
//! dropped. A client whose socket stays full for `ws.stall-timeout-s` is
//! disconnected.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tungstenite::{Error as WsError, Message, WebSocket};

/// Outbound messages waiting for one client, at most.
pub const QUEUE_CAP: usize = 128;

/// One message waiting to go out.
struct Out {
    msg: Message,
    /// A frame the next one supersedes (may be dropped for a slow client).
    droppable: bool,
}

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

/// A connected client.
pub struct Client {
    /// Unique id (replies from control are addressed by it).
    pub id: u64,
    /// The socket.
    pub ws: WebSocket<TcpStream>,
    /// May change settings.
    pub authorized: bool,
    /// Address, for logs.
    pub peer: String,
    queue: VecDeque<Out>,
    /// Since when the socket has been full.
    stalled_since: Option<Instant>,
    /// Frames dropped for this client.
    pub drops: u64,
    tokens: f64,
    tokens_at: Instant,
    last_rate_error: Option<Instant>,
}

impl Client {
    /// Wrap a handshaken socket (made non-blocking here).
    pub fn new(
        id: u64,
        ws: WebSocket<TcpStream>,
        authorized: bool,
        peer: String,
    ) -> std::io::Result<Self> {
        let s = ws.get_ref();
        s.set_nonblocking(true)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(None)?;
        s.set_write_timeout(None)?;
        shrink_send_buffer(s);
        Ok(Client {
            id,
            ws,
            authorized,
            peer,
            queue: VecDeque::with_capacity(QUEUE_CAP),
            stalled_since: None,
            drops: 0,
            tokens: 0.0,
            tokens_at: Instant::now(),
            last_rate_error: None,
        })
    }

    /// Queue a message. A droppable frame that does not fit pushes out the
    /// oldest droppable one; returns how many were dropped.
    pub fn push(&mut self, msg: Message, droppable: bool) -> u64 {
        let mut dropped = 0;
        if self.queue.len() >= QUEUE_CAP {
            if let Some(i) = self.queue.iter().position(|o| o.droppable) {
                self.queue.remove(i);
                dropped = 1;
            } else if droppable {
                dropped = 1;
                self.drops += dropped;
                return dropped;
            }
        }
        self.drops += dropped;
        self.queue.push_back(Out { msg, droppable });
        dropped
    }

    /// Move queued messages into the socket and flush once.
    pub fn write_out(&mut self, now: Instant) -> Flow {
        while let Some(o) = self.queue.pop_front() {
            match self.ws.write(o.msg) {
                Ok(()) => {}
                Err(WsError::WriteBufferFull(m)) => {
                    self.queue.push_front(Out {
                        msg: m,
                        droppable: o.droppable,
                    });
                    break;
                }
                // The frame is in tungstenite's buffer; the socket is full.
                Err(WsError::Io(e)) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => return Flow::Closed,
            }
        }
        match self.ws.flush() {
            Ok(()) if self.queue.is_empty() => {
                self.stalled_since = None;
                Flow::Drained
            }
            Ok(()) => {
                self.stalled_since.get_or_insert(now);
                Flow::Behind
            }
            Err(WsError::Io(e)) if e.kind() == ErrorKind::WouldBlock => {
                self.stalled_since.get_or_insert(now);
                Flow::Behind
            }
            Err(_) => Flow::Closed,
        }
    }

    /// How long the socket has been full.
    pub fn stalled_for(&self, now: Instant) -> Duration {
        self.stalled_since
            .map(|t| now.saturating_duration_since(t))
            .unwrap_or_default()
    }

    /// Take one inbound message from the rate budget (`rate` per second,
    /// bursts up to one second's worth). False when over the limit.
    pub fn admit(&mut self, rate: f64, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.tokens_at).as_secs_f64();
        self.tokens_at = now;
        self.tokens = (self.tokens + dt * rate).min(rate.max(1.0));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether to tell the client it is over the rate limit (once a second).
    pub fn should_report_rate(&mut self, now: Instant) -> bool {
        let due = self.last_rate_error.map_or(true, |t| {
            now.saturating_duration_since(t) >= Duration::from_secs(1)
        });
        if due {
            self.last_rate_error = Some(now);
        }
        due
    }

    /// Start with a full rate budget.
    pub fn fill_budget(&mut self, rate: f64) {
        self.tokens = rate.max(1.0);
    }
}

/// A small kernel send buffer, so that a client that stops reading shows
/// up as a full socket within seconds instead of after megabytes.
fn shrink_send_buffer(s: &TcpStream) {
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
