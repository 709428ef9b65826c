//! Rate-limit policies as compiled from `rate_limits` in the table. The
//! limiter itself (state, GCRA, Redis) lives in `edgesteer-ratelimit`; this
//! module only owns what a policy *says*, validated.

use std::collections::HashMap;
use std::time::Duration;

use crate::error::FieldError;
use crate::wire::{RateLimitSpec, TableSpec};

/// Default cap on keys tracked per policy.
pub const DEFAULT_MAX_KEYS: u32 = 1_000_000;
/// Most policies one table may have (metrics cardinality, per-request work).
pub const MAX_POLICIES: usize = 32;
/// Highest rate: 10 million per second, where the GCRA interval (whole
/// nanoseconds) is still exact to 1%.
pub const MAX_RATE: u32 = 10_000_000;
/// Most tiers one policy may have.
pub const MAX_TIERS: usize = 32;
/// Default abuse block: one hour.
pub const DEFAULT_BLOCK: Duration = Duration::from_secs(3600);

/// Where a policy's key comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LimitKey {
    ClientIp,
    /// Lower-case header name.
    Header(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LimitScope {
    Local,
    Global,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreFailure {
    /// Keep admitting under each proxy's local limit.
    Open,
    /// Answer 503 until the shared store is back.
    Closed,
}

/// One tier's limit, pre-converted to GCRA parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitTier {
    pub name: String,
    /// Requests per second.
    pub rate: u32,
    pub burst: u32,
    /// Nanoseconds between requests at the sustained rate (GCRA `T`).
    pub interval_ns: u64,
    /// `interval_ns * burst` (GCRA tolerance).
    pub tolerance_ns: u64,
}

impl LimitTier {
    pub fn new(name: &str, rate: u32, burst: u32) -> LimitTier {
        let interval_ns = 1_000_000_000 / u64::from(rate.max(1));
        LimitTier {
            name: name.to_string(),
            rate,
            burst,
            interval_ns,
            tolerance_ns: interval_ns * u64::from(burst.max(1)),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AbuseSettings {
    /// Block when the rate exceeds `multiple` x the key's limit ...
    pub multiple: u32,
    /// ... in each of this many consecutive seconds ...
    pub for_secs: u32,
    /// ... for this long.
    pub block: Duration,
}

/// What must stay equal for a policy to keep its limiter state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PolicyIdentity {
    pub name: String,
    pub key: LimitKey,
    pub scope: LimitScope,
    pub limits: Vec<(u32, u32)>,
}

#[derive(Clone, Debug)]
pub struct RateLimitPolicy {
    pub name: String,
    pub key: LimitKey,
    pub scope: LimitScope,
    pub on_store_error: StoreFailure,
    /// Add `RateLimit` headers to allowed responses.
    pub response_headers: bool,
    /// Lower-case hosts; empty = all.
    pub hosts: Vec<String>,
    /// Path prefixes; empty = all.
    pub path_prefixes: Vec<String>,
    pub tiers: Vec<LimitTier>,
    /// Index into `tiers` for unknown and missing keys.
    pub default_tier: usize,
    /// Known key -> index into `tiers`.
    pub keys: HashMap<String, usize>,
    /// Keys given as `sha256:<hex>` -> index into `tiers`: the table (and
    /// so the config service and every proxy) never holds those keys.
    pub hashed_keys: HashMap<[u8; 32], usize>,
    pub max_keys: u32,
    pub abuse: Option<AbuseSettings>,
}

impl RateLimitPolicy {
    /// Whether the policy covers a request for `host` and `path`. The host
    /// is compared without port or trailing dot (as host pins are), so
    /// `api.example.com:443` cannot dodge a policy for `api.example.com`.
    /// Paths are compared as sent (see docs/design.md).
    pub fn applies(&self, host: Option<&str>, path: &str) -> bool {
        let host_ok = self.hosts.is_empty()
            || host
                .map(crate::model::normalize_host)
                .is_some_and(|h| self.hosts.iter().any(|x| x.eq_ignore_ascii_case(h)));
        if !host_ok {
            return false;
        }
        if self.path_prefixes.is_empty() {
            return true;
        }
        let matches = |path: &str| {
            self.path_prefixes
                .iter()
                .any(|p| path.starts_with(p.as_str()))
        };
        // The common path is already normal; only `//`, `%`, `.` segments
        // or `\` cost a normalised copy.
        if path.contains("//") || path.contains('%') || path.contains("/.") || path.contains('\\') {
            matches(&normalize_path(path))
        } else {
            matches(path)
        }
    }

    /// The tier of a known key; `None` for unknown keys.
    pub fn tier_of(&self, key: &str) -> Option<usize> {
        if let Some(&t) = self.keys.get(key) {
            return Some(t);
        }
        if self.hashed_keys.is_empty() {
            return None;
        }
        self.hashed_keys.get(&sha256(key.as_bytes())).copied()
    }

    /// State identity across reloads: name, key source, scope and limits.
    /// Changing a tier's rate or burst starts the policy afresh (every key
    /// gets a full burst once), because a key's GCRA state is measured in
    /// the old interval; adding keys or moving a key between tiers does not.
    pub fn identity(&self) -> PolicyIdentity {
        PolicyIdentity {
            name: self.name.clone(),
            key: self.key.clone(),
            scope: self.scope,
            limits: self.tiers.iter().map(|t| (t.rate, t.burst)).collect(),
        }
    }
}

pub(crate) fn compile_policies(
    spec: &TableSpec,
    errors: &mut Vec<FieldError>,
) -> Vec<RateLimitPolicy> {
    let mut out = Vec::with_capacity(spec.rate_limits.len());
    if spec.rate_limits.len() > MAX_POLICIES {
        errors.push(FieldError::new(
            "rate_limits",
            format!(
                "{} policies; at most {MAX_POLICIES} (each one is checked on every request it matches)",
                spec.rate_limits.len()
            ),
        ));
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, p) in spec.rate_limits.iter().enumerate() {
        let path = format!("rate_limits[{i}]");
        if let Some(prev) = seen.insert(p.name.as_str(), i) {
            errors.push(FieldError::new(
                format!("{path}.name"),
                format!(
                    "`{}` is already the name of rate_limits[{prev}]; names are unique",
                    p.name
                ),
            ));
        }
        if let Some(policy) = compile_policy(&path, p, errors) {
            out.push(policy);
        }
    }
    out
}

fn compile_policy(
    path: &str,
    p: &RateLimitSpec,
    errors: &mut Vec<FieldError>,
) -> Option<RateLimitPolicy> {
    let before = errors.len();
    let mut err = |field: &str, reason: String| {
        errors.push(FieldError::new(format!("{path}.{field}"), reason));
    };
    let name_ok = !p.name.is_empty()
        && p.name.len() <= 63
        && p.name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !name_ok {
        err(
            "name",
            "names use lower-case letters, digits, '-' and '_' (1 to 63 characters)".into(),
        );
    }
    let key = match p.key.split_once(':') {
        None if p.key == "client_ip" => Some(LimitKey::ClientIp),
        Some(("header", h)) if valid_header(h) => Some(LimitKey::Header(h.to_ascii_lowercase())),
        _ => {
            err(
                "key",
                format!("`{}` is not `client_ip` or `header:<name>`", p.key),
            );
            None
        }
    };
    let scope = match p.scope.as_deref() {
        None | Some("local") => LimitScope::Local,
        Some("global") => LimitScope::Global,
        Some(other) => {
            err("scope", format!("`{other}` is not `local` or `global`"));
            LimitScope::Local
        }
    };
    let on_store_error = match p.on_store_error.as_deref() {
        None | Some("fail_open") => StoreFailure::Open,
        Some("fail_closed") => StoreFailure::Closed,
        Some(other) => {
            err(
                "on_store_error",
                format!("`{other}` is not `fail_open` or `fail_closed`"),
            );
            StoreFailure::Open
        }
    };
    if p.on_store_error.is_some() && scope == LimitScope::Local {
        err(
            "on_store_error",
            "only `global` policies use the shared store; remove it or set scope = \"global\""
                .into(),
        );
    }

    let mut tiers = Vec::new();
    let mut tier_ids: HashMap<&str, usize> = HashMap::new();
    let single = p.rate.is_some() || p.burst.is_some();
    if single {
        if !p.tiers.is_empty() || p.default_tier.is_some() || !p.keys.is_empty() {
            err(
                "rate",
                "write either `rate`/`burst` (one limit) or `tiers`/`default_tier`/`keys`, not both"
                    .into(),
            );
        }
        match p.rate {
            Some(r) if (1..=MAX_RATE).contains(&r) => {
                tiers.push(LimitTier::new("default", r, p.burst.unwrap_or(r).max(1)))
            }
            Some(_) => err(
                "rate",
                format!("must be 1 to {MAX_RATE} requests per second"),
            ),
            None => err("rate", "is required when `burst` is set".into()),
        }
        if p.burst == Some(0) {
            err("burst", "must be at least 1".into());
        }
    } else {
        if p.tiers.is_empty() {
            err(
                "tiers",
                "give `rate` (and `burst`) or at least one tier".into(),
            );
        }
        if p.tiers.len() > MAX_TIERS {
            err(
                "tiers",
                format!("{} tiers; at most {MAX_TIERS}", p.tiers.len()),
            );
        }
        for (name, t) in &p.tiers {
            if !(1..=MAX_RATE).contains(&t.rate) {
                err(
                    &format!("tiers.{name}.rate"),
                    format!("must be 1 to {MAX_RATE} requests per second"),
                );
            }
            if t.burst == Some(0) {
                err(&format!("tiers.{name}.burst"), "must be at least 1".into());
            }
            tier_ids.insert(name.as_str(), tiers.len());
            tiers.push(LimitTier::new(
                name,
                t.rate.max(1),
                t.burst.unwrap_or(t.rate).max(1),
            ));
        }
    }
    let tier_names = || p.tiers.keys().cloned().collect::<Vec<_>>().join(", ");
    let default_tier = match (&p.default_tier, single) {
        (_, true) => 0,
        (Some(t), false) => match tier_ids.get(t.as_str()) {
            Some(&i) => i,
            None => {
                err(
                    "default_tier",
                    format!("unknown tier `{t}`; tiers: {}", tier_names()),
                );
                0
            }
        },
        (None, false) if p.tiers.len() == 1 => 0,
        (None, false) => {
            err(
                "default_tier",
                format!(
                    "required with several tiers; choose one of: {}",
                    tier_names()
                ),
            );
            0
        }
    };
    let mut keys = HashMap::with_capacity(p.keys.len());
    let mut hashed_keys = HashMap::new();
    for (k, t) in &p.keys {
        match tier_ids.get(t.as_str()) {
            Some(&i) => match k.strip_prefix("sha256:") {
                Some(hex) => match parse_sha256(hex) {
                    Some(h) => {
                        hashed_keys.insert(h, i);
                    }
                    None => err(
                        &format!("keys.{k}"),
                        "a hashed key is `sha256:` and 64 hex digits (`edgesteer ctl set-key --hash` writes one)".into(),
                    ),
                },
                None => {
                    keys.insert(k.clone(), i);
                }
            },
            None => err(
                &format!("keys.{k}"),
                format!("unknown tier `{t}`; tiers: {}", tier_names()),
            ),
        }
    }
    if !p.keys.is_empty() && key == Some(LimitKey::ClientIp) {
        err("keys", "a `client_ip` policy has no key map".into());
    }
    let hosts = p.hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
    for (j, prefix) in p.path_prefixes.iter().enumerate() {
        if !prefix.starts_with('/') {
            err(
                &format!("path_prefixes[{j}]"),
                format!("`{prefix}` must start with '/'"),
            );
        }
    }
    let max_keys = p.max_keys.unwrap_or(DEFAULT_MAX_KEYS);
    if max_keys == 0 {
        err("max_keys", "must be at least 1".into());
    }
    let abuse = match &p.abuse {
        None => None,
        Some(a) => {
            if key != Some(LimitKey::ClientIp) {
                err(
                    "abuse",
                    "abuse blocking needs `key = \"client_ip\"` (it blocks addresses)".into(),
                );
            }
            if a.multiple < 1 {
                err("abuse.multiple", "must be at least 1".into());
            }
            if !(1..=3600).contains(&a.for_s) {
                err(
                    "abuse.for_s",
                    format!("{} is outside 1..=3600 seconds", a.for_s),
                );
            }
            if a.block_s == Some(0) {
                err("abuse.block_s", "must be at least 1 second".into());
            }
            Some(AbuseSettings {
                multiple: a.multiple.max(1),
                for_secs: a.for_s.max(1),
                block: a
                    .block_s
                    .map_or(DEFAULT_BLOCK, |s| Duration::from_secs(u64::from(s))),
            })
        }
    };
    if errors.len() > before {
        return None;
    }
    Some(RateLimitPolicy {
        name: p.name.clone(),
        key: key?,
        scope,
        on_store_error,
        response_headers: p.response_headers,
        hosts,
        path_prefixes: p.path_prefixes.clone(),
        tiers,
        default_tier,
        keys,
        hashed_keys,
        max_keys,
        abuse,
    })
}

/// The path as a lenient backend would read it, for prefix matching only:
/// percent-escapes decoded, `\\` as `/`, repeated slashes collapsed, `.`
/// and `..` segments resolved. So `//v1/x`, `/%76%31/x` and `/a/../v1/x`
/// all match a `/v1/` prefix.
pub fn normalize_path(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let hex = |c: u8| (c as char).to_digit(16);
        if b == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                decoded.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        decoded.push(if b == b'\\' { b'/' } else { b });
        i += 1;
    }
    let decoded = String::from_utf8_lossy(&decoded);
    let mut segments: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len() + 1);
    for seg in &segments {
        out.push('/');
        out.push_str(seg);
    }
    if out.is_empty() || decoded.ends_with('/') {
        out.push('/');
    }
    out
}

/// SHA-256 of an API key, as `sha256:` entries store it.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The `sha256:<hex>` form of an API key for the table.
pub fn hashed_key(key: &str) -> String {
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in sha256(key.as_bytes()) {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn valid_header(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 64
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::{load_toml, parse, COVERGEN_TOML};

    fn errors_of(extra: &str) -> Vec<(String, String)> {
        let text = format!(
            "default_region = \"a\"\n[regions.a]\nbackends = [{{ address = \"127.0.0.1:1\" }}]\n{extra}"
        );
        match load_toml(&text) {
            Ok(_) => vec![],
            Err(e) => e
                .errors()
                .iter()
                .map(|f| (f.path.clone(), f.reason.clone()))
                .collect(),
        }
    }

    #[test]
    fn covergen_carries_both_policies() {
        let spec = parse::from_toml(COVERGEN_TOML).unwrap();
        let t = crate::compile(&spec).unwrap();
        let ip = &t.rate_limits[0];
        assert_eq!((ip.name.as_str(), &ip.key), ("per-ip", &LimitKey::ClientIp));
        assert_eq!((ip.tiers[0].rate, ip.tiers[0].burst), (10_000, 10_000));
        assert_eq!(ip.abuse.as_ref().unwrap().block, DEFAULT_BLOCK);
        let key = &t.rate_limits[1];
        assert_eq!(key.key, LimitKey::Header("x-api-key".into()));
        let rate = |name: &str| key.tiers.iter().find(|t| t.name == name).unwrap().rate;
        assert_eq!(
            (rate("free"), rate("pro"), rate("enterprise")),
            (10, 100, 1000)
        );
        assert_eq!(key.tiers[key.default_tier].name, "free");
        assert_eq!(
            key.tier_of("cg-demo-pro")
                .map(|i| key.tiers[i].name.as_str()),
            Some("pro")
        );
        assert_eq!(key.tier_of("nope"), None);
        // The enterprise demo key is stored hashed.
        assert_eq!(
            key.tier_of("cg-demo-enterprise")
                .map(|i| key.tiers[i].name.as_str()),
            Some("enterprise")
        );
        assert!(t.rate_limits.iter().all(|p| p.scope == LimitScope::Local));
    }

    #[test]
    fn bad_policies_name_the_field() {
        let errs = errors_of(
            r#"
[[rate_limits]]
name = "Bad Name"
key = "cookie:x"
scope = "galactic"
rate = 0

[[rate_limits]]
name = "k"
key = "header:x-api-key"
default_tier = "gold"
tiers = { free = { rate = 10 } }
keys = { "abc" = "platinum" }
path_prefixes = ["v1"]
on_store_error = "fail_closed"
abuse = { multiple = 2, for_s = 5 }
"#,
        );
        let paths: Vec<&str> = errs.iter().map(|(p, _)| p.as_str()).collect();
        for want in [
            "rate_limits[0].name",
            "rate_limits[0].key",
            "rate_limits[0].scope",
            "rate_limits[0].rate",
            "rate_limits[1].default_tier",
            "rate_limits[1].keys.abc",
            "rate_limits[1].path_prefixes[0]",
            "rate_limits[1].on_store_error",
            "rate_limits[1].abuse",
        ] {
            assert!(paths.contains(&want), "{want} missing from {errs:?}");
        }
    }

    #[test]
    fn duplicate_names_and_mixed_forms_are_refused() {
        let errs = errors_of(
            r#"
[[rate_limits]]
name = "a"
key = "client_ip"
rate = 5
tiers = { x = { rate = 1 } }

[[rate_limits]]
name = "a"
key = "client_ip"
rate = 5
"#,
        );
        let paths: Vec<&str> = errs.iter().map(|(p, _)| p.as_str()).collect();
        assert!(paths.contains(&"rate_limits[0].rate"), "{errs:?}");
        assert!(paths.contains(&"rate_limits[1].name"), "{errs:?}");
    }

    #[test]
    fn hashed_keys_match_without_the_table_holding_them() {
        let hashed = hashed_key("ck_live_secret");
        let (_, t) = load_toml(&format!(
            r#"
default_region = "a"
[regions.a]
backends = [{{ address = "127.0.0.1:1" }}]
[[rate_limits]]
name = "k"
key = "header:x-api-key"
default_tier = "free"
tiers = {{ free = {{ rate = 1 }}, pro = {{ rate = 10 }} }}
keys = {{ "{hashed}" = "pro", "plain" = "free" }}
"#
        ))
        .unwrap();
        let p = &t.rate_limits[0];
        let name = |k: &str| p.tier_of(k).map(|i| p.tiers[i].name.as_str());
        assert_eq!(name("ck_live_secret"), Some("pro"));
        assert_eq!(name("plain"), Some("free"));
        assert_eq!(name("ck_live_other"), None);
        let errs = errors_of(
            "[[rate_limits]]\nname = \"k\"\nkey = \"header:x\"\ntiers = { a = { rate = 1 } }\nkeys = { \"sha256:abc\" = \"a\" }\n",
        );
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].0, "rate_limits[0].keys.sha256:abc");
    }

    proptest::proptest! {
        #[test]
        fn normalized_paths_are_absolute_and_stable(path in "[/%.a-z0-9\\\\]{0,24}") {
            let n = normalize_path(&path);
            proptest::prop_assert!(n.starts_with('/'));
            proptest::prop_assert!(!n.contains("//"));
            // Normalising twice changes nothing more, unless decoding made
            // a new escape (`%2576` -> `%76`), which is one level only.
            if !n.contains('%') {
                proptest::prop_assert_eq!(normalize_path(&n), n);
            }
        }
    }

    #[test]
    fn rates_and_policy_counts_are_bounded() {
        let errs =
            errors_of("[[rate_limits]]\nname = \"a\"\nkey = \"client_ip\"\nrate = 20000000\n");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].0, "rate_limits[0].rate");
        let many: String = (0..=MAX_POLICIES)
            .map(|i| format!("[[rate_limits]]\nname = \"p{i}\"\nkey = \"client_ip\"\nrate = 5\n"))
            .collect();
        let errs = errors_of(&many);
        assert!(errs.iter().any(|(p, _)| p == "rate_limits"), "{errs:?}");
    }

    #[test]
    fn scoping_by_host_and_path() {
        let (_, t) = load_toml(
            r#"
default_region = "a"
[regions.a]
backends = [{ address = "127.0.0.1:1" }]
[[rate_limits]]
name = "api"
key = "client_ip"
rate = 5
hosts = ["API.example.com"]
path_prefixes = ["/v1/", "/v2/"]
"#,
        )
        .unwrap();
        let p = &t.rate_limits[0];
        assert_eq!((p.tiers[0].burst, p.tiers[0].interval_ns), (5, 200_000_000));
        assert!(p.applies(Some("api.example.com"), "/v1/x"));
        assert!(!p.applies(Some("api.example.com"), "/v3/x"));
        assert!(!p.applies(Some("other"), "/v1/x"));
        assert!(!p.applies(None, "/v1/x"));
        // Nor do path spellings a backend may normalise.
        for dodge in [
            "//v1/x",
            "/%76%31/x",
            "/a/../v1/x",
            "/./v1/x",
            "\\v1\\x",
            "/V1/x",
        ] {
            let want = dodge != "/V1/x";
            assert_eq!(p.applies(Some("api.example.com"), dodge), want, "{dodge}");
        }
        assert_eq!(normalize_path("/v1//x/"), "/v1/x/");
        assert_eq!(normalize_path("/.."), "/");
        assert_eq!(normalize_path("/%zz"), "/%zz");
        // Port and trailing dot do not dodge the host match.
        assert!(p.applies(Some("api.example.com:443"), "/v1/x"));
        assert!(p.applies(Some("API.example.com."), "/v1/x"));
    }
}
