//! Bad input at the service's edge: reports out of shape, and paths and
//! query strings that do not parse, each a JSON error naming the field.

use edgesteer_control_api::api::StatsReport;

use super::{api_field, serve, with_token, PROXY_SECRET, READ_SECRET};

/// The service keeps parts of every report for minutes: a report with a
/// name longer than any table allows is refused whole, naming the field,
/// and nothing of it is kept; the same report in shape is.
#[tokio::test]
async fn a_stats_report_out_of_shape_is_refused_whole() {
    use edgesteer_control_api::report::{TrafficCell, TrafficReport};
    let (control, api) = serve().await;
    let proxy = with_token(&api, Some(PROXY_SECRET));
    let report = |pin: String| StatsReport {
        proxy: "fleet".into(),
        version: 1,
        traffic: Some(TrafficReport {
            interval_ms: 1000,
            cells: vec![TrafficCell {
                country: "DE".into(),
                pin: Some(pin),
                requests: 7,
            }],
            limits: Vec::new(),
        }),
        ..StatsReport::default()
    };
    let err = proxy
        .report_stats(&report("p".repeat(300)))
        .await
        .unwrap_err();
    let (status, code, field) = api_field(err);
    assert_eq!((status, code.as_str()), (400, "malformed_request"));
    assert_eq!(field.as_deref(), Some("traffic.cells[0].pin"));
    assert_eq!(control.traffic.observed(60_000).requests, 0, "nothing kept");
    proxy.report_stats(&report("api.x".into())).await.unwrap();
    assert_eq!(control.traffic.observed(60_000).requests, 7);
}

/// A path or query string that does not parse gets the same JSON error as
/// any other (axum's own answer is plain text), naming the field.
#[tokio::test]
async fn a_bad_path_or_query_is_a_json_error_naming_the_field() {
    let (_control, api) = serve().await;
    let http = reqwest::Client::new();
    for (path, field) in [
        ("/v1/versions/abc", "version"),
        ("/v1/history?limit=-1", "limit"),
        ("/v1/diff?from=x", "from, to"),
        ("/v1/watch?after=x", "after, timeout_ms"),
    ] {
        let r = http
            .get(format!("{}{path}", api.base()))
            .bearer_auth(READ_SECRET)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{path}");
        let body: edgesteer_control_api::api::ErrorBody = r.json().await.unwrap();
        assert_eq!(body.error, "malformed_request", "{path}");
        assert!(!body.message.is_empty(), "{path}");
        assert_eq!(
            body.errors.first().map(|e| e.path.as_str()),
            Some(field),
            "{path}"
        );
    }
}
