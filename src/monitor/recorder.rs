//! The recorder thread (`p4-record`): every disk operation of the monitor.
//!
//! It carries out the recording commands (start, stop, save the replay
//! buffer, list, delete, issue a download ticket), and while a recording
//! runs it follows the tape's head and appends to the WAV file, at most a
//! second per lock. The tape holds `record.replay-s` plus [`SLACK_S`]
//! seconds, so the disk may stall that long before audio is lost; if it
//! stalls longer, or the quota or the free-space guard is reached, or a
//! write fails (a full disk), the recording stops with an error that status
//! shows, the file is closed with a valid header, and nothing else is
//! affected. The header is rewritten every second, so even a power cut
//! leaves a readable file.
//!
//! Here: the thread, its commands, the folder's quota and status;
//! [`pump`] follows the tape into the recording's files, [`replay`] saves
//! the replay buffer.
//!
//! Not a real-time thread: it may block on the disk for as long as the disk
//! takes; nobody waits for it (requests come through a bounded queue).

pub use super::commands::{RecCommand, RecMsg, RecReply, RecRequest};
use super::files::{self, Listing, RecordingName, Tickets, RECORDINGS_DIR};
use super::tape::Tape;
// CHECKPOINT: how often the status is refreshed (as often as headers are rewritten).
use super::wav_out::{Writer, CHECKPOINT};
use super::{MonitorHub, RecorderStatus};
use crate::config::{Config, RecordConfig};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Seconds the tape holds beyond the replay length: how far a recording
/// (or a replay save) may fall behind before audio is lost.
pub const SLACK_S: f64 = 10.0;
/// Requests waiting for the recorder at most.
pub const MAX_QUEUED: usize = 32;
/// A file is closed and the recording goes on in a new one before this
/// size (WAV sizes are 32-bit).
pub const MAX_FILE_BYTES: u64 = 2 << 30;
/// Longest wait for a command while no recording runs (the status
/// checkpoint comes sooner when due; a stop also ends the wait, by closing
/// the command channel when the broadcaster ends).
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// How often the recorder looks at the tape while recording.
const PUMP_EVERY: Duration = Duration::from_millis(100);
/// A change is announced to every authorized client at most this often:
/// the first of a burst of commands at once, the rest together at most
/// this long later. Each announcement is the whole listing (up to
/// 64 KiB) in the queue of every authorized client, audio listeners
/// among them: a token holder sending commands as fast as the queue took
/// them cut every listener on a slow link within seconds (tester o).
const ANNOUNCE_EVERY: Duration = Duration::from_secs(1);
/// And at most this many bytes of announcements a second, on average, in
/// every authorized client's queue: a full folder's listing (64 KiB) is
/// then announced at most every 8 s of a burst. Once a second, a token
/// holder alternating start and stop still cut a 64 KB/s listener within
/// 10 s.
const ANNOUNCE_BYTES_PER_S: u64 = 8 * 1024;
/// About the JSON length of one listed recording, and of the rest of a
/// `recordings` message (for [`ANNOUNCE_BYTES_PER_S`]; the WebSocket side
/// cuts a listing at 64 KiB).
const LISTED_ITEM_BYTES: u64 = 120;
const LISTING_BASE_BYTES: u64 = 512;
const LISTING_MAX_BYTES: u64 = 64 * 1024;
/// A listing asked for within this long of the previous one, with no
/// command changing anything since, is that one again: a listing opens
/// every file's header (1 000 of them in a full folder), and `list_recordings`
/// as fast as the queue took it kept this thread at a whole core.
const LIST_FRESH: Duration = Duration::from_secs(1);

/// A recording in progress.
struct Active {
    writer: Option<Writer>,
    /// Next tape frame to write.
    next: u64,
    /// Segment being recorded (0: none yet).
    seg_id: u64,
    /// Bytes every other recording took when this one started.
    others_bytes: u64,
    /// Bytes written into earlier files of this recording.
    done_bytes: u64,
}

/// The idle recount of the folder's size runs at most once per this many
/// times its own duration (and at most once per [`CHECKPOINT`]).
const RECOUNT_DUTY: u32 = 50;

/// The recorder's state.
pub struct Recorder {
    dir: Option<PathBuf>,
    cfg: RecordConfig,
    tape: Arc<Mutex<Tape>>,
    hub: Arc<MonitorHub>,
    tickets: Arc<Tickets>,
    active: Option<Active>,
    last_error: Option<String>,
    scratch: Vec<u8>,
    free: u64,
    used: u64,
    next_checkpoint: Instant,
    /// When the idle recount of the folder's size is next due.
    next_recount: Instant,
    /// When `used` was last counted from the folder (since then it follows
    /// the recorder's own changes).
    counted_at: Option<Instant>,
    /// A change not yet announced ([`ANNOUNCE_EVERY`]).
    announce_pending: bool,
    next_announce: Instant,
    /// The last listing and when it was made ([`LIST_FRESH`]).
    listed: Option<(Instant, Listing)>,
}

impl Recorder {
    /// A recorder for `config`, writing into `<state.dir>/recordings`.
    pub fn new(
        config: &Config,
        tape: Arc<Mutex<Tape>>,
        hub: Arc<MonitorHub>,
        tickets: Arc<Tickets>,
    ) -> Self {
        let dir = config.state_dir().map(|d| d.join(RECORDINGS_DIR));
        Recorder {
            dir,
            cfg: config.record,
            tape,
            hub,
            tickets,
            active: None,
            last_error: None,
            scratch: Vec::new(),
            free: 0,
            used: 0,
            next_checkpoint: Instant::now(),
            next_recount: Instant::now(),
            counted_at: None,
            announce_pending: false,
            next_announce: Instant::now(),
            listed: None,
        }
    }

    /// The recordings folder, made when missing.
    fn folder(&self) -> Result<&Path, String> {
        if !self.cfg.enabled {
            return Err("recording is off on this server (record.enabled)".into());
        }
        let dir = self
            .dir
            .as_deref()
            .ok_or("recording needs a state directory ([state] dir)")?;
        if std::fs::symlink_metadata(dir).is_ok() && !crate::service::safe_fs::real_dir(dir) {
            // Made by phase4 in the state directory: a symlink there was
            // planted, and would send recordings (and deletions) elsewhere.
            return Err(format!(
                "{} is not a directory (a symbolic link?); refusing to record into it",
                dir.display()
            ));
        }
        if !dir.is_dir() {
            crate::service::safe_fs::create_dirs(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        Ok(dir)
    }

    fn quota(&self) -> u64 {
        self.cfg.max_total_mb.saturating_mul(1 << 20)
    }

    fn min_free(&self) -> u64 {
        self.cfg.min_free_mb.saturating_mul(1 << 20)
    }

    /// Whether `more` bytes may be written now; the reason if not.
    fn room_for(&self, dir: &Path, used: u64, more: u64) -> Result<(), String> {
        if used.saturating_add(more) > self.quota() {
            return Err(format!(
                "recordings quota reached ({} MiB used of record.max-total-mb = {}); delete some",
                used >> 20,
                self.cfg.max_total_mb
            ));
        }
        // Not known is not "0 bytes free" (which it used to be said as).
        let Some(free) = files::free_bytes(dir) else {
            return Err(format!(
                "cannot tell how much room is left in {} (statvfs failed), so record.min-free-mb cannot be kept",
                dir.display()
            ));
        };
        if free < self.min_free().saturating_add(more) {
            return Err(format!(
                "disk nearly full: {} MiB free, record.min-free-mb = {}",
                free >> 20,
                self.cfg.min_free_mb
            ));
        }
        Ok(())
    }

    /// Carry out one command.
    pub fn handle(&mut self, client: u64, cmd: RecCommand, out: &mut Vec<RecReply>) {
        let to_client = |msg| RecReply {
            to: Some(client),
            msg,
        };
        let is_delete = matches!(cmd, RecCommand::Delete { .. });
        let result = match cmd {
            RecCommand::Start => self.start().map(|()| None),
            RecCommand::Stop => self.stop(None).map(|()| None),
            RecCommand::SaveReplay { seconds } => self
                .save_replay(seconds)
                .map(|(name, seconds)| Some(RecMsg::Saved { name, seconds })),
            RecCommand::List => {
                let l = self.listing();
                self.refresh_status();
                out.push(to_client(RecMsg::Recordings(l, self.status())));
                return;
            }
            RecCommand::Delete { name } => self.delete(&name).map(|()| None),
            RecCommand::Download { name } => {
                // A ticket changes nothing anyone else sees.
                out.push(to_client(self.ticket(&name).unwrap_or_else(RecMsg::Error)));
                return;
            }
        };
        // A failed command may have changed something too (a recording
        // that could not start, a save removed half-way, a stop whose file
        // could not be finished); a failed delete removed nothing.
        if result.is_ok() || !is_delete {
            self.listed = None;
        }
        match result {
            Ok(Some(msg)) => out.push(to_client(msg)),
            Ok(None) => {}
            Err(e) => {
                out.push(to_client(RecMsg::Error(e)));
                return;
            }
        }
        // Every change is announced to everyone who may record.
        self.announce_pending = true;
        self.announce(out);
    }

    /// Announce a pending change when [`ANNOUNCE_EVERY`] allows: the
    /// listing, then the status, which counts the bytes it found.
    fn announce(&mut self, out: &mut Vec<RecReply>) {
        let now = Instant::now();
        if !self.announce_pending || now < self.next_announce {
            return;
        }
        self.announce_pending = false;
        let l = self.listing();
        let bytes =
            (LISTING_BASE_BYTES + LISTED_ITEM_BYTES * l.items.len() as u64).min(LISTING_MAX_BYTES);
        let spacing = Duration::from_millis(bytes * 1000 / ANNOUNCE_BYTES_PER_S);
        self.next_announce = now + spacing.max(ANNOUNCE_EVERY);
        self.refresh_status();
        out.push(RecReply {
            to: None,
            msg: RecMsg::Recordings(l, self.status()),
        });
    }

    fn listing(&mut self) -> Listing {
        // While a recording runs too: its own entry is then up to
        // LIST_FRESH behind (the status has its live length).
        if let Some((at, l)) = &self.listed {
            if at.elapsed() < LIST_FRESH {
                return l.clone();
            }
        }
        match self.folder() {
            Ok(dir) => {
                let l = files::list(dir);
                let _ = self.counted(Ok(l.total_bytes));
                self.listed = Some((Instant::now(), l.clone()));
                l
            }
            Err(_) => Listing::default(),
        }
    }

    /// The bytes the recordings take: counted from the folder at most once
    /// per [`LIST_FRESH`], and in between the last count with the
    /// recorder's own changes since (a finished recording, a saved replay,
    /// a deletion). A token holder alternating start and stop costs a
    /// folder scan a second, not one per command.
    fn usage(&mut self, dir: &Path) -> Result<u64, String> {
        if let Some(at) = self.counted_at {
            if at.elapsed() < LIST_FRESH {
                return Ok(self.used);
            }
        }
        self.counted(files::usage(dir))
    }

    /// Keep a count of the folder made now (a failed one forgets the last).
    fn counted(&mut self, used: Result<u64, String>) -> Result<u64, String> {
        match used {
            Ok(used) => {
                self.used = used;
                self.counted_at = Some(Instant::now());
                Ok(used)
            }
            Err(e) => {
                self.counted_at = None;
                Err(e)
            }
        }
    }

    fn start(&mut self) -> Result<(), String> {
        if self.active.is_some() {
            return Err("already recording".into());
        }
        let dir = self.folder()?.to_path_buf();
        let used = self.usage(&dir)?;
        self.room_for(&dir, used, 1 << 20)?;
        self.free = files::free_bytes(&dir).unwrap_or(0);
        let (next, seg_id) = {
            let t = self.tape.lock().unwrap_or_else(|e| e.into_inner());
            (t.head(), t.segment().map(|s| s.id).unwrap_or(0))
        };
        if self.scratch.is_empty() {
            // One second of the largest format at a high rate.
            self.scratch = vec![0u8; 4 * 192_000];
        }
        self.active = Some(Active {
            writer: None,
            next,
            seg_id,
            others_bytes: used,
            done_bytes: 0,
        });
        self.last_error = None;
        self.hub.recording.store(true, Ordering::Relaxed);
        self.hub.update_gate();
        crate::peer_log!(log::Level::Info, "record: recording into {}", dir.display());
        Ok(())
    }

    /// Stop the recording: by command (`error` None) or because of `error`.
    fn stop(&mut self, error: Option<String>) -> Result<(), String> {
        let Some(mut a) = self.active.take() else {
            return match error {
                Some(e) => Err(e),
                None => Err("not recording".into()),
            };
        };
        if error.is_none() {
            // Take what the tape still holds for us.
            self.active = Some(a);
            let _ = self.pump();
            a = match self.active.take() {
                Some(a) => a,
                None => return Ok(()),
            };
        }
        self.hub.recording.store(false, Ordering::Relaxed);
        self.hub.update_gate();
        self.listed = None;
        // What the folder holds now: what the others took when it started
        // and what it wrote (the status's figure).
        self.used = a.others_bytes + a.done_bytes + a.writer.as_ref().map_or(0, |w| w.bytes);
        let closed = a.writer.take().map(Writer::finish);
        match (&error, closed) {
            (Some(e), closed) => {
                // A write failed: count the folder again next time.
                self.counted_at = None;
                crate::peer_log!(log::Level::Warn, "record: recording stopped: {e}");
                if let Some(Err(c)) = closed {
                    crate::peer_log!(log::Level::Warn, "record: {c}");
                }
                self.last_error = Some(e.clone());
            }
            (None, Some(Err(e))) => {
                self.counted_at = None;
                self.last_error = Some(e.clone());
                return Err(e);
            }
            (None, Some(Ok(name))) => crate::peer_log!(log::Level::Info, "record: {name} done"),
            (None, None) => {}
        }
        Ok(())
    }

    fn current_file(&self) -> Option<&RecordingName> {
        self.active.as_ref()?.writer.as_ref().map(|w| &w.name)
    }

    fn delete(&mut self, name: &str) -> Result<(), String> {
        let dir = self.folder()?.to_path_buf();
        let (name, path, bytes) = files::find(&dir, name)?;
        if self.current_file() == Some(&name) {
            return Err(format!(
                "{name} is being recorded; stop the recording first"
            ));
        }
        std::fs::remove_file(&path).map_err(|e| format!("cannot delete {name}: {e}"))?;
        self.used = self.used.saturating_sub(bytes);
        crate::peer_log!(log::Level::Info, "record: deleted {name}");
        Ok(())
    }

    fn ticket(&mut self, name: &str) -> Result<RecMsg, String> {
        let dir = self.folder()?.to_path_buf();
        let (name, _, _) = files::find(&dir, name)?;
        let ticket = self
            .tickets
            .issue(&name)
            .map_err(|e| format!("cannot make a download ticket: {e}"))?;
        Ok(RecMsg::Download {
            name,
            ticket,
            expires_s: self.tickets.unused_lifetime().as_secs(),
        })
    }

    fn status(&self) -> RecorderStatus {
        self.hub.recorder_status()
    }

    /// Recompute the status the hub shows.
    fn refresh_status(&mut self) {
        if let Some(dir) = &self.dir {
            if let Some(f) =
                files::free_bytes(dir).or_else(|| dir.parent().and_then(files::free_bytes))
            {
                self.free = f;
            }
        }
        let (replay_s, cap_s) = {
            let t = self.tape.lock().unwrap_or_else(|e| e.into_inner());
            let rate = t.segment().map(|s| s.rate).unwrap_or(0);
            let held = if rate > 0 {
                (t.head() - t.oldest()) as f64 / rate as f64
            } else {
                0.0
            };
            let cap = if self.hub.replay_on {
                self.cfg.replay_s.min((t.capacity_s() - SLACK_S).max(0.0))
            } else {
                0.0
            };
            (held.min(cap), cap)
        };
        let w = self.active.as_ref().and_then(|a| a.writer.as_ref());
        let active_bytes = self
            .active
            .as_ref()
            .map(|a| a.done_bytes + w.map(|w| w.bytes).unwrap_or(0))
            .unwrap_or(0);
        let s = RecorderStatus {
            recording: self.active.is_some(),
            file: w.map(|w| w.name.to_string()),
            seconds: w.map(Writer::seconds).unwrap_or(0.0),
            error: self.last_error.clone(),
            replay_s,
            replay_capacity_s: cap_s,
            used_bytes: self
                .active
                .as_ref()
                .map(|a| a.others_bytes + active_bytes)
                .unwrap_or(self.used),
            quota_bytes: self.quota(),
            free_bytes: self.free,
        };
        *self.hub.status.lock().unwrap_or_else(|e| e.into_inner()) = s;
    }

    /// How long to wait for a command before [`Recorder::tick`] has work:
    /// the pump period while recording, else until the next checkpoint.
    fn next_wait(&self) -> Duration {
        let now = Instant::now();
        let mut due = self.next_checkpoint;
        if self.announce_pending {
            due = due.min(self.next_announce);
        }
        let wait = due
            .saturating_duration_since(now)
            .clamp(Duration::from_millis(1), IDLE_WAIT);
        if self.active.is_some() {
            wait.min(PUMP_EVERY)
        } else {
            wait
        }
    }

    /// The periodic part of a turn: pump, checkpoint, status.
    fn tick(&mut self, out: &mut Vec<RecReply>) {
        if self.active.is_some() {
            if let Err(e) = self.pump() {
                let _ = self.stop(Some(e.clone()));
                self.listed = None;
                self.refresh_status();
                out.push(RecReply {
                    to: None,
                    msg: RecMsg::Error(format!("recording stopped: {e}")),
                });
                // The listing as any other change: no sooner than the
                // announcements' pace allows (a token holder restarting a
                // recording that hits its quota at once would otherwise
                // send one per start).
                self.announce_pending = true;
            }
        }
        if Instant::now() >= self.next_checkpoint {
            self.next_checkpoint = Instant::now() + CHECKPOINT;
            if self.active.is_none() && Instant::now() >= self.next_recount {
                if let Some(dir) = self.dir.clone() {
                    if dir.is_dir() {
                        // The sizes only: no headers are opened. A big
                        // folder is recounted less often, so the recount
                        // takes at most 1/RECOUNT_DUTY of this thread's time
                        // (50 000 files took ~130 ms: one every 6.5 s); every
                        // command counts afresh anyway.
                        let t = Instant::now();
                        let _ = self.counted(files::usage(&dir));
                        self.next_recount =
                            Instant::now() + (t.elapsed() * RECOUNT_DUTY).max(CHECKPOINT);
                    }
                }
            }
            self.refresh_status();
        }
        self.announce(out);
    }

    /// Close the recording at shutdown.
    pub fn shutdown(&mut self) {
        if self.active.is_some() {
            let _ = self.stop(None);
        }
    }
}

/// Start `p4-record`. It answers on `replies` and ends when `stop` is set
/// or `requests` closes, closing a running recording first.
pub fn spawn(
    mut rec: Recorder,
    requests: Receiver<RecRequest>,
    replies: Sender<RecReply>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .stack_size(crate::rt::THREAD_STACK)
        .name("p4-record".into())
        .spawn(move || {
            let mut out = Vec::new();
            rec.refresh_status();
            while !stop.load(Ordering::Relaxed) {
                match requests.recv_timeout(rec.next_wait()) {
                    Ok(r) => rec.handle(r.client, r.cmd, &mut out),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
                rec.tick(&mut out);
                for r in out.drain(..) {
                    let _ = replies.send(r);
                }
            }
            rec.shutdown();
        })
}

mod pump;
mod replay;

#[cfg(test)]
mod tests;
