//! A policy's key source (`client_ip` or `header:<name>`), its scope
//! (local or global) and what a global policy does when the store fails.

use super::policy::{LimitKey, LimitScope, StoreFailure};
use crate::check::Errors;
use crate::wire::RateLimitSpec;

/// The key section of one policy; `key` is `None` when it is broken.
pub(crate) struct KeySource {
    pub key: Option<LimitKey>,
    pub scope: LimitScope,
    pub on_store_error: StoreFailure,
}

pub(crate) fn key_source(path: &str, p: &RateLimitSpec, errs: &mut Errors) -> KeySource {
    let key = match p.key.split_once(':') {
        None if p.key == "client_ip" => Some(LimitKey::ClientIp),
        Some(("header", h)) if valid_header(h) => Some(LimitKey::Header(h.to_ascii_lowercase())),
        _ => {
            errs.push(
                format!("{path}.key"),
                format!("`{}` is not `client_ip` or `header:<name>`", p.key),
            );
            None
        }
    };
    let scope = match p.scope.as_deref() {
        None | Some("local") => LimitScope::Local,
        Some("global") => LimitScope::Global,
        Some(other) => {
            errs.push(
                format!("{path}.scope"),
                format!("`{other}` is not `local` or `global`"),
            );
            LimitScope::Local
        }
    };
    let on_store_error = match p.on_store_error.as_deref() {
        None | Some("fail_open") => StoreFailure::Open,
        Some("fail_closed") => StoreFailure::Closed,
        Some(other) => {
            errs.push(
                format!("{path}.on_store_error"),
                format!("`{other}` is not `fail_open` or `fail_closed`"),
            );
            StoreFailure::Open
        }
    };
    errs.check(
        !(p.on_store_error.is_some() && scope == LimitScope::Local),
        format!("{path}.on_store_error"),
        "only `global` policies use the shared store; remove it or set scope = \"global\"",
    );
    KeySource {
        key,
        scope,
        on_store_error,
    }
}

fn valid_header(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 64
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
