//! Write tokens: `NAME=SECRET` parsing, the bearer header, and the
//! constant-time lookup of the token presented. The proxy's admin listener
//! uses the same functions.

use axum::http::{header, HeaderMap};
use subtle::ConstantTimeEq;

/// A named write token.
#[derive(Clone)]
pub struct Token {
    pub name: String,
    pub secret: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl std::str::FromStr for Token {
    type Err = String;
    /// `NAME=SECRET`
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            Some((n, sec)) if !n.is_empty() && sec.len() >= 8 => Ok(Token {
                name: n.into(),
                secret: sec.into(),
            }),
            _ => Err("a token is NAME=SECRET with a secret of at least 8 characters".into()),
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// The name of the token whose secret was presented. Compares against every
/// token in constant time, without stopping early.
pub fn token_name(tokens: &[Token], presented: &str) -> Option<String> {
    let mut found: Option<&Token> = None;
    for t in tokens {
        if bool::from(t.secret.as_bytes().ct_eq(presented.as_bytes())) {
            found = Some(t);
        }
    }
    found.map(|t| t.name.clone())
}
