//! Free loopback ports for the processes under test, reserved across test
//! processes.

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

/// A port for a process under test to bind (Pingora binds its own
/// listeners, so we cannot hand it a bound socket).
///
/// Two things can take a port between this answer and the child's bind,
/// and both are closed off here:
/// - an *outgoing* connection of any test gets its local port from the
///   kernel's ephemeral range, so ports are picked below that range, where
///   only explicit binds land;
/// - another test process (nextest runs one per test) could pick the same
///   port, so each port handed out is reserved by a marker file created
///   with `O_EXCL` in a shared directory, holding the process's PID. A
///   marker whose process has exited, or older than an hour, is reused, so
///   runs one after the other do not use up the range.
pub fn free_port() -> u16 {
    free_ports(1)
}

/// The first of `n` consecutive free ports, each reserved as [`free_port`]
/// reserves one: for a process that binds a run of ports from a base
/// (`edgesteer demo --backend-ports`), whose later ports must not be
/// another test's.
pub fn free_ports(n: u16) -> u16 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);

    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = if ephemeral_low > 12_000 {
        (10_000u16, ephemeral_low)
    } else {
        (ephemeral_low.max(1024), 65_000)
    };
    let dir = std::env::temp_dir().join("edgesteer-test-ports");
    let _ = std::fs::create_dir_all(&dir);
    let seed = std::collections::hash_map::RandomState::new();
    for _ in 0..2_000 {
        let mut h = seed.build_hasher();
        h.write_u32(std::process::id());
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        let port = low + (h.finish() % u64::from(high - low - n)) as u16;
        // Every port of the run reserved and bindable, or try another run
        // (the markers taken stay: a port is skipped, never shared).
        let run = port..port + n;
        if run.clone().all(|p| reserve(&dir.join(p.to_string())))
            && run
                .into_iter()
                .all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok())
        {
            return port;
        }
    }
    // Fall back to the kernel's choice (racy, but never a hard failure).
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Claims `marker` for this process (it holds our PID); a marker whose
/// process has exited, or older than an hour, is a finished run's and is
/// taken over.
fn reserve(marker: &Path) -> bool {
    use std::io::Write;
    let create = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(marker)
            .and_then(|mut f| write!(f, "{}", std::process::id()))
            .is_ok()
    };
    if create() {
        return true;
    }
    let owner_exited = std::fs::read_to_string(marker)
        .ok()
        .and_then(|pid| pid.trim().parse::<u32>().ok())
        .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
    let stale = owner_exited
        || std::fs::metadata(marker)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(3600));
    stale && std::fs::remove_file(marker).is_ok() && create()
}
