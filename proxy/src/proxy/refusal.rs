//! Answers the proxy gives itself instead of an origin's: one [`Refusal`]
//! type (status, headers, body and the reason the access log and metrics
//! name) and one writer for all of them.

use bytes::Bytes;
use edgesteer_config::{RegionId, RoutingTable, ZoneId};
use edgesteer_ratelimit::Quota;
use http::HeaderValue;
use pingora_core::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use serde_json::json;

use crate::steer::Snapshot;

/// Why the proxy answered a request itself. Its [`RefusalKind::reason`]
/// is the access log's `reason` and a bounded metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RefusalKind {
    /// 421: the host is pinned to a region outside the client's zone.
    PinOutsideZone,
    /// 503: nothing healthy inside the client's zone; failed closed.
    ZoneExhausted,
    /// 429: over a rate limit.
    RateLimited,
    /// 429: the address is on the abuse block list.
    AbuseBlocked,
    /// 503: a fail-closed fleet-wide limit cannot reach its store.
    LimitStoreDown,
    /// 400: `Content-Length` with `Transfer-Encoding`, or two lengths.
    BadFraming,
    /// 431: too many header lines, one too long, or the head too large.
    HeadTooLarge,
    /// 408: a request body stalled (read whole at the edge, or streaming
    /// when the origin's wait ran out).
    BodyTimeout,
}

impl RefusalKind {
    pub(super) fn reason(self) -> &'static str {
        match self {
            RefusalKind::PinOutsideZone => "pin_refused",
            RefusalKind::ZoneExhausted => "blocked",
            RefusalKind::RateLimited => "rate_limited",
            RefusalKind::AbuseBlocked => "abuse_blocked",
            RefusalKind::LimitStoreDown => "ratelimit_store_down",
            RefusalKind::BadFraming => "bad_framing",
            RefusalKind::HeadTooLarge => "head_too_large",
            RefusalKind::BodyTimeout => "body_timeout",
        }
    }

    /// Every kind, in [`RefusalKind::index`] order.
    pub(super) const ALL: [RefusalKind; 8] = [
        RefusalKind::PinOutsideZone,
        RefusalKind::ZoneExhausted,
        RefusalKind::RateLimited,
        RefusalKind::AbuseBlocked,
        RefusalKind::LimitStoreDown,
        RefusalKind::BadFraming,
        RefusalKind::HeadTooLarge,
        RefusalKind::BodyTimeout,
    ];

    /// Position in [`RefusalKind::ALL`] (the metric handle's index).
    pub(super) fn index(self) -> usize {
        self as usize
    }
}

/// A complete answer written by the proxy. Refusals are off the hot path,
/// so building one may allocate.
pub(super) struct Refusal {
    status: u16,
    content_type: Option<&'static str>,
    headers: Vec<(&'static str, HeaderValue)>,
    body: Bytes,
}

impl Refusal {
    /// 421 for a host pinned outside the client's zone.
    pub(super) fn pin_outside_zone(
        table: &RoutingTable,
        pinned: RegionId,
        zone: Option<ZoneId>,
    ) -> Refusal {
        let zone_name = zone_name(table, zone);
        let pinned = table.region(pinned);
        let why = match (zone, pinned.zone) {
            (Some(_), _) => format!("clients in zone {zone_name} may only be served inside it"),
            (None, Some(pz)) => format!(
                "{} is in isolated zone {}",
                pinned.name,
                table.zone(pz).name
            ),
            (None, None) => "it is outside this client's allowed regions".to_string(),
        };
        let body = format!(
            "421 Misdirected Request: this host is pinned to region {}, and {why}\n",
            pinned.name
        );
        Refusal {
            status: 421,
            content_type: Some("text/plain; charset=utf-8"),
            // No region served it: every answer names one, `none` here.
            headers: vec![
                ("x-steer-region", HeaderValue::from_static("none")),
                ("x-steer-zone", zone_header(zone_name)),
            ],
            body: Bytes::from(body),
        }
    }

    /// 503 when the client's zone has nothing healthy left: fail closed.
    pub(super) fn zone_exhausted(zone: &str) -> Refusal {
        let body = json!({
            "error": "no_healthy_region",
            "zone": zone,
            "message": format!("no healthy backend is available in the regions allowed for this client (zone {zone}); the request was not sent outside the zone"),
        });
        Refusal::json(
            503,
            body,
            vec![
                ("x-steer-region", HeaderValue::from_static("none")),
                ("x-steer-zone", zone_header(zone)),
            ],
        )
    }

    /// 429 over a rate limit, with `Retry-After` and the RateLimit headers.
    pub(super) fn rate_limited(snap: &Snapshot, q: &Quota) -> Refusal {
        // The quota indexes this snapshot's policies; the fallbacks only
        // keep a refusal a refusal if that were ever not so.
        let p = snap.table.rate_limits.get(q.policy);
        let name = p.map_or("", |p| p.name.as_str());
        let tier = p.and_then(|p| p.tiers.get(q.tier));
        let (tier, rate, burst) =
            tier.map_or(("default", 0, 0), |t| (t.name.as_str(), t.rate, t.burst));
        let policy_header = snap
            .limits
            .policy_header(q.policy, q.tier)
            .cloned()
            .unwrap_or(HeaderValue::from_static("\"unknown\""));
        let retry = edgesteer_ratelimit::retry_after_secs(&q.verdict);
        let body = json!({
            "error": "rate_limited",
            "policy": name,
            "tier": tier,
            "rate_per_s": rate,
            "burst": burst,
            "retry_after_s": retry,
            "message": format!("over the {tier} limit of {rate} requests/s (burst {burst}) of rate-limit policy {name}; retry after {retry} s"),
        });
        let headers = vec![
            ("retry-after", HeaderValue::from(retry)),
            ("ratelimit-policy", policy_header),
            (
                "ratelimit",
                edgesteer_ratelimit::ratelimit_header(name, rate, &q.verdict),
            ),
        ];
        Refusal::json(429, body, headers)
    }

    /// 429 for an address on the abuse block list, with the block's own
    /// reason (an operator's, or the abuse rule's).
    pub(super) fn blocked(retry_after_s: u64, reason: Option<&str>) -> Refusal {
        let reason = reason.unwrap_or("sending far above its rate limit");
        let body = json!({
            "error": "blocked",
            "reason": reason,
            "retry_after_s": retry_after_s,
            "message": format!("this client address is blocked ({reason}); retry after {retry_after_s} s"),
        });
        Refusal::json(
            429,
            body,
            vec![("retry-after", HeaderValue::from(retry_after_s))],
        )
    }

    /// 503 when a fail-closed fleet-wide policy cannot reach its store.
    pub(super) fn store_down(policy: &str) -> Refusal {
        let body = json!({
            "error": "rate_limit_store_unavailable",
            "policy": policy,
            "retry_after_s": 1,
            "message": format!("rate-limit policy {policy} is fleet-wide and fails closed, and its store (Redis) is unreachable from this proxy; retry shortly"),
        });
        Refusal::json(503, body, vec![("retry-after", HeaderValue::from(1u32))])
    }

    /// A client's mistake: `{"error", "message", "header"?}`; the
    /// connection is not kept (the rest of its bytes cannot be trusted).
    pub(super) fn client_error(
        status: u16,
        error: &str,
        message: String,
        header: Option<&str>,
    ) -> Refusal {
        let mut body = json!({ "error": error, "message": message });
        if let Some(h) = header {
            body["header"] = json!(h.chars().take(64).collect::<String>());
        }
        Refusal::json(
            status,
            body,
            vec![("connection", HeaderValue::from_static("close"))],
        )
    }

    /// 408 for a request body that stopped arriving (read whole at the
    /// edge, or streaming when the origin's wait ran out): the client's.
    pub(super) fn body_timeout(message: String) -> (RefusalKind, Refusal) {
        (
            RefusalKind::BodyTimeout,
            Refusal::client_error(408, "request_timeout", message, None),
        )
    }

    /// An empty answer with only a status, for errors without a body of
    /// their own (502 from an origin that failed, 504, 400), naming the
    /// region tried when there was one.
    pub(super) fn bare(status: u16, region: Option<HeaderValue>) -> Refusal {
        Refusal {
            status,
            content_type: None,
            headers: region.map(|v| ("x-steer-region", v)).into_iter().collect(),
            body: Bytes::new(),
        }
    }

    fn json(
        status: u16,
        body: serde_json::Value,
        headers: Vec<(&'static str, HeaderValue)>,
    ) -> Refusal {
        Refusal {
            status,
            content_type: Some("application/json"),
            headers,
            body: Bytes::from(body.to_string()),
        }
    }

    /// Every header of the answer, in order: the one list that both
    /// [`Self::write`] and [`Self::to_http1`] render.
    fn header_list(&self) -> impl Iterator<Item = (&'static str, HeaderValue)> + '_ {
        let fixed = [
            self.content_type
                .map(|ct| ("content-type", HeaderValue::from_static(ct))),
            Some(("content-length", HeaderValue::from(self.body.len()))),
            Some((
                "cache-control",
                HeaderValue::from_static("private, no-store"),
            )),
        ];
        fixed
            .into_iter()
            .flatten()
            .chain(self.headers.iter().cloned())
    }

    /// The whole answer as HTTP/1.1 bytes, for a connection Pingora has
    /// no session on yet (the intake's).
    pub(super) fn to_http1(&self) -> Vec<u8> {
        let status = http::StatusCode::from_u16(self.status)
            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        let mut out = format!(
            "HTTP/1.1 {} {}\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )
        .into_bytes();
        for (name, value) in self.header_list() {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }

    /// Writes the whole answer; never cached by anyone on the way.
    pub(super) async fn write(self, session: &mut Session) -> Result<()> {
        let mut resp = ResponseHeader::build(self.status, Some(3 + self.headers.len()))?;
        for (name, value) in self.header_list() {
            resp.insert_header(name, value)?;
        }
        if self.body.is_empty() {
            return session.write_response_header(Box::new(resp), true).await;
        }
        session.write_response_header(Box::new(resp), false).await?;
        session.write_response_body(Some(self.body), true).await
    }
}

/// A zone's name, or `none` for clients outside every zone.
pub(super) fn zone_name(table: &RoutingTable, zone: Option<ZoneId>) -> &str {
    zone.map_or("none", |z| table.zone(z).name.as_str())
}

fn zone_header(zone: &str) -> HeaderValue {
    HeaderValue::from_str(zone).unwrap_or(HeaderValue::from_static("invalid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_http1_rendering_carries_every_header_of_the_list() {
        let r = Refusal::client_error(400, "bad", "no".into(), Some("x-a"));
        let text = String::from_utf8(r.to_http1()).unwrap_or_default();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        let names: Vec<&str> = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(": ").map(|(n, _)| n))
            .collect();
        let listed: Vec<&str> = r.header_list().map(|(n, _)| n).collect();
        assert_eq!(names, listed);
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        assert!(head.contains("connection: close"), "{head}");
    }
}
