//! Where the binary under test is.

use std::path::{Path, PathBuf};

/// The binary under test: `$EDGESTEER_BIN`, else this package's
/// `edgesteer-e2e`, which cargo builds next to the test executables'
/// `deps/` directory before it runs them.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("EDGESTEER_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let target_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    target_dir.join(format!("edgesteer-e2e{}", std::env::consts::EXE_SUFFIX))
}
