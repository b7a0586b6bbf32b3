use super::*;

/// The problems loading `text` finds (it must find some).
fn problems_of(text: &str) -> Vec<Problem> {
    match load_str(text) {
        Err(ConfigError::Invalid { problems, .. }) => problems,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn empty_text_gives_defaults() {
    assert_eq!(load_str("").unwrap(), Config::default());
}

#[test]
fn several_problems_are_reported_at_once() {
    let text = "[audio]\nblock-frames = 3\nbogus = 1\nformat = \"S8\"\n\n[dsp.low]\nlo-hz = -5.0\n\n[autoscale]\nstrength = 2.0\n";
    let problems = problems_of(text);
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    for k in [
        "audio.bogus",
        "audio.format",
        "audio.block-frames",
        "dsp.low.lo-hz",
        "autoscale.strength",
    ] {
        assert!(keys.contains(&k), "{k} missing from {keys:?}");
    }
    let strength = problems
        .iter()
        .find(|p| p.key == "autoscale.strength")
        .unwrap();
    assert_eq!(strength.line, Some(10));
    assert!(strength.allowed.contains("0") && strength.allowed.contains("1"));
}

#[test]
fn a_control_character_in_a_comment_gets_a_message_and_is_not_quoted_raw() {
    let problems = problems_of("[dsp.mid]\n# a NUL \0 here\nlo-hz = 300.0\n");
    let p = &problems[0];
    assert_eq!(p.line, Some(2));
    assert!(p.allowed.contains("control character"), "{p:?}");
    assert!(!p.to_string().chars().any(|c| c.is_control()), "{p}");
}

#[test]
fn a_duplicate_table_is_one_problem_and_its_keys_are_not_blamed_on_the_table_above() {
    let text = "[audio]\nblock-frames = 256\n[health]\ninterval-s = 5.0\n[audio]\nblock-frames = 512\nperiods = 3\n[fft]\nenabled = true\nbogus = 1\n";
    let problems = problems_of(text);
    let keys: Vec<_> = problems.iter().map(|p| (p.key.as_str(), p.line)).collect();
    assert_eq!(
        keys,
        [("audio", Some(5)), ("fft.bogus", Some(10))],
        "{problems:?}"
    );
}

#[test]
fn a_bad_array_element_on_a_line_of_its_own_is_no_table_header() {
    // Blanking "to the next header" for it took the array's closing `]`
    // and hid every later problem (review w).
    let text = "[ui.layout]\nquadrants = [\n  \"bars\", \"lines\",\n  [\"scene\" \"fft\"],\n]\nsplit-x = 5.0\n[audio]\nblock-frames = 3\n";
    let problems = problems_of(text);
    let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
    assert!(keys.contains(&"ui.layout.split-x"), "{problems:?}");
    assert!(keys.contains(&"audio.block-frames"), "{problems:?}");
    assert!(!keys.contains(&""), "{problems:?}");
    // Each on its own line, not the table's (review w: "line 1:
    // ui.layout.split-x" for a key on line 6).
    let line = |key: &str| problems.iter().find(|p| p.key == key).and_then(|p| p.line);
    assert_eq!(line("ui.layout.split-x"), Some(6), "{problems:?}");
    assert_eq!(line("audio.block-frames"), Some(8), "{problems:?}");
}

#[test]
fn keys_checked_after_parsing_name_their_own_line() {
    // A multi-line array whose lines start with `[`, an array of tables,
    // an inline table, a dotted key and a quoted key: every problem found by
    // the range checks names the line its key is on.
    let text = "\
[ui.layout]
quadrants = [
  \"bars\",
  [
  ],
]
split-x = 5.0

[[osc.destinations]]
host = \"127.0.0.1\"
port = 9000

[[osc.destinations]]
host = \"127.0.0.1\"
port = 0

[dsp]
low = { lo-hz = 20.0, hi-hz = -1.0 }
mid.lo-hz = -5.0
\"high\".hi-hz = -2.0
";
    let problems = problems_of(text);
    let line = |key: &str| problems.iter().find(|p| p.key == key).and_then(|p| p.line);
    assert_eq!(line("ui.layout.split-x"), Some(7), "{problems:?}");
    assert_eq!(line("osc.destinations[1].port"), Some(15), "{problems:?}");
    assert_eq!(line("dsp.low.hi-hz"), Some(18), "{problems:?}");
    assert_eq!(line("dsp.mid.lo-hz"), Some(19), "{problems:?}");
    assert_eq!(line("dsp.high.hi-hz"), Some(20), "{problems:?}");
}

#[test]
fn syntax_error_names_the_line() {
    let problems = problems_of("[audio]\ndevice = \n");
    assert_eq!(problems[0].line, Some(2));
}
#[test]
fn integers_are_accepted_where_floats_are_expected() {
    let c = load_str("[dsp.low]\nlo-hz = 40\n").unwrap();
    assert_eq!(c.dsp.low.lo_hz, 40.0);
}

#[test]
fn every_unknown_section_is_reported_and_the_list_is_capped() {
    let mut text = String::from("[audio]\nblock-frames = 512\n");
    for i in 0..5000 {
        text.push_str(&format!("[bogus{i}]\nx = 1\n"));
    }
    let ConfigError::Invalid { problems, .. } = load_str(&text).unwrap_err() else {
        panic!("expected Invalid")
    };
    assert_eq!(problems.len(), MAX_PROBLEMS + 1);
    assert_eq!(problems[0].key, "bogus0");
    assert_eq!(problems[0].line, Some(3));
    assert_eq!(problems[1].key, "bogus1");
    let last = problems.last().unwrap();
    assert!(
        last.allowed
            .contains(&format!("{} more", 5000 - MAX_PROBLEMS)),
        "{last}"
    );
}

#[test]
fn wrong_types_are_each_reported_with_their_line() {
    let text = "[audio]\nblock-frames = \"big\"\nformat = \"S8\"\n[[osc.destinations]]\nhost = \"a\"\n[[osc.destinations]]\nport = \"x\"\n";
    let ConfigError::Invalid { problems, .. } = load_str(text).unwrap_err() else {
        panic!("expected Invalid")
    };
    let found: Vec<(&str, Option<usize>)> =
        problems.iter().map(|p| (p.key.as_str(), p.line)).collect();
    assert!(
        found.contains(&("audio.block-frames", Some(2))),
        "{found:?}"
    );
    assert!(found.contains(&("audio.format", Some(3))), "{found:?}");
    assert!(
        found.contains(&("osc.destinations[1].port", Some(7))),
        "{found:?}"
    );
}

#[test]
fn too_many_table_array_entries_are_refused() {
    let text = "[[osc.destinations]]\nport = 9000\n".repeat(MAX_TABLE_ARRAY + 1);
    let ConfigError::Invalid { problems, .. } = load_str(&text).unwrap_err() else {
        panic!("expected Invalid")
    };
    assert!(
        problems.iter().any(|p| p.key == "osc.destinations"),
        "{problems:?}"
    );
}

#[test]
fn devices_fifos_and_huge_files_are_not_read() {
    for path in ["/dev/zero", "/dev/null", "/"] {
        let e = load_file(Path::new(path)).unwrap_err();
        assert!(matches!(e, ConfigError::Io { .. }), "{path}: {e}");
    }
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates a node.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    assert!(load_file(&fifo)
        .unwrap_err()
        .to_string()
        .contains("regular"));
    let big = dir.path().join("big.toml");
    std::fs::write(&big, "#".repeat(MAX_CONFIG_BYTES as usize + 1)).unwrap();
    assert!(load_file(&big).unwrap_err().to_string().contains("larger"));
    let bin = dir.path().join("bin.toml");
    std::fs::write(&bin, b"[audio]\ndevice = \"\xff\"\n").unwrap();
    assert!(load_file(&bin).unwrap_err().to_string().contains("UTF-8"));
}

#[test]
fn many_syntax_errors_stop_after_a_bound() {
    let text = "x = \n".repeat(100);
    let ConfigError::Invalid { problems, .. } = load_str(&text).unwrap_err() else {
        panic!("expected Invalid")
    };
    assert_eq!(problems.len(), MAX_SYNTAX_ROUNDS + 1);
}

#[test]
fn a_download_link_lasts_between_ten_seconds_and_ten_minutes() {
    let ok = load_str("[record]\nlink-s = 10\n").unwrap();
    assert_eq!(ok.record.link_s, 10.0);
    for bad in ["9.5", "601", "nan", "-inf"] {
        let err = load_str(&format!("[record]\nlink-s = {bad}\n")).unwrap_err();
        let ConfigError::Invalid { problems, .. } = err else {
            panic!("expected Invalid for {bad}")
        };
        let p = problems.iter().find(|p| p.key == "record.link-s");
        let p = p.unwrap_or_else(|| panic!("{bad}: {problems:?}"));
        assert_eq!(p.line, Some(2));
    }
}

/// `s` as a TOML string (Rust's `{:?}` escapes are not all TOML's).
fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The keys (and lines) a text is refused for; empty when it loads.
fn refused(text: &str) -> Vec<(String, Option<usize>)> {
    match load_str(text) {
        Ok(_) => vec![],
        Err(ConfigError::Invalid { problems, .. }) => {
            problems.into_iter().map(|p| (p.key, p.line)).collect()
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn an_osc_prefix_must_be_a_valid_osc_address() {
    let long = format!("/{}", "a".repeat(super::super::net::MAX_OSC_PREFIX_BYTES));
    for bad in [
        "/au\u{0}dio",
        "/a#b*c?d,e{f}[g]\nh\ti",
        "/a b",
        "/a//b",
        "/audio/",
        "audio",
        "/a\u{1b}",
        &long,
        &format!("/{}", "x".repeat(100_000)),
    ] {
        let text = format!("[osc]\nprefix = {}\n", q(bad));
        assert_eq!(
            refused(&text),
            [("osc.prefix".to_string(), Some(2))],
            "{:?}",
            &bad[..bad.len().min(40)]
        );
        let ConfigError::Invalid { problems, .. } = load_str(&text).unwrap_err() else {
            panic!()
        };
        let shown = problems[0].to_string();
        assert!(
            shown.len() < 400 && !shown.chars().any(char::is_control),
            "{shown}"
        );
    }
    for good in [
        "/audio",
        "/stage/phase4",
        "/a-b_c.d/e~f!g",
        &long[..long.len() - 1],
    ] {
        let c = load_str(&format!("[osc]\nprefix = {}\n", q(good))).unwrap();
        assert_eq!(c.osc.prefix, good);
    }
}

#[test]
fn an_osc_destination_host_is_an_address_or_a_host_name() {
    for bad in [
        "a\u{0}b",
        "a b",
        "127.0.0.1:80",
        "http://x",
        "999.1.1.1",
        "-x",
        "",
        " 10.0.0.1",
        "0.0.0.0",
        "1.2.3",
    ] {
        let text = format!(
            "[[osc.destinations]]\nport = 9000\n\n[[osc.destinations]]\nport = 9001\nhost = {}\n",
            q(bad)
        );
        assert_eq!(
            refused(&text),
            [("osc.destinations[1].host".to_string(), Some(6))],
            "{bad:?}"
        );
    }
    for good in [
        "127.0.0.1",
        "192.168.1.255",
        "239.0.0.1",
        "::1",
        "[::1]",
        "ff02::1",
        "localhost",
        "vj-laptop.local",
        "stuck.p4test",
    ] {
        let c = load_str(&format!("[[osc.destinations]]\nhost = {}\n", q(good))).unwrap();
        assert_eq!(c.osc.destinations[0].host, good);
    }
}

#[test]
fn path_settings_in_a_file_must_be_absolute() {
    for (section, key) in [("state", "dir"), ("ws", "web-dir"), ("audio", "input")] {
        for bad in ["relstate", "./x", "../x", "~/x", "x/y.wav"] {
            let text = format!("[{section}]\n{key} = {}\n", q(bad));
            assert_eq!(
                refused(&text),
                [(format!("{section}.{key}"), Some(2))],
                "{text}"
            );
        }
        for good in ["", "/var/lib/phase4", "/srv/a b/x.wav"] {
            let text = format!("[{section}]\n{key} = {}\n", q(good));
            assert_eq!(refused(&text), [], "{text}");
        }
    }
    // Only the file's values: a relative `--input` is put over the loaded
    // configuration and means the shell's directory.
    let mut c = load_str("").unwrap();
    c.audio.input = "demo.wav".into();
    assert_eq!(crate::config::validate(&c), vec![]);
}

#[test]
fn a_long_unknown_key_names_its_own_line_and_is_shown_shortened() {
    let long = "k".repeat(200);
    let text = format!("[audio]\nblock-frames = 256\n\n\n{long} = 1\n{long}x = 2\n");
    let problems = problems_of(&text);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert_eq!(problems[0].line, Some(5), "{problems:?}");
    assert_eq!(problems[1].line, Some(6), "{problems:?}");
    assert!(problems[0].key.chars().count() <= 81 && problems[0].key.ends_with('…'));
    // At the top level too.
    let problems = problems_of(&format!("\n{long} = 1\n"));
    assert_eq!(problems[0].line, Some(2), "{problems:?}");
}
