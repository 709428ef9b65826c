//! Link-time code layout for the release binary.
//!
//! The kernel maps a binary's code into a process 64 KiB at a time around
//! each page it runs (fault-around), so the functions a proxy runs at start
//! and per request, scattered over 16 MB of code, keep about 8 MB of it
//! resident: half of the idle proxy's memory. `link-order.txt` lists those
//! functions (by `scripts/link-order.sh`, from a profiled run), and the
//! linker places them first and together, so the pages they share are few.
//!
//! The list is a layout hint, not a contract: a symbol it names that the
//! build does not have (another version, other features) is skipped by the
//! linker without a word, and a function it misses lands where it would
//! have anyway. Release builds on x86_64 Linux only, where rustc links with
//! its bundled LLD; `EDGESTEER_LINK_ORDER=0` turns it off (another linker).

use std::env;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=link-order.txt");
    println!("cargo:rerun-if-env-changed=EDGESTEER_LINK_ORDER");
    let release = env::var("PROFILE").is_ok_and(|p| p == "release");
    let lld_target = env::var("TARGET").is_ok_and(|t| t == "x86_64-unknown-linux-gnu");
    let wanted = env::var("EDGESTEER_LINK_ORDER").map_or(true, |v| v != "0");
    let Ok(dir) = env::var("CARGO_MANIFEST_DIR") else {
        return;
    };
    let list = Path::new(&dir).join("link-order.txt");
    if release && lld_target && wanted && list.is_file() {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            list.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}
