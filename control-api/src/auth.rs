//! Tokens and roles: `[ROLE:]NAME=SECRET` parsing (on the command line or
//! from a token file), the bearer header, the constant-time lookup of the
//! token presented, which role may do what, and [`authorize`]: the one
//! bearer-token check that both the config service and the proxy's admin
//! listener run in front of their endpoints.
//!
//! Roles, as in HashiCorp's ACLs and Envoy's xDS split between operators
//! and data-plane clients:
//! - `ops`: every read and every write (tables, weights, rollouts);
//! - `proxy`: what a proxy needs and nothing else (watch, acks, stats);
//! - `read`: every read, no write.

use std::path::Path;

use http::{header, HeaderMap, StatusCode};
use subtle::ConstantTimeEq;

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Ops,
    Proxy,
    Read,
}

/// What a request does; each endpoint needs one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Tables, history, diffs, the fleet view, rollouts, metrics.
    Read,
    /// Any change to routing.
    Write,
    /// The long-poll watch proxies follow (it carries the table).
    Watch,
    /// Acks and per-track stats: what the fleet view and rollout gates
    /// believe, so only proxies may send them.
    Report,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ops => "ops",
            Role::Proxy => "proxy",
            Role::Read => "read",
        }
    }

    /// Whether a token of this role may make a request of this kind.
    pub fn allows(self, access: Access) -> bool {
        match self {
            Role::Ops => matches!(access, Access::Read | Access::Write | Access::Watch),
            Role::Read => matches!(access, Access::Read | Access::Watch),
            Role::Proxy => matches!(access, Access::Watch | Access::Report),
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ops" => Ok(Role::Ops),
            "proxy" => Ok(Role::Proxy),
            "read" => Ok(Role::Read),
            _ => Err(format!("unknown role `{s}` (ops, proxy or read)")),
        }
    }
}

/// A named token with its role. The secret never appears in `Debug`.
#[derive(Clone)]
pub struct Token {
    pub name: String,
    pub secret: String,
    pub role: Role,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl std::str::FromStr for Token {
    type Err = String;
    /// `[ROLE:]NAME=SECRET`; without a role, `ops` (a write token, as
    /// tokens were before roles).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const SHAPE: &str =
            "a token is [ROLE:]NAME=SECRET (ROLE ops, proxy or read) with a secret of at least 8 characters";
        let (name, secret) = s.split_once('=').ok_or(SHAPE)?;
        let (role, name) = match name.split_once(':') {
            Some((role, name)) => (role.parse()?, name),
            None => (Role::Ops, name),
        };
        if name.is_empty() || secret.len() < 8 {
            return Err(SHAPE.into());
        }
        Ok(Token {
            name: name.into(),
            secret: secret.into(),
            role,
        })
    }
}

/// Reads tokens from a file, one `[ROLE:]NAME=SECRET` per line (blank
/// lines and `#` comments skipped), so secrets stay off the command line.
/// Errors name the line, never its content.
pub fn read_token_file(path: &Path) -> Result<Vec<Token>, String> {
    let bytes = edgesteer_config::pem::read_bounded(path).map_err(|e| e.to_string())?;
    let text =
        String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", path.display()))?;
    text.lines()
        .enumerate()
        .map(|(i, l)| (i, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .map(|(i, l)| {
            l.parse()
                .map_err(|e| format!("{} line {}: {e}", path.display(), i + 1))
        })
        .collect()
}

/// Reads one secret from a file (its first line, trimmed): a proxy's or
/// `ctl`'s token, kept out of `ps` and shell history.
pub fn read_secret_file(path: &Path) -> Result<String, String> {
    let text = edgesteer_config::pem::read_secret(path)
        .map_err(|e| format!("{e}: it should hold a token"))?;
    Ok(text.lines().next().unwrap_or("").trim().to_string())
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// The token whose secret was presented. Compares against every token in
/// constant time, without stopping early.
pub fn find_token<'a>(tokens: &'a [Token], presented: &str) -> Option<&'a Token> {
    let mut found: Option<&Token> = None;
    for t in tokens {
        if bool::from(t.secret.as_bytes().ct_eq(presented.as_bytes())) {
            found = Some(t);
        }
    }
    found
}

/// The name of the token whose secret was presented.
pub fn token_name(tokens: &[Token], presented: &str) -> Option<String> {
    find_token(tokens, presented).map(|t| t.name.clone())
}

/// Who made a request: the name and role of the token presented (or of
/// the client certificate standing in for one).
#[derive(Clone, Debug)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

/// A request the token check refused: its status, error code and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub error: &'static str,
    pub message: String,
}

/// The one bearer-token check: the token presented, if its role allows
/// `access`; 401 without a known token, 403 for the wrong role. `flag`
/// names where the listener's tokens come from (`--token-file`,
/// `--admin-token`), so the refusal says what to give.
pub fn authorize<'a>(
    tokens: &'a [Token],
    headers: &HeaderMap,
    access: Access,
    flag: &str,
) -> Result<&'a Token, Refusal> {
    let presented = bearer(headers);
    let Some(token) = presented.and_then(|t| find_token(tokens, t)) else {
        return Err(Refusal {
            status: StatusCode::UNAUTHORIZED,
            error: "unauthorized",
            message: if presented.is_some() {
                format!("the bearer token is not valid (not one of {flag})")
            } else {
                format!("this endpoint needs `Authorization: Bearer <token>` (one of {flag})")
            },
        });
    };
    if !token.role.allows(access) {
        return Err(Refusal {
            status: StatusCode::FORBIDDEN,
            error: "forbidden",
            message: format!(
                "token {} has role {}, which may not {}",
                token.name,
                token.role.as_str(),
                match access {
                    Access::Read => "read",
                    Access::Write => "change routing",
                    Access::Watch => "watch",
                    Access::Report => "send acks or stats (proxy tokens only)",
                }
            ),
        });
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_roles() {
        let t: Token = "proxy:fleet=abcdefgh".parse().unwrap();
        assert_eq!((t.name.as_str(), t.role), ("fleet", Role::Proxy));
        let t: Token = "ops=abcdefgh".parse().unwrap();
        assert_eq!((t.name.as_str(), t.role), ("ops", Role::Ops));
        assert!("boss:x=abcdefgh".parse::<Token>().is_err());
        assert!("read:x=short".parse::<Token>().is_err());
        assert!(!format!("{t:?}").contains("abcdefgh"));
    }

    #[test]
    fn roles_allow_only_their_access() {
        assert!(Role::Ops.allows(Access::Write));
        assert!(!Role::Ops.allows(Access::Report));
        assert!(Role::Proxy.allows(Access::Report));
        assert!(!Role::Proxy.allows(Access::Write));
        assert!(!Role::Proxy.allows(Access::Read));
        assert!(Role::Read.allows(Access::Read));
        assert!(!Role::Read.allows(Access::Write));
    }
}
