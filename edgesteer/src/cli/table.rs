//! Table files on the command line: reading, `edgesteer validate` (of a
//! table file or a proxy's table cache), the one-line summary, and compile
//! errors as one readable message.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use edgesteer_config::{parse, ConfigError, RoutingTable, TableSpec};

/// Reads a table file (TOML, or JSON when it ends in `.json`).
pub fn read_table(path: &Path) -> anyhow::Result<Result<TableSpec, ConfigError>> {
    parse::read_file(path).with_context(|| format!("reading {}", path.display()))
}

/// A proxy's table cache (`--cache`, written by `edgesteer proxy`): the
/// last good table with its version and store epoch.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheFile {
    version: u64,
    #[serde(default)]
    epoch: Option<String>,
    table: serde_json::Value,
}

/// The table in `path` (a table file, or a proxy's cache file) and, for a
/// cache file, what it says of itself.
fn read_any(path: &Path) -> anyhow::Result<(Result<TableSpec, ConfigError>, Option<String>)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if let Ok(cache) = serde_json::from_slice::<CacheFile>(&bytes) {
        let table = serde_json::to_vec(&cache.table).context("re-reading the cached table")?;
        let epoch = cache
            .epoch
            .map(|e| format!(", store epoch {e}"))
            .unwrap_or_default();
        let what = format!("a proxy's table cache, version {}{epoch}", cache.version);
        return Ok((parse::from_json(&table), Some(what)));
    }
    Ok((read_table(path)?, None))
}

pub(super) fn validate(path: &Path) -> ExitCode {
    let (spec, cache) = match read_any(path) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("edgesteer: {e:#}");
            return ExitCode::from(2);
        }
    };
    let shown = match &cache {
        Some(what) => format!("{} ({what})", path.display()),
        None => path.display().to_string(),
    };
    match spec.and_then(|s| edgesteer_config::compile(&s)) {
        Ok(t) => {
            println!("ok: {shown}: {}", summary(&t));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("invalid: {shown}: {} error(s)", e.errors().len());
            for err in e.errors() {
                eprintln!("  {}: {}", err.path, err.reason);
            }
            ExitCode::FAILURE
        }
    }
}

/// One line describing a table.
pub fn summary(t: &RoutingTable) -> String {
    let zones: Vec<String> = t
        .zones
        .iter()
        .map(|z| format!("{}{}", z.name, if z.isolated { " (isolated)" } else { "" }))
        .collect();
    let l = &t.limits;
    let send_rate = l
        .min_send_rate
        .map_or_else(|| "none".to_string(), |r| format!("{r} B/s"));
    format!(
        "{} regions, {} backends, zones [{}], {} host pins, default region {}, rate limits [{}], \
         limits [head {:?}, TLS handshake {:?}, keep-alive idle {:?}, body idle {:?}, write idle {:?}, min send rate {send_rate}, \
         {} requests/connection, h2 idle {:?}, {} connections, bodies buffered up to {} bytes, \
         {} response bytes held per request]",
        t.regions.len(),
        t.backends.len(),
        zones.join(", "),
        t.pins().count(),
        t.region(t.default_region).name,
        t.rate_limits
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        l.head_timeout,
        l.tls_handshake_timeout,
        l.keepalive_idle,
        l.body_read_idle,
        l.write_idle,
        l.max_requests_per_connection,
        l.h2_idle,
        l.max_connections,
        l.buffer_body_bytes,
        l.response_buffer_bytes,
    )
}

/// Compiles a table; every error on its own line, with its field.
pub(super) fn compile_or_explain(spec: &TableSpec) -> anyhow::Result<RoutingTable> {
    edgesteer_config::compile(spec).map_err(|e| {
        let lines: Vec<String> = e
            .errors()
            .iter()
            .map(|f| format!("  {}: {}", f.path, f.reason))
            .collect();
        anyhow::anyhow!("the routing table is invalid:\n{}", lines.join("\n"))
    })
}
