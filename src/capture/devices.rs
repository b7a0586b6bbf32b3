//! `phase4 devices`: the capture PCMs alsa-lib knows, with what they support.

use alsa::device_name::HintIter;
use alsa::pcm::{Format, HwParams, PCM};
use alsa::Direction;
use serde::Serialize;
use std::time::{Duration, Instant};

/// One capture device.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DeviceEntry {
    /// Index in this listing (advisory; devices are stored by name).
    pub index: usize,
    /// PCM name to put in `audio.device`.
    pub name: String,
    /// Human description from alsa-lib.
    pub description: String,
    /// Whether it could be opened for capture just now.
    pub available: bool,
    /// Channel range.
    pub channels: Option<(u32, u32)>,
    /// Rate range.
    pub rates: Option<(u32, u32)>,
    /// Supported formats among those phase4 reads.
    pub formats: Vec<String>,
    /// Why it could not be opened.
    pub error: Option<String>,
}

/// What a probe finds: channel range, rate range, formats.
pub type Capabilities = (Option<(u32, u32)>, Option<(u32, u32)>, Vec<String>);

/// Probe one PCM for what it supports (opens and closes it).
pub fn probe(name: &str) -> Result<Capabilities, String> {
    if let Some(why) = super::pcm_conf::opening_runs(name) {
        return Err(format!("not opened: {why}"));
    }
    let pcm = PCM::new(name, Direction::Capture, true).map_err(|e| e.to_string())?;
    let hwp = HwParams::any(&pcm).map_err(|e| e.to_string())?;
    let channels = hwp.get_channels_min().ok().zip(hwp.get_channels_max().ok());
    let rates = hwp.get_rate_min().ok().zip(hwp.get_rate_max().ok());
    let formats = [
        (Format::S16LE, "S16_LE"),
        (Format::S243LE, "S24_3LE"),
        (Format::S24LE, "S24_LE"),
        (Format::S32LE, "S32_LE"),
        (Format::FloatLE, "FLOAT_LE"),
    ]
    .iter()
    .filter(|(f, _)| hwp.test_format(*f).is_ok())
    .map(|(_, n)| n.to_string())
    .collect();
    Ok((channels, rates, formats))
}

/// The argument that makes `phase4` the child [`hints`] runs (see there).
pub const HINTS_CHILD_ARG: &str = "--alsa-hints-child";
/// Longest a hints child may take; it is killed after that.
const HINTS_TIMEOUT: Duration = Duration::from_secs(5);
/// Most bytes of a hints child's answer read (a few KiB on a real machine).
const HINTS_MAX_BYTES: usize = 1 << 20;
/// Most bytes of what alsa-lib says on a hints child's standard error
/// that are kept (as debug lines).
const HINTS_MAX_SAID: usize = 16 * 1024;
/// Most devices listed from the hints.
const HINTS_MAX: usize = 1024;
/// How long listings say "default" alone after a child hung.
const HUNG_PAUSE: Duration = Duration::from_secs(60);
/// Longest description kept, in characters.
const DESC_MAX_CHARS: usize = 200;

/// Every capture PCM from alsa-lib's hints (plus "default"), with its
/// description, without opening any.
///
/// alsa-lib reads the hints out of the ALSA configuration, which can make
/// it abort: 1.2.8's `snd_device_name_hint` overflows a buffer (and the
/// fortified build aborts, as `arecord -L` does) on a PCM name of 127
/// characters or more. Done in the service, that took it down at every
/// start. So a child process (this program again, with
/// [`HINTS_CHILD_ARG`]) asks alsa-lib and writes what it finds; one that
/// dies, hangs past [`HINTS_TIMEOUT`] or says too much gives `default`
/// alone and a warning. Names with control characters (which
/// `audio.device` refuses) are left out, and control characters in a
/// description (terminal escapes) become spaces.
pub fn hints() -> Vec<(String, String)> {
    let (names, failed) = hints_or_why();
    if let Some(why) = failed {
        warn_hints(&why);
    }
    names
}

/// [`hints`], and why alsa-lib's list is missing from them if it is.
pub fn hints_or_why() -> (Vec<(String, String)>, Option<String>) {
    let mut names: Vec<(String, String)> = vec![("default".into(), "Default ALSA device".into())];
    // A child that hung was killed after HINTS_TIMEOUT: asked again at once
    // (the UI lists on request), every listing would hold the control
    // thread that long. The same answer for a minute instead.
    static HUNG: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);
    let hung = |set: bool| {
        let mut h = HUNG.lock().unwrap_or_else(|p| p.into_inner());
        if set {
            *h = Some(Instant::now());
        }
        h.is_some_and(|t| t.elapsed() < HUNG_PAUSE)
    };
    if hung(false) {
        return (names, Some(format!("alsa-lib's device list hung less than {} s ago: listing only \"default\" until then", HUNG_PAUSE.as_secs())));
    }
    match hints_from_child() {
        Ok(found) => {
            names.extend(found);
            (names, None)
        }
        Err(Failed::Start(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
            ) =>
        {
            // No /proc/self/exe to run (a chroot without /proc): ask
            // alsa-lib here, as before the child existed.
            let mut raw = Vec::new();
            let _ = write_hints_child(&mut raw);
            names.extend(parse_hints(&raw));
            log::debug!("devices: asked alsa-lib in this process: cannot start a child ({e})");
            (names, None)
        }
        Err(Failed::Died(why)) => (names, Some(format!("alsa-lib's device list failed ({why}): listing only \"default\" (alsa-lib 1.2.8 aborts on a PCM name of 127 characters or more in the ALSA configuration; `arecord -L` shows the same)"))),
        Err(Failed::Hung) => {
            hung(true);
            (names, Some(format!("alsa-lib's device list failed (no answer within {} s): listing only \"default\"", HINTS_TIMEOUT.as_secs())))
        }
        Err(Failed::Start(e)) => (names, Some(format!("alsa-lib's device list failed (cannot start a process: {e}): listing only \"default\""))),
        Err(Failed::Other(why)) => (names, Some(format!("alsa-lib's device list failed ({why}): listing only \"default\""))),
    }
}

/// How a hints child failed.
enum Failed {
    /// It could not be started (no /proc, no process or descriptor left).
    Start(std::io::Error),
    /// It was ended by a signal (alsa-lib aborted).
    Died(String),
    /// No answer within [`HINTS_TIMEOUT`] (killed).
    Hung,
    /// Anything else: said too much, exited with an error.
    Other(String),
}

/// What the hints child writes: name NUL description NUL, per capture PCM.
pub fn write_hints_child(out: &mut impl std::io::Write) -> std::io::Result<()> {
    if let Ok(hints) = HintIter::new_str(None, "pcm") {
        for h in hints {
            let capture = h.direction.is_none_or(|d| d == Direction::Capture);
            if let (true, Some(name)) = (capture, h.name) {
                let desc = h.desc.unwrap_or_default();
                out.write_all(name.as_bytes())?;
                out.write_all(b"\0")?;
                out.write_all(desc.as_bytes())?;
                out.write_all(b"\0")?;
            }
        }
    }
    out.flush()
}

fn hints_from_child() -> Result<Vec<(String, String)>, Failed> {
    use std::io::Read;
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::process::{Command, Stdio};
    // /proc/self/exe: this very program, even when an upgrade has replaced
    // the file on disk meanwhile.
    let mut child = Command::new("/proc/self/exe")
        .arg(HINTS_CHILD_ARG)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(Failed::Start)?;
    // [0] the hints, [1] what alsa-lib said on the way (its messages
    // about PCM definitions it expanded: debug lines, as in-process ones
    // are while listing).
    let mut pipes: [Option<std::fs::File>; 2] = [
        child.stdout.take().map(|o| OwnedFd::from(o).into()),
        child.stderr.take().map(|e| OwnedFd::from(e).into()),
    ];
    let mut got: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    let limits = [HINTS_MAX_BYTES, HINTS_MAX_SAID];
    let deadline = Instant::now() + HINTS_TIMEOUT;
    let mut chunk = [0u8; 16 * 1024];
    let read: Result<(), Failed> = loop {
        let mut pfds: Vec<libc::pollfd> = pipes
            .iter()
            .flatten()
            .map(|f| libc::pollfd {
                fd: f.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        if pfds.is_empty() {
            break Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = left.as_millis().clamp(1, 60_000) as libc::c_int;
        // SAFETY: valid pollfds, for the duration of the call.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        if n <= 0 {
            break Err(Failed::Hung);
        }
        let ready: Vec<i32> = pfds
            .iter()
            .filter(|p| p.revents != 0)
            .map(|p| p.fd)
            .collect();
        let mut failed = None;
        for i in 0..2 {
            let Some(f) = pipes[i].as_mut().filter(|f| ready.contains(&f.as_raw_fd())) else {
                continue;
            };
            match f.read(&mut chunk) {
                Ok(0) => pipes[i] = None,
                Ok(k) if i == 0 && got[0].len() + k > limits[0] => {
                    failed = Some(Failed::Other(format!(
                        "more than {} KiB",
                        HINTS_MAX_BYTES / 1024
                    )));
                }
                Ok(k) => {
                    // What alsa-lib says beyond its cap is read and dropped.
                    let room = limits[i] - got[i].len();
                    got[i].extend_from_slice(&chunk[..k.min(room)]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => failed = Some(Failed::Other(e.to_string())),
            }
        }
        if let Some(f) = failed {
            break Err(f);
        }
    };
    drop(pipes);
    if read.is_err() {
        let _ = child.kill();
    }
    let status = child.wait().map_err(|e| Failed::Other(e.to_string()))?;
    for line in String::from_utf8_lossy(&got[1])
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        // The child labels alsa-lib's messages; anything else it said (a
        // crash report) is labelled here.
        let line = line.trim_end();
        if line.starts_with("alsa-lib (") {
            log::debug!("{line}");
        } else {
            log::debug!("alsa-lib (listing devices): {line}");
        }
    }
    read?;
    if !status.success() {
        use std::os::unix::process::ExitStatusExt;
        return Err(match status.signal() {
            Some(sig) => Failed::Died(format!("alsa-lib died (signal {sig})")),
            None => Failed::Other(format!("it exited with {status}")),
        });
    }
    Ok(parse_hints(&got[0]))
}

fn parse_hints(bytes: &[u8]) -> Vec<(String, String)> {
    let mut fields = bytes.split(|b| *b == 0);
    let mut found = Vec::new();
    while let (Some(name), Some(desc)) = (fields.next(), fields.next()) {
        if found.len() == HINTS_MAX {
            break;
        }
        let name = String::from_utf8_lossy(name);
        if name.is_empty()
            || name == "default"
            || name == "null"
            || name.chars().any(char::is_control)
        {
            continue;
        }
        let desc: String = String::from_utf8_lossy(desc)
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(DESC_MAX_CHARS)
            .collect();
        found.push((name.into_owned(), desc));
    }
    found
}

/// At most one warning a minute: the UI lists devices on request.
fn warn_hints(why: &str) {
    static LAST: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
        *last = Some(Instant::now());
        log::warn!("devices: {why}");
    }
}

/// Whether a PCM name is a sound card's (`hw:CARD=…`, `plughw:CARD=…`,
/// `sysdefault:CARD=…`, …) rather than a plugin (`pulse`, `jack`, `dmix`…).
pub fn is_card(name: &str) -> bool {
    name.contains("CARD=") || name.starts_with("hw:") || name.starts_with("plughw:")
}

/// The card and device an ALSA name gives, with `CARD=` and `DEV=` or in
/// that order (`hw:1,0`, `plughw:Device`; device 0 when it says none).
pub fn card_device(name: &str) -> Option<(&str, u32)> {
    let (_, args) = name.split_once(':')?;
    let mut card = None;
    let mut dev = 0;
    for (i, arg) in args.split(',').enumerate() {
        let (key, value) = match arg.split_once('=') {
            Some((k, v)) => (Some(k), v),
            None => (None, arg),
        };
        match (key, i) {
            (Some("CARD"), _) | (None, 0) => card = Some(value),
            (Some("DEV"), _) | (None, 1) => dev = value.parse().ok()?,
            _ => {}
        }
    }
    card.filter(|c| !c.is_empty() && !c.contains(':'))
        .map(|c| (c, dev))
}

/// Every capture PCM from alsa-lib's hints (plus "default"), each probed.
pub fn list() -> Vec<DeviceEntry> {
    hints()
        .into_iter()
        .enumerate()
        .map(|(index, (name, description))| match probe(&name) {
            Ok((channels, rates, formats)) => DeviceEntry {
                index,
                name,
                description,
                available: true,
                channels,
                rates,
                formats,
                error: None,
            },
            Err(e) => DeviceEntry {
                index,
                name,
                description,
                available: false,
                channels: None,
                rates: None,
                formats: Vec::new(),
                error: Some(e),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hints_answer_is_bounded_and_cleaned() {
        let mut raw = Vec::new();
        for (name, desc) in [
            ("hw:CARD=A,DEV=0", "USB\nInterface"),
            ("default", "again"),
            ("bad\u{1b}[31m", "escape in the name"),
            ("esc", "\u{1b}[31mred"),
            ("", "no name"),
        ] {
            raw.extend_from_slice(name.as_bytes());
            raw.push(0);
            raw.extend_from_slice(desc.as_bytes());
            raw.push(0);
        }
        raw.extend_from_slice(b"half a name");
        let got = parse_hints(&raw);
        assert_eq!(
            got,
            vec![
                ("hw:CARD=A,DEV=0".to_string(), "USB Interface".to_string()),
                ("esc".to_string(), " [31mred".to_string()),
            ]
        );
        let many: Vec<u8> = (0..HINTS_MAX + 10)
            .flat_map(|i| format!("p{i}\0{}\0", "d".repeat(500)).into_bytes())
            .collect();
        let got = parse_hints(&many);
        assert_eq!(got.len(), HINTS_MAX);
        assert!(got.iter().all(|(_, d)| d.chars().count() == DESC_MAX_CHARS));
    }
}
