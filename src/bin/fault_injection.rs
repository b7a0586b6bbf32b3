//! `phase4-fault-injection`: the `phase4` command built with the test-only
//! `fault-injection` feature (a switch that hangs a pipeline thread on
//! demand, `PHASE4_FAULT_HANG`), for the end-to-end tests. A binary of its
//! own, so building it never replaces `target/release/phase4` while other
//! suites run that one; never packaged.

#[path = "../main.rs"]
mod phase4_main;

fn main() -> std::process::ExitCode {
    phase4_main::main()
}
