//! What a process is called and where it keeps its state when no flag
//! says: a proxy's name (its host name), a config service replica's
//! (`HOST:PID`), and the last good table's file.

use std::path::PathBuf;

/// The last good table's default place: absolute, and writable by the
/// service user (the container image makes /var/lib/edgesteer a volume).
pub(super) fn default_cache() -> PathBuf {
    let dir = if let Some(d) = std::env::var_os("STATE_DIRECTORY").filter(|d| !d.is_empty()) {
        PathBuf::from(d.to_string_lossy().split(':').next().unwrap_or_default())
    } else if nix::unistd::geteuid().is_root() {
        PathBuf::from("/var/lib/edgesteer")
    } else if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        PathBuf::from(d).join("edgesteer")
    } else if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        PathBuf::from(home).join(".local/state/edgesteer")
    } else {
        std::env::temp_dir().join(format!("edgesteer-state-{}", nix::unistd::geteuid()))
    };
    dir.join("last-good-table.json")
}

/// The host name, in the characters a proxy name may hold (a proxy token
/// is then `proxy:HOSTNAME=SECRET`). It was `HOST:PID`, which the config
/// service refuses (no `:` in a name): a proxy started as the docs showed
/// never got a table.
pub(super) fn default_name() -> String {
    let name: String = host_name()
        .trim()
        .chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '.' | '_' | '-' => c,
            _ => '-',
        })
        .take(64)
        .collect();
    if name.is_empty() {
        "proxy".into()
    } else {
        name
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "proxy".into())
}

/// A config service replica's default name (audit records, etcd keys):
/// `HOST:PID`, so replicas on one host stay apart.
pub(super) fn default_replica() -> String {
    format!("{}:{}", host_name().trim(), std::process::id())
}
