//! Who has a sound card's capture device open: the kernel's own account of
//! each substream (`/proc/asound/cardN/pcmMc/subK/status`, whose
//! `owner_pid` is the thread that opened it), named by the process that
//! thread belongs to. A card captures for one program at a time, so "busy"
//! alone leaves a user guessing; this names the program (PipeWire, another
//! phase4, a forgotten `arecord`), and the systemd unit it runs in, when
//! it runs in one (so the service's phase4 is told from one started by
//! hand: `phase4 (pid 812, phase4.service)`).
//!
//! Everything read here is bounded: at most `MAX_SUBSTREAMS` substreams,
//! `MAX_READ` bytes of each file. A process name is whatever that program
//! chose: anything but printable ASCII is shown as `?`.

use std::io::Read;
use std::path::Path;

/// Substreams looked at per device.
const MAX_SUBSTREAMS: u32 = 32;
/// Bytes read of any one `/proc` file.
const MAX_READ: u64 = 4096;
/// Longest unit name shown (systemd allows 255; longer ones are left out).
const MAX_UNIT: usize = 64;

/// A program holding a capture device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// Its process id, or the opening thread's id when the thread's
    /// `/proc` entry cannot be read (`thread`).
    pub pid: u32,
    /// Whether `pid` is only the thread's id.
    pub thread: bool,
    /// Its name (`comm`), empty when its `/proc` entry cannot be read (the
    /// service's `ProtectProc=invisible` hides other users' processes).
    pub name: String,
    /// The systemd service it runs in (`phase4.service`,
    /// `pipewire.service`), empty when it runs in none (a login session's
    /// scope, no systemd) or its `/proc` entry cannot be read.
    pub unit: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (pid, unit) = (self.pid, &self.unit);
        let sep = if unit.is_empty() { "" } else { ", " };
        if pid == std::process::id() {
            write!(f, "this phase4 (pid {pid}{sep}{unit})")
        } else if self.thread {
            write!(f, "the program with thread {pid}")
        } else if self.name.is_empty() && unit.is_empty() {
            write!(f, "process {pid}")
        } else if self.name.is_empty() {
            write!(f, "process {pid} of {unit}")
        } else {
            write!(f, "{} (pid {pid}{sep}{unit})", self.name)
        }
    }
}

/// The programs holding the capture device `name` names (`hw:CARD=X,DEV=0`,
/// `plughw:1,0`, `sysdefault:CARD=X`, ...); none for a name without a card,
/// or where `/proc/asound` says nothing.
pub fn of_name(name: &str) -> Vec<Holder> {
    let proc = Path::new("/proc");
    super::devices::card_device(name)
        .and_then(|(card, dev)| Some((card_index(&proc.join("asound"), card)?, dev)))
        .map(|(card, dev)| holders(proc, card, dev))
        .unwrap_or_default()
}

/// "; NAME (pid N) has it open" for a device that answered "busy" and
/// whose holders are known, else "".
pub fn busy_detail(name: &str, error: &str) -> String {
    if !(error.contains("busy") || error.contains("EBUSY")) {
        return String::new();
    }
    let held = of_name(name);
    if held.is_empty() {
        return String::new();
    }
    let names: Vec<String> = held.iter().map(Holder::to_string).collect();
    format!("; {} has it open", names.join(", "))
}

/// The number of card `card` (a number, or an id such as `Loopback`, which
/// `/proc/asound` links to its `cardN` directory).
fn card_index(asound: &Path, card: &str) -> Option<u32> {
    if let Ok(n) = card.parse::<u32>() {
        return Some(n);
    }
    // An id is letters, digits and '_' (the kernel's rule); anything else
    // would be a path of its own.
    let id_ok = !card.is_empty()
        && card.len() <= 32
        && card.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !id_ok {
        return None;
    }
    let link = std::fs::read_link(asound.join(card)).ok()?;
    link.to_str()?.strip_prefix("card")?.parse().ok()
}

/// The holders of card `card`'s capture device `device`, from `proc`
/// (`/proc`), once each.
fn holders(proc: &Path, card: u32, device: u32) -> Vec<Holder> {
    let dir = proc.join(format!("asound/card{card}/pcm{device}c"));
    let mut found: Vec<Holder> = Vec::new();
    for sub in 0..MAX_SUBSTREAMS {
        let Some(status) = read_small(&dir.join(format!("sub{sub}/status"))) else {
            break;
        };
        let Some(tid) = field(&status, "owner_pid").filter(|&t| t > 0) else {
            continue;
        };
        let holder = process_of(proc, tid);
        if !found.iter().any(|h| h.pid == holder.pid) {
            found.push(holder);
        }
    }
    found
}

/// The process thread `tid` belongs to, with its name when readable.
fn process_of(proc: &Path, tid: u32) -> Holder {
    let tgid = read_small(&proc.join(format!("{tid}/status"))).and_then(|s| field(&s, "Tgid"));
    let pid = tgid.unwrap_or(tid);
    let name = read_small(&proc.join(format!("{pid}/comm")))
        .map(|c| {
            // Printable ASCII only: a name is shown in terminals, and a
            // control or bidirectional character could rewrite the line.
            c.trim_end()
                .chars()
                .map(|c| {
                    if c.is_ascii_graphic() || c == ' ' {
                        c
                    } else {
                        '?'
                    }
                })
                .take(32)
                .collect()
        })
        .unwrap_or_default();
    Holder {
        pid,
        thread: tgid.is_none(),
        name,
        unit: tgid.and_then(|p| unit_of(proc, p)).unwrap_or_default(),
    }
}

/// The systemd service process `pid` runs in, from its control group
/// (`/proc/PID/cgroup`: cgroup v2's `0::/system.slice/phase4.service`, or
/// v1's `name=systemd` hierarchy): the innermost `.service` of the path, so
/// a user's `pipewire.service` is named rather than its `user@1000.service`.
/// `None` outside any service (a login session's `session-3.scope`, no
/// systemd) and for a name that is not a plain unit name.
fn unit_of(proc: &Path, pid: u32) -> Option<String> {
    let text = read_small(&proc.join(format!("{pid}/cgroup")))?;
    let path = text.lines().find_map(|l| {
        l.strip_prefix("0::")
            .or_else(|| l.split_once(":name=systemd:").map(|(_, p)| p))
    })?;
    let unit = path
        .trim_end()
        .rsplit('/')
        .find(|c| c.len() > ".service".len() && c.ends_with(".service"))?;
    // What systemd allows in a unit name; anything else (a terminal
    // escape in a hand-made cgroup's name) is not shown.
    let plain = unit.len() <= MAX_UNIT
        && unit
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@:\\".contains(&b));
    plain.then(|| unit.to_string())
}

/// The number after `key` and a colon on one of `text`'s lines.
fn field(text: &str, key: &str) -> Option<u32> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim().parse().ok())?
    })
}

/// Up to [`MAX_READ`] bytes of a file, as text (a name cut inside a
/// character by the kernel's 16-byte limit still reads).
fn read_small(path: &Path) -> Option<String> {
    let mut b = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_READ)
        .read_to_end(&mut b)
        .ok()?;
    Some(String::from_utf8_lossy(&b).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A `/proc` with card 1 (`Device`), whose capture device 0 has two
    /// substreams open by threads of two processes, and one closed.
    fn fake_proc() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        let pcm = p.join("asound/card1/pcm0c");
        for (sub, status) in [
            (0, "state: RUNNING\nowner_pid   : 501\ntrigger_time: 1.0\n"),
            (1, "closed\n"),
            (2, "state: PREPARED\nowner_pid   : 777\n"),
            (3, "state: RUNNING\nowner_pid   : 502\n"),
        ] {
            fs::create_dir_all(pcm.join(format!("sub{sub}"))).unwrap();
            fs::write(pcm.join(format!("sub{sub}/status")), status).unwrap();
        }
        std::os::unix::fs::symlink("card1", p.join("asound/Device")).unwrap();
        // Threads 501 and 502 of process 500; 777 is a process whose name
        // carries a terminal escape.
        for (tid, tgid) in [(501, 500), (502, 500), (777, 777)] {
            fs::create_dir_all(p.join(format!("{tid}"))).unwrap();
            fs::write(
                p.join(format!("{tid}/status")),
                format!("Name:\tx\nTgid:\t{tgid}\nPid:\t{tid}\n"),
            )
            .unwrap();
        }
        fs::create_dir_all(p.join("500")).unwrap();
        fs::write(p.join("500/comm"), "pipewire\n").unwrap();
        // An escape, and a right-to-left override cut by the kernel's
        // 16-byte limit.
        fs::write(p.join("777/comm"), b"ev\x1b[2Jil\xe2\x80\n").unwrap();
        d
    }

    #[test]
    fn the_programs_holding_a_device_are_named_once_each() {
        let d = fake_proc();
        let held = holders(d.path(), 1, 0);
        let want = |pid, name: &str| Holder {
            pid,
            thread: false,
            name: name.into(),
            unit: String::new(),
        };
        assert_eq!(held, vec![want(500, "pipewire"), want(777, "ev?[2Jil?")]);
        assert_eq!(held[0].to_string(), "pipewire (pid 500)");
        // Other devices and cards: nothing.
        assert!(holders(d.path(), 1, 1).is_empty());
        assert!(holders(d.path(), 0, 0).is_empty());
        // A process whose name cannot be read.
        fs::remove_file(d.path().join("500/comm")).unwrap();
        assert_eq!(holders(d.path(), 1, 0)[0].to_string(), "process 500");
        // A thread whose process cannot be read (another user's, behind
        // the service's ProtectProc=invisible) is named by its own id.
        fs::remove_dir_all(d.path().join("777")).unwrap();
        assert_eq!(
            holders(d.path(), 1, 0)[1].to_string(),
            "the program with thread 777"
        );
    }

    #[test]
    fn a_holder_is_named_with_the_service_it_runs_in() {
        let d = fake_proc();
        let cgroup = |pid: u32, text: &[u8]| {
            fs::write(d.path().join(format!("{pid}/cgroup")), text).unwrap()
        };
        let shown = || holders(d.path(), 1, 0)[0].to_string();
        // cgroup v2: the system's service, and a user's (the innermost).
        cgroup(500, b"0::/system.slice/phase4.service\n");
        assert_eq!(shown(), "pipewire (pid 500, phase4.service)");
        cgroup(
            500,
            b"0::/user.slice/user-1000.slice/user@1000.service/session.slice/pipewire.service\n",
        );
        assert_eq!(shown(), "pipewire (pid 500, pipewire.service)");
        // cgroup v1's systemd hierarchy; a template instance.
        cgroup(
            500,
            b"12:pids:/\n1:name=systemd:/system.slice/phase4@2.service\n",
        );
        assert_eq!(shown(), "pipewire (pid 500, phase4@2.service)");
        // Started by hand in a login session, or no systemd: no unit.
        cgroup(500, b"0::/user.slice/user-1000.slice/session-3.scope\n");
        assert_eq!(shown(), "pipewire (pid 500)");
        cgroup(500, b"0::/\n");
        assert_eq!(shown(), "pipewire (pid 500)");
        // A name that is not a plain unit name is not shown.
        cgroup(500, b"0::/system.slice/a\x1b[2Jb.service\n");
        assert_eq!(shown(), "pipewire (pid 500)");
        cgroup(
            500,
            format!("0::/system.slice/{}.service\n", "a".repeat(80)).as_bytes(),
        );
        assert_eq!(shown(), "pipewire (pid 500)");
        cgroup(500, b"0::/system.slice/.service\n");
        assert_eq!(shown(), "pipewire (pid 500)");
        // A process whose name cannot be read still gets its unit.
        cgroup(500, b"0::/system.slice/phase4.service\n");
        fs::remove_file(d.path().join("500/comm")).unwrap();
        assert_eq!(shown(), "process 500 of phase4.service");
    }

    #[test]
    fn cards_are_found_by_number_or_id_and_nothing_else() {
        let d = fake_proc();
        let asound = d.path().join("asound");
        assert_eq!(card_index(&asound, "1"), Some(1));
        assert_eq!(card_index(&asound, "Device"), Some(1));
        for bad in ["Other", "", "../asound/Device", "Device/", "a b", "card1"] {
            assert_eq!(card_index(&asound, bad), None, "{bad}");
        }
    }
}
