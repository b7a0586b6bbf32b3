//! The configuration loader on arbitrary text: it must return a config or a
//! list of problems, never panic, and its problem list stays bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match phase4::config::load_str(text) {
        Ok(cfg) => {
            // Whatever loads is valid by construction.
            assert!(phase4::config::validate(&cfg).is_empty());
        }
        Err(phase4::config::ConfigError::Invalid { problems, .. }) => {
            assert!(!problems.is_empty());
            assert!(problems.len() <= phase4::config::MAX_PROBLEMS + 1);
        }
        Err(e) => panic!("load_str cannot fail with {e}"),
    }
});
