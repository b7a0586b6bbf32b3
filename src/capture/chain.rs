//! What an open PCM's plugin chain ends in, from alsa-lib's own
//! description of it (`snd_pcm_dump`): whether it runs on a device's
//! clock, and which sound cards' devices it holds. A PCM's name says
//! neither: `default`, `plughw:1` or a user's own definition can be
//! anything a configuration makes of them.

use crate::stats::HwDevice;
use alsa::pcm::PCM;

/// Whether a PCM runs on a clock, judged by what its plugin chain ends in.
///
/// `dump` is alsa-lib's own description of the open PCM (`snd_pcm_dump`):
/// one header per plugin, each slave introduced by `Slave:`. A chain that
/// reaches a kernel device (`Hardware PCM`, also behind `plug`, `dsnoop`,
/// `file` or any other converter) has the device's period clock. A chain
/// whose only end is the `null` plugin has none: its poll is always ready
/// and data comes as fast as it is read (the `file` plugin with an
/// `infile`, the test devices). Anything else ends in an external I/O
/// plugin or a server (`jack`, `pulse`, PipeWire's ALSA plugin), which
/// delivers periods on its server's clock. The PCM's name is never looked
/// at: a name says nothing about what a configuration makes of it.
pub fn has_clock(dump: &str) -> bool {
    let mut null = false;
    for h in headers(dump) {
        if h.starts_with("Hardware PCM") {
            return true;
        }
        null |= h.starts_with("Null PCM");
    }
    !null
}

/// The lines of a PCM's description, each plugin's header without the
/// "Plug PCM: " or "Slave: " before it.
fn headers(dump: &str) -> impl Iterator<Item = &str> {
    dump.lines().map(|l| {
        let l = l.trim_start();
        let l = l.strip_prefix("Plug PCM: ").unwrap_or(l);
        match l.strip_prefix("Slave") {
            // "Slave: X" and "Slave #N: X" (the multi plugin).
            Some(rest) => rest.split_once(": ").map_or("", |(_, x)| x),
            None => l,
        }
    })
}

/// The sound cards' devices a PCM's chain ends in, from alsa-lib's
/// description of it (`dump`, as for [`has_clock`]): each "Hardware PCM
/// card N 'Name' device M subdevice S" line, behind any plugin (`plug`,
/// `softvol`, `dsnoop`, ...). A configuration's `default` or `plughw:1`
/// names no card the way a listing does (`hw:CARD=Device,DEV=0`); this is
/// how the listing knows it is the same device. The ids are left empty
/// ([`card_id`] fills them in).
pub fn hardware(dump: &str) -> Vec<HwDevice> {
    let mut hw: Vec<HwDevice> = Vec::new();
    for line in headers(dump) {
        let Some(rest) = line.strip_prefix("Hardware PCM card ") else {
            continue;
        };
        let card = rest.split(' ').next().and_then(|n| n.parse().ok());
        // The card's name is quoted and may hold anything: the device is
        // the number after the last " device ".
        let device = rest
            .rsplit_once(" device ")
            .and_then(|(_, d)| d.split(' ').next())
            .and_then(|n| n.parse().ok());
        let (Some(card), Some(device)) = (card, device) else {
            continue;
        };
        if hw.len() < 8 && !hw.iter().any(|h| h.card == card && h.device == device) {
            hw.push(HwDevice {
                card,
                id: String::new(),
                device,
            });
        }
    }
    hw
}

/// Card `card`'s id, asked of its control device (empty if it cannot be
/// opened).
pub fn card_id(card: u32) -> String {
    alsa::ctl::Ctl::new(&format!("hw:{card}"), false)
        .and_then(|ctl| ctl.card_info().and_then(|i| i.get_id().map(String::from)))
        .unwrap_or_default()
}

/// alsa-lib's description of an open PCM (empty if it cannot give one).
pub fn describe(pcm: &PCM) -> String {
    let Ok(mut out) = alsa::Output::buffer_open() else {
        return String::new();
    };
    if pcm.dump(&mut out).is_err() {
        return String::new();
    }
    out.buffer_string(|b| String::from_utf8_lossy(b).into_owned())
}

#[cfg(test)]
mod tests {
    use super::{hardware, has_clock};
    use crate::stats::HwDevice;

    // Shapes of `snd_pcm_dump` output as alsa-lib 1.2 prints them (setup
    // lines shortened).
    const SETUP: &str =
        "Its setup is:\n  stream       : CAPTURE\n  access       : MMAP_INTERLEAVED\n";

    fn dump(headers: &[&str]) -> String {
        let mut s = String::new();
        for (i, h) in headers.iter().enumerate() {
            if i > 0 && !h.starts_with("Slave") {
                s.push_str("Slave: ");
            }
            s.push_str(h);
            s.push('\n');
            s.push_str(SETUP);
        }
        s
    }

    #[test]
    fn chains_ending_in_the_null_plugin_have_no_clock() {
        assert!(!has_clock(&dump(&["Null PCM"])));
        assert!(!has_clock(&dump(&[
            "File PCM (file=/dev/null)\nFinal file PCM (file=/dev/null)",
            "Null PCM"
        ])));
        assert!(!has_clock(&dump(&[
            "Plug PCM: File PCM (file=/dev/null)",
            "Null PCM"
        ])));
    }

    #[test]
    fn chains_reaching_a_kernel_device_have_its_clock() {
        let hw = "Hardware PCM card 0 'Dummy' device 0 subdevice 0";
        assert!(has_clock(&dump(&[hw])));
        assert!(has_clock(&dump(&[
            "Plug PCM: Linear conversion PCM (S32_LE)",
            hw
        ])));
        assert!(has_clock(&dump(&["Direct Snoop PCM", hw])));
        assert!(has_clock(&dump(&["File PCM (file=/tmp/x)", hw])));
        // The multi plugin over null and hardware runs on the hardware.
        assert!(has_clock(
            "Multi PCM\nSlave #0: Null PCM\nIts setup is:\nSlave #1: Hardware PCM card 1 'x' device 0 subdevice 0\n"
        ));
    }

    #[test]
    fn external_plugins_and_servers_have_their_servers_clock() {
        // ioplug devices print their own name: whatever it is, it is not the
        // null plugin, so the PCM runs on its server's clock.
        for leaf in [
            "ALSA <-> JACK PCM I/O Plugin",
            "ALSA <-> PulseAudio PCM I/O Plugin",
            "ALSA <-> PipeWire PCM I/O Plugin",
            "Shm PCM",
        ] {
            assert!(has_clock(&dump(&[leaf])), "{leaf}");
            assert!(
                has_clock(&dump(&["Plug PCM: Rate conversion PCM (44100)", leaf])),
                "{leaf}"
            );
        }
        // A name that merely mentions a null device does not count.
        assert!(has_clock(&dump(&["my Null PCM-like plugin name"])));
    }

    #[test]
    fn the_cards_devices_behind_the_plugins_are_found() {
        let on = |card, device| HwDevice {
            card,
            id: String::new(),
            device,
        };
        let hw = "Hardware PCM card 1 'USB Audio Device' device 0 subdevice 0";
        assert_eq!(hardware(&dump(&[hw])), vec![on(1, 0)]);
        assert_eq!(
            hardware(&dump(&[
                "Plug PCM: Linear conversion PCM (S32_LE)",
                "Soft volume PCM",
                "Direct Snoop PCM",
                hw
            ])),
            vec![on(1, 0)]
        );
        // A quoted name that says " device " itself.
        assert_eq!(
            hardware(&dump(&[
                "Hardware PCM card 2 'my device 7 device box' device 3 subdevice 0"
            ])),
            vec![on(2, 3)]
        );
        // Both ends of the multi plugin, once each.
        assert_eq!(
            hardware("Multi PCM\nSlave #0: Hardware PCM card 0 'a' device 1 subdevice 0\nSlave #1: Hardware PCM card 3 'b' device 0 subdevice 0\nSlave #2: Hardware PCM card 0 'a' device 1 subdevice 1\n"),
            vec![on(0, 1), on(3, 0)]
        );
        for none in [
            dump(&["Null PCM"]),
            dump(&["ALSA <-> PulseAudio PCM I/O Plugin"]),
            dump(&["Hardware PCM card x 'a' device 0 subdevice 0"]),
            dump(&["Hardware PCM card 0 'a' device"]),
            String::new(),
        ] {
            assert_eq!(hardware(&none), vec![], "{none}");
        }
    }
}
