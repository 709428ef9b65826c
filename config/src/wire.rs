//! The wire format of a routing table: what operators write (TOML) and what
//! the API carries (JSON). It is deliberately loose in types (strings, plain
//! numbers) and strict in shape (`deny_unknown_fields` everywhere); all
//! meaning is checked by `compile()`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A routing table as written. Maps are `BTreeMap` so that serialisation is
/// deterministic (diffs and golden tests stay stable).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    /// Free-text description shown by `edgesteer validate` and the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Region that serves clients whose country is unknown, private or unmapped.
    pub default_region: String,
    /// Client-address handling (trusted proxies for `X-Forwarded-For`).
    #[serde(default)]
    pub client_ip: ClientIpSpec,
    /// Response headers the proxy adds.
    #[serde(default)]
    pub headers: HeadersSpec,
    /// Access logging.
    #[serde(default)]
    pub logging: LoggingSpec,
    /// Compliance zones by name.
    #[serde(default)]
    pub zones: BTreeMap<String, ZoneSpec>,
    /// Geography: continent and country -> region.
    #[serde(default)]
    pub geo: GeoSpec,
    /// Host pins: exact host name -> region.
    #[serde(default)]
    pub hosts: BTreeMap<String, String>,
    /// Table-wide health-check defaults; regions may override.
    #[serde(default)]
    pub health: HealthSpec,
    /// Canary assignment (salt and sticky key source).
    #[serde(default)]
    pub release: ReleaseSpec,
    /// Retry budget for failed upstream attempts.
    #[serde(default)]
    pub retry: RetrySpec,
    /// Passive outlier detection from live traffic.
    #[serde(default)]
    pub outlier: OutlierSpec,
    /// How origins are reached (TLS, verification, ALPN); regions may
    /// override any field.
    #[serde(default, skip_serializing_if = "UpstreamSpec::is_default")]
    pub upstream: UpstreamSpec,
    /// Rate-limit policies, checked in order on every request they match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rate_limits: Vec<RateLimitSpec>,
    /// Downstream limits; every field optional (defaults in the model).
    #[serde(default, skip_serializing_if = "LimitsSpec::is_default")]
    pub limits: LimitsSpec,
    /// Regions by name.
    pub regions: BTreeMap<String, RegionSpec>,
    /// Authoritative GeoDNS for the table's names (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<crate::wire_dns::DnsSpec>,
}

/// One rate-limit policy. A policy with a single limit writes `rate` and
/// `burst`; a tiered one writes `tiers`, `default_tier` and `keys`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    /// Unique name; shown in headers, metrics and 429 bodies. Limiter state
    /// is kept across reloads for the same name and key source.
    pub name: String,
    /// `client_ip` or `header:<name>` (e.g. `header:x-api-key`).
    pub key: String,
    /// `local` (each proxy alone, default) or `global` (fleet-wide via Redis).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// For `global`: `fail_open` (default: local limits only) or
    /// `fail_closed` (503) while the shared store is unreachable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_store_error: Option<String>,
    /// Requests per second for the single-limit form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<u32>,
    /// Requests allowed at once on top of the rate (single-limit form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Tier name -> limit.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tiers: BTreeMap<String, TierSpec>,
    /// Tier for unknown keys and for requests without the key header; those
    /// are counted per client IP, so inventing keys mints no quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_tier: Option<String>,
    /// Known key -> tier name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub keys: BTreeMap<String, String>,
    /// Apply only to these hosts (exact, case-insensitive); empty = all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Apply only to paths starting with one of these; empty = all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path_prefixes: Vec<String>,
    /// Put `RateLimit`/`RateLimit-Policy` on allowed responses too.
    #[serde(default, skip_serializing_if = "is_false")]
    pub response_headers: bool,
    /// Most keys tracked at once (default 1,000,000); see docs/design.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_keys: Option<u32>,
    /// Block client IPs that keep sending far above the limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abuse: Option<AbuseSpec>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierSpec {
    /// Requests per second.
    pub rate: u32,
    /// Requests allowed at once (default: one second's worth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

/// An IP whose request rate exceeds `multiple` x its limit in each of
/// `for_s` consecutive seconds is blocked for `block_s` seconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbuseSpec {
    pub multiple: u32,
    pub for_s: u32,
    /// Default 3600 (one hour).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_s: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientIpSpec {
    /// CIDRs whose `X-Forwarded-For`/`Forwarded` headers are believed.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadersSpec {
    /// `X-Steer-Track` on responses.
    #[serde(default)]
    pub track: bool,
    /// `X-Steer-Version` (routing-table version) on responses.
    #[serde(default)]
    pub version: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingSpec {
    /// One JSON line per request (destination: `edgesteer proxy --access-log`).
    #[serde(default)]
    pub access_log: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneSpec {
    /// No client from outside the zone may be served by its regions.
    #[serde(default)]
    pub isolated: bool,
    /// Clients from these countries may only be served by the zone's regions.
    #[serde(default)]
    pub countries: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoSpec {
    /// Continent code (AF AN AS EU NA OC SA) -> region.
    #[serde(default)]
    pub continents: BTreeMap<String, String>,
    /// Country code -> region; wins over the continent.
    #[serde(default)]
    pub countries: BTreeMap<String, String>,
}

/// Active health-check settings; every field is optional so a region can
/// override only what differs from the table-wide defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_after: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_after: Option<u32>,
    /// How long a hostname backend keeps its last addresses once its name
    /// no longer resolves (NXDOMAIN or no records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_forget_after_ms: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseSpec {
    /// Salt of the canary hash; changing it reshuffles every user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
    /// Where the sticky key comes from, in order: `header:<name>`,
    /// `cookie:<name>`; the client IP is always the last resort.
    #[serde(default)]
    pub sticky_keys: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_timeout_ms: Option<u64>,
}

/// `[limits]`: how long clients may hold connections and requests.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    /// A whole request head must arrive within this (from accept for a
    /// connection's first request, from its first byte for later ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_timeout_ms: Option<u64>,
    /// A TLS client must finish its handshake within this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_handshake_timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive_idle_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_read_idle_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_idle_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_send_rate_bps: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests_per_connection: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub h2_idle_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_header_lines: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_header_line_bytes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_head_bytes: Option<u32>,
    /// Bodies up to this many bytes (by `Content-Length`) are read whole
    /// at the edge before an origin is contacted; 0 streams every body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer_body_bytes: Option<u32>,
    /// Response body bytes one request may hold in the proxy between the
    /// origin and a client that reads slowly; past it the origin waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_buffer_bytes: Option<u32>,
}

impl LimitsSpec {
    fn is_default(&self) -> bool {
        self == &LimitsSpec::default()
    }
}

/// Passive ejection; every field optional, defaults in the model.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutlierSpec {
    /// Consecutive connect failures, resets or timeouts that eject (0 = off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<u32>,
    /// Consecutive 5xx answers that eject (0 = off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_5xx: Option<u32>,
    /// First ejection lasts this long; the n-th lasts n times as long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_ejection_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ejection_ms: Option<u64>,
    /// At most this share of a region's backends may be ejected passively.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ejection_percent: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionSpec {
    /// The compliance zone this region belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Ordered regions to try when this one has no healthy backend.
    #[serde(default)]
    pub failover: Vec<String>,
    /// Share of this region's users sent to the canary track, in basis points.
    #[serde(default)]
    pub canary_bps: u32,
    /// Drained: takes no traffic; its clients go to the failover list.
    #[serde(default, skip_serializing_if = "is_false")]
    pub drain: bool,
    /// Requests/s the region is sized for (fleet-wide), if known: the
    /// impact preview warns when a change would load it past 80% of it.
    /// Not used for routing. Above 0 when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<f64>,
    /// Overrides of the table-wide health-check settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthSpec>,
    /// Overrides of the table-wide upstream settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<UpstreamSpec>,
    /// A progressive canary rollout: its plan and where it stands. The
    /// config service's rollout controller advances it by writing new
    /// versions, so every proxy sees the same step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutSpec>,
    pub backends: Vec<BackendSpec>,
}

/// One step of a rollout: the canary share and how long it must hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutStep {
    pub canary_bps: u32,
    pub hold_ms: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutSpec {
    /// idle, running, paused, completed, rolled_back or aborted.
    pub state: String,
    /// Index of the current step.
    #[serde(default)]
    pub step: usize,
    pub steps: Vec<RolloutStep>,
    /// Canary 5xx share above which the rollout rolls back (default 0.01).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_rate: Option<f64>,
    /// Canary p99 may be at most this multiple of stable's (default 1.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p99_ratio: Option<f64>,
    /// Canary requests a step needs before it may advance (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<u64>,
    /// Milliseconds since the epoch when the current step began.
    #[serde(default)]
    pub step_started_ms: u64,
    /// Why the rollout stopped (gate and figures), when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSpec {
    /// `ip:port`, `[ipv6]:port` or `hostname:port`.
    pub address: String,
    /// Relative weight within its region and track; 0 drains it.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// `stable` (default) or `canary`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn default_weight() -> u32 {
    1
}

/// `[upstream]` (and a region's `upstream`): how the proxy reaches
/// origins. Every field is optional; a region's override replaces only
/// the fields it names.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSpec {
    /// TLS to the origin (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<bool>,
    /// Server name sent and verified; default: the backend's hostname (or
    /// its IP address, checked against the certificate's IP SANs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// Verify the origin's certificate (default true). `false` needs
    /// `insecure_skip_verify = true` as well.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<bool>,
    /// The explicit, named opt-out of verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
    /// CA bundle (PEM file) the origin's certificate must chain to;
    /// default: the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// Client certificate chain (PEM file) for origins that want mTLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<String>,
    /// Private key (PEM file) of `client_cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<String>,
    /// Protocols offered: `["h2", "http/1.1"]` (TLS), `["http/1.1"]`, or
    /// `["h2c"]` (HTTP/2 without TLS, prior knowledge). Default
    /// `["http/1.1"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpn: Option<Vec<String>>,
    /// Most requests in flight on one HTTP/2 connection to an origin
    /// (default 100); more open another connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_h2_streams: Option<u32>,
    /// HTTP/2 flow-control window the proxy gives an origin per request,
    /// in bytes (default 65,535, the protocol's own; 16,384 to 2 MiB):
    /// what a client that stops reading can make the proxy hold of its
    /// answer, on top of `[limits] response_buffer_bytes`, and one
    /// answer's throughput per round trip. A connection's window is this
    /// times `max_h2_streams`, so stalled requests never use up another's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub h2_window_bytes: Option<u32>,
}

impl UpstreamSpec {
    fn with_tls(mut self, tls: bool) -> UpstreamSpec {
        self.tls = Some(tls);
        self
    }

    pub fn is_default(&self) -> bool {
        *self == UpstreamSpec::default()
    }

    /// `over` applied on top of `self`, field by field. A region that
    /// turns TLS off (`tls = false`) takes none of the table's TLS
    /// settings (SNI, verification, CA, client certificate, ALPN): it could
    /// not unset them, and they only mean something with TLS.
    pub fn merged(&self, over: &UpstreamSpec) -> UpstreamSpec {
        if over.tls == Some(false) {
            // A plaintext ALPN (`["h2c"]`, `["http/1.1"]`) still applies.
            let plain_alpn = self
                .alpn
                .clone()
                .filter(|a| a.len() == 1 && a.iter().all(|p| p == "h2c" || p == "http/1.1"));
            let plain = UpstreamSpec {
                alpn: plain_alpn,
                max_h2_streams: self.max_h2_streams,
                h2_window_bytes: self.h2_window_bytes,
                ..UpstreamSpec::default()
            };
            return plain
                .merged(&UpstreamSpec {
                    tls: None,
                    ..over.clone()
                })
                .with_tls(false);
        }
        UpstreamSpec {
            tls: over.tls.or(self.tls),
            sni: over.sni.clone().or_else(|| self.sni.clone()),
            verify: over.verify.or(self.verify),
            insecure_skip_verify: over.insecure_skip_verify.or(self.insecure_skip_verify),
            ca: over.ca.clone().or_else(|| self.ca.clone()),
            client_cert: over
                .client_cert
                .clone()
                .or_else(|| self.client_cert.clone()),
            client_key: over.client_key.clone().or_else(|| self.client_key.clone()),
            alpn: over.alpn.clone().or_else(|| self.alpn.clone()),
            max_h2_streams: over.max_h2_streams.or(self.max_h2_streams),
            h2_window_bytes: over.h2_window_bytes.or(self.h2_window_bytes),
        }
    }
}
