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

/// Every field in `want` is named by some error.
fn assert_fields(errs: &[(String, String)], want: &[&str]) {
    for w in want {
        assert!(
            errs.iter().any(|(p, _)| p == w),
            "{w} missing from {errs:?}"
        );
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
    assert_fields(
        &errs,
        &[
            "rate_limits[0].name",
            "rate_limits[0].key",
            "rate_limits[0].scope",
            "rate_limits[0].rate",
            "rate_limits[1].default_tier",
            "rate_limits[1].keys.abc",
            "rate_limits[1].path_prefixes[0]",
            "rate_limits[1].on_store_error",
            "rate_limits[1].abuse",
        ],
    );
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
    assert_fields(&errs, &["rate_limits[0].rate", "rate_limits[1].name"]);
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

#[test]
fn escaped_backslashes_are_separators() {
    // Found by the proptest below: `%5c` used to normalise to `/\`.
    assert_eq!(normalize_path("%5c"), "/");
    assert_eq!(normalize_path("/v1%5Cx"), "/v1/x");
    assert_eq!(normalize_path("/v1\\x"), "/v1/x");
}

proptest::proptest! {
    #[test]
    fn normalized_paths_are_absolute_and_stable(path in "[/%.a-z0-9\\\\]{0,24}") {
        let n = normalize_path(&path);
        proptest::prop_assert!(n.starts_with('/'));
        proptest::prop_assert!(!n.contains("//"));
        // Normalising twice changes nothing, escapes made by decoding
        // (`%2576` -> `%76`) included.
        proptest::prop_assert_eq!(normalize_path(&n), n);
    }
}

/// The property `fuzz/fuzz_targets/path.rs` checks. Decoding was one
/// level deep, so `%2576%2531` normalised to `/%76%31` and only a second
/// pass gave `/v1` (a backend that decodes twice serves `/v1/` to it).
#[test]
fn nested_escapes_decode_fully() {
    assert_eq!(normalize_path("/%2576%2531/x"), "/v1/x");
    assert_eq!(normalize_path("/%%341"), "/A");
    assert_eq!(normalize_path("/%252e%252e/v1/x"), "/v1/x");
    assert_eq!(normalize_path("/%25255c"), "/");
    assert_eq!(normalize_path("/%25zz"), "/%zz");
    for p in ["/%2576%2531/x", "/%%341", "/%25%32%35", "%%%%%%3535353535"] {
        let n = normalize_path(p);
        assert_eq!(normalize_path(&n), n, "{p:?}");
        assert!(!n.contains("%2") && !n.contains("%3"), "{p:?} -> {n:?}");
    }
}

#[test]
fn rates_and_policy_counts_are_bounded() {
    let errs = errors_of("[[rate_limits]]\nname = \"a\"\nkey = \"client_ip\"\nrate = 20000000\n");
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

#[test]
fn an_abuse_block_lasts_thirty_days_at_most() {
    let errs = errors_of(
        r#"
[[rate_limits]]
name = "ip"
key = "client_ip"
rate = 5
abuse = { multiple = 2, for_s = 5, block_s = 2592001 }

[[rate_limits]]
name = "ip0"
key = "client_ip"
rate = 5
abuse = { multiple = 2, for_s = 5, block_s = 0 }

[[rate_limits]]
name = "ip30"
key = "client_ip"
rate = 5
abuse = { multiple = 2, for_s = 5, block_s = 2592000 }
"#,
    );
    assert_fields(
        &errs,
        &[
            "rate_limits[0].abuse.block_s",
            "rate_limits[1].abuse.block_s",
        ],
    );
    assert_eq!(errs.len(), 2, "30 days exactly is allowed: {errs:?}");
}

#[test]
fn a_key_is_the_client_ip_or_a_header_of_token_characters() {
    let with_key = |k: &str| {
        errors_of(&format!(
            "[[rate_limits]]\nname = \"k\"\nkey = \"{k}\"\nrate = 5\n"
        ))
    };
    let long_ok = format!("header:{}", "a".repeat(64));
    for ok in [
        "client_ip",
        "header:X-Api-Key",
        "header:a_b-9",
        long_ok.as_str(),
    ] {
        assert_eq!(with_key(ok), vec![], "{ok}");
    }
    let long = format!("header:{}", "a".repeat(65));
    for bad in [
        "client_ipx",
        "header:",
        "header:x y",
        "header:x.y",
        "header:x:y",
        "query:user",
        long.as_str(),
    ] {
        let errs = with_key(bad);
        assert_eq!(errs.len(), 1, "{bad}: {errs:?}");
        assert_eq!(errs[0].0, "rate_limits[0].key", "{bad}");
        assert!(
            errs[0].1.contains("is not `client_ip` or `header:<name>`"),
            "{bad}: {errs:?}"
        );
    }
    let t = load_toml(
        "default_region = \"a\"\n[regions.a]\nbackends = [{ address = \"127.0.0.1:1\" }]\n\
         [[rate_limits]]\nname = \"k\"\nkey = \"header:X-Api-Key\"\nrate = 5\n",
    )
    .unwrap();
    assert_eq!(t.1.rate_limits[0].key, LimitKey::Header("x-api-key".into()));
}

/// Proxies report usage by tier name and the config service refuses a
/// report with a longer one than a table may give: a tier name is 1 to
/// `MAX_TIER_NAME` bytes (a longer one once compiled, and every proxy's
/// stats were then refused).
#[test]
fn tier_names_are_bounded() {
    let long = "t".repeat(MAX_TIER_NAME + 1);
    let policy = |tier: &str| {
        format!("[[rate_limits]]\nname = \"k\"\nkey = \"header:x-api-key\"\ndefault_tier = \"{tier}\"\ntiers = {{ \"{tier}\" = {{ rate = 10 }} }}\n")
    };
    let errs = errors_of(&policy(&long));
    assert_fields(&errs, &[&format!("rate_limits[0].tiers.{long}")]);
    assert!(errors_of(&policy(&"t".repeat(MAX_TIER_NAME))).is_empty());
}
