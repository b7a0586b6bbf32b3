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
/// Most devices listed from the hints.
const HINTS_MAX: usize = 1024;
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
    match hints_from_child() {
        Ok(found) => {
            names.extend(found);
            (names, None)
        }
        Err(why) => (names, Some(format!("alsa-lib's device list failed ({why}): listing only \"default\" (a PCM name of 127 characters or more in the ALSA configuration makes alsa-lib 1.2.8 abort; `arecord -L` shows the same)"))),
    }
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

fn hints_from_child() -> Result<Vec<(String, String)>, String> {
    use std::io::Read;
    use std::process::{Command, Stdio};
    // /proc/self/exe: this very program, even when an upgrade has replaced
    // the file on disk meanwhile.
    let mut child = Command::new("/proc/self/exe")
        .arg(HINTS_CHILD_ARG)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start it: {e}"))?;
    let mut out = child.stdout.take().expect("piped");
    let deadline = Instant::now() + HINTS_TIMEOUT;
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let read = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&out),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().clamp(1, 60_000) as libc::c_int;
        // SAFETY: one valid pollfd, for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        if n <= 0 {
            break Err(format!("no answer within {} s", HINTS_TIMEOUT.as_secs()));
        }
        match out.read(&mut chunk) {
            Ok(0) => break Ok(()),
            Ok(k) if bytes.len() + k > HINTS_MAX_BYTES => {
                break Err(format!("more than {} KiB", HINTS_MAX_BYTES / 1024))
            }
            Ok(k) => bytes.extend_from_slice(&chunk[..k]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e.to_string()),
        }
    };
    drop(out);
    if read.is_err() {
        let _ = child.kill();
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    read?;
    if !status.success() {
        use std::os::unix::process::ExitStatusExt;
        return Err(match status.signal() {
            Some(sig) => format!("alsa-lib died (signal {sig})"),
            None => format!("it exited with {status}"),
        });
    }
    Ok(parse_hints(&bytes))
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
