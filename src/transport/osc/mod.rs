//! The OSC sender thread (`p4-osc`) and the OSC address space.
//!
//! Addresses (prefix `/audio` by default), compatible with the Python server:
//!
//! | address | args | when |
//! |---|---|---|
//! | `meta` | sr:i blocksize:i n_fft_bins:i low_lo:f low_hi:f mid_lo:f mid_hi:f high_lo:f high_hi:f | at start, on change, every `meta-interval-s` |
//! | `lmh` | low:f mid:f high:f | every block |
//! | `level` | rms_dbfs:f peak_dbfs:f (peak held since the last send) | every block |
//! | `bpm` | bpm:f (0 = not locked) | every block |
//! | `tempo` | bpm:f confidence:f phase:f | every block |
//! | `onset/low`, `onset/mid`, `onset/high` | 1:i | on each band onset |
//! | `fft` | n × f | every hop, when `fft.enabled` and `osc.send-fft` |
//! | `spectral` | centroid_hz:f flatness:f rolloff_hz:f flux:f | every hop |
//! | `onset` | strength:f | on each broadband onset |
//! | `beat` | index:i bpm:f confidence:f | on each beat |
//! | `silence` | 0 or 1 :i | on change, and with meta |
//!
//! With `osc.bundle = true`, everything one frame produces goes out as one
//! bundle whose NTP time tag is the block's capture time.
//!
//! The thread encodes with `rosc` into buffers it reuses (messages are built
//! once and only their arguments change), sends to every destination on
//! non-blocking UDP sockets, and counts refused or failed datagrams without
//! ever stopping. It allocates nothing per frame, bundled or not (a
//! bundle borrows the prebuilt messages and gives them back), and its send
//! buffers are sized and touched at start for the largest frames: after a
//! stall the frames it finds at once go out in several `sendmmsg` calls,
//! the buffers never grow.

mod dest;
mod messages;

pub use dest::{literal, Destinations, Resolver, MAX_DESTINATIONS};
pub use messages::ADDRESSES;

use messages::{
    empty_message, Messages, BEAT, BPM, FFT, LEVEL, LMH, META, ONSET, ONSET_LOW, SILENCE, SPECTRAL,
    TEMPO,
};

use crate::config::OscConfig;
use crate::stats::{Role, Stats};
use crate::types::{onset_bits, BandsFrame, SpectrumFrame};
use ringbuf::HeapCons;
use rosc::{OscBundle, OscPacket, OscTime, OscType};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What `/audio/meta` describes; the supervisor keeps it current.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Meta {
    /// Sample rate.
    pub sr: i32,
    /// Frames per block.
    pub blocksize: i32,
    /// Log bins (0 when the spectrum is off).
    pub n_fft_bins: i32,
    /// Band edges in Hz: low, mid, high.
    pub bands: [(f32, f32); 3],
}

/// Sends OSC to every destination.
pub struct OscSender {
    cfg: OscConfig,
    enabled: [bool; 13],
    msgs: Messages,
    dests: Destinations,
    resolver: Option<Resolver>,
    /// Encoded datagrams queued for the next `sendmmsg`.
    buf: Vec<u8>,
    /// The most bytes one frame can add to `buf`.
    frame_bytes: usize,
    /// Each queued datagram's range in `buf`.
    spans: Vec<(usize, usize)>,
    bundle: OscBundle,
    /// Which of `msgs` are in `bundle` now, in order.
    bundled: Vec<usize>,
    stats: Arc<Stats>,
    peak_held_dbfs: f32,
    last_silent: Option<bool>,
    tempo: crate::types::TempoState,
    /// Capture times of the bands frames queued since the last flush (the
    /// latency is recorded once they are sent).
    queued_capture_ns: Vec<u64>,
}

/// Frames the send buffers hold before a flush is forced.
const BUF_FRAMES: usize = 8;

/// NTP time for a CLOCK_MONOTONIC instant, via the current wall clock.
pub fn ntp_from_monotonic(t_mono_ns: u64) -> OscTime {
    let now_mono = crate::rt::now_ns();
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let wall_ns = wall.as_nanos() as i128 - (now_mono as i128 - t_mono_ns as i128);
    let wall_ns = wall_ns.max(0) as u128;
    let secs = (wall_ns / 1_000_000_000) as u64 + 2_208_988_800;
    let frac = ((wall_ns % 1_000_000_000) << 32) / 1_000_000_000;
    OscTime {
        seconds: secs as u32,
        fractional: frac as u32,
    }
}

impl OscSender {
    /// Open the sockets. Literal addresses are used at once; host names are
    /// resolved by the resolver thread that [`spawn`] starts, never here: a
    /// DNS server that does not answer must not delay start-up.
    pub fn new(cfg: &OscConfig, stats: Arc<Stats>) -> std::io::Result<Self> {
        let mut enabled = [true; 13];
        if !cfg.addresses.is_empty() {
            for (i, a) in ADDRESSES.iter().enumerate() {
                enabled[i] = cfg.addresses.iter().any(|x| x == a);
            }
        }
        let (dests, resolver) = Destinations::new(
            &cfg.destinations,
            stats.clone(),
            Duration::from_secs_f64(cfg.resolve_interval_s),
        )?;
        let mut msgs = Messages::new(&cfg.prefix);
        let frame_bytes = msgs.most_bytes_per_frame();
        Ok(OscSender {
            cfg: cfg.clone(),
            enabled,
            msgs,
            dests,
            resolver,
            buf: crate::rt::touched_vec(BUF_FRAMES * frame_bytes, 0),
            frame_bytes,
            spans: crate::rt::touched_vec(BUF_FRAMES * ADDRESSES.len(), (0, 0)),
            bundle: OscBundle {
                timetag: OscTime {
                    seconds: 0,
                    fractional: 1,
                },
                content: Vec::with_capacity(ADDRESSES.len()),
            },
            bundled: Vec::with_capacity(ADDRESSES.len()),
            stats,
            peak_held_dbfs: f32::NEG_INFINITY,
            last_silent: None,
            tempo: Default::default(),
            queued_capture_ns: crate::rt::touched_vec(crate::dsp::worker::FRAME_RING, 0),
        })
    }

    /// Send what is queued if one more frame might not fit in the buffers'
    /// capacity: after a stall the thread finds many frames at once, and
    /// they go out in several `sendmmsg` calls instead of growing the
    /// buffers (an allocation and new pages, i.e. page faults, on this
    /// thread long after start-up).
    fn make_room(&mut self) {
        if self.buf.capacity() - self.buf.len() < self.frame_bytes
            || self.spans.capacity() - self.spans.len() < ADDRESSES.len()
            || self.queued_capture_ns.len() == self.queued_capture_ns.capacity()
        {
            self.flush();
        }
    }

    /// The destinations with an address now (names still being resolved
    /// are left out).
    pub fn destinations(&self) -> Vec<SocketAddr> {
        self.dests.resolved()
    }

    /// Send everything queued since the last flush in one `sendmmsg` (all
    /// frames of one wake-up, all destinations), then record the capture →
    /// sent latency of the bands frames among them.
    pub fn flush(&mut self) {
        self.dests.send(&self.buf, &self.spans);
        self.spans.clear();
        self.buf.clear();
        let now = crate::rt::now_ns();
        for t in self.queued_capture_ns.drain(..) {
            self.stats.latency.record_ns(now.saturating_sub(t));
        }
    }

    /// Queue message `i` for this frame (or add it to the open bundle).
    fn emit(&mut self, i: usize) {
        if !self.enabled[i] {
            return;
        }
        if self.cfg.bundle {
            // Moved into the bundle (a clone would allocate), and moved
            // back by `close_bundle`. A frame sends each address at most
            // once; one already in the bundle is left empty here.
            if self.msgs.m[i].addr.is_empty() || self.bundled.len() == ADDRESSES.len() {
                debug_assert!(false, "{} twice in one bundle", ADDRESSES[i]);
                return;
            }
            let m = std::mem::replace(&mut self.msgs.m[i], empty_message());
            self.bundle.content.push(OscPacket::Message(m));
            self.bundled.push(i);
            return;
        }
        let start = self.buf.len();
        let packet = OscPacket::Message(std::mem::replace(&mut self.msgs.m[i], empty_message()));
        let _ = rosc::encoder::encode_into(&packet, &mut self.buf);
        if let OscPacket::Message(m) = packet {
            self.msgs.m[i] = m;
        }
        self.spans.push((start, self.buf.len()));
    }

    fn open_bundle(&mut self, t_capture_ns: u64) {
        if self.cfg.bundle {
            self.bundle.content.clear();
            self.bundle.timetag = ntp_from_monotonic(t_capture_ns);
        }
    }

    fn close_bundle(&mut self) {
        if self.cfg.bundle && !self.bundle.content.is_empty() {
            let start = self.buf.len();
            let packet = OscPacket::Bundle(std::mem::replace(
                &mut self.bundle,
                OscBundle {
                    timetag: OscTime {
                        seconds: 0,
                        fractional: 1,
                    },
                    content: Vec::new(),
                },
            ));
            let _ = rosc::encoder::encode_into(&packet, &mut self.buf);
            if let OscPacket::Bundle(b) = packet {
                self.bundle = b;
            }
            self.spans.push((start, self.buf.len()));
        }
        if self.cfg.bundle {
            // Every message back in its place (the vectors keep their room).
            for (p, i) in self.bundle.content.drain(..).zip(self.bundled.drain(..)) {
                if let OscPacket::Message(m) = p {
                    self.msgs.m[i] = m;
                }
            }
        }
    }

    /// Queue `/meta` (and `/silence`); [`OscSender::flush`] sends.
    pub fn send_meta(&mut self, meta: &Meta) {
        self.make_room();
        self.open_bundle(crate::rt::now_ns());
        self.msgs.set_i(META, 0, meta.sr);
        self.msgs.set_i(META, 1, meta.blocksize);
        self.msgs.set_i(META, 2, meta.n_fft_bins);
        for (k, (lo, hi)) in meta.bands.iter().enumerate() {
            self.msgs.set_f(META, 3 + 2 * k, *lo);
            self.msgs.set_f(META, 4 + 2 * k, *hi);
        }
        self.emit(META);
        if let Some(s) = self.last_silent {
            self.msgs.set_i(SILENCE, 0, s as i32);
            self.emit(SILENCE);
        }
        self.close_bundle();
    }

    /// Queue everything one bands frame carries.
    pub fn send_bands(&mut self, f: &BandsFrame) {
        self.make_room();
        self.open_bundle(f.t_capture_ns);
        for k in 0..3 {
            self.msgs.set_f(LMH, k, f.lmh[k]);
        }
        self.emit(LMH);
        self.peak_held_dbfs = self.peak_held_dbfs.max(f.peak_dbfs);
        self.msgs.set_f(LEVEL, 0, f.rms_dbfs);
        self.msgs.set_f(LEVEL, 1, self.peak_held_dbfs);
        self.emit(LEVEL);
        self.peak_held_dbfs = f32::NEG_INFINITY;
        let t = self.tempo;
        self.msgs.set_f(BPM, 0, if t.locked { t.bpm } else { 0.0 });
        self.emit(BPM);
        self.msgs
            .set_f(TEMPO, 0, if t.locked { t.bpm } else { 0.0 });
        self.msgs.set_f(TEMPO, 1, t.confidence);
        self.msgs.set_f(TEMPO, 2, t.phase);
        self.emit(TEMPO);
        for (k, bit) in [onset_bits::LOW, onset_bits::MID, onset_bits::HIGH]
            .iter()
            .enumerate()
        {
            if f.band_onsets & bit != 0 {
                self.emit(ONSET_LOW + k);
            }
        }
        if self.last_silent != Some(f.silent) {
            self.last_silent = Some(f.silent);
            self.msgs.set_i(SILENCE, 0, f.silent as i32);
            self.emit(SILENCE);
        }
        self.close_bundle();
        self.queued_capture_ns.push(f.t_capture_ns);
    }

    /// Queue everything one spectrum frame carries: the spectrum and its
    /// shape (once per spectrum hop: a frame that only carries an event
    /// found between two hops has no new spectrum), its onset and its beat.
    pub fn send_spectrum(&mut self, f: &SpectrumFrame) {
        self.make_room();
        self.tempo = f.tempo;
        self.open_bundle(f.t_capture_ns);
        if !f.events_only {
            self.queue_hop(f);
        }
        if f.onset {
            self.msgs.set_f(ONSET, 0, f.onset_strength);
            self.emit(ONSET);
        }
        if f.tempo.beat {
            self.msgs.set_i(BEAT, 0, f.tempo.beat_index as i32);
            self.msgs.set_f(BEAT, 1, f.tempo.bpm);
            self.msgs.set_f(BEAT, 2, f.tempo.confidence);
            self.emit(BEAT);
        }
        self.close_bundle();
    }

    /// The spectrum and its shape.
    fn queue_hop(&mut self, f: &SpectrumFrame) {
        if f.has_bins && self.cfg.send_fft {
            let args = &mut self.msgs.m[FFT].args;
            args.clear();
            // Raw dB: empty bins (the −1000 sentinel of the binary WS
            // frame) go out as the floor, as the Python server sends them.
            let floor = if f.raw_db { f.db_floor } else { f32::MIN };
            args.extend(f.bins().iter().map(|v| OscType::Float(v.max(floor))));
            self.emit(FFT);
        }
        self.msgs.set_f(SPECTRAL, 0, f.centroid_hz);
        self.msgs.set_f(SPECTRAL, 1, f.flatness);
        self.msgs.set_f(SPECTRAL, 2, f.rolloff_hz);
        self.msgs.set_f(SPECTRAL, 3, f.flux);
        self.emit(SPECTRAL);
    }
}

/// Everything the OSC thread is given.
pub struct OscCtx {
    /// Counters.
    pub stats: Arc<Stats>,
    /// Set to stop.
    pub stop: Arc<AtomicBool>,
    /// Registered by the thread so workers can wake it.
    pub wake: Arc<crate::rt::Wake>,
    /// Current meta (sample rate and block size from the device).
    pub meta: Arc<std::sync::Mutex<Meta>>,
    /// SCHED_FIFO priority, if any. The sender only does non-blocking sends
    /// into reused buffers; at a priority just below the workers it keeps
    /// capture → datagram latency low when the CPUs are busy with other work.
    pub rt_priority: Option<u8>,
}

/// Start the OSC sender thread.
pub fn spawn(
    mut sender: OscSender,
    mut bands: HeapCons<BandsFrame>,
    mut spectrum: HeapCons<SpectrumFrame>,
    ctx: OscCtx,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .stack_size(crate::rt::THREAD_STACK)
        .name("p4-osc".into())
        .spawn(move || {
            if let Some(r) = sender.resolver.take() {
                if let Err(e) = r.spawn(ctx.stop.clone()) {
                    log::warn!(
                        "osc: cannot start the name resolver ({e}); host names will not be sent to"
                    );
                }
            }
            ctx.wake.register_current();
            if let Some(prio) = ctx.rt_priority {
                crate::rt::set_realtime_priority(prio);
            }
            ctx.stats.tid[Role::Osc as usize].store(crate::service::gettid(), Ordering::Relaxed);
            ctx.stats.pin_hot_thread();
            let fault = crate::rt::fault::Fault::for_role(Role::Osc);
            let interval = Duration::from_secs_f64(sender.cfg.meta_interval_s);
            let mut last_meta: Option<(Instant, Meta)> = None;
            let mut meta = Meta::default();
            // The allocation tests count this loop's allocations too.
            crate::rt::mark_rt_loop(true);
            while !ctx.stop.load(Ordering::Relaxed) {
                ctx.stats.beat(Role::Osc);
                fault.check(&ctx.stop);
                // Never waits for the supervisor: while it writes, the
                // values read last time are used.
                match ctx.meta.try_lock() {
                    Ok(m) => meta = *m,
                    Err(std::sync::TryLockError::Poisoned(m)) => meta = *m.into_inner(),
                    Err(std::sync::TryLockError::WouldBlock) => {}
                }
                let due = match last_meta {
                    None => meta.sr > 0,
                    Some((t, m)) => m != meta || t.elapsed() >= interval,
                };
                if due {
                    sender.send_meta(&meta);
                    last_meta = Some((Instant::now(), meta));
                }
                sender.dests.poll_updates();
                let mut n = crate::dsp::worker::drain(&mut spectrum, |f| sender.send_spectrum(f));
                n += crate::dsp::worker::drain(&mut bands, |f| sender.send_bands(f));
                // One sendmmsg for everything this wake-up found (a bands
                // and a spectrum frame of the same block go out together).
                sender.flush();
                if n == 0 {
                    std::thread::park_timeout(Duration::from_millis(50));
                }
            }
            crate::rt::mark_rt_loop(false);
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::MAX_FFT_BINS;

    #[test]
    fn ntp_time_of_now_is_close_to_the_wall_clock() {
        let t = ntp_from_monotonic(crate::rt::now_ns());
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 2_208_988_800;
        assert!((t.seconds as i64 - wall as i64).abs() <= 1);
    }

    /// A socket on loopback and a sender (spectrum on) to it.
    fn sender_to_a_local_socket(bundle: bool) -> (std::net::UdpSocket, OscSender) {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let cfg = OscConfig {
            destinations: vec![crate::config::OscDestination {
                host: "127.0.0.1".into(),
                port: rx.local_addr().unwrap().port(),
                ttl: 1,
            }],
            send_fft: true,
            bundle,
            ..Default::default()
        };
        let sender = OscSender::new(&cfg, Arc::new(Stats::default())).unwrap();
        (rx, sender)
    }

    /// The addresses of the datagrams `sender` sends for `f`, read on `rx`.
    fn addresses_sent(
        sender: &mut OscSender,
        rx: &std::net::UdpSocket,
        f: &SpectrumFrame,
    ) -> Vec<String> {
        sender.send_spectrum(f);
        sender.flush();
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        while let Ok(n) = rx.recv(&mut buf) {
            match rosc::decoder::decode_udp(&buf[..n]) {
                Ok((_, OscPacket::Message(m))) => out.push(m.addr),
                other => panic!("not one message: {other:?}"),
            }
        }
        out
    }

    /// A frame that only carries an event found between two spectrum hops
    /// (the detectors' own hop, below 44.1 kHz) sends the event, not the
    /// last hop's spectrum and shape again.
    #[test]
    fn a_frame_of_events_sends_only_its_events() {
        let (rx, mut sender) = sender_to_a_local_socket(false);
        let mut f = SpectrumFrame::zeroed();
        f.has_bins = true;
        f.n_bins = 4;
        f.onset = true;
        f.tempo.beat = true;
        let hop = addresses_sent(&mut sender, &rx, &f);
        assert_eq!(
            hop,
            [
                "/audio/fft",
                "/audio/spectral",
                "/audio/onset",
                "/audio/beat"
            ]
        );
        f.events_only = true;
        let events = addresses_sent(&mut sender, &rx, &f);
        assert_eq!(events, ["/audio/onset", "/audio/beat"]);
        f.tempo.beat = false;
        assert_eq!(addresses_sent(&mut sender, &rx, &f), ["/audio/onset"]);
    }

    /// After a stall the thread finds many frames at once: they go out in
    /// several `sendmmsg` calls from the buffers made at start, which never
    /// grow (growing is an allocation, and page faults on this thread).
    #[test]
    fn a_backlog_of_the_largest_frames_never_grows_the_buffers() {
        for bundle in [false, true] {
            let (rx, mut sender) = sender_to_a_local_socket(bundle);
            let made = (sender.buf.as_ptr(), sender.buf.capacity());
            let spans = (sender.spans.as_ptr(), sender.spans.capacity());
            let mut f = SpectrumFrame::zeroed();
            f.has_bins = true;
            f.n_bins = MAX_FFT_BINS as u16;
            f.onset = true;
            f.tempo.beat = true;
            let mut b = BandsFrame {
                band_onsets: onset_bits::LOW | onset_bits::MID | onset_bits::HIGH,
                ..Default::default()
            };
            const FRAMES: usize = 2 * BUF_FRAMES + 1;
            // Read as they come (the socket's queue holds fewer).
            let (mut ffts, mut messages) = (0, 0);
            let mut read = |rx: &std::net::UdpSocket| {
                let mut buf = vec![0u8; 65536];
                while let Ok(n) = rx.recv(&mut buf) {
                    let packets = match rosc::decoder::decode_udp(&buf[..n]).unwrap().1 {
                        OscPacket::Bundle(b) => b.content,
                        m => vec![m],
                    };
                    for p in packets {
                        let OscPacket::Message(m) = p else {
                            panic!("a bundle in a bundle")
                        };
                        messages += 1;
                        if m.addr == "/audio/fft" {
                            assert_eq!(m.args.len(), MAX_FFT_BINS);
                            ffts += 1;
                        }
                    }
                }
            };
            rx.set_nonblocking(true).unwrap();
            for k in 0..FRAMES {
                b.silent = k % 2 == 0;
                sender.send_spectrum(&f);
                sender.send_bands(&b);
                read(&rx);
            }
            sender.flush();
            assert_eq!((sender.buf.as_ptr(), sender.buf.capacity()), made);
            assert_eq!((sender.spans.as_ptr(), sender.spans.capacity()), spans);
            rx.set_nonblocking(false).unwrap();
            read(&rx);
            // Spectrum: fft, spectral, onset, beat; bands: lmh, level, bpm,
            // tempo, three band onsets, silence.
            assert_eq!((ffts, messages), (FRAMES, FRAMES * 12), "bundle {bundle}");
        }
    }
}
