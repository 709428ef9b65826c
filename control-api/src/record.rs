//! One stored version of the table and its audit record, and the form
//! the API answers it in.

use edgesteer_config::TableSpec;
use serde::{Deserialize, Serialize};

/// Who changed what, when and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audit {
    /// Token name of the writer (or `seed`).
    pub actor: String,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// RFC 3339 form of `at_ms`.
    pub at: String,
    /// What the write did (seed, replace, set-weight, rollback,
    /// rollout-start, ...; every action is listed in docs/api.md).
    pub action: String,
    /// One line per changed field (see `edgesteer_config::diff`).
    pub summary: Vec<String>,
    pub reason: String,
    /// For rollbacks: the version restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored: Option<u64>,
}

/// One stored version of the table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub version: u64,
    pub table: TableSpec,
    pub audit: Audit,
}

/// One version as the API answers it: `GET /v1/table`, `GET /v1/versions/{N}`,
/// `GET /v1/watch`, and every write.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableRecord {
    pub version: u64,
    /// `"v<N>"`, as in the `ETag` header.
    pub etag: String,
    pub table: TableSpec,
    pub audit: Audit,
    /// The store's epoch (see [`crate::Store::epoch`]): versions are
    /// comparable only within one epoch.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub epoch: String,
}

/// The `ETag` (and `If-Match`) value of a version.
pub fn etag(version: u64) -> String {
    format!("\"v{version}\"")
}

impl From<&VersionRecord> for TableRecord {
    fn from(r: &VersionRecord) -> Self {
        TableRecord {
            version: r.version,
            etag: etag(r.version),
            table: r.table.clone(),
            audit: r.audit.clone(),
            epoch: String::new(),
        }
    }
}
