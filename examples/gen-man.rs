//! Writes the man page (debian/phase4.1) from the command-line definitions
//! in `phase4::cli`, so `--help` and the man page cannot drift apart:
//!
//!     cargo run --example gen-man > debian/phase4.1
//!
//! `tests/manpage.rs` fails when the committed page is out of date.

fn main() {
    print!("{}", phase4_man());
}

include!("../tests/common/man.rs");
