//! Builds the small C shim that routes alsa-lib's error messages into
//! phase4's logging (csrc/alsa_errors.c: the handler alsa-lib wants is
//! variadic, which Rust cannot define).

fn main() {
    println!("cargo:rerun-if-changed=csrc/alsa_errors.c");
    cc::Build::new()
        .file("csrc/alsa_errors.c")
        .warnings(true)
        .extra_warnings(true)
        .compile("p4_alsa_errors");
}
