//! The WebSocket control decoder, from bytes on the wire to a checked
//! command: tungstenite's frame reader (configured as the server configures
//! it) → text → `protocol::parse` → `Command` → `control::validate`, and the
//! typed names behind it (`PresetName`, `ListedDevice`). Nothing may panic;
//! a refusal's reason stays short; a name that passes cannot reach outside
//! what it names.
//!
//! The first byte picks the mode: odd, the rest is a stream of client
//! frames; even, the rest is one text message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phase4::control::device::DeviceCatalog;
use phase4::control::presets::PresetName;
use phase4::control::{clamp, validate, Command};
use phase4::transport::ws::protocol::{parse, Action, Outbound};
use std::io::{Cursor, Read, Write};
use tungstenite::protocol::{Role, WebSocket, WebSocketConfig};

/// Client bytes in, server bytes discarded.
struct Wire(Cursor<Vec<u8>>);

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn text_message(text: &str) {
    let msg = match parse(text) {
        Ok(m) => m,
        Err(reason) => {
            assert!(!reason.is_empty());
            assert!(Outbound::error(reason).to_json().len() < 1024);
            return;
        }
    };
    let Action::Command(cmd) = msg else {
        return;
    };
    for sr in [8_000.0, 48_000.0, 384_000.0] {
        let mut c = cmd.clone();
        let _ = clamp(&mut c, sr);
        let _ = validate(&c, sr);
    }
    match &cmd {
        Command::SavePreset { name }
        | Command::LoadPreset { name }
        | Command::DeletePreset { name } => {
            if let Ok(p) = PresetName::parse(name) {
                let n = p.as_str();
                assert!(!n.contains(['/', '\\', '.', '\0']) && !n.is_empty() && n.len() <= 64);
            }
        }
        Command::SetDevice { name: Some(name), .. } => {
            let listed = vec!["default".to_string(), "hw:CARD=Device,DEV=0".to_string()];
            let catalog = DeviceCatalog::new(listed.clone(), "plughw:CARD=Device,DEV=0");
            if let Ok(d) = catalog.admit(name) {
                assert!(listed.iter().any(|l| l == d.as_str()) || d.as_str() == "plughw:CARD=Device,DEV=0");
            }
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        if let Ok(text) = std::str::from_utf8(rest) {
            text_message(text);
        }
        return;
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(4 * 65_536))
        .max_frame_size(Some(4 * 65_536))
        .read_buffer_size(8 * 1024);
    let mut ws = WebSocket::from_raw_socket(Wire(Cursor::new(rest.to_vec())), Role::Server, Some(config));
    for _ in 0..1000 {
        match ws.read() {
            Ok(tungstenite::Message::Text(t)) => text_message(&t),
            Ok(_) => {}
            Err(_) => break,
        }
    }
});
