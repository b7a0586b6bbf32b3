use super::*;

#[test]
fn empty_text_gives_defaults() {
    assert_eq!(load_str("").unwrap(), Config::default());
}

#[test]
fn several_problems_are_reported_at_once() {
    let text = "[audio]\nblock-frames = 3\nbogus = 1\nformat = \"S8\"\n\n[dsp.low]\nlo-hz = -5.0\n\n[autoscale]\nstrength = 2.0\n";
    let err = load_str(text).unwrap_err();
    let ConfigError::Invalid { problems, .. } = err else {
        panic!("expected Invalid")
    };
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
    let err = load_str("[dsp.mid]\n# a NUL \0 here\nlo-hz = 300.0\n").unwrap_err();
    let ConfigError::Invalid { problems, .. } = err else {
        panic!("expected Invalid")
    };
    let p = &problems[0];
    assert_eq!(p.line, Some(2));
    assert!(p.allowed.contains("control character"), "{p:?}");
    assert!(!p.to_string().chars().any(|c| c.is_control()), "{p}");
}

#[test]
fn syntax_error_names_the_line() {
    let err = load_str("[audio]\ndevice = \n").unwrap_err();
    let ConfigError::Invalid { problems, .. } = err else {
        panic!("expected Invalid")
    };
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
