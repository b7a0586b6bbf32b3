//! MIDI clock out through the ALSA sequencer (`p4-midi`): a sequencer
//! client `phase4` with a port `clock` that other programs (a lighting desk
//! bridge, a drum machine on a USB MIDI interface, `aseqdump`) subscribe to,
//! and an optional connection to `midi.connect-to`, made at start and again
//! whenever the destination comes back.
//!
//! [`clock`] decides when each message goes out; this thread sleeps on
//! CLOCK_MONOTONIC until then and sends the message directly (unqueued) to
//! the port's subscribers. Not a real-time thread: it reads the tempo that
//! `p4-rig` publishes, under a lock no real-time thread takes. A box without
//! a sequencer (no `snd-seq` module) logs it once, says so in the status and
//! tries again every few seconds.

pub mod clock;

use super::TempoShare;
use crate::config::MidiConfig;
use crate::stats::Stats;
use alsa::seq::{
    Addr, EvCtrl, EvQueueControl, Event, EventType, PortCap, PortSubscribe, PortSubscribeIter,
    PortType, QuerySubsType, Seq,
};
use clock::{ClockOptions, ClockPlan, MidiOut};
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the sequencer is opened again, and `connect-to` looked up.
const RETRY: Duration = Duration::from_secs(2);

/// Where the clock stands, for the status panel and the health line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum MidiState {
    /// Off.
    Off = 0,
    /// No sequencer on this box (yet).
    NoSequencer = 1,
    /// Port open, tempo not locked: nothing is sent.
    Waiting = 2,
    /// Clock running.
    Running = 3,
}

impl MidiState {
    /// From the stored byte.
    pub fn from_u8(v: u8) -> Self {
        match v {
            1 => MidiState::NoSequencer,
            2 => MidiState::Waiting,
            3 => MidiState::Running,
            _ => MidiState::Off,
        }
    }

    /// As shown in status and health.
    pub fn as_str(self) -> &'static str {
        match self {
            MidiState::Off => "off",
            MidiState::NoSequencer => "no-sequencer",
            MidiState::Waiting => "waiting",
            MidiState::Running => "running",
        }
    }
}

/// Everything the MIDI thread is given.
pub struct MidiCtx {
    /// `[midi]`.
    pub cfg: MidiConfig,
    /// The tempo `p4-rig` publishes.
    pub tempo: Arc<TempoShare>,
    /// Counters.
    pub stats: Arc<Stats>,
    /// Set to stop.
    pub stop: Arc<AtomicBool>,
    /// SCHED_FIFO priority, if any (pulse timing).
    pub rt_priority: Option<u8>,
}

/// The open sequencer port.
struct Port {
    seq: Seq,
    port: i32,
    me: Addr,
}

/// The sequencer device; without it alsa-lib would print an error line on
/// every attempt to open it.
const SEQ_DEVICE: &str = "/dev/snd/seq";

fn open(cfg: &MidiConfig) -> alsa::Result<Port> {
    if !std::path::Path::new(SEQ_DEVICE).exists() {
        return Err(alsa::Error::new("snd_seq_open", libc::ENOENT));
    }
    let seq = Seq::open(None, Some(alsa::Direction::Playback), true)?;
    let name = |s: &str| CString::new(s).unwrap_or_default();
    seq.set_client_name(&name(&cfg.client_name))?;
    let port = seq.create_simple_port(
        &name(&cfg.port_name),
        PortCap::READ | PortCap::SUBS_READ,
        PortType::MIDI_GENERIC | PortType::APPLICATION,
    )?;
    let me = Addr {
        client: seq.client_id()?,
        port,
    };
    Ok(Port { seq, port, me })
}

/// The sequencer address `spec` names: "client:port" numbers, or a client
/// name (exact, then case-insensitive) with an optional ":port".
pub fn find_port(seq: &Seq, spec: &str) -> Option<Addr> {
    let (name, port) = match spec.rsplit_once(':') {
        Some((n, p)) if p.parse::<i32>().is_ok() => (n, p.parse::<i32>().ok()),
        _ => (spec, None),
    };
    if let (Ok(client), Some(port)) = (name.parse::<i32>(), port) {
        return Some(Addr { client, port });
    }
    let clients: Vec<(i32, String)> = alsa::seq::ClientIter::new(seq)
        .filter_map(|c| Some((c.get_client(), c.get_name().ok()?.to_string())))
        .collect();
    let client = clients
        .iter()
        .find(|(_, n)| n == name)
        .or_else(|| clients.iter().find(|(_, n)| n.eq_ignore_ascii_case(name)))?
        .0;
    let port = port.or_else(|| {
        alsa::seq::PortIter::new(seq, client)
            .find(|p| {
                p.get_capability()
                    .contains(PortCap::WRITE | PortCap::SUBS_WRITE)
            })
            .map(|p| p.get_port())
    })?;
    Some(Addr { client, port })
}

impl Port {
    fn send(&self, m: MidiOut) -> alsa::Result<()> {
        let q = EvQueueControl {
            // SND_SEQ_QUEUE_DIRECT: the message is not about one of our
            // queues (receivers turn Clock/Start/Stop into F8/FA/FC).
            queue: 253,
            value: (),
        };
        let mut ev = match m {
            MidiOut::Clock => Event::new(EventType::Clock, &q),
            MidiOut::Start => Event::new(EventType::Start, &q),
            MidiOut::Stop => Event::new(EventType::Stop, &q),
            MidiOut::SongPosition(p) => Event::new(
                EventType::Songpos,
                &EvCtrl {
                    channel: 0,
                    param: 0,
                    value: p as i32,
                },
            ),
        };
        ev.set_source(self.port);
        ev.set_subs();
        ev.set_direct();
        self.seq.event_output_direct(&mut ev).map(|_| ())
    }

    /// Subscribe `connect-to` if it exists and is not yet connected.
    fn connect(&self, spec: &str) -> Option<Addr> {
        let dest = find_port(&self.seq, spec)?;
        let connected = PortSubscribeIter::new(&self.seq, self.me, QuerySubsType::READ)
            .any(|s| s.get_dest() == dest);
        if !connected {
            let sub = PortSubscribe::empty().ok()?;
            sub.set_sender(self.me);
            sub.set_dest(dest);
            match self.seq.subscribe_port(&sub) {
                Ok(()) => log::info!(
                    "midi: connected {}:{} to {spec:?} ({}:{})",
                    self.me.client,
                    self.me.port,
                    dest.client,
                    dest.port
                ),
                Err(e) => {
                    log::debug!("midi: cannot connect to {spec:?}: {e}");
                    return None;
                }
            }
        }
        Some(dest)
    }

    fn subscribers(&self) -> u32 {
        PortSubscribeIter::new(&self.seq, self.me, QuerySubsType::READ).count() as u32
    }
}

/// Start the MIDI clock thread.
pub fn spawn(ctx: MidiCtx) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .stack_size(crate::rt::PARSER_STACK)
        .name("p4-midi".into())
        .spawn(move || run(ctx))
}

fn run(ctx: MidiCtx) {
    ctx.stats
        .rig
        .tid_midi
        .store(crate::service::gettid(), Ordering::Relaxed);
    if let Some(p) = ctx.rt_priority {
        crate::rt::set_realtime_priority(p);
    }
    let set_state = |s: MidiState| ctx.stats.rig.midi_state.store(s as u8, Ordering::Relaxed);
    let mut warned = false;
    while !ctx.stop.load(Ordering::Relaxed) {
        let port = match open(&ctx.cfg) {
            Ok(p) => p,
            Err(e) => {
                if !warned {
                    warned = true;
                    log::warn!(
                        "midi: no ALSA sequencer ({e}); is the snd-seq module loaded? Retrying every {} s",
                        RETRY.as_secs()
                    );
                }
                set_state(MidiState::NoSequencer);
                sleep_or_stop(&ctx.stop, RETRY);
                continue;
            }
        };
        log::info!(
            "midi: clock on sequencer port {}:{} ({}:{})",
            port.me.client,
            port.me.port,
            ctx.cfg.client_name,
            ctx.cfg.port_name
        );
        clock_loop(&ctx, &port);
        return;
    }
}

fn clock_loop(ctx: &MidiCtx, port: &Port) {
    let mut plan = ClockPlan::new(ClockOptions {
        start_stop: ctx.cfg.start_stop,
        song_position: ctx.cfg.song_position,
    });
    // checked: `Instant::now() - RETRY` panics when the monotonic clock
    // reads less than RETRY (its first seconds after boot, a time
    // namespace).
    let mut last_check = Instant::now()
        .checked_sub(RETRY)
        .unwrap_or_else(Instant::now);
    let mut failed = 0u64;
    while !ctx.stop.load(Ordering::Relaxed) {
        if last_check.elapsed() >= RETRY {
            last_check = Instant::now();
            if !ctx.cfg.connect_to.is_empty() {
                port.connect(&ctx.cfg.connect_to);
            }
            ctx.stats
                .rig
                .midi_subscribers
                .store(port.subscribers(), Ordering::Relaxed);
        }
        let snap = ctx.tempo.get();
        let now = crate::rt::now_ns();
        let next = plan.poll(now, &snap, &mut |m| {
            if port.send(m).is_err() {
                failed += 1;
            } else if m == MidiOut::Clock {
                ctx.stats.rig.midi_pulses.fetch_add(1, Ordering::Relaxed);
            }
        });
        ctx.stats.rig.midi_state.store(
            if plan.running() {
                MidiState::Running
            } else {
                MidiState::Waiting
            } as u8,
            Ordering::Relaxed,
        );
        ctx.stats.rig.midi_failed.store(failed, Ordering::Relaxed);
        // Wake at the next message, and at least every 50 ms (stop flag).
        crate::rt::sleep_until_ns(next.min(crate::rt::now_ns() + 50_000_000));
    }
    if plan.running() && ctx.cfg.start_stop {
        let _ = port.send(MidiOut::Stop);
    }
}

fn sleep_or_stop(stop: &AtomicBool, d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
}
