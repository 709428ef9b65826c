//! The ops console's server side: the page and its assets at `/ui`
//! (embedded, no token needed: they hold no data), and the three reads
//! only the console needs, each behind the usual token check:
//! - `GET /v1/whoami`: the token's name and role (the page hides the
//!   action controls from a `read` token; the API refuses its writes anyway);
//! - `GET /v1/live`: per region, 15 minutes of 10-second points drawn from
//!   the proxies' stats, the backends the fleet reports unavailable, and the
//!   changes of the canary share in the stored versions;
//! - `GET /v1/explain`: where a client goes now and why, with the table's
//!   `decide`, the service's geo database (`--geo-db`) and the fleet's
//!   reported health.
//!
//! Every write the console makes goes through the typed API
//! (`PATCH /v1/regions/..`, `POST /v1/rollback`, `POST /v1/rollouts/..`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use edgesteer_config::explain::{explain_route, Client};
use edgesteer_geo::GeoLookup;
use serde::{Deserialize, Serialize};

use edgesteer_control_api::Caller;

use crate::figures::now_ms;
use crate::http::ApiError;
use crate::live::{FleetHealth, LivePoint, POINTS, POINT_MS};
use crate::state::Control;

/// Stored versions scanned for canary-share changes.
const STEP_SCAN: usize = 500;

/// `GET /v1/whoami`.
#[derive(Debug, Serialize, Deserialize)]
pub struct WhoAmI {
    pub name: String,
    pub role: String,
}

pub(crate) async fn whoami(Extension(caller): Extension<Caller>) -> Json<WhoAmI> {
    Json(WhoAmI {
        name: caller.name,
        role: caller.role.as_str().to_string(),
    })
}

/// One chart point: 10 seconds of a region's traffic, fleet-wide.
/// A stored version that changed a region's canary share.
#[derive(Debug, Serialize, Deserialize)]
pub struct CanaryChange {
    pub version: u64,
    pub at_ms: u64,
    pub canary_bps: u32,
    pub action: String,
}

/// One region in `GET /v1/live`.
#[derive(Debug, Serialize, Deserialize)]
pub struct LiveRegion {
    pub zone: Option<String>,
    pub drained: bool,
    pub canary_bps: u32,
    pub backends: usize,
    /// Backends any reporting proxy holds unavailable (table keys).
    pub unhealthy: Vec<String>,
    pub points: Vec<LivePoint>,
    pub canary_changes: Vec<CanaryChange>,
}

/// `GET /v1/live`.
#[derive(Debug, Serialize, Deserialize)]
pub struct LiveView {
    pub version: Option<u64>,
    pub now_ms: u64,
    pub point_ms: u64,
    /// Proxies whose health report is fresh (last 5 s).
    pub reporting_proxies: usize,
    pub regions: BTreeMap<String, LiveRegion>,
}

pub(crate) async fn live(State(c): State<Arc<Control>>) -> Json<LiveView> {
    let now = now_ms();
    let since = now.saturating_sub(POINT_MS * POINTS as u64);
    let (unhealthy, reporting_proxies) = c.live.unhealthy();
    let cur = c.latest();
    let mut changes = canary_changes(&c, since);
    let mut regions = BTreeMap::new();
    if let Some(cur) = &cur {
        for (name, r) in &cur.table.regions {
            let keys: BTreeSet<&str> = r.backends.iter().map(|b| b.address.as_str()).collect();
            regions.insert(
                name.clone(),
                LiveRegion {
                    zone: r.zone.clone(),
                    drained: r.drain,
                    canary_bps: r.canary_bps,
                    backends: r.backends.len(),
                    unhealthy: unhealthy
                        .get(name)
                        .map(|u| {
                            u.iter()
                                .filter(|k| keys.contains(k.as_str()))
                                .cloned()
                                .collect()
                        })
                        .unwrap_or_default(),
                    points: c.live.points(name, since),
                    canary_changes: changes.remove(name.as_str()).unwrap_or_default(),
                },
            );
        }
    }
    Json(LiveView {
        version: cur.map(|r| r.version),
        now_ms: now,
        point_ms: POINT_MS,
        reporting_proxies,
        regions,
    })
}

/// Per region, the stored versions (of the last [`STEP_SCAN`]) that
/// changed its canary share, from `since_ms` on, plus the share in force
/// at `since_ms` so a chart starts at the right height.
fn canary_changes(c: &Control, since_ms: u64) -> HashMap<String, Vec<CanaryChange>> {
    let versions = c.versions.recent(STEP_SCAN);
    let mut out: HashMap<String, Vec<CanaryChange>> = HashMap::new();
    let mut prev: HashMap<&str, u32> = HashMap::new();
    for v in &versions {
        for (name, r) in &v.table.regions {
            let before = prev.insert(name.as_str(), r.canary_bps);
            if before == Some(r.canary_bps) {
                continue;
            }
            let list = out.entry(name.clone()).or_default();
            let change = CanaryChange {
                version: v.version,
                at_ms: v.audit.at_ms,
                canary_bps: r.canary_bps,
                action: v.audit.action.clone(),
            };
            if v.audit.at_ms < since_ms {
                // Only the share in force when the window opens is kept.
                list.clear();
            }
            list.push(change);
        }
    }
    out
}

/// `GET /v1/explain` parameters.
#[derive(Debug, Deserialize)]
pub(crate) struct ExplainQuery {
    ip: String,
    host: Option<String>,
    key: Option<String>,
    /// A DNS name; default: the host when GeoDNS answers it, else the
    /// table's first name answered by location.
    dns: Option<String>,
}

pub(crate) async fn explain(
    State(c): State<Arc<Control>>,
    q: Result<Query<ExplainQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| {
        crate::http::malformed_part(
            e.body_text(),
            "ip",
            "give ?ip=ADDRESS (and optionally &key=API_KEY, &host=HOST)",
        )
    })?;
    let ip: IpAddr = q.ip.trim().parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_request",
            format!("{:?} is not an IP address", q.ip),
        )
        .at("ip", "an IPv4 or IPv6 address")
    })?;
    let Some(geo) = c.geo() else {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "no_geo_db",
            "this config service has no geo database: start it with --geo-db FILE (the proxies' MaxMind file), or ask a proxy: edgesteer ctl explain",
        ));
    };
    let Some(cur) = c.latest() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_table",
            "no table is stored yet",
        ));
    };
    // Compiled once per version (off the runtime), not once per request.
    let table = c.compiled.of(&cur).await?;
    let g = geo.lookup(ip);
    let (unhealthy, reporting) = c.live.unhealthy();
    let client = Client {
        ip,
        country: g.country,
        continent: g.continent,
        lookup: g.status.as_str(),
        host: q.host.as_deref().filter(|h| !h.is_empty()),
        key: q.key.as_deref().filter(|k| !k.is_empty()),
    };
    let health = FleetHealth {
        table: &table,
        unhealthy: &unhealthy,
    };
    let mut out = explain_route(&table, cur.version, &client, &health);
    if let Some(zone) = table.dns.as_deref() {
        let host_steered = client
            .host
            .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
            .filter(|h| zone.steered(h).is_some());
        let name = q
            .dns
            .clone()
            .filter(|d| !d.is_empty())
            .or(host_steered)
            .or_else(|| zone.geo_names.first().cloned());
        if let Some(name) = name {
            let class = table.classify(g.country, g.continent);
            let dns = edgesteer_config::dns::explain::explain_dns(
                &table,
                &name,
                class,
                &health,
                edgesteer_config::model::RegionSet::EMPTY,
            );
            out.insert("dns".into(), dns);
        }
    }
    out.insert(
        "health".into(),
        serde_json::json!({ "source": "fleet", "reporting_proxies": reporting }),
    );
    Ok(Json(serde_json::Value::Object(out)).into_response())
}

// ---- the page ----

const INDEX_HTML: &str = include_str!("../ui/index.html");
const APP_JS: &str = include_str!("../ui/app.js");
const APP_CSS: &str = include_str!("../ui/app.css");

/// No inline script or style, nothing from another origin, no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut res = (StatusCode::OK, body).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

pub(crate) async fn index() -> Response {
    asset(INDEX_HTML, "text/html; charset=utf-8")
}

pub(crate) async fn app_js() -> Response {
    asset(APP_JS, "text/javascript; charset=utf-8")
}

pub(crate) async fn app_css() -> Response {
    asset(APP_CSS, "text/css; charset=utf-8")
}
