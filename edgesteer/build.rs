//! Link-time code layout for the release binary.
//!
//! The kernel maps a binary's code into a process 64 KiB at a time around
//! each page it runs (fault-around), so the functions a proxy runs at start
//! and per request, 3.8 MB scattered over 16.9 MB of code, kept about 9 MB
//! of it resident: over half the idle proxy's RSS. `link-order.txt` lists those
//! functions (by `scripts/link-order.sh`, from a profiled run), and the
//! linker places them first and together, hottest first.
//!
//! The list is a layout hint, not a contract: a symbol it names that the
//! build does not have is skipped by the linker without a word, and a
//! function it misses lands where it would have anyway, so a stale list
//! costs memory, never correctness. Its names carry hashes that change with
//! the toolchain, `Cargo.lock` and the feature set, so it is made from the
//! build this repository ships (rustc 1.95, as in CI and the Dockerfile;
//! `-p edgesteer` alone builds the same crates as with the benches), and
//! `scripts/link-order.sh check` says how much of it a binary has.
//!
//! Release builds only, and only when the linker takes the option: a probe
//! links an empty program with it first (rustc's bundled LLD, the default on
//! x86_64 Linux since 1.90, does; GNU ld and gold do not, and the build goes
//! on without it). `EDGESTEER_LINK_ORDER=0` (or `off`) turns it off.

use std::env;
use std::path::Path;
use std::process::{Command, Stdio};

fn main() {
    println!("cargo:rerun-if-changed=link-order.txt");
    println!("cargo:rerun-if-env-changed=EDGESTEER_LINK_ORDER");
    let release = env::var("PROFILE").is_ok_and(|p| p == "release");
    let off = env::var("EDGESTEER_LINK_ORDER").is_ok_and(|v| matches!(v.as_str(), "0" | "off"));
    let (Ok(dir), Some(out)) = (env::var("CARGO_MANIFEST_DIR"), env::var_os("OUT_DIR")) else {
        return;
    };
    let list = Path::new(&dir).join("link-order.txt");
    if !release || off || !list.is_file() {
        return;
    }
    let args = [
        "-Xlinker".to_owned(),
        format!("--symbol-ordering-file={}", list.display()),
        "-Xlinker".to_owned(),
        "--no-warn-symbol-ordering".to_owned(),
    ];
    if linker_takes(&args, Path::new(&out)) {
        for arg in &args {
            println!("cargo:rustc-link-arg-bins={arg}");
        }
    } else {
        println!(
            "cargo:warning=the linker does not take --symbol-ordering-file (not LLD?): \
             the release binary is linked without the code layout of link-order.txt"
        );
    }
}

/// Whether rustc, with this build's target and flags, links an empty
/// program with `args` for the linker.
fn linker_takes(args: &[String], out: &Path) -> bool {
    let source = out.join("link_order_probe.rs");
    if std::fs::write(&source, "fn main() {}\n").is_err() {
        return false;
    }
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let mut probe = Command::new(rustc);
    probe
        .arg(&source)
        .arg("-o")
        .arg(out.join("link_order_probe"));
    if let Ok(target) = env::var("TARGET") {
        probe.arg("--target").arg(target);
    }
    if let Ok(flags) = env::var("CARGO_ENCODED_RUSTFLAGS") {
        probe.args(flags.split('\u{1f}').filter(|f| !f.is_empty()));
    }
    for arg in args {
        probe.arg("-C").arg(format!("link-arg={arg}"));
    }
    probe
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
