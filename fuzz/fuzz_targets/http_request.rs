//! The HTTP request handling that is phase4's own (hyper parses the
//! request): the URL path → file resolution, the built-in UI lookup, and
//! the Host / Origin checks against DNS rebinding, and a download's `Range`
//! and `If-Range`. Nothing may panic; a path that resolves names a file
//! inside the folder; only this machine's names pass the Host check; a
//! range served is inside the file.
//!
//! Input: `path \n host \n origin \n range \n if-range` (missing parts are
//! absent headers).
#![no_main]

use libfuzzer_sys::fuzz_target;
use phase4::transport::hosts::{split_host_port, HostCheck};
use phase4::transport::http::{relative_path, WebRoot, EMBEDDED};
use phase4::transport::http_recordings::{part_of, Part, Validators};
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(5, '\n');
    let path = parts.next().unwrap_or("");
    let host = parts.next();
    let origin = parts.next();
    let range = parts.next();
    let if_range = parts.next();

    // File sizes from empty to the largest a u64 holds, with and without a
    // strong date (If-Range values are parsed as dates then).
    let etag = "\"1-2-3.4\"";
    for strong_date in [None, "Sat, 05 Dec 2026 10:00:00 GMT".parse().ok()] {
        let v = Validators { etag, strong_date };
        for total in [0, 1, 44, 1 << 20, u64::MAX] {
            match part_of(range, if_range, total, v) {
                Part::Range(first, last) => assert!(first <= last && last < total),
                Part::Whole => {}
                Part::Unsatisfiable => assert!(range.is_some()),
            }
        }
    }

    if let Some(rel) = relative_path(path) {
        assert!(!rel.starts_with('/'));
        for seg in rel.split('/') {
            assert!(!seg.is_empty() && !seg.starts_with('.'));
            assert!(!seg.contains(['\\', '%', '\0', ':']));
        }
        if let Some(body) = WebRoot::Embedded.get(&rel) {
            assert!(EMBEDDED.iter().any(|(p, b)| *p == rel && b.len() == body.len()));
        }
    }

    if let Some(h) = host {
        if let Some((name, _)) = split_host_port(h) {
            assert!(!name.is_empty() && !name.contains(['/', ' ', '@', '[', ']']));
        }
    }
    // One check per process: getifaddrs is not what is being fuzzed.
    static CHECK: OnceLock<std::sync::Mutex<HostCheck>> = OnceLock::new();
    let check = CHECK.get_or_init(|| {
        std::sync::Mutex::new(HostCheck::new(&["stage-pi.venue.lan".into()], "127.0.0.1"))
    });
    let mut check = check.lock().unwrap_or_else(|e| e.into_inner());
    if let Ok(allowed) = check.allowed_host(host) {
        // Names that pass are this machine's: never something ending in
        // an attacker's domain.
        assert!(!allowed.host.ends_with(".example") || allowed.host == "stage-pi.venue.lan");
    }
    let listed = vec!["https://studio.example".to_string()];
    if check.origin_allowed(origin, 8766, &listed) {
        if let Some(o) = origin {
            assert!(
                listed.iter().any(|l| l.eq_ignore_ascii_case(o.trim_end_matches('/')))
                    || o.ends_with(":8766")
                    || o.ends_with(":8766/")
            );
        }
    }
});
