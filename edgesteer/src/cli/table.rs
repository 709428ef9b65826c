//! Table files on the command line: reading, `edgesteer validate`, the
//! one-line summary, and compile errors as one readable message.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use edgesteer_config::{parse, ConfigError, RoutingTable, TableSpec};

/// Reads a table file (TOML, or JSON when it ends in `.json`).
pub fn read_table(path: &Path) -> anyhow::Result<Result<TableSpec, ConfigError>> {
    parse::read_file(path).with_context(|| format!("reading {}", path.display()))
}

pub(super) fn validate(path: &Path) -> ExitCode {
    let spec = match read_table(path) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("edgesteer: {e:#}");
            return ExitCode::from(2);
        }
    };
    match spec.and_then(|s| edgesteer_config::compile(&s)) {
        Ok(t) => {
            println!("ok: {}: {}", path.display(), summary(&t));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("invalid: {}: {} error(s)", path.display(), e.errors().len());
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
         {} requests/connection, h2 idle {:?}, {} connections, bodies buffered up to {} bytes]",
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
