//! The runtime state file (`/var/lib/phase4/state.toml`), which anything
//! with write access to the state directory can leave behind: arbitrary
//! text layered over the configuration by `merge_text`. It must give a
//! state or a reason, never panic; a state it gives must yield a valid
//! configuration, survive its own round trip through `to_toml`, and stay
//! valid through a SIGHUP `rebase` onto an edited configuration.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phase4::config::{validate, Config};
use phase4::control::state::{merge_text, State};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = Config::default();
    let base = State::from_config(&config);
    let state = match merge_text(&base, text, &config) {
        Ok(s) => s,
        Err(reason) => {
            assert!(!reason.is_empty());
            return;
        }
    };
    assert!(validate(&state.apply(&config)).is_empty());
    let again = merge_text(&base, &state.to_toml(), &config).expect("a state's own text loads");
    assert_eq!(again.to_toml(), state.to_toml());
    let mut edited = config.clone();
    edited.dsp.mid.lo_hz = 300.0;
    let rebased = state.rebase(&config, &edited);
    assert_eq!(rebased.dsp.mid.lo_hz, 300.0);
});
