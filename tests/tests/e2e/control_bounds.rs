//! The config service's bounds on the wire (issue 26): watches by a
//! `read` token register nothing and long or odd proxy names are refused,
//! a proxy token acks and reports only as its own proxy, and a table
//! naming a device as a CA file is refused with its field while the
//! service serves on.

use std::time::Duration;

use edgesteer_control_api::api::{Ack, PatchRegion, StatsReport};
use edgesteer_control_api::client::{Client, ClientError};
use edgesteer_tests::*;

use crate::trust::service;

fn status_and_fields(e: ClientError) -> (u16, String, Vec<String>) {
    match e {
        ClientError::Api {
            status,
            message,
            errors,
            ..
        } => (
            status,
            message,
            errors.into_iter().map(|(p, _)| p).collect(),
        ),
        other => panic!("not an API error: {other}"),
    }
}

#[tokio::test]
async fn read_watches_register_nothing_and_long_proxy_names_are_refused() {
    let (_wd, _spec, _b, control) = service().await;
    let read = control.client_as(READ_TOKEN);
    let long = "n".repeat(4000);
    for i in 0..50 {
        let e = read
            .watch(0, None, &format!("{long}{i}"), Duration::from_millis(10))
            .await
            .unwrap_err();
        let (status, message, fields) = status_and_fields(e);
        assert_eq!(status, 400, "{message}");
        assert_eq!(fields, ["proxy"], "{message}");
        assert!(message.contains("at most 64"), "{message}");
        // A well-formed name is watched, not registered.
        let got = read
            .watch(0, None, &format!("viewer-{i}"), Duration::from_millis(10))
            .await
            .unwrap();
        assert_eq!(got.map(|v| v.version), Some(1));
    }
    let fleet = control.client().fleet().await.unwrap();
    assert!(fleet.proxies.is_empty(), "{:?}", fleet.proxies);
}

#[tokio::test]
async fn a_proxy_token_acks_and_reports_only_as_its_own_proxy() {
    let (_wd, _spec, _b, control) = service().await;
    let p1 = Client::new(&control.base(), Some(proxy_token("p1")));
    let ack = |proxy: &str| Ack {
        proxy: proxy.into(),
        version: 1,
        status: Ack::APPLIED.into(),
        reason: None,
        epoch: None,
        build: None,
    };
    let stats = |proxy: &str| StatsReport {
        proxy: proxy.into(),
        ..StatsReport::default()
    };
    let (status, message, _) = status_and_fields(p1.ack(&ack("p2")).await.unwrap_err());
    assert_eq!(status, 403, "{message}");
    assert!(
        message.contains("`p1`") && message.contains("`p2`"),
        "{message}"
    );
    let (status, ..) = status_and_fields(p1.report_stats(&stats("p2")).await.unwrap_err());
    assert_eq!(status, 403);
    let w = p1.watch(0, None, "p2", Duration::from_millis(10)).await;
    assert_eq!(status_and_fields(w.unwrap_err()).0, 403);
    p1.ack(&ack("p1")).await.unwrap();
    p1.report_stats(&stats("p1")).await.unwrap();
    let names: Vec<String> = control
        .client()
        .fleet()
        .await
        .unwrap()
        .proxies
        .into_iter()
        .map(|p| p.proxy)
        .collect();
    assert_eq!(names, ["p1"]);
}

#[tokio::test]
async fn a_device_named_as_a_ca_is_refused_and_the_service_serves_on() {
    let (_wd, _spec, _b, control) = service().await;
    let ops = control.client();
    let mut table = ops.get().await.unwrap().table;
    let region = table.regions.get_mut("us-east").unwrap();
    region.upstream = Some(edgesteer_config::wire::UpstreamSpec {
        tls: Some(true),
        ca: Some("/dev/zero".into()),
        ..Default::default()
    });
    let e = ops.put(&table, "a device as a CA", None).await.unwrap_err();
    let (status, message, fields) = status_and_fields(e);
    assert!((400..500).contains(&status), "{status}: {message}");
    assert!(
        fields.iter().any(|f| f == "regions.us-east.upstream.ca"),
        "{fields:?}: {message}"
    );
    assert_eq!(ops.get().await.unwrap().version, 1);
    let change = PatchRegion {
        drain: Some(true),
        reason: "still serving".into(),
        ..PatchRegion::default()
    };
    assert_eq!(
        ops.patch_region("us-east", &change).await.unwrap().version,
        2
    );
}
