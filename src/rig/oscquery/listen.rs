//! OSCQuery's bi-directional part (`p4-oscq-ws`): WebSocket clients send
//! `{"COMMAND":"LISTEN","DATA":"/audio/lmh"}` (or `IGNORE`), and get the
//! values of every listened method as binary OSC packets: continuous
//! values on each new frame, events (onsets, beats) when they happen,
//! settings when they change; at most `oscquery.listen-hz` per method.
//!
//! One thread owns every client on non-blocking sockets. Each tick a client
//! may have [`READ_BUDGET`] bytes and [`READS_PER_TICK`] messages read
//! (pings included); a client listens to each method at most once, so what
//! it is sent is bounded by the namespace. A client that stops reading
//! loses packets (tungstenite's write buffer is bounded) and is dropped
//! after [`STALL`]; it never slows the others or the pipeline. Every client
//! is pinged every [`PING_EVERY`], and one that has sent nothing, not even
//! a pong, for [`IDLE`] is dropped, so idle connections cannot hold the
//! slots.

use super::namespace::{Namespace, Source};
use super::Live;
use crate::stats::Stats;
use crate::transport::ws::conn::Conn;
use crate::transport::ws::registry::Registry;
use rosc::{OscMessage, OscPacket};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tungstenite::{Message, WebSocket};

/// A client that cannot take data for this long is disconnected.
const STALL: Duration = Duration::from_secs(5);
/// Every client is pinged this often ...
pub const PING_EVERY: Duration = Duration::from_secs(5);
/// ... and one that has sent nothing (not even the pong every WebSocket
/// library and browser answers with) for this long is disconnected: a
/// connection that listens to nothing is sent nothing, so it never stalls,
/// and idle upgrades from two addresses would otherwise hold every slot
/// for good.
pub const IDLE: Duration = Duration::from_secs(15);
/// A turn that starts this much later than a tick after the last one means
/// the process was stopped.
const FROZEN: Duration = Duration::from_secs(2);
/// Most inbound messages a client may send per tick before the rest wait.
pub const READS_PER_TICK: usize = 16;
/// Most bytes read from one client per tick.
pub const READ_BUDGET: usize = 8 * 1024;

/// A streaming client's place under the caps, given back when it is
/// dropped.
pub struct ClientSlot {
    registry: Arc<Registry>,
    ip: IpAddr,
}

impl ClientSlot {
    /// A place `registry` already admitted `ip` to (privileged when `ip` is
    /// loopback: see [`Registry::admit`]).
    pub fn new(registry: Arc<Registry>, ip: IpAddr) -> Self {
        ClientSlot { registry, ip }
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.registry.release(self.ip, self.ip.is_loopback());
    }
}

/// A client whose WebSocket handshake was answered.
pub struct Upgraded {
    /// Its socket.
    pub ws: WebSocket<Conn>,
    /// Its place under the caps.
    pub slot: ClientSlot,
}

/// Everything the streaming thread is given.
pub struct ListenCtx {
    /// The address space.
    pub ns: Arc<Namespace>,
    /// Values.
    pub live: Live,
    /// Counters.
    pub stats: Arc<Stats>,
    /// Set to stop.
    pub stop: Arc<AtomicBool>,
    /// Most packets per second per method.
    pub hz: f64,
    /// Newly upgraded clients.
    pub incoming: Receiver<Upgraded>,
}

/// One listened method.
struct Listen {
    method: usize,
    stamp: Option<u64>,
    sent: Option<Vec<serde_json::Value>>,
}

struct Client {
    ws: WebSocket<Conn>,
    _slot: ClientSlot,
    listens: Vec<Listen>,
    stalled_since: Option<Instant>,
    /// When it last sent anything, and when it was last pinged.
    heard: Instant,
    pinged: Instant,
}

/// A LISTEN or IGNORE command.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// Start streaming this path.
    Listen(String),
    /// Stop streaming it.
    Ignore(String),
}

/// Parse a text message; `None` for anything else.
pub fn parse_request(text: &str) -> Option<Request> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let data = v.get("DATA")?.as_str()?.to_string();
    match v.get("COMMAND")?.as_str()? {
        "LISTEN" => Some(Request::Listen(data)),
        "IGNORE" => Some(Request::Ignore(data)),
        _ => None,
    }
}

/// Start `p4-oscq-ws`.
pub fn spawn(ctx: ListenCtx) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .stack_size(crate::rt::THREAD_STACK)
        .name("p4-oscq-ws".into())
        .spawn(move || run(ctx))
}

fn run(ctx: ListenCtx) {
    let methods: Vec<(String, Source)> = ctx
        .ns
        .methods()
        .iter()
        .filter_map(|n| Some((n.path.clone(), n.source?)))
        .collect();
    let tick = Duration::from_secs_f64(1.0 / ctx.hz.clamp(1.0, 1000.0));
    let mut clients: Vec<Client> = Vec::new();
    let mut next = Instant::now();
    let mut last_turn = Instant::now();
    while !ctx.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now.saturating_duration_since(last_turn) > tick + FROZEN {
            // This process was stopped (SIGSTOP, a frozen cgroup, a paused
            // VM), wherever this thread was in its turn: nobody could
            // answer its pings meanwhile, so the idle and stall clocks
            // start again now rather than drop every client the moment it
            // resumes.
            for c in &mut clients {
                c.heard = now;
                c.pinged = now;
                c.stalled_since = c.stalled_since.map(|_| now);
            }
        }
        last_turn = now;
        while let Ok(Upgraded { ws, slot }) = ctx.incoming.try_recv() {
            if ws.get_ref().tcp().set_nonblocking(true).is_ok() {
                clients.push(Client {
                    ws,
                    _slot: slot,
                    listens: Vec::new(),
                    stalled_since: None,
                    heard: Instant::now(),
                    pinged: Instant::now(),
                });
            }
        }
        clients.retain_mut(|c| serve(c, &methods, &ctx.live));
        ctx.stats
            .rig
            .oscq_clients
            .store(clients.len() as u32, Ordering::Relaxed);
        next += tick;
        let now = Instant::now();
        if next < now {
            next = now + tick;
        }
        std::thread::sleep(next - now);
    }
    for mut c in clients {
        let _ = c.ws.close(None);
        let _ = c.ws.flush();
    }
}

/// Read commands and send what is due; false drops the client.
fn serve(c: &mut Client, methods: &[(String, Source)], live: &Live) -> bool {
    read_requests(c, methods) && alive(c) && send_due(c, methods, live) && flush(c)
}

/// Ping the client every [`PING_EVERY`]; false once it has sent nothing
/// for [`IDLE`].
fn alive(c: &mut Client) -> bool {
    let now = Instant::now();
    if now.duration_since(c.heard) > IDLE {
        let _ = c.ws.close(None);
        let _ = c.ws.flush();
        return false;
    }
    if now.duration_since(c.pinged) >= PING_EVERY {
        c.pinged = now;
        match c.ws.write(Message::Ping(Default::default())) {
            Ok(()) | Err(tungstenite::Error::WriteBufferFull(_)) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return false,
        }
    }
    true
}

/// Take the client's LISTEN and IGNORE commands (a bounded number per
/// tick); false when it closed or failed.
fn read_requests(c: &mut Client, methods: &[(String, Source)]) -> bool {
    c.ws.get_mut().refill(READ_BUDGET);
    for _ in 0..READS_PER_TICK {
        let read = c.ws.read();
        if read.is_ok() {
            c.heard = Instant::now();
        }
        match read {
            Ok(Message::Text(t)) => match parse_request(&t) {
                Some(Request::Listen(p)) => {
                    if let Some(i) = methods.iter().position(|(m, _)| *m == p) {
                        if !c.listens.iter().any(|l| l.method == i) {
                            c.listens.push(Listen {
                                method: i,
                                stamp: None,
                                sent: None,
                            });
                        }
                    }
                }
                Some(Request::Ignore(p)) => c.listens.retain(|l| methods[l.method].0 != p),
                None => {}
            },
            Ok(Message::Close(_)) => {
                // tungstenite queued the closing handshake's reply: send it.
                let _ = c.ws.flush();
                return false;
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(_) => return false,
        }
    }
    true
}

/// Queue every listened-to value that changed since it was last sent;
/// false when the connection failed.
fn send_due(c: &mut Client, methods: &[(String, Source)], live: &Live) -> bool {
    let mut settings = None;
    for l in c.listens.iter_mut() {
        let (path, source) = &methods[l.method];
        let args = match source {
            Source::Output(i) => {
                let Some((stamp, args)) = live
                    .latest
                    .with(|x| (Live::output_stamp(*i, x), live.output_args(*i, x)))
                else {
                    continue;
                };
                if l.stamp == Some(stamp) {
                    continue;
                }
                l.stamp = Some(stamp);
                match args {
                    Some(a) => a,
                    None => continue,
                }
            }
            Source::Setting(s) => {
                let cfg = settings.get_or_insert_with(|| live.settings());
                let v = s.get(cfg);
                let j = super::json_args(std::slice::from_ref(&v));
                if l.sent.as_ref() == Some(&j) {
                    continue;
                }
                l.sent = Some(j);
                vec![v]
            }
        };
        let packet = OscPacket::Message(OscMessage {
            addr: path.clone(),
            args,
        });
        let Ok(bytes) = rosc::encoder::encode(&packet) else {
            continue;
        };
        match c.ws.write(Message::Binary(bytes.into())) {
            Ok(()) => {}
            Err(tungstenite::Error::WriteBufferFull(_)) => break,
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return false,
        }
    }
    true
}

/// Send what is queued; false when the client has not taken anything for
/// longer than [`STALL`], or the connection failed.
fn flush(c: &mut Client) -> bool {
    match c.ws.flush() {
        Ok(()) => c.stalled_since = None,
        Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
            let since = *c.stalled_since.get_or_insert_with(Instant::now);
            if since.elapsed() > STALL {
                return false;
            }
        }
        Err(_) => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_and_ignore_commands_parse_and_junk_does_not() {
        assert_eq!(
            parse_request(r#"{"COMMAND":"LISTEN","DATA":"/audio/lmh"}"#),
            Some(Request::Listen("/audio/lmh".into()))
        );
        assert_eq!(
            parse_request(r#"{"COMMAND":"IGNORE","DATA":"/audio/lmh"}"#),
            Some(Request::Ignore("/audio/lmh".into()))
        );
        for junk in [
            "",
            "LISTEN /audio/lmh",
            r#"{"COMMAND":"LISTEN"}"#,
            r#"{"COMMAND":"LISTEN","DATA":3}"#,
            r#"{"COMMAND":"PATH_CHANGED","DATA":"/"}"#,
            r#"[1,2,3]"#,
        ] {
            assert_eq!(parse_request(junk), None, "{junk}");
        }
    }
}
