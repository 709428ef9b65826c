//! Header edits: `X-Forwarded-For`/`-Proto` toward the origin, and the
//! `X-Steer-*` and `RateLimit` headers toward the client.

use std::net::IpAddr;

use http::{HeaderName, HeaderValue};
use pingora_core::{ErrorType, OrErr, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;

use super::ctx::Ctx;
use crate::steer::Steering;

/// Forwarding headers a client could use to tell the origin something
/// false about itself; only a trusted proxy's are passed on.
static CLIENT_FORWARDING: [HeaderName; 5] = [
    http::header::FORWARDED,
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static(XFP),
];
const XFP: &str = "x-forwarded-proto";
/// Looked up and inserted by these: a `&str` name is parsed on every
/// lookup, and on every insert into a fresh allocation (two, with the case
/// map's copy); a name made by `from_static` costs nothing to store
/// (`insert_header_name`, vendor/README.md).
static X_FORWARDED_FOR: Added = Added::new("x-forwarded-for");
static X_FORWARDED_PROTO: Added = Added::new(XFP);
static RATELIMIT_POLICY: Added = Added::new("ratelimit-policy");
static RATELIMIT: Added = Added::new("ratelimit");
static X_STEER_REGION: Added = Added::new("x-steer-region");
static X_STEER_TRACK: Added = Added::new("x-steer-track");
static X_STEER_VERSION: Added = Added::new("x-steer-version");

/// A header we add: its name parsed at compile time and its wire form,
/// from one literal, for `insert_header_name`.
struct Added {
    name: HeaderName,
    wire: &'static str,
}

impl Added {
    const fn new(wire: &'static str) -> Added {
        Added {
            name: HeaderName::from_static(wire),
            wire,
        }
    }
}
/// The most headers `steer_headers` adds to an answer.
const STEER_HEADERS: usize = 5;

/// `X-Forwarded-For` and `X-Forwarded-Proto` for the origin. A trusted
/// peer's chain is extended (every `X-Forwarded-For` line, in order: the
/// chain the client address was read from); anyone else's is replaced,
/// and their other forwarding headers are dropped.
pub(super) fn forwarded(session: &Session, upstream: &mut RequestHeader, ctx: &Ctx) -> Result<()> {
    let peer = session
        .as_downstream()
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    let trusted = peer.is_some_and(|p| ctx.snap.table.is_trusted_proxy(p));
    drop_underscore_aliases(upstream);
    if !trusted {
        for name in &CLIENT_FORWARDING {
            // One lookup for the usual absent header; removing also
            // touches Pingora's case map.
            if upstream.headers.contains_key(name) {
                upstream.remove_header(name);
            }
        }
    }
    let hop = peer.unwrap_or(ctx.client);
    // A trusted peer's chain is extended; anyone else's is replaced.
    let value = forwarded_for(trusted.then_some(&upstream.headers), hop)?;
    // The upstream request is a clone with no spare room: grow each map once.
    upstream.reserve_headers(2)?;
    upstream.insert_header_name(&X_FORWARDED_FOR.name, X_FORWARDED_FOR.wire, value)?;
    if !(trusted && upstream.headers.contains_key(&X_FORWARDED_PROTO.name)) {
        let proto = HeaderValue::from_static(if ctx.tls { "https" } else { "http" });
        upstream.insert_header_name(&X_FORWARDED_PROTO.name, X_FORWARDED_PROTO.wire, proto)?;
    }
    Ok(())
}

/// Drops any header whose name, with `_` read as `-`, is a forwarding
/// header (`X_Forwarded_For`, `X-Real_IP`, ...): origins that map headers
/// to CGI-style variables read it as the real one, so a client could
/// overwrite the address set here (Puma's CVE-2024-45614; nginx drops
/// names with `_` by default). Other names with `_` pass. One scan of the
/// names, with nothing allocated, when none has a `_`.
fn drop_underscore_aliases(upstream: &mut RequestHeader) {
    let alias = |name: &HeaderName| {
        let n = name.as_str().as_bytes();
        n.contains(&b'_')
            && CLIENT_FORWARDING
                .iter()
                .chain([&X_FORWARDED_FOR.name])
                .any(|f| {
                    let f = f.as_str().as_bytes();
                    f.len() == n.len()
                        && f.iter()
                            .zip(n)
                            .all(|(&a, &b)| a == b || (a == b'-' && b == b'_'))
                })
    };
    if !upstream.headers.keys().any(alias) {
        return;
    }
    let aliases: Vec<HeaderName> = upstream
        .headers
        .keys()
        .filter(|n| alias(n))
        .cloned()
        .collect();
    for name in aliases {
        upstream.remove_header(&name);
    }
}

/// The `X-Forwarded-For` value: the chain in `prior`'s lines (a line that
/// is not visible ASCII counts as empty), then `hop`, in one allocation of
/// the exact size.
fn forwarded_for(prior: Option<&http::HeaderMap>, hop: IpAddr) -> Result<HeaderValue> {
    use std::io::Write;
    // The longest IPv6 text is 45 bytes.
    let mut ip = [0u8; 48];
    let ip_len = {
        let mut w = &mut ip[..];
        // Cannot fail: the buffer holds any address.
        let _ = write!(w, "{hop}");
        48 - w.len()
    };
    let ip = ip.get(..ip_len).unwrap_or_default();
    let lines = || {
        prior
            .into_iter()
            .flat_map(|h| h.get_all(&X_FORWARDED_FOR.name))
    };
    let text_len = |v: &HeaderValue| v.to_str().map_or(0, str::len);
    let len = lines().map(|v| text_len(v) + 2).sum::<usize>() + ip.len();
    let mut out = Vec::with_capacity(len);
    for v in lines() {
        let text = v.to_str().map_or(&[][..], str::as_bytes);
        out.extend_from_slice(text);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(ip);
    // Exact capacity: `Bytes` takes the vector over without a copy.
    HeaderValue::from_maybe_shared(bytes::Bytes::from(out))
        .or_err(ErrorType::InvalidHTTPHeader, "X-Forwarded-For value")
}

/// `RateLimit-Policy`/`RateLimit` when the policy asks for them, and
/// `X-Steer-Region` (plus track and version when the table says so). Also
/// observes the upstream's time to the response head.
pub(super) fn steer_headers(
    steer: &Steering,
    resp: &mut ResponseHeader,
    ctx: &mut Ctx,
) -> Result<()> {
    let snap = &*ctx.snap;
    resp.reserve_headers(STEER_HEADERS)?;
    if let Some(q) = &ctx.limit {
        if let (Some(policy), Some(p)) = (
            snap.limits.policy_header(q.policy, q.tier),
            snap.table.rate_limits.get(q.policy),
        ) {
            resp.insert_header_name(
                &RATELIMIT_POLICY.name,
                RATELIMIT_POLICY.wire,
                policy.clone(),
            )?;
            let quota = p.tiers.get(q.tier).map_or(0, |t| t.rate);
            let value = edgesteer_ratelimit::ratelimit_header(&p.name, quota, &q.verdict);
            resp.insert_header_name(&RATELIMIT.name, RATELIMIT.wire, value)?;
        }
    }
    let route = ctx.route.route();
    if let Some(route) = route {
        if let Some(v) = snap.region_header.get(route.region.index()) {
            resp.insert_header_name(&X_STEER_REGION.name, X_STEER_REGION.wire, v.clone())?;
        }
        if snap.table.headers.track {
            let track = HeaderValue::from_static(route.track.as_str());
            resp.insert_header_name(&X_STEER_TRACK.name, X_STEER_TRACK.wire, track)?;
        }
        if snap.table.headers.version {
            let version = snap.version_header.clone();
            resp.insert_header_name(&X_STEER_VERSION.name, X_STEER_VERSION.wire, version)?;
        }
    }
    if let Some(t) = ctx.upstream_start {
        let head = t.elapsed();
        if let Some(m) = snap
            .region_metrics(route.map(|r| r.region.index()))
            .filter(|_| steer.record_metrics)
        {
            m.upstream_response.observe(head.as_secs_f64());
        }
        ctx.upstream_head = Some(head);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn map(lines: &[&[u8]]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for l in lines {
            h.append(&X_FORWARDED_FOR.name, HeaderValue::from_bytes(l).unwrap());
        }
        h
    }

    /// The vendored `insert_header_name` (vendor/README.md, 3) must act as
    /// `insert_header` did: every earlier line of the name, in any case,
    /// replaced; the name written as given; both maps kept in step.
    #[test]
    fn a_pre_parsed_insert_replaces_every_line_of_the_name_and_keeps_the_wire_case() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("X-Forwarded-For", "192.0.2.1").unwrap();
        req.append_header("x-forwarded-for", "192.0.2.2").unwrap();
        req.append_header("Accept", "*/*").unwrap();
        let upstream = req.clone(); // no spare room, as toward the origin
        for mut h in [req, upstream] {
            h.reserve_headers(2).unwrap();
            let v = HeaderValue::from_static("198.51.100.9");
            h.insert_header_name(&X_FORWARDED_FOR.name, X_FORWARDED_FOR.wire, v)
                .unwrap();
            let proto = HeaderValue::from_static("https");
            h.insert_header_name(&X_FORWARDED_PROTO.name, X_FORWARDED_PROTO.wire, proto)
                .unwrap();
            let all: Vec<_> = h.headers.get_all(&X_FORWARDED_FOR.name).iter().collect();
            assert_eq!(all, ["198.51.100.9"]);
            let mut wire = Vec::new();
            h.header_to_h1_wire(&mut wire);
            let wire = String::from_utf8(wire).unwrap();
            assert!(wire.contains("x-forwarded-for: 198.51.100.9\r\n"), "{wire}");
            assert!(wire.contains("x-forwarded-proto: https\r\n"), "{wire}");
            assert!(wire.contains("Accept: */*\r\n"), "{wire}");
            assert!(!wire.contains("192.0.2."), "{wire}");
        }
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.append_header("X-Steer-Region", "eu-west").unwrap();
        resp.reserve_headers(STEER_HEADERS).unwrap();
        let v = HeaderValue::from_static("us-east");
        resp.insert_header_name(&X_STEER_REGION.name, X_STEER_REGION.wire, v)
            .unwrap();
        let mut wire = Vec::new();
        resp.header_to_h1_wire(&mut wire);
        let wire = String::from_utf8(wire).unwrap();
        assert_eq!(wire, "x-steer-region: us-east\r\n");
    }

    #[test]
    fn forwarded_for_extends_every_line_in_order_or_starts_a_chain() {
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let v6: IpAddr = "2001:db8:ffff:ffff:ffff:ffff:255.255.255.255"
            .parse()
            .unwrap();
        let h = map(&[b"203.0.113.7, 198.51.100.2", b"192.0.2.9"]);
        assert_eq!(
            forwarded_for(Some(&h), v4).unwrap(),
            "203.0.113.7, 198.51.100.2, 192.0.2.9, 10.0.0.1"
        );
        assert_eq!(forwarded_for(None, v4).unwrap(), "10.0.0.1");
        assert_eq!(forwarded_for(Some(&map(&[])), v6).unwrap(), v6.to_string());
        // A line that is not visible ASCII is kept as an empty hop.
        let odd = map(&[b"caf\xe9", b"192.0.2.9"]);
        assert_eq!(
            forwarded_for(Some(&odd), v4).unwrap(),
            ", 192.0.2.9, 10.0.0.1"
        );
    }
}
