//! Errors of parsing and compiling a table. Every one names the path of the
//! field at fault (`regions.cn-east.failover[0]`) and why it is wrong.

use serde::Serialize;

/// One problem with one field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct FieldError {
    /// Dotted path of the field, `[i]` for list positions; `.` for the root.
    pub path: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Why a table was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The text is not a well-formed table (syntax, unknown field, wrong type).
    #[error("cannot parse table: {0}")]
    Parse(FieldError),
    /// The table parsed but breaks a rule; every broken rule is listed.
    #[error("invalid table: {}", join(.0))]
    Invalid(Vec<FieldError>),
}

impl ConfigError {
    /// All field errors, whichever the kind.
    pub fn errors(&self) -> &[FieldError] {
        match self {
            ConfigError::Parse(e) => std::slice::from_ref(e),
            ConfigError::Invalid(v) => v,
        }
    }
}

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
