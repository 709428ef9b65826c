//! Config-service request bodies: PUT table, PATCH region, rollback,
//! rollout commands, acks and stats, through the real router.
//!
//! Input (structured): up to eight requests against a fresh service
//! seeded with the covergen table, each body either raw bytes or a typed
//! body (generated values, serialised). The service never answers 5xx,
//! every 4xx is an error body with a code and, for a malformed or invalid
//! body, the field at fault; after every request the current table still
//! compiles and holds only in-range references; a rollout tick over the
//! reported figures never panics.
#![no_main]

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use arbitrary::{Arbitrary, Unstructured};
use axum::body::Body;
use edgesteer_control::{router, Control, MemoryStore};
use edgesteer_control_api::Token;
use edgesteer_fuzz::{check_table, gen_table};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use serde_json::json;
use tower::ServiceExt;

const OPS: &str = "ops-secret-1";
const PROXY: &str = "proxy-secret-1";
const REGIONS: &[&str] = &[
    "us-east",
    "eu-west",
    "cn-east",
    "ap-southeast",
    "nope",
    "us%2Deast",
];
const ADDRS: &[&str] = &["10.1.0.1:8080", "10.1.0.2:8080", "10.2.0.1:8080", "x:1"];

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Endpoint {
    Put,
    Patch,
    Rollback,
    Rollout,
    Ack,
    Stats,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Auth {
    Ops,
    Proxy,
    None,
}

#[derive(Debug)]
struct Call {
    endpoint: Endpoint,
    region: String,
    auth: Auth,
    body: Vec<u8>,
}

fn pick(u: &mut Unstructured, pool: &[&str]) -> arbitrary::Result<String> {
    Ok(if u.ratio(7, 8)? {
        (*u.choose(pool)?).into()
    } else {
        u.arbitrary()?
    })
}

fn small(u: &mut Unstructured) -> arbitrary::Result<u64> {
    Ok(if u.arbitrary()? {
        u.int_in_range(0..=20_000)?
    } else {
        u.arbitrary()?
    })
}

fn track(u: &mut Unstructured) -> arbitrary::Result<serde_json::Value> {
    let buckets = (0..u.int_in_range(0..=20)?)
        .map(|_| small(u))
        .collect::<arbitrary::Result<Vec<_>>>()?;
    Ok(json!({ "requests": small(u)?, "errors": small(u)?, "buckets": buckets }))
}

/// A typed body for `endpoint`, as the API's clients send it. Written as
/// JSON values rather than the `api` structs, so fields the structs gain
/// later (optional ones) do not break the target.
fn typed(u: &mut Unstructured, endpoint: Endpoint) -> arbitrary::Result<Vec<u8>> {
    let f = |u: &mut Unstructured| -> arbitrary::Result<Option<f64>> {
        Ok(if u.arbitrary()? {
            Some(*u.choose(&[0.0, 0.01, 0.5, 1.0, 1.5, 3.0, -1.0, 1e300])?)
        } else {
            None
        })
    };
    let v = match endpoint {
        Endpoint::Put => json!({ "table": gen_table(u)?, "reason": u.arbitrary::<String>()? }),
        Endpoint::Patch => {
            let mut weights = BTreeMap::new();
            for _ in 0..u.int_in_range(0..=3)? {
                weights.insert(pick(u, ADDRS)?, u.arbitrary::<u32>()?);
            }
            let mut v = json!({ "weights": weights, "reason": u.arbitrary::<String>()? });
            if u.arbitrary()? {
                v["canary_bps"] = json!(u.int_in_range(0..=10_001u32)?);
            }
            if u.arbitrary()? {
                v["drain"] = json!(u.arbitrary::<bool>()?);
            }
            v
        }
        Endpoint::Rollback => json!({ "to": u.int_in_range(0..=4u64)?, "reason": "fuzz" }),
        Endpoint::Rollout => {
            let action = pick(u, &["start", "pause", "resume", "abort", "jump"])?;
            let mut v = json!({ "action": action, "reason": u.arbitrary::<String>()? });
            if u.arbitrary()? {
                let steps: Vec<_> = (0..u.int_in_range(0..=4)?)
                    .map(|_| -> arbitrary::Result<_> {
                        Ok(json!({
                            "canary_bps": u.int_in_range(0..=10_001u32)?,
                            "hold_ms": small(u)?,
                        }))
                    })
                    .collect::<arbitrary::Result<_>>()?;
                v["steps"] = json!(steps);
            }
            if let Some(x) = f(u)? {
                v["max_error_rate"] = json!(x);
            }
            if let Some(x) = f(u)? {
                v["max_p99_ratio"] = json!(x);
            }
            if u.arbitrary()? {
                v["min_requests"] = json!(small(u)?);
            }
            v
        }
        Endpoint::Ack => json!({
            "proxy": pick(u, &["p1", "p2", ""])?,
            "version": u.int_in_range(0..=5u64)?,
            "status": pick(u, &["applied", "rejected", "maybe"])?,
            "reason": u.arbitrary::<Option<String>>()?,
        }),
        Endpoint::Stats => {
            let mut regions = BTreeMap::new();
            for _ in 0..u.int_in_range(0..=3)? {
                let r = json!({
                    "stable": track(u)?,
                    "canary": track(u)?,
                    "canary_backends": u.arbitrary::<u32>()?,
                    "canary_unhealthy": u.arbitrary::<u32>()?,
                });
                regions.insert(pick(u, REGIONS)?, r);
            }
            json!({
                "proxy": pick(u, &["p1", "p2"])?,
                "version": u.int_in_range(0..=5u64)?,
                "regions": regions,
            })
        }
    };
    Ok(serde_json::to_vec(&v).unwrap_or_default())
}

fn calls(u: &mut Unstructured) -> arbitrary::Result<Vec<Call>> {
    let n = u.int_in_range(1..=8)?;
    (0..n)
        .map(|_| {
            let endpoint: Endpoint = u.arbitrary()?;
            let region = pick(u, REGIONS)?;
            let auth = if u.ratio(15, 16)? {
                match endpoint {
                    Endpoint::Ack | Endpoint::Stats => Auth::Proxy,
                    _ => Auth::Ops,
                }
            } else {
                u.arbitrary()?
            };
            let body = if u.ratio(1, 4)? {
                u.arbitrary()?
            } else {
                typed(u, endpoint)?
            };
            Ok(Call {
                endpoint,
                region,
                auth,
                body,
            })
        })
        .collect()
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

fn seed() -> &'static edgesteer_config::TableSpec {
    static S: OnceLock<edgesteer_config::TableSpec> = OnceLock::new();
    S.get_or_init(|| edgesteer_config::parse::from_toml(edgesteer_config::COVERGEN_TOML).unwrap())
}

async fn run(calls: Vec<Call>) {
    let tokens: Vec<Token> = vec![
        format!("ops:ops={OPS}").parse().unwrap(),
        format!("proxy:p1={PROXY}").parse().unwrap(),
    ];
    let control = Control::open(
        Arc::new(MemoryStore::default()),
        tokens,
        Some(seed().clone()),
    )
    .await
    .unwrap();
    let app = router(control.clone(), 1 << 20);
    for call in calls {
        let (method, uri) = match call.endpoint {
            Endpoint::Put => (Method::PUT, "/v1/table".to_string()),
            Endpoint::Patch => (Method::PATCH, format!("/v1/regions/{}", call.region)),
            Endpoint::Rollback => (Method::POST, "/v1/rollback".to_string()),
            Endpoint::Rollout => (Method::POST, format!("/v1/rollouts/{}", call.region)),
            Endpoint::Ack => (Method::POST, "/v1/fleet/ack".to_string()),
            Endpoint::Stats => (Method::POST, "/v1/stats".to_string()),
        };
        let mut req = Request::builder()
            .method(method)
            .header("content-type", "application/json");
        match call.auth {
            Auth::Ops => req = req.header("authorization", format!("Bearer {OPS}")),
            Auth::Proxy => req = req.header("authorization", format!("Bearer {PROXY}")),
            Auth::None => {}
        }
        // A region name that is not a valid URI path is refused before us.
        let Ok(req) = req.uri(uri).body(Body::from(call.body)) else {
            continue;
        };
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(
            !status.is_server_error(),
            "{status}: {}",
            String::from_utf8_lossy(&body)
        );
        if status.is_client_error()
            && status != StatusCode::NOT_FOUND
            && status != StatusCode::METHOD_NOT_ALLOWED
        {
            let v: serde_json::Value = serde_json::from_slice(&body)
                .unwrap_or_else(|e| panic!("{status} without a JSON error body ({e}): {body:?}"));
            let code = v["error"].as_str().unwrap_or("");
            assert!(!code.is_empty(), "{status} without an error code: {v}");
            if matches!(
                code,
                "malformed_request" | "malformed_table" | "invalid_table"
            ) {
                let errors = v["errors"].as_array().expect("field errors");
                assert!(!errors.is_empty(), "{code} names no field: {v}");
                for e in errors {
                    assert!(
                        !e["path"].as_str().unwrap_or("").is_empty(),
                        "{code} without a path: {v}"
                    );
                }
            }
        }
        let cur = control.latest().expect("a current version");
        // Every stored version compiles; the full index check runs once,
        // on the last one (it is the slow part).
        edgesteer_config::compile(&cur.table)
            .unwrap_or_else(|e| panic!("stored table v{} does not compile: {e}", cur.version));
    }
    control.tick_rollouts().await;
    let req = Request::get("/v1/rollouts")
        .header("authorization", format!("Bearer {OPS}"))
        .body(Body::empty())
        .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    assert!(
        resp.status().is_success(),
        "GET /v1/rollouts: {}",
        resp.status()
    );
    let cur = control.latest().expect("a current version");
    check_table(&edgesteer_config::compile(&cur.table).expect("ticked table compiles"));
}

fuzz_target!(|data: &[u8]| {
    let Ok(calls) = calls(&mut Unstructured::new(data)) else {
        return;
    };
    runtime().block_on(run(calls));
});
