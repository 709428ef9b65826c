//! Strict framing at the edge: a request head that two parsers could read
//! two ways (`Content-Length` with `Transfer-Encoding`, repeated
//! `Content-Length`), or one that is oversized, is answered by the proxy
//! itself before anything reaches an origin. Pingora has already parsed
//! the head (its own hard limits are 1 MiB and 256 headers); these are the
//! edge's tighter ones, as nginx and Envoy keep.

use bytes::Bytes;
use edgesteer_config::host::valid_host_header;
use edgesteer_config::limits::DownstreamLimits;
use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use pingora_http::RequestHeader;

use super::refusal::{Refusal, RefusalKind};
use crate::head::is_length;

/// The refusal for a badly framed or oversized head, if it is one. `raw`
/// gives the head as received (HTTP/1): Pingora drops `Content-Length`
/// when `Transfer-Encoding` is present, so only the raw head still shows
/// that both were sent. It is read only for requests with
/// `Transfer-Encoding`.
pub(super) fn check(
    req: &RequestHeader,
    raw: impl FnOnce() -> Option<Bytes>,
    limits: &DownstreamLimits,
) -> Option<(RefusalKind, Refusal)> {
    let max_headers = limits.max_header_lines as usize;
    let max_line = limits.max_header_line_bytes as usize;
    let max_head = limits.max_head_bytes as usize;
    let h = &req.headers;
    let lengths = h.get_all(CONTENT_LENGTH).iter().count();
    let te = h.contains_key(TRANSFER_ENCODING);
    if te && (lengths > 0 || raw().is_some_and(|head| has_content_length(&head))) {
        return Some(bad_framing(
            "a request may not carry both Content-Length and Transfer-Encoding",
        ));
    }
    if lengths > 1 {
        return Some(bad_framing("a request may carry only one Content-Length"));
    }
    if let Some(refused) = host_check(req) {
        return Some(refused);
    }
    // One decimal number (RFC 9110 8.6): never a list (`3, 3`), a sign
    // (`+3`) or anything an origin could read another way.
    if let Some(v) = h.get(CONTENT_LENGTH) {
        if !is_length(v.as_bytes()) {
            return Some(bad_framing(
                "Content-Length must be one decimal number (no list, sign or spaces)",
            ));
        }
    }
    if h.len() > max_headers {
        let message = format!("more than {max_headers} header lines");
        return Some(too_large(message, None));
    }
    // Request line: method, target, version and separators (measured
    // without formatting the URI: no allocation on the request path).
    let target = req.uri.authority().map_or(0, |a| a.as_str().len())
        + req.uri.path_and_query().map_or(1, |p| p.as_str().len());
    let mut head = req.method.as_str().len() + target + 12;
    for (name, value) in h {
        let line = name.as_str().len() + value.len() + 4;
        if line > max_line {
            let message = format!("header {name} is longer than {max_line} bytes");
            return Some(too_large(message, Some(name.as_str())));
        }
        head += line;
    }
    if head > max_head {
        let message = format!("the request head is larger than {max_head} bytes");
        return Some(too_large(message, None));
    }
    None
}

/// RFC 9112 3.2: an HTTP/1.1 request without `Host`, or with one that is
/// not `host[:port]`, is answered 400. Host pins and host-scoped rate
/// limits match the header, so a spelling no pin could meet
/// (`api-cn.x:x`) must not pass as "no host". HTTP/2 carries the host in
/// `:authority`, which Pingora has parsed into the target.
fn host_check(req: &RequestHeader) -> Option<(RefusalKind, Refusal)> {
    let refuse = |message: &str| {
        let refusal = Refusal::client_error(400, "bad_request", message.to_string(), Some("host"));
        Some((RefusalKind::BadFraming, refusal))
    };
    let mut hosts = req.headers.get_all(HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => refuse("a request may carry only one Host"),
        (Some(v), None) => match v.to_str() {
            Ok(v) if valid_host_header(v) => None,
            _ => refuse("Host must be host[:port]: a name, an IPv4 address or a bracketed IPv6 one, and a port of digits"),
        },
        (None, _) if req.version == http::Version::HTTP_11 => {
            refuse("an HTTP/1.1 request must carry Host (RFC 9112 3.2)")
        }
        (None, _) => None,
    }
}

/// Whether a raw HTTP/1 head has a `Content-Length` line.
fn has_content_length(head: &[u8]) -> bool {
    const NAME: &[u8] = b"content-length:";
    head.split(|&b| b == b'\n')
        .skip(1)
        .any(|line| line.len() >= NAME.len() && line[..NAME.len()].eq_ignore_ascii_case(NAME))
}

fn bad_framing(message: &str) -> (RefusalKind, Refusal) {
    (
        RefusalKind::BadFraming,
        Refusal::client_error(400, "bad_framing", message.to_string(), None),
    )
}

pub(super) fn too_large(message: String, header: Option<&str>) -> (RefusalKind, Refusal) {
    (
        RefusalKind::HeadTooLarge,
        Refusal::client_error(431, "request_header_fields_too_large", message, header),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, String)]) -> RequestHeader {
        // HTTP/1.0, which may omit Host: each test names the lines it counts.
        let mut r = RequestHeader::build("POST", b"/v1/x", None).unwrap();
        r.set_version(http::Version::HTTP_10);
        for (n, v) in headers {
            r.append_header(n.to_string(), v.as_str()).unwrap();
        }
        r
    }

    fn refused(headers: &[(&str, String)]) -> Option<RefusalKind> {
        check(&req(headers), || None, &DownstreamLimits::default()).map(|(k, _)| k)
    }

    #[test]
    fn a_length_pingora_dropped_is_found_in_the_raw_head() {
        let te = req(&[("transfer-encoding", "chunked".to_string())]);

        let raw = Bytes::from_static(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        let limits = DownstreamLimits::default();
        let got = check(&te, || Some(raw), &limits).map(|(k, _)| k);
        assert_eq!(got, Some(RefusalKind::BadFraming));
        let clean = Bytes::from_static(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(check(&te, || Some(clean), &limits).map(|(k, _)| k), None);
    }

    #[test]
    fn ambiguous_and_oversized_heads_are_refused() {
        let cl = ("content-length", "5".to_string());
        let te = ("transfer-encoding", "chunked".to_string());
        assert_eq!(refused(std::slice::from_ref(&cl)), None);
        assert_eq!(refused(std::slice::from_ref(&te)), None);
        assert_eq!(refused(&[cl.clone(), te]), Some(RefusalKind::BadFraming));
        let cl2 = ("content-length", "6".to_string());
        assert_eq!(refused(&[cl, cl2]), Some(RefusalKind::BadFraming));
        let l = DownstreamLimits::default();
        let long = ("x-long", "a".repeat(l.max_header_line_bytes as usize));
        assert_eq!(refused(&[long]), Some(RefusalKind::HeadTooLarge));
        let many: Vec<_> = (0..=l.max_header_lines)
            .map(|i| ("x-n", i.to_string()))
            .collect();
        assert_eq!(refused(&many), Some(RefusalKind::HeadTooLarge));
        let big: Vec<_> = (0..10).map(|_| ("x-big", "b".repeat(7000))).collect();
        assert_eq!(refused(&big), Some(RefusalKind::HeadTooLarge));
        let fine: Vec<_> = (0..l.max_header_lines)
            .map(|i| ("x-n", i.to_string()))
            .collect();
        assert_eq!(refused(&fine), None);
    }

    /// RFC 9112 3.2, and no spelling that no pin could meet.
    #[test]
    fn host_is_required_in_1_1_and_must_be_host_and_port() {
        let host = |v: &str| refused(&[("host", v.to_string())]);
        assert_eq!(host("api-cn.covergen.ai:443"), None);
        assert_eq!(host("[2001:db8::1]:8443"), None);
        for bad in [
            "api-cn.covergen.ai:x",
            "api-cn.covergen.ai:443:443",
            "u@api-cn.covergen.ai",
        ] {
            assert_eq!(host(bad), Some(RefusalKind::BadFraming), "{bad}");
        }
        let two = [("host", "a".to_string()), ("host", "b".to_string())];
        assert_eq!(refused(&two), Some(RefusalKind::BadFraming));
        let mut none = RequestHeader::build("GET", b"/", None).unwrap();
        let limits = DownstreamLimits::default();
        let kind = check(&none, || None, &limits).map(|(k, _)| k);
        assert_eq!(kind, Some(RefusalKind::BadFraming));
        none.set_version(http::Version::HTTP_10);
        assert!(
            check(&none, || None, &limits).is_none(),
            "HTTP/1.0 may omit Host"
        );
    }

    #[test]
    fn the_tables_header_limits_apply() {
        let tight = DownstreamLimits {
            max_header_lines: 5,
            max_header_line_bytes: 100,
            max_head_bytes: 2048,
            ..DownstreamLimits::default()
        };
        let kind =
            |headers: &[(&str, String)]| check(&req(headers), || None, &tight).map(|(k, _)| k);
        let six: Vec<_> = (0..6).map(|i| ("x-n", i.to_string())).collect();
        assert_eq!(kind(&six), Some(RefusalKind::HeadTooLarge));
        assert_eq!(kind(&six[..5]), None);
        assert_eq!(
            kind(&[("x-long", "a".repeat(100))]),
            Some(RefusalKind::HeadTooLarge)
        );
        let wide: Vec<_> = (0..5).map(|_| ("x-w", "w".repeat(90))).collect();
        assert_eq!(kind(&wide), None);
        let wider: Vec<_> = (0..5).map(|_| ("x-w", "w".repeat(400))).collect();
        assert_eq!(kind(&wider), Some(RefusalKind::HeadTooLarge));
    }
}
