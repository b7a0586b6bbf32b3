//! The OSC input port (`oscquery.input-port`), from a datagram on the wire
//! to a checked command: the size bound, rosc's decoder, the bundle
//! flattening, the `/phase4/auth` check and `command_for` (the setting's
//! address lookup, its argument conversion and the control thread's
//! validation). Nothing may panic; one datagram gives at most
//! `MAX_PER_PACKET` messages; only the right token opens a session, and a
//! wrong one after it does not close it; a
//! refusal's reason stays short; what passes is a settings command.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phase4::config::Config;
use phase4::control::device::shorten;
use phase4::control::secret::Secret;
use phase4::rig::oscquery::input::{command_for, decode, Gate, Refusal, AUTH, MAX_PER_PACKET};
use phase4::rig::oscquery::Live;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

const TOKEN: &str = "fuzz-token-0123456789abcdef";

fn live() -> &'static Live {
    static LIVE: OnceLock<Live> = OnceLock::new();
    LIVE.get_or_init(|| Live {
        latest: Arc::default(),
        meta: Arc::new(Mutex::default()),
        shared: None,
        config: Arc::new(Config::default()),
    })
}

fuzz_target!(|data: &[u8]| {
    let mut msgs = Vec::new();
    if !decode(data, &mut msgs) {
        assert!(msgs.is_empty());
        return;
    }
    assert!(msgs.len() <= MAX_PER_PACKET);
    let from: SocketAddr = "192.0.2.7:9000".parse().unwrap();
    let mut gate = Gate::new(Secret::configured(TOKEN), false);
    let now = Instant::now();
    // A session, once the right token opened it, stays open: a wrong token
    // later in the same datagram must not close it (nor open one alone).
    let mut authed = false;
    for m in &msgs {
        if m.addr == AUTH {
            let opened = gate.auth(from, &m.args, now);
            let right = matches!(m.args.as_slice(), [rosc::OscType::String(t)] if t == TOKEN);
            assert_eq!(opened, right);
            authed |= right;
            assert_eq!(gate.allows(from, false, now), authed);
            continue;
        }
        assert!(shorten(&m.addr).len() <= 256);
        for sr in [8_000.0, 48_000.0, 384_000.0] {
            match command_for(live(), m, sr) {
                Ok(cmd) => assert!(phase4::control::validate(&cmd, sr).is_none()),
                Err(Refusal::Invalid(e)) => assert!(!e.is_empty() && e.len() < 512),
                Err(_) => {}
            }
        }
    }
});
