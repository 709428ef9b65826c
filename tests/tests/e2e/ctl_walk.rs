//! An operator's first walk through the README with `edgesteer ctl`
//! (issue 32): replicas that are down or silent, `explain` against an
//! admin listener with a token, writes that change nothing, a canary share
//! without canaries, the rollout wording, and output into a closed pipe.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use edgesteer_control_api::api::{Ack, PatchRegion, StatsReport};
use edgesteer_control_api::client::{Client, ClientError};
use edgesteer_tests::*;

/// A config service seeded with the covergen table (version 1).
async fn seeded(wd: &Workdir) -> ControlProc {
    let seed = wd.write_table("seed.toml", &covergen()).unwrap();
    ControlProc::start(&wd.path("data"), Some(&seed), &[])
        .await
        .unwrap()
}

/// `edgesteer ctl --control CONTROL ARGS` with the ops token.
fn ctl(control: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(binary())
        .args(["ctl", "--control", control])
        .args(args)
        .env("EDGESTEER_TOKEN", OPS_TOKEN)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn text(o: &Output) -> (Option<i32>, String, String) {
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[tokio::test]
async fn ctl_moves_on_to_the_next_replica_when_the_first_is_down() {
    let wd = Workdir::new().unwrap();
    let control = seeded(&wd).await;
    // Nothing listens on a reserved free port: connection refused.
    let both = format!("http://127.0.0.1:{},{}", free_port(), control.base());
    let (code, out, err) = text(&ctl(&both, &["history"], &[]));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("seed"), "{out}");
    // A write that never reached the first one goes to the next too.
    let (code, out, err) = text(&ctl(&both, &["shift", "us-west", "--reason", "walk"], &[]));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("version 2 committed by ops"), "{out}");
}

/// A TCP listener that accepts every connection and never answers.
async fn silent_replica() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    (url, task)
}

#[tokio::test]
async fn a_silent_replica_is_left_for_the_next_within_the_deadline() {
    let wd = Workdir::new().unwrap();
    let control = seeded(&wd).await;
    let (silent, _task) = silent_replica().await;
    let both = format!("{silent},{}", control.base());
    let deadline = Duration::from_secs(1);
    let limit = Duration::from_secs(15);
    let proxy = Client::new(&both, Some(PROXY_TOKEN.into())).with_call_timeout(deadline);

    // An ack (a proxy token acks under its own name): answered by the second replica within the deadline (+ slack).
    let ack = Ack {
        proxy: "fleet".into(),
        version: 1,
        status: Ack::APPLIED.into(),
        reason: None,
        epoch: None,
        build: None,
    };
    let start = Instant::now();
    let acked = tokio::time::timeout(limit, proxy.ack(&ack)).await;
    assert!(
        matches!(acked, Ok(Ok(()))),
        "{acked:?} after {:?}",
        start.elapsed()
    );
    assert!(start.elapsed() < deadline * 4, "{:?}", start.elapsed());
    assert_eq!(proxy.base(), control.base());
    let fleet = control.client().fleet().await.unwrap();
    assert!(
        fleet.proxies.iter().any(|p| p.proxy == "fleet"),
        "{fleet:?}"
    );

    // A stats report, and a read, from fresh clients.
    let report = StatsReport {
        proxy: "fleet".into(),
        version: 1,
        ..StatsReport::default()
    };
    let proxy = Client::new(&both, Some(PROXY_TOKEN.into())).with_call_timeout(deadline);
    let sent = tokio::time::timeout(limit, proxy.report_stats(&report)).await;
    assert!(matches!(sent, Ok(Ok(()))), "{sent:?}");
    let ops = Client::new(&both, Some(OPS_TOKEN.into())).with_call_timeout(deadline);
    let got = tokio::time::timeout(limit, ops.get()).await;
    assert!(matches!(&got, Ok(Ok(v)) if v.version == 1), "{got:?}");

    // A watch waits its hold time plus a margin, then moves on.
    let proxy = Client::new(&both, Some(PROXY_TOKEN.into()));
    let start = Instant::now();
    let watched = tokio::time::timeout(
        Duration::from_secs(20),
        proxy.watch(0, None, "fleet", Duration::from_secs(1)),
    )
    .await;
    assert!(
        matches!(&watched, Ok(Ok(Some(v))) if v.version == 1),
        "{watched:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );

    // A write the silent replica may have taken is not sent again: the
    // caller hears that its outcome is unknown, and the next call goes on.
    let ops = Client::new(&both, Some(OPS_TOKEN.into())).with_call_timeout(deadline);
    let change = PatchRegion {
        drain: Some(true),
        reason: "walk".into(),
        ..PatchRegion::default()
    };
    let first = tokio::time::timeout(limit, ops.patch_region("us-west", &change)).await;
    assert!(
        matches!(&first, Ok(Err(ClientError::Unknown { .. }))),
        "{first:?}"
    );
    let msg = first.unwrap().unwrap_err().to_string();
    assert!(msg.contains("may or may not have been committed"), "{msg}");
    let second = tokio::time::timeout(limit, ops.patch_region("us-west", &change)).await;
    assert!(matches!(&second, Ok(Ok(v)) if v.version == 2), "{second:?}");
}

#[tokio::test]
async fn ctl_explain_takes_the_admin_token_and_fails_on_a_refusal() {
    const SECRET: &str = "Walk-admin-secret-32";
    let wd = Workdir::new().unwrap();
    let (spec, _backends) = covergen_on_loopback().await.unwrap();
    let args = vec!["--admin-token".into(), format!("read:walker={SECRET}")];
    let proxy = wd.start_proxy(&spec, true, args).await.unwrap();
    let admin = format!("http://{}", proxy.admin);
    let explain = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec!["explain", "--admin", &admin, "--ip", "8.8.8.8"];
        args.extend_from_slice(extra);
        text(&ctl("http://127.0.0.1:9", &args, env))
    };
    for json in [&[][..], &["--json"][..]] {
        let (code, out, err) = explain(json, &[]);
        assert_eq!(code, Some(1), "{out}{err}");
        assert!(
            err.contains("401") && err.contains("--admin-token"),
            "{err}"
        );
        assert!(!out.contains("decision"), "{out}");
    }
    let (code, out, err) = explain(&[], &[("EDGESTEER_ADMIN_TOKEN", "wrong-token-1")]);
    assert_eq!(code, Some(1), "{out}{err}");
    for (flag, env) in [
        (vec!["--admin-token", SECRET], vec![]),
        (vec![], vec![("EDGESTEER_ADMIN_TOKEN", SECRET)]),
    ] {
        let (code, out, err) = explain(&flag, &env);
        assert_eq!(code, Some(0), "{out}{err}");
        assert!(out.contains("decision: 200 -> us-east"), "{out}");
    }
    // The help never shows the token taken from the environment.
    let (_, out, _) = text(&ctl(
        "http://127.0.0.1:9",
        &["explain", "--help"],
        &[("EDGESTEER_ADMIN_TOKEN", SECRET)],
    ));
    assert!(
        out.contains("--admin-token") && !out.contains(SECRET),
        "{out}"
    );
}

#[tokio::test]
async fn a_write_that_changes_nothing_commits_nothing() {
    let wd = Workdir::new().unwrap();
    let control = seeded(&wd).await;
    let base = control.base();
    let (code, out, err) = text(&ctl(&base, &["shift", "us-west", "--undo"], &[]));
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains("400") && err.contains("nothing was committed"),
        "{err}"
    );
    let raw = reqwest::Client::new()
        .patch(control.url("/v1/regions/us-west"))
        .bearer_auth(OPS_TOKEN)
        .json(&serde_json::json!({"drain": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    let body: serde_json::Value = raw.json().await.unwrap();
    assert_eq!(body["error"], "empty_change", "{body}");
    let api = control.client();
    let cur = api.get().await.unwrap();
    let b = &cur.table.regions["us-east"].backends[0];
    let weight = b.weight.to_string();
    let (code, _, err) = text(&ctl(
        &base,
        &["set-weight", "us-east", &b.address, &weight],
        &[],
    ));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("nothing was committed"), "{err}");
    let same = api.put(&cur.table, "again", None).await.unwrap_err();
    assert!(
        matches!(&same, ClientError::Api { status: 400, code, .. } if code == "empty_change"),
        "{same}"
    );
    let back = api.rollback(1, "to where we are").await.unwrap_err();
    assert!(
        matches!(&back, ClientError::Api { status: 400, .. }),
        "{back}"
    );
    // Applying the same file again is not an error, and stores nothing.
    let file = wd.write_table("same.toml", &cur.table).unwrap();
    let (code, out, err) = text(&ctl(&base, &["apply", &file.display().to_string()], &[]));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("unchanged"), "{out}");
    let h = api.history(10).await.unwrap();
    assert_eq!(h.versions.len(), 1, "{h:?}");
    // A real change still goes through.
    let (code, out, err) = text(&ctl(&base, &["shift", "us-west"], &[]));
    assert_eq!(code, Some(0), "{out}{err}");
}

#[tokio::test]
async fn ctl_without_a_known_token_says_where_one_goes() {
    let wd = Workdir::new().unwrap();
    let control = seeded(&wd).await;
    let (code, out, err) = text(&ctl(&control.base(), &["get"], &[("EDGESTEER_TOKEN", "")]));
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains("wants a token: set EDGESTEER_TOKEN") && err.contains("401 unauthorized"),
        "{err}"
    );
    let wrong = [("EDGESTEER_TOKEN", "not-a-token-it-knows")];
    let (code, out, err) = text(&ctl(&control.base(), &["get"], &wrong));
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("does not know the token"), "{err}");
    assert!(
        !err.contains("not-a-token-it-knows"),
        "the secret was printed: {err}"
    );
}

#[tokio::test]
async fn a_canary_share_needs_canary_backends() {
    let wd = Workdir::new().unwrap();
    let control = seeded(&wd).await;
    let (code, out, err) = text(&ctl(
        &control.base(),
        &["set-canary", "us-west", "500"],
        &[],
    ));
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains("422 no_canary_backends") && err.contains("canary_bps"),
        "{err}"
    );
    assert!(err.contains("us-west has no canary backends"), "{err}");
    let api = control.client();
    assert_eq!(api.history(10).await.unwrap().versions.len(), 1);
    // A region with canaries takes it.
    let (code, out, err) = text(&ctl(
        &control.base(),
        &["set-canary", "us-east", "500"],
        &[],
    ));
    assert_eq!(code, Some(0), "{out}{err}");
}

#[tokio::test]
async fn rollout_commands_and_status_count_steps_alike() {
    let wd = Workdir::new().unwrap();
    let control = seeded(&wd).await;
    let base = control.base();
    let start = ["rollout", "start", "us-east", "--steps", "500:600,1000:600"];
    let (code, out, err) = text(&ctl(&base, &start, &[]));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("running at step 1/2 (canary 5.0%)"), "{out}");
    let (code, out, err) = text(&ctl(&base, &["rollout", "abort", "us-east"], &[]));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("aborted at step 1/2 (canary 0.0%)"), "{out}");
    let (_, status, _) = text(&ctl(&base, &["rollout", "status"], &[]));
    assert!(
        status.contains("us-east: aborted at step 1/2 (canary 0.0%)"),
        "{status}"
    );
}

#[tokio::test]
async fn ctl_output_into_a_closed_pipe_ends_quietly() {
    let wd = Workdir::new().unwrap();
    let control = seeded(&wd).await;
    for args in [
        &["get"][..],
        &["get", "--toml"],
        &["history"],
        &["--json", "get"],
    ] {
        let mut child = Command::new(binary())
            .args(["ctl", "--control", &control.base()])
            .args(args)
            .env("EDGESTEER_TOKEN", OPS_TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes before ctl has its answer to print (`| head -0`).
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{args:?}: {err}"
        );
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }
}

/// What ctl says when it cannot reach the service: the cause once, and a
/// hint when a plain `http://` URL reached a TLS service.
#[tokio::test]
async fn ctl_names_why_it_cannot_reach_the_service_once_and_hints_at_https() {
    let wd = Workdir::new().unwrap();
    let refused = format!("http://127.0.0.1:{}", free_port());
    let (code, _, err) = text(&ctl(&refused, &["get"], &[]));
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(err.matches("Connection refused").count(), 1, "{err}");

    let seed = wd.write_table("seed.toml", &covergen()).unwrap();
    let tls = ControlTls::generate(&wd.path("pki")).unwrap();
    let control = ControlProc::start_https(&wd.path("data"), Some(&seed), &[], &tls)
        .await
        .unwrap();
    let plain = control.base().replacen("https://", "http://", 1);
    let (code, _, err) = text(&ctl(&plain, &["get"], &[]));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("use an https:// URL"), "{err}");
}
