//! HTTP plumbing shared by every handler: the error answer ([`ApiError`]),
//! reading a size-limited JSON body with the faulty field named, and the
//! answer that carries a version with its `ETag`.

use axum::extract::rejection::BytesRejection;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use edgesteer_config::{ConfigError, FieldError};
use serde::Deserialize;

use crate::store::VersionRecord;
use edgesteer_control_api::api::{etag, ErrorBody, TableRecord};

/// An API error: status, a stable code, a message, and field errors.
#[derive(Debug)]
pub struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) errors: Vec<FieldError>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            errors: Vec::new(),
        }
    }

    /// The same error, with the field at fault named.
    pub(crate) fn at(mut self, path: impl Into<String>, reason: impl Into<String>) -> Self {
        self.errors.push(FieldError::new(path, reason));
        self
    }

    pub(crate) fn unknown_version(v: u64) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_version",
            format!("no version {v}"),
        )
    }

    pub(crate) fn from_config(e: ConfigError) -> Self {
        match &e {
            ConfigError::Parse(f) => ApiError {
                status: StatusCode::BAD_REQUEST,
                code: "malformed_table",
                message: format!("{}: {}", f.path, f.reason),
                errors: e.errors().to_vec(),
            },
            ConfigError::Invalid(v) => ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "invalid_table",
                message: format!("{} error(s); the current table is unchanged", v.len()),
                errors: v.clone(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code.into(),
            message: self.message,
            errors: self.errors.into_iter().map(Into::into).collect(),
        };
        (self.status, Json(body)).into_response()
    }
}

/// A path segment or query string that did not parse (axum's `detail`):
/// 400 `malformed_request` as JSON, naming the field and what it takes,
/// like every other error (axum's own rejection is plain text).
pub(crate) fn malformed_part(detail: String, field: &str, want: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "malformed_request", detail).at(field, want)
}

/// A refused body: over the limit, or unreadable.
pub(crate) fn body_error(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request body over the limit: {e}"),
        )
    } else {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_body", e.to_string())
    }
}

/// A request body as `T`: 413 over the size limit, 400 naming the field
/// at fault otherwise.
pub(crate) fn parse_body<T: for<'de> Deserialize<'de>>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    json_body(&body.map_err(body_error)?)
}

/// Parses a JSON body (unknown fields refused where the type says so),
/// naming the field at fault.
pub(crate) fn json_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    deserialize_with_path(&mut de).map_err(|(path, msg)| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_request",
            format!("{path}: {msg}"),
        )
        .at(path, msg)
    })
}

fn deserialize_with_path<'de, T: Deserialize<'de>>(
    de: &mut serde_json::Deserializer<serde_json::de::SliceRead<'de>>,
) -> Result<T, (String, String)> {
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let p = e.path().to_string();
        (
            if p.is_empty() { ".".into() } else { p },
            e.into_inner().to_string(),
        )
    })?;
    de.end().map_err(|e| (".".to_string(), e.to_string()))?;
    Ok(value)
}

/// A version as a 200 answer: a [`TableRecord`] and its `ETag` header.
pub(crate) fn tagged(r: &VersionRecord, epoch: &str) -> Response {
    let mut record = TableRecord::from(r);
    record.epoch = epoch.to_string();
    (
        StatusCode::OK,
        [(header::ETAG, etag(r.version))],
        Json(record),
    )
        .into_response()
}
