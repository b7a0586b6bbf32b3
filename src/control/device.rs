//! Which capture devices may be opened on someone else's say-so.
//!
//! An ALSA PCM name is not a name: it is a small language. `file:'|cmd',raw`
//! runs a shell command, `file:FILE=/path` writes any file the service may
//! write, and `{ type ... }` inline definitions build arbitrary plugin chains.
//! So a device name that comes from the network (`set_device`) or from the
//! state file is never passed on as text. It becomes a [`ListedDevice`] only
//! when it is, byte for byte, one of the names phase4 itself enumerated from
//! alsa-lib's hints (what `phase4 devices` and `list_devices` show) or the
//! device the administrator configured (`audio.device` in the config file, or
//! `--device`). Device switching takes a `ListedDevice`, so nothing behind
//! this module can be handed a raw string.
//!
//! Runs on the control thread and at start-up.

use std::ops::Deref;

/// Longest device name worth looking up; anything longer is refused
/// before any comparison.
pub use crate::config::MAX_DEVICE_NAME;

/// Whether `name` has the shape of alsa-lib's hint for a sound card's PCM
/// (`hw:CARD=USB,DEV=0`, `plughw:CARD=x,DEV=1`, `sysdefault:CARD=x`): a
/// card that can be away for a while (unplugged, enumerated late). A
/// shape, not a permission: such a name is still opened only when it is
/// listed ([`DeviceCatalog::admit`]).
pub fn is_card_name(name: &str) -> bool {
    let Some((iface, rest)) = name.split_once(":CARD=") else {
        return false;
    };
    let (card, dev) = match rest.split_once(",DEV=") {
        Some((c, d)) => (c, Some(d)),
        None => (rest, None),
    };
    let word = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    word(iface, 16)
        && iface
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && word(card, 32)
        && dev
            .is_none_or(|d| !d.is_empty() && d.len() <= 2 && d.bytes().all(|b| b.is_ascii_digit()))
}

/// A PCM name that phase4 listed itself or the administrator configured.
/// Only [`DeviceCatalog::admit`] makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedDevice(String);

impl ListedDevice {
    /// The PCM name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for ListedDevice {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ListedDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The names a device request is checked against.
#[derive(Clone, Debug, Default)]
pub struct DeviceCatalog {
    listed: Vec<String>,
    configured: String,
}

impl DeviceCatalog {
    /// `listed`: the names phase4 enumerated; `configured`: the device the
    /// configuration names (trusted: the administrator wrote it).
    pub fn new(listed: Vec<String>, configured: &str) -> Self {
        DeviceCatalog {
            listed,
            configured: configured.to_string(),
        }
    }

    /// `name` as a [`ListedDevice`], or why it may not be opened.
    pub fn admit(&self, name: &str) -> Result<ListedDevice, String> {
        if name.is_empty() || name.len() > MAX_DEVICE_NAME {
            return Err(format!(
                "device name must be 1-{MAX_DEVICE_NAME} bytes; pick one from list_devices"
            ));
        }
        if name == self.configured || self.listed.iter().any(|l| l == name) {
            Ok(ListedDevice(name.to_string()))
        } else {
            Err(format!(
                "{:?} is not a device phase4 lists; pick one from list_devices (or configure it in audio.device)",
                shorten(name)
            ))
        }
    }
}

/// At most 64 characters of a name, for error messages and logs.
pub fn shorten(name: &str) -> String {
    let mut s: String = name.chars().take(64).collect();
    if s.len() < name.len() {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_sound_cards_hint_shape_is_a_card_name() {
        for good in [
            "hw:CARD=USB,DEV=0",
            "plughw:CARD=Audio_2,DEV=1",
            "sysdefault:CARD=X",
            "dsnoop:CARD=Device,DEV=0",
        ] {
            assert!(is_card_name(good), "{good}");
        }
        for bad in [
            "default",
            "hw:1",
            "file:'|sh -c id',raw",
            "hw:CARD=USB,DEV=0 ",
            "hw:CARD=U SB,DEV=0",
            "hw:CARD=USB,DEV=0,SUBDEV=1",
            "hw:CARD=,DEV=0",
            "HW:CARD=USB",
            "{ type hw card USB }:CARD=x",
            "hw:CARD=USB,DEV=x",
        ] {
            assert!(!is_card_name(bad), "{bad}");
        }
    }

    fn catalog() -> DeviceCatalog {
        DeviceCatalog::new(
            vec![
                "default".into(),
                "hw:CARD=Device,DEV=0".into(),
                "plughw:CARD=Device,DEV=0".into(),
            ],
            "sysdefault:CARD=Device",
        )
    }

    #[test]
    fn listed_and_configured_names_are_admitted() {
        let c = catalog();
        for ok in [
            "default",
            "hw:CARD=Device,DEV=0",
            "plughw:CARD=Device,DEV=0",
            "sysdefault:CARD=Device",
        ] {
            assert_eq!(c.admit(ok).map(|d| d.as_str().to_string()), Ok(ok.into()));
        }
    }

    #[test]
    fn pcm_language_payloads_are_refused() {
        let c = catalog();
        let long = "a".repeat(10_000);
        for bad in [
            "file:'|sh -c \"id >> x\"',raw",
            "file:FILE=/var/lib/phase4/state.toml",
            "file:'/tmp/x',raw",
            "plug:'file:\"|id\"'",
            "{ type file slave.pcm null file \"|id\" }",
            "default{}",
            "default ",
            " default",
            "default\n",
            "hw:CARD=Device,DEV=0\u{0}",
            "HW:CARD=Device,DEV=0",
            "hw:CARD=Device,DEV=0,foo",
            "hw:1,0",
            "null",
            "",
            &long,
        ] {
            assert!(c.admit(bad).is_err(), "{bad:?} admitted");
        }
    }

    #[test]
    fn error_messages_do_not_echo_huge_names() {
        let e = catalog().admit(&"x".repeat(200)).unwrap_err();
        assert!(e.len() < 200, "{e}");
    }
}
