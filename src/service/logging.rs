//! The `log` backend: journald/syslog when running under systemd, stderr
//! otherwise, written by a thread of its own behind a bounded queue; and
//! a rate limiter for recurring faults (peer-caused lines have their own
//! budgets, [`super::peer_lines`]).

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::borrow::Cow;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where log lines end up: journald's syslog socket under systemd, stderr
/// otherwise. Both can block: a stalled journal (a slow SD card) fills the
/// socket's queue, a terminal or pipe nobody reads fills its buffer.
enum Sink {
    Stderr,
    Syslog(Box<syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>>),
    /// Tests: lines kept in memory (holding the lock stalls the writer).
    #[cfg(test)]
    Memory(Arc<Mutex<Vec<String>>>),
}

impl Sink {
    fn write(&mut self, level: Level, msg: &str) {
        match self {
            Sink::Stderr => {
                let mut e = std::io::stderr().lock();
                let _ = writeln!(e, "phase4 {level:<5} {msg}");
            }
            Sink::Syslog(w) => {
                let _ = match level {
                    Level::Error => w.err(msg),
                    Level::Warn => w.warning(msg),
                    Level::Info => w.info(msg),
                    Level::Debug | Level::Trace => w.debug(msg),
                };
            }
            #[cfg(test)]
            Sink::Memory(v) => {
                if let Ok(mut v) = v.lock() {
                    v.push(format!("{level} {msg}"));
                }
            }
        }
    }
}

/// Lines waiting for the writer thread; more are dropped and counted.
const QUEUE_LINES: usize = 256;

/// Longest line kept, in bytes: a line may quote outside text (a refused
/// device name, a path), and with the journal stalled the queue holds
/// [`QUEUE_LINES`] of them, so it holds at most ~1 MiB.
const MAX_LINE_BYTES: usize = 4096;

/// The record's message as one line ([`one_line`]), cut to
/// [`MAX_LINE_BYTES`] on a character boundary, saying how much was cut.
fn line_of(r: &Record) -> String {
    let mut msg = one_line(&r.args().to_string()).into_owned();
    if msg.len() > MAX_LINE_BYTES {
        let mut end = MAX_LINE_BYTES;
        while !msg.is_char_boundary(end) {
            end -= 1;
        }
        let cut = msg.len() - end;
        msg.truncate(end);
        msg.push_str(&format!(" … ({cut} bytes cut)"));
    }
    msg
}

/// How long [`Log::flush`] (at exit) waits for the queue to drain.
const FLUSH_WAIT: Duration = Duration::from_millis(500);

/// What the logging threads and the writer thread share.
struct Shared {
    /// Lines queued, lines written, lines dropped (queue full) and not yet
    /// reported.
    sent: AtomicU64,
    written: AtomicU64,
    dropped: AtomicU64,
}

/// The `log` backend: every line is queued for one writer thread
/// (`p4-log`), so a log that stops taking lines never blocks the thread
/// that logs (the supervisor sends the watchdog pings, the WebSocket
/// thread serves every client). A full queue drops the line and counts
/// it; the writer says how many went once it catches up.
struct Queued {
    level: LevelFilter,
    tx: SyncSender<(Level, String)>,
    shared: Arc<Shared>,
}

impl Log for Queued {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= self.level
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        match self.tx.try_send((r.level(), line_of(r))) {
            Ok(()) => {
                self.shared.sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Wait (at most [`FLUSH_WAIT`]) until the writer has written every
    /// queued line: the last lines before exit ("stopping", the final
    /// health line, a fatal error) must not be lost to an exit that comes
    /// first; a stalled log must not hold up the exit either.
    fn flush(&self) {
        let deadline = Instant::now() + FLUSH_WAIT;
        let sent = self.shared.sent.load(Ordering::Relaxed);
        while self.shared.written.load(Ordering::Relaxed) < sent && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// The writer thread: lines in order, and a count of the dropped ones
/// before the first line after them.
fn write_lines(mut sink: Sink, rx: Receiver<(Level, String)>, shared: &Shared) {
    while let Ok((level, msg)) = rx.recv() {
        let dropped = shared.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            sink.write(
                Level::Warn,
                &format!("log: {dropped} line(s) dropped: the log was not taking lines (journald or stderr stalled)"),
            );
        }
        sink.write(level, &msg);
        shared.written.fetch_add(1, Ordering::Relaxed);
    }
}

/// A writer thread for `sink` and the logger that feeds it; stderr to write
/// to on the calling thread when the writer thread cannot be started.
fn queued(level: LevelFilter, sink: Sink) -> Result<Queued, Sink> {
    let (tx, rx) = sync_channel(QUEUE_LINES);
    let shared = Arc::new(Shared {
        sent: AtomicU64::new(0),
        written: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
    });
    let for_writer = Arc::clone(&shared);
    // The sink moves into the thread; if the spawn fails it is lost with
    // the closure, so the caller opens a new one.
    let spawned = std::thread::Builder::new()
        .stack_size(crate::rt::THREAD_STACK)
        .name("p4-log".into())
        .spawn(move || write_lines(sink, rx, &for_writer));
    match spawned {
        Ok(_) => Ok(Queued { level, tx, shared }),
        Err(_) => Err(Sink::Stderr),
    }
}

/// A logger that writes on the calling thread: only when the writer thread
/// cannot be started.
struct Direct {
    level: LevelFilter,
    sink: Mutex<Sink>,
}

impl Log for Direct {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= self.level
    }

    fn log(&self, r: &Record) {
        if self.enabled(r.metadata()) {
            let msg = line_of(r);
            if let Ok(mut sink) = self.sink.lock() {
                sink.write(r.level(), &msg);
            }
        }
    }

    fn flush(&self) {}
}

/// The message as one line: every control character (newline, carriage
/// return, escape, ...) and Unicode line or paragraph separator written as
/// an escape (`\n`, `\u{1b}`). Log messages quote text from outside (an
/// OSC address, a device name, a request path); a stranger's newline must
/// not start a log line of its own that reads like phase4's, nor its escape
/// sequences reach an operator's terminal. Tabs are kept.
pub fn one_line(msg: &str) -> Cow<'_, str> {
    let unsafe_char =
        |c: char| (c.is_control() && c != '\t') || matches!(c, '\u{2028}' | '\u{2029}');
    if !msg.chars().any(unsafe_char) {
        return Cow::Borrowed(msg);
    }
    let mut out = String::with_capacity(msg.len() + 16);
    for c in msg.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Whether we run under systemd (it sets these for services).
pub fn under_systemd() -> bool {
    std::env::var_os("INVOCATION_ID").is_some() || std::env::var_os("JOURNAL_STREAM").is_some()
}

/// Install the logger: syslog (journald) under systemd when its socket is
/// there, stderr otherwise, written by the `p4-log` thread.
pub fn init(level: LevelFilter) {
    let sink = if under_systemd() {
        let formatter = syslog::Formatter3164 {
            facility: syslog::Facility::LOG_DAEMON,
            hostname: None,
            process: "phase4".into(),
            pid: std::process::id(),
        };
        match syslog::unix(formatter) {
            Ok(w) => Sink::Syslog(Box::new(w)),
            Err(_) => Sink::Stderr,
        }
    } else {
        Sink::Stderr
    };
    let logger: Box<dyn Log> = match queued(level, sink) {
        Ok(q) => Box::new(q),
        Err(sink) => Box::new(Direct {
            level,
            sink: Mutex::new(sink),
        }),
    };
    if log::set_boxed_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}

/// Lets a recurring message through at most once per interval, and says how
/// many were held back.
pub struct RateLimit {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    /// At most one message per `interval`.
    pub fn new(interval: Duration) -> Self {
        RateLimit {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` when a message may go out now (`n` were suppressed since the
    /// last one), `None` when it must be held back.
    pub fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(q: &Queued, text: &str) {
        q.log(
            &Record::builder()
                .args(format_args!("{text}"))
                .level(Level::Info)
                .build(),
        );
    }

    #[test]
    fn a_long_line_is_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_LINE_BYTES); // 2 bytes each
        let line = line_of(
            &Record::builder()
                .args(format_args!("x{long}"))
                .level(Level::Info)
                .build(),
        );
        let kept = line.split(" … (").next().unwrap_or("");
        assert!(kept.len() <= MAX_LINE_BYTES && kept.len() >= MAX_LINE_BYTES - 1);
        let cut = 1 + 2 * MAX_LINE_BYTES - kept.len();
        assert!(
            line.ends_with(&format!(" … ({cut} bytes cut)")),
            "{}",
            &line[line.len() - 30..]
        );
        let short = line_of(
            &Record::builder()
                .args(format_args!("ok"))
                .level(Level::Info)
                .build(),
        );
        assert_eq!(short, "ok");
    }

    #[test]
    fn a_stalled_log_drops_and_counts_lines_and_never_blocks_the_caller() {
        let kept = Arc::new(Mutex::new(Vec::new()));
        let Ok(q) = queued(LevelFilter::Info, Sink::Memory(Arc::clone(&kept))) else {
            panic!("no writer thread");
        };
        line(&q, "first");
        q.flush();
        // The log stops taking lines: the writer blocks on its next one.
        let stall = kept.lock().unwrap();
        let t = Instant::now();
        for k in 0..QUEUE_LINES + 100 {
            line(&q, &format!("line {k}"));
        }
        assert!(t.elapsed() < Duration::from_secs(1), "logging blocked");
        let t = Instant::now();
        q.flush();
        assert!(t.elapsed() >= FLUSH_WAIT, "flush waits for a stalled log");
        assert!(t.elapsed() < FLUSH_WAIT * 3, "but only so long");
        drop(stall);
        // Let the writer drain the queue first: a line logged into the still
        // full queue would be dropped too.
        q.flush();
        line(&q, "after");
        q.flush();
        let kept = kept.lock().unwrap();
        assert_eq!(kept[0], "INFO first");
        // One line is with the stalled writer, QUEUE_LINES wait; the rest
        // are dropped (one more may have been taken before the stall).
        // A writer that woke late, with the loop already dropping, took
        // the count so far with that line: its notice waited with it, and
        // a second one counts the rest (on a loaded machine).
        let notices: Vec<u64> = kept
            .iter()
            .filter(|l| l.contains("line(s) dropped"))
            .map(|l| {
                let n = l
                    .strip_prefix("WARN log: ")
                    .and_then(|r| r.split(' ').next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                assert_eq!(*l, format!("WARN log: {n} line(s) dropped: the log was not taking lines (journald or stderr stalled)"));
                n
            })
            .collect();
        let dropped: u64 = notices.iter().sum();
        assert!(!notices.is_empty(), "a notice of the dropped lines");
        assert!((99..=100).contains(&dropped), "{notices:?}");
        assert_eq!(kept.last().map(String::as_str), Some("INFO after"));
        assert_eq!(
            kept.len() as u64,
            1 + (QUEUE_LINES as u64 + 100 - dropped) + notices.len() as u64 + 1
        );
    }

    #[test]
    fn rate_limit_counts_what_it_holds_back() {
        let mut r = RateLimit::new(Duration::from_secs(3600));
        assert_eq!(r.allow(), Some(0));
        assert_eq!(r.allow(), None);
        assert_eq!(r.allow(), None);
        r.last = Some(Instant::now() - Duration::from_secs(7200));
        assert_eq!(r.allow(), Some(2));
    }

    #[test]
    fn outside_text_cannot_start_a_line_or_reach_the_terminal() {
        assert!(matches!(
            one_line("plain text\twith a tab"),
            Cow::Borrowed(_)
        ));
        let forged = one_line("refused /a\nphase4 ERROR  forged\r\u{1b}[2J\u{2028}x\0");
        assert_eq!(
            forged,
            "refused /a\\nphase4 ERROR  forged\\r\\u{1b}[2J\\u{2028}x\\u{0}"
        );
        assert!(!forged.chars().any(|c| c.is_control()));
        assert_eq!(one_line("naïve ☃ /audio/lmh"), "naïve ☃ /audio/lmh");
    }
}
