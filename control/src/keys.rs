//! API keys in stored tables: hashed on the way in (no stored table,
//! read, diff or audit holds a plain key) and redacted on the way out for
//! versions stored before keys were hashed.

use axum::http::StatusCode;
use edgesteer_config::ratelimit::hashed_key;
use edgesteer_config::TableSpec;

use crate::http::ApiError;
use crate::store::VersionRecord;

/// Replaces every plain API key of the table's rate-limit policies with its
/// `sha256:` form, so no stored table, read, diff or audit holds a plain
/// key. Returns the (plain, hashed) pairs replaced. A key given both plain
/// and hashed is refused rather than silently merged.
pub(crate) fn hash_keys(table: &mut TableSpec) -> Result<Vec<(String, String)>, ApiError> {
    let mut replaced = Vec::new();
    for (i, policy) in table.rate_limits.iter_mut().enumerate() {
        if policy.keys.keys().all(|k| k.starts_with("sha256:")) {
            continue;
        }
        let mut hashed = std::collections::BTreeMap::new();
        for (key, tier) in std::mem::take(&mut policy.keys) {
            let stored = if key.starts_with("sha256:") {
                key
            } else {
                let h = hashed_key(&key);
                replaced.push((key, h.clone()));
                h
            };
            if hashed.insert(stored.clone(), tier).is_some() {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_table",
                    format!(
                        "rate_limits[{i}].keys: a key is given both plain and hashed ({stored})"
                    ),
                )
                .at(format!("rate_limits[{i}].keys"), "key given twice"));
            }
        }
        policy.keys = hashed;
    }
    Ok(replaced)
}

/// A stored version as the service serves it: keys hashed, and audit lines
/// that named a plain key naming its hash instead.
pub(crate) fn redact(mut r: VersionRecord) -> VersionRecord {
    let replaced = hash_keys(&mut r.table).unwrap_or_default();
    for line in &mut r.audit.summary {
        for (plain, hashed) in &replaced {
            let from = format!(".keys.{plain}");
            if line.contains(&from) {
                *line = line.replace(&from, &format!(".keys.{hashed}"));
            }
        }
    }
    r
}
