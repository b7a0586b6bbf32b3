// Shared by examples/gen-man.rs and tests/manpage.rs: render the man page
// with clap_mangen (a dev-dependency, so the shipped binary does not carry it).

/// The whole page.
pub fn phase4_man() -> String {
    phase4::cli::man_page(|cmd, sub| {
        let man = clap_mangen::Man::new(cmd.clone())
            .date("2026")
            .source(format!("phase4 {}", env!("CARGO_PKG_VERSION")))
            .manual("User Commands");
        let mut out = Vec::new();
        if sub.is_empty() {
            let _ = man.render_title(&mut out);
            let _ = man.render_name_section(&mut out);
            let _ = man.render_synopsis_section(&mut out);
            let _ = man.render_description_section(&mut out);
            let _ = man.render_options_section(&mut out);
            let mut subs = Vec::new();
            let _ = man.render_subcommands_section(&mut subs);
            // Named as typed (`phase4 devices`), described under COMMAND
            // below: no separate pages are shipped.
            let mut subs = String::from_utf8_lossy(&subs).into_owned();
            for sub in cmd.get_subcommands() {
                let name = sub.get_name();
                subs = subs.replace(
                    &format!("phase4\\-{name}(1)"),
                    &format!("\\fBphase4 {name}\\fR"),
                );
            }
            out.extend_from_slice(subs.as_bytes());
        } else {
            let mut o = Vec::new();
            let _ = man.render_synopsis_section(&mut o);
            let _ = man.render_options_section(&mut o);
            let text = String::from_utf8_lossy(&o)
                .replace(".SH SYNOPSIS", &format!(".SH COMMAND: {}", sub.to_uppercase()))
                .replace(".SH OPTIONS", ".SS Options");
            out.extend_from_slice(text.as_bytes());
        }
        String::from_utf8_lossy(&out).into_owned()
    })
}
