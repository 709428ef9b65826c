//! Routing tables for tests: covergen on loopback backends, fast health
//! settings, a one-region table with rate limits.

use std::net::SocketAddr;

use edgesteer::demo::{spawn_for_spec_on, DemoBackend};
use edgesteer_config::{parse, TableSpec};

use crate::ports::free_port;

/// The covergen table from `examples/`.
pub fn covergen() -> TableSpec {
    match parse::from_toml(edgesteer_config::COVERGEN_TOML) {
        Ok(s) => s,
        Err(e) => panic!("examples/covergen.toml does not parse: {e}"),
    }
}

/// The covergen table pointed at fresh loopback backends (one per backend
/// in the table), with response headers on.
pub async fn covergen_on_loopback() -> anyhow::Result<(TableSpec, Vec<DemoBackend>)> {
    let mut spec = covergen();
    // The tests drive hundreds of requests/s from one address; the rate
    // limit tests bring their own policies.
    spec.rate_limits.clear();
    spec.headers.track = true;
    spec.headers.version = true;
    // Reserved ports: a backend a test stops must not have its port taken
    // by another test's backend (a request would then land there).
    //
    // A reserved port was twice found bound by something else between the
    // check and the bind (CI, `Address already in use`; the holder is not
    // known: every test listener is reserved or in the kernel's ephemeral
    // range). The harness retries with new ports and says which port it met
    // taken, rather than failing a test on its own plumbing.
    let mut last = 0u16;
    let mut attempt = 1;
    loop {
        let mut bind = || {
            last = free_port();
            SocketAddr::from(([127, 0, 0, 1], last))
        };
        match spawn_for_spec_on(&spec, None, &mut bind).await {
            Ok(done) => return Ok(done),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && attempt < 3 => {
                eprintln!(
                    "covergen_on_loopback: reserved port {last} was already bound ({e}); \
                     retrying with new ports ({})",
                    holders(last)
                );
                attempt += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Who holds `port` on loopback, from `ss` (for the retry's message).
fn holders(port: u16) -> String {
    std::process::Command::new("ss")
        .args(["-tanp", &format!("sport = :{port}")])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).replace('\n', " | "))
        .unwrap_or_else(|e| format!("ss: {e}"))
}

/// Tunes a table for tests: fast probes, short timeouts and cool-downs.
pub fn fast_health(spec: &mut TableSpec) {
    spec.health.interval_ms = Some(200);
    spec.health.timeout_ms = Some(150);
    spec.health.unhealthy_after = Some(3);
    spec.health.healthy_after = Some(2);
    spec.retry.max_attempts = Some(3);
    spec.retry.connect_timeout_ms = Some(300);
    spec.retry.per_try_timeout_ms = Some(500);
    spec.retry.total_timeout_ms = Some(3000);
    spec.outlier.base_ejection_ms = Some(1000);
}

/// A one-region table on `backend` with the given `rate_limits` TOML.
pub fn limits_table(backend: SocketAddr, rate_limits_toml: &str) -> anyhow::Result<TableSpec> {
    let text = format!(
        "default_region = \"us-east\"\n[headers]\nversion = true\n[regions.us-east]\nbackends = [{{ address = \"{backend}\" }}]\n{rate_limits_toml}"
    );
    Ok(parse::from_toml(&text)?)
}
