//! The config service's and the proxy's listener hygiene: one service per
//! data directory, no tokenless admin listener off loopback, graceful
//! SIGTERM, and the connection cap.

use std::time::Duration;

use edgesteer_tests::*;

use crate::trust::{service, service_metrics};

#[tokio::test]
async fn a_second_service_on_the_same_data_directory_refuses_to_start() {
    let (wd, _spec, _b, _control) = service().await;
    let out = std::process::Command::new(binary())
        .args(["control", "--listen", "127.0.0.1:0", "--data"])
        .arg(wd.path("control-data"))
        .args(["--token", "ops=another-secret-1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another config service"), "{err}");
}

/// A malformed token on the command line is refused naming the flag and
/// the entry, never echoing the value (clap's own error printed it, secret
/// and all, to the terminal or the journal).
#[tokio::test]
async fn a_bad_token_flag_is_refused_without_its_secret() {
    const SECRET: &str = "never-print-me-42";
    let wd = Workdir::new().unwrap();
    for (cmd, flag, value) in [
        ("control", "--token", format!("boss:alice={SECRET}")),
        ("proxy", "--admin-token", format!("boss:alice={SECRET}")),
    ] {
        let mut c = std::process::Command::new(binary());
        c.args([cmd, "--listen", "127.0.0.1:0", flag, &value]);
        if cmd == "control" {
            c.arg("--data").arg(wd.path("bad-token-data"));
        }
        let out = c.env_remove("EDGESTEER_TOKENS").output().unwrap();
        assert!(!out.status.success(), "{cmd} started");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(flag) && err.contains("entry 1"),
            "{cmd}: {err}"
        );
        assert!(!err.contains(SECRET), "{cmd} printed the secret: {err}");
    }
}

#[tokio::test]
async fn an_admin_listener_off_loopback_needs_a_token() {
    let wd = Workdir::new().unwrap();
    let (spec, _backends) = covergen_on_loopback().await.unwrap();
    let table = wd.write_table("t.toml", &spec).unwrap();
    let out = std::process::Command::new(binary())
        .args(["proxy", "--listen", "127.0.0.1:0", "--admin", "0.0.0.0:0"])
        .arg("--config")
        .arg(&table)
        .env_remove("EDGESTEER_ADMIN_TOKENS")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--admin-token"), "{err}");
}

#[tokio::test]
async fn sigterm_ends_watches_and_exits_zero_within_the_grace_period() {
    let (_wd, _spec, _b, mut control) = service().await;
    let proxy = control.client_as(PROXY_TOKEN);
    let watch = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let r = proxy.watch(1, None, "fleet", Duration::from_secs(50)).await;
        (started.elapsed(), r.map(|v| v.map(|v| v.version)))
    });
    // The watch is held open (nothing newer than version 1 comes).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!watch.is_finished());
    let term = std::time::Instant::now();
    control.signal("TERM");
    let status = control.wait_exit(Duration::from_secs(4)).await;
    let status = status.expect("the service did not exit within the grace period");
    assert!(status.success(), "exit status {status}");
    assert!(term.elapsed() < Duration::from_secs(4));
    let (held, answer) = tokio::time::timeout(Duration::from_secs(5), watch)
        .await
        .expect("the watch was not ended")
        .unwrap();
    assert!(held < Duration::from_secs(10), "held {held:?}");
    // Told to end: 304 (nothing new), or the connection closed.
    assert!(matches!(answer, Ok(None) | Err(_)), "{answer:?}");
}

#[tokio::test]
async fn the_connection_cap_refuses_the_excess_and_counts_it() {
    use tokio::io::AsyncReadExt;
    let wd = Workdir::new().unwrap();
    let (spec, _backends) = covergen_on_loopback().await.unwrap();
    let seed = wd.write_table("seed.toml", &spec).unwrap();
    let control = ControlProc::start(
        &wd.path("control-data"),
        Some(&seed),
        &["--max-connections", "3"],
    )
    .await
    .unwrap();
    // The first of the three held connections is a kept-alive client that
    // reads the service's own count until it is the only one open (the
    // readiness probe's connection has gone): an event, not a sleep.
    let keeper = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .http1_only()
        .build()
        .unwrap();
    let alone = wait_until(Duration::from_secs(5), || async {
        let text = service_metrics(keeper.clone(), &control).await;
        metric(&text, "edgesteer_control_connections_open") == Some(1.0)
    })
    .await;
    assert!(alone.is_some(), "other connections stayed open");
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(tokio::net::TcpStream::connect(control.addr).await.unwrap());
    }
    // The service has taken both (three open, the keeper's included).
    let taken = wait_until(Duration::from_secs(5), || async {
        let text = service_metrics(keeper.clone(), &control).await;
        metric(&text, "edgesteer_control_connections_open") == Some(3.0)
    })
    .await;
    assert!(taken.is_some(), "the held connections were not counted");
    // Two more: accepted by the kernel, closed by the service at once.
    for _ in 0..2 {
        let mut extra = tokio::net::TcpStream::connect(control.addr).await.unwrap();
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(3), extra.read(&mut buf))
            .await
            .expect("an excess connection was kept open");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    // A real request is refused too while the cap is reached.
    let fresh = || {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    };
    assert!(fresh().get(control.url("/healthz")).send().await.is_err());
    // Once they close, requests are served again, and the refusals show.
    drop(held);
    drop(keeper);
    let served = wait_until(Duration::from_secs(5), || async {
        fresh()
            .get(control.url("/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    assert!(served.is_some(), "the service did not recover");
    let text = service_metrics(fresh(), &control).await;
    assert!(
        metric_value(&text, "edgesteer_control_connections_refused_total") >= 3.0,
        "{text}"
    );
}
