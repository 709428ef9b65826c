//! Bad writes to the config service: invalid tables, unknown fields,
//! oversized and malformed bodies, stale If-Match, missing or wrong tokens;
//! each refused with its field named, and nothing changes.

use edgesteer_tests::*;
use serde_json::{json, Value};

use crate::control::setup;

async fn raw(
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Vec<u8>,
    if_match: Option<&str>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method, url)
        .header("content-type", "application/json")
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(m) = if_match {
        req = req.header("if-match", m);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn bad_writes_are_refused_and_change_nothing() {
    let s = setup(&["--body-limit", "65536"]).await;
    let proxy = s.proxy("p1").await;
    let url = s.control.url("/v1/table");
    let put =
        |table: Value| serde_json::to_vec(&json!({ "table": table, "reason": "test" })).unwrap();
    let good = serde_json::to_value(&s.spec).unwrap();

    let mut crossing = good.clone();
    crossing["regions"]["cn-east"]["failover"] = json!(["ap-southeast"]);
    let (st, body) = raw(
        reqwest::Method::PUT,
        url.clone(),
        Some(OPS_TOKEN),
        put(crossing),
        None,
    )
    .await;
    assert_eq!(st, 422, "{body}");
    assert_eq!(body["error"], "invalid_table");
    assert_eq!(
        body["errors"][0]["path"], "regions.cn-east.failover[0]",
        "{body}"
    );
    assert!(body["errors"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("outside zone cn"));

    let mut unknown = good.clone();
    unknown["regions"]["us-east"]["colour"] = json!("red");
    let (st, body) = raw(
        reqwest::Method::PUT,
        url.clone(),
        Some(OPS_TOKEN),
        put(unknown),
        None,
    )
    .await;
    assert_eq!(st, 400, "{body}");
    assert_eq!(
        body["errors"][0]["path"], "regions.us-east.colour",
        "{body}"
    );

    let (st, body) = raw(
        reqwest::Method::PUT,
        url.clone(),
        Some(OPS_TOKEN),
        vec![b' '; 100_000],
        None,
    )
    .await;
    assert_eq!(st, 413, "{body}");
    assert_eq!(body["error"], "body_too_large");

    let (st, body) = raw(
        reqwest::Method::PUT,
        url.clone(),
        Some(OPS_TOKEN),
        b"{\"table\": {".to_vec(),
        None,
    )
    .await;
    assert_eq!(st, 400, "{body}");
    assert_eq!(body["error"], "malformed_request");

    let (st, body) = raw(
        reqwest::Method::PUT,
        url.clone(),
        Some(OPS_TOKEN),
        put(good.clone()),
        Some("\"v0\""),
    )
    .await;
    assert_eq!(st, 409, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("\"v1\""),
        "{body}"
    );

    // Auth: no token, a wrong token.
    let (st, _) = raw(
        reqwest::Method::PUT,
        url.clone(),
        None,
        put(good.clone()),
        None,
    )
    .await;
    assert_eq!(st, 401);
    let (st, _) = raw(
        reqwest::Method::PUT,
        url.clone(),
        Some("ops-secret-token-2"),
        put(good.clone()),
        None,
    )
    .await;
    assert_eq!(st, 401);
    let (st, _) = raw(
        reqwest::Method::PATCH,
        s.control.url("/v1/regions/us-east"),
        None,
        br#"{"drain":true}"#.to_vec(),
        None,
    )
    .await;
    assert_eq!(st, 401);
    let (st, body) = raw(
        reqwest::Method::PATCH,
        s.control.url("/v1/regions/us-mars"),
        Some(OPS_TOKEN),
        br#"{"drain":true}"#.to_vec(),
        None,
    )
    .await;
    assert_eq!((st, body["error"].as_str()), (404, Some("unknown_region")));
    let (st, body) = raw(
        reqwest::Method::PATCH,
        s.control.url("/v1/regions/us-east"),
        Some(OPS_TOKEN),
        br#"{"canary_bps": 20000}"#.to_vec(),
        None,
    )
    .await;
    assert_eq!(st, 422, "{body}");
    assert_eq!(body["errors"][0]["path"], "regions.us-east.canary_bps");

    // Nothing was stored, and the proxy still serves version 1.
    let history = s.control.client().history(100).await.unwrap();
    assert_eq!(history.versions.len(), 1, "{history:?}");
    assert_eq!(proxy.table_version().await, Some(1));
    let got = reqwest::Client::new()
        .get(proxy.url("/"))
        .header("x-forwarded-for", sample_ip("US").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(got.headers()["x-steer-version"], "1");
    // A good table with the right If-Match is accepted (the current one
    // again would change nothing: 400 empty_change).
    let mut good = good;
    good["description"] = json!("changed by the test");
    let (st, body) = raw(
        reqwest::Method::PUT,
        url,
        Some(OPS_TOKEN),
        put(good),
        Some("\"v1\""),
    )
    .await;
    assert_eq!((st, body["version"].as_u64()), (200, Some(2)), "{body}");
}
