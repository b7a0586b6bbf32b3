//! `phase4 devices`: sound cards first, each probed for channels, rates and
//! formats; ALSA's plugin devices (pulse, jack, dmix, …) after them, listed
//! by name and probed only with `--all`. Library chatter on standard error
//! while probing (alsa-lib's and libjack's own messages) is silenced: this
//! command's output is the listing.

use crate::capture::devices::{hints_or_why, is_card, probe};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Print the listing to standard output.
pub fn print(all: bool) {
    let (names, failed) = hints_or_why();
    if let Some(why) = failed {
        let _ = writeln!(std::io::stderr(), "phase4: {why}");
    }
    let (cards, plugins): (Vec<_>, Vec<_>) = names.into_iter().partition(|(n, _)| is_card(n));
    let out = std::io::stdout();
    let mut out = out.lock();
    let probed_cards: Vec<_> = quiet(|| cards.iter().map(|(n, d)| (n, d, probe(n))).collect());
    let usable = probed_cards.iter().filter(|(_, _, r)| r.is_ok()).count();
    let _ = writeln!(out, "Sound cards ({usable} usable for capture):");
    if probed_cards.is_empty() {
        let _ = writeln!(out, "  none: ALSA sees no sound card on this machine");
    }
    for (name, desc, r) in &probed_cards {
        let _ = match r {
            Ok((ch, rates, formats)) => writeln!(
                out,
                "  {name}\n      {desc}\n      channels {}, rates {}, formats {}",
                range(*ch),
                range(*rates),
                formats.join(" ")
            ),
            Err(e) => writeln!(
                out,
                "  {name}  (cannot capture now: {e}{})\n      {desc}",
                busy_hint(name, e)
            ),
        };
    }
    let _ = writeln!(
        out,
        "\nALSA plugin devices{}:",
        if all {
            ""
        } else {
            " (not probed; --all probes them)"
        }
    );
    if all {
        let probed: Vec<_> = quiet(|| plugins.iter().map(|(n, d)| (n, d, probe(n))).collect());
        for (name, desc, r) in &probed {
            let _ = match r {
                Ok((ch, rates, formats)) => writeln!(
                    out,
                    "  {name}  {desc}\n      channels {}, rates {}, formats {}",
                    range(*ch),
                    range(*rates),
                    formats.join(" ")
                ),
                Err(e) => writeln!(out, "  {name}  (unavailable: {e})"),
            };
        }
    } else {
        let list: Vec<&str> = plugins.iter().map(|(n, _)| n.as_str()).collect();
        let _ = writeln!(out, "  {}", list.join(", "));
    }
    let _ = writeln!(
        out,
        "\nPut a name in audio.device of /etc/phase4/phase4.toml, or pick it in the web UI."
    );
}

/// Who has a busy card open, as the kernel says
/// ([`crate::capture::holders`]); when that cannot be read, what "busy"
/// most likely means: a card captures for one program at a time, and the
/// service may be that program.
fn busy_hint(name: &str, e: &str) -> String {
    let held = crate::capture::holders::busy_detail(name, e);
    if held.contains("phase4") {
        format!("{held}: if that is the service, its web UI lists the card in use")
    } else if !held.is_empty() {
        held
    } else if e.contains("busy") || e.contains("EBUSY") {
        "; another program has it open, perhaps the phase4 service: its web UI lists the card in use".into()
    } else {
        String::new()
    }
}

fn range(r: Option<(u32, u32)>) -> String {
    match r {
        Some((a, b)) if a == b => a.to_string(),
        Some((a, b)) => format!("{a}-{b}"),
        None => "?".into(),
    }
}

/// Run `f` with standard error pointed at /dev/null (this is a one-shot
/// command on the main thread; nothing else writes meanwhile).
fn quiet<T>(f: impl FnOnce() -> T) -> T {
    let _ = std::io::stderr().flush();
    // SAFETY: dup of fd 2 gives a new descriptor we own (or -1, checked).
    let saved = unsafe { libc::dup(2) };
    let null = std::fs::OpenOptions::new().write(true).open("/dev/null");
    if saved < 0 || null.is_err() {
        if saved >= 0 {
            // SAFETY: we own `saved` and close it once.
            unsafe { libc::close(saved) };
        }
        return f();
    }
    // SAFETY: `saved` is a descriptor we own from the dup above.
    let saved = unsafe { OwnedFd::from_raw_fd(saved) };
    if let Ok(null) = &null {
        // SAFETY: both descriptors are valid; dup2 replaces fd 2.
        unsafe { libc::dup2(null.as_raw_fd(), 2) };
    }
    let r = f();
    // SAFETY: restores the original standard error from our saved copy.
    unsafe { libc::dup2(saved.as_raw_fd(), 2) };
    r
}
