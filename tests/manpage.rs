//! The committed man page is the one the command-line definitions give.

include!("common/man.rs");

#[test]
fn the_man_page_matches_the_command_line() {
    let want = phase4_man();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/debian/phase4.1");
    let have = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        have == want,
        "debian/phase4.1 is out of date: run `cargo run --example gen-man > debian/phase4.1`"
    );
    for flag in [
        "duration",
        "check\\-config",
        "bins",
        "format",
        "loop",
        "all",
    ] {
        assert!(want.contains(flag), "man page lacks {flag}");
    }
    // Only phase4(1) is shipped: no references to pages of subcommands;
    // the synopsis of each subcommand that reads the configuration shows
    // --config, and only those (`devices` reads none).
    assert!(
        !want.contains("phase4\\-"),
        "man page refers to other pages"
    );
    for (sub, reads_config) in [("devices", false), ("token", true), ("analyze", true)] {
        let synopsis = want
            .lines()
            .find(|l| l.starts_with(&format!("\\fBphase4 {sub}\\fR [")))
            .unwrap_or_else(|| panic!("no synopsis for {sub}"));
        assert_eq!(
            synopsis.contains("\\-\\-config"),
            reads_config,
            "{synopsis}"
        );
    }
}
