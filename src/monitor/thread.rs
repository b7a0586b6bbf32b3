//! The monitor thread (`p4-monitor`): takes the blocks capture pushes
//! while the gate is open, appends them to the tape (replay buffer and
//! recording) and encodes them for the presets someone listens to.
//!
//! Normal priority, never real-time: it may allocate when the input's rate
//! or format changes or a preset gets its first listener, and it takes the
//! tape's lock for one block at a time. Capture never waits for it on a
//! clocked device: a full ring drops the block for the monitor (counted).
//! It is woken for every block while someone listens (20 ms frames should
//! go out as soon as they are complete), every [`TAPE_LAG`] of audio while
//! only the tape runs (the replay buffer, a recording), and not at all
//! while the gate is closed.

use super::encoder::OpusStreams;
use super::files::{Tickets, TICKET_LIFETIME};
use super::packet::AudioPacket;
use super::recorder::{self, Recorder, SLACK_S};
use super::tape::{SampleKind, Tape};
use super::{MonitorHub, MonitorLink};
use crate::config::Config;
use crate::rt::Wake;
use crate::stats::Stats;
use crate::types::Block;
use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Packets waiting for the broadcaster at most (a few turns' worth of all
/// four presets).
const PACKET_RING: usize = 128;
/// The longest park with the gate closed: a safety net only, since both
/// the first block after the gate opens and the pipeline's stop wake us.
const IDLE_PARK: Duration = Duration::from_secs(1);
/// How far the tape may lag behind capture while nobody listens: one
/// wake-up per this much audio (the ring holds four times as much). Every
/// 8 blocks before, 23 wake-ups a second at 48 kHz / 256 with the shipped
/// replay buffer on.
const TAPE_LAG: Duration = Duration::from_millis(250);
/// How often the input's format is looked at again.
const FORMAT_CHECK: Duration = Duration::from_millis(250);

/// What [`spawn`] gives back.
pub struct Spawned {
    /// `p4-monitor`.
    pub threads: Vec<JoinHandle<()>>,
    /// `p4-record`, which closes a recording's file when it stops (taken
    /// by the pipeline, which gives it longer to stop).
    pub recorder: Option<JoinHandle<()>>,
    /// For the WebSocket broadcaster.
    pub link: MonitorLink,
    /// For the HTTP server's downloads.
    pub tickets: Arc<Tickets>,
}

/// Start `p4-monitor` on the consumer end of capture's monitor ring, and
/// `p4-record`.
pub fn spawn(
    config: &Config,
    hub: Arc<MonitorHub>,
    blocks: HeapCons<Block>,
    wake: Arc<Wake>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<Spawned> {
    let replay_s = if hub.replay_on {
        config.record.replay_s
    } else {
        0.0
    };
    let tape = Arc::new(Mutex::new(Tape::new(replay_s + SLACK_S)));
    let (pk_tx, pk_rx) = HeapRb::<AudioPacket>::new(PACKET_RING).split();
    // Validated to 10–600 s (and `try_` keeps a NaN from panicking).
    let link = Duration::try_from_secs_f64(config.record.link_s).unwrap_or(TICKET_LIFETIME);
    let tickets = Arc::new(Tickets::new(link));
    let (req_tx, req_rx) = std::sync::mpsc::sync_channel(recorder::MAX_QUEUED);
    let (rep_tx, rep_rx) = std::sync::mpsc::channel();
    let rec = Recorder::new(config, tape.clone(), hub.clone(), tickets.clone());
    let recorder = recorder::spawn(rec, req_rx, rep_tx, stop.clone())?;
    let mut m = Monitor {
        hub: hub.clone(),
        tape,
        packets: pk_tx,
        enc: OpusStreams::new(config.monitor.frame_ms, config.monitor.complexity),
        stats,
        format: config.record.format,
        channel: config.audio.channel,
        current: None,
        checked: Instant::now(),
        last_seq: None,
        tape_step: 8,
        tape_max: 8,
        step_for: (0, 0),
    };
    let threads = vec![std::thread::Builder::new()
        .stack_size(crate::rt::THREAD_STACK)
        .name("p4-monitor".into())
        .spawn(move || m.run(blocks, wake, stop))?];
    Ok(Spawned {
        threads,
        recorder: Some(recorder),
        link: MonitorLink {
            hub,
            packets: pk_rx,
            requests: req_tx,
            replies: rep_rx,
            listen_enabled: config.monitor.enabled,
            max_listeners: config.monitor.max_listeners,
            frame_ms: config.monitor.frame_ms,
        },
        tickets,
    })
}

struct Monitor {
    hub: Arc<MonitorHub>,
    tape: Arc<Mutex<Tape>>,
    packets: HeapProd<AudioPacket>,
    enc: OpusStreams,
    stats: Arc<Stats>,
    format: crate::config::RecordFormat,
    channel: i32,
    /// Rate and format of the tape's segment (None: the tape is idle).
    current: Option<(u32, SampleKind)>,
    checked: Instant,
    last_seq: Option<u64>,
    /// Blocks in [`TAPE_LAG`] at the input's rate and block size, at most
    /// [`Self::tape_max`].
    tape_step: u64,
    /// A quarter of the ring the blocks come in.
    tape_max: u64,
    /// The (rate, block frames) `tape_step` was worked out for.
    step_for: (u32, u32),
}

impl Monitor {
    fn run(&mut self, mut blocks: HeapCons<Block>, wake: Arc<Wake>, stop: Arc<AtomicBool>) {
        wake.register_current();
        self.hub
            .counters
            .tid
            .store(crate::service::gettid(), Ordering::Relaxed);
        let mut encode_err = crate::service::logging::RateLimit::new(Duration::from_secs(30));
        self.tape_max = (blocks.capacity().get() as u64 / 4).max(1);
        while !stop.load(Ordering::Relaxed) {
            while let Some(b) = blocks.try_pop() {
                if let Err(e) = self.block(&b) {
                    if let Some(held) = encode_err.allow() {
                        log::warn!("monitor: {e} ({held} similar message(s) suppressed)");
                    }
                }
            }
            let listening = self.hub.wanted.load(Ordering::Relaxed) != 0;
            let (defer, park) = match self.last_seq {
                // Gate closed (nobody listens, nothing records, no replay
                // buffer): no block can come, so only the first one after
                // the gate opens (defer 0) or the stop wakes us.
                _ if !self.hub.gate.load(Ordering::Relaxed) => (0, IDLE_PARK),
                // Woken for every block while someone listens; else every
                // TAPE_LAG of audio (the tape only needs to keep up), the
                // timeout a safety net.
                Some(s) if !listening => (s + self.tape_step, 2 * TAPE_LAG),
                _ => (0, Duration::from_millis(20)),
            };
            wake.defer_until(defer);
            std::thread::park_timeout(park);
        }
    }

    fn block(&mut self, b: &Block) -> Result<(), super::encoder::EncoderError> {
        let hub = self.hub.clone();
        let c = &hub.counters;
        if let Some(prev) = self.last_seq {
            if b.seq != prev + 1 {
                c.gaps.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.last_seq = Some(b.seq);
        if (b.sample_rate, b.len) != self.step_for {
            // Only a new rate or block size changes it.
            self.step_for = (b.sample_rate, b.len);
            let in_lag = TAPE_LAG.as_nanos() as u64 * u64::from(b.sample_rate)
                / (u64::from(b.len.max(1)) * 1_000_000_000);
            self.tape_step = in_lag.clamp(1, self.tape_max);
        }
        if hub.replay_on || hub.recording.load(Ordering::Relaxed) {
            self.record_block(b);
        } else {
            self.current = None;
        }
        let wanted = hub.wanted.load(Ordering::Relaxed);
        let (packets, drops) = (&mut self.packets, &c.packet_drops);
        let counts = &c.packets;
        let r = self.enc.push(b, wanted, &mut |p| {
            if packets.try_push(*p).is_err() {
                drops.fetch_add(1, Ordering::Relaxed);
            } else {
                counts[p.preset as usize].fetch_add(1, Ordering::Relaxed);
            }
        });
        c.encode_ns.store(self.enc.encode_ns, Ordering::Relaxed);
        r
    }

    fn record_block(&mut self, b: &Block) {
        let rate_changed = self.current.map(|c| c.0) != Some(b.sample_rate);
        let mut begin = None;
        if rate_changed || self.checked.elapsed() >= FORMAT_CHECK {
            self.checked = Instant::now();
            let info = self.stats.device_info();
            let kind = SampleKind::choose(self.format, &info, self.channel);
            if self.current != Some((b.sample_rate, kind)) {
                self.current = Some((b.sample_rate, kind));
                begin = Some((b.sample_rate, kind));
            }
        }
        let mut t = self.tape.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((rate, kind)) = begin {
            let asked = t.capacity_s();
            t.begin(rate, kind);
            if t.capacity_s() < asked {
                log::warn!(
                    "record: the replay buffer holds {:.1} s at {rate} Hz {kind:?} (at most {} MiB), less than record.replay-s asks",
                    (t.capacity_s() - SLACK_S).max(0.0),
                    super::tape::MAX_TAPE_BYTES >> 20
                );
            }
        }
        t.append(b);
    }
}
