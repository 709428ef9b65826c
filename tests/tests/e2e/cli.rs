//! `edgesteer validate` on the shipped example and on broken tables, and
//! `edgesteer demo` as the README runs it (on free ports).

use std::process::Command;

use edgesteer_tests::*;

fn validate(path: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(binary())
        .arg("validate")
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_accepts_covergen() {
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/covergen.toml");
    let (code, out, err) = validate(&example);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("ok: "), "{out}");
    assert!(out.contains("8 regions, 20 backends, zones [cn (isolated), eu], 4 host pins, default region us-east"), "{out}");
}

#[test]
fn validate_names_the_field_of_a_zone_crossing() {
    let wd = Workdir::new().unwrap();
    let mut spec = covergen();
    spec.regions.get_mut("cn-east").unwrap().failover = vec!["ap-southeast".into()];
    let path = wd.write_table("bad.toml", &spec).unwrap();
    let (code, out, err) = validate(&path);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("regions.cn-east.failover[0]: ap-southeast is outside zone cn"),
        "{err}"
    );

    // JSON tables, with an unknown field.
    let path = wd.path("bad.json");
    std::fs::write(
        &path,
        r#"{"default_region":"a","regions":{"a":{"backends":[],"colour":"red"}}}"#,
    )
    .unwrap();
    let (code, _, err) = validate(&path);
    assert_eq!(code, 1);
    assert!(
        err.contains("regions.a.colour: unknown field `colour`"),
        "{err}"
    );

    // A missing file is a usage error, not a crash.
    let (code, _, err) = validate(&wd.path("missing.toml"));
    assert_eq!(code, 2);
    assert!(err.contains("missing.toml"), "{err}");
}

/// `edgesteer demo`, killed on drop.
struct Demo(std::process::Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_demo_routes_by_geography_and_reaches_eu_west_over_tls() {
    let (listen, admin, control) = (free_port(), free_port(), free_port());
    let child = Command::new(binary())
        .args([
            "demo",
            "--listen",
            &format!("127.0.0.1:{listen}"),
            "--admin",
            &format!("127.0.0.1:{admin}"),
            "--control",
            &format!("127.0.0.1:{control}"),
            // Not the default 5353: another test's demo may hold it.
            "--dns-listen",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _demo = Demo(child);
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{listen}/v1/covers");
    let ask = |ip: &'static str| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let r = client
                .get(&url)
                .header("x-forwarded-for", ip)
                .send()
                .await
                .ok()?;
            r.json::<serde_json::Value>().await.ok()
        }
    };
    let up = wait_until(std::time::Duration::from_secs(30), || async {
        ask("8.8.8.8").await.is_some()
    })
    .await;
    assert!(up.is_some(), "the demo did not answer");
    let us = ask("8.8.8.8").await.unwrap();
    assert_eq!(us["region"], "us-east", "{us}");
    assert_eq!(us["sni"], serde_json::Value::Null, "{us}");
    // eu-west's origins speak TLS; their first probes may still be under
    // way on a loaded machine (a German client meanwhile fails over to
    // eu-central, inside the EU zone).
    let home = wait_until(std::time::Duration::from_secs(20), || async {
        ask("80.128.0.1")
            .await
            .is_some_and(|de| de["region"] == "eu-west")
    })
    .await;
    let de = ask("80.128.0.1").await.unwrap();
    assert!(
        home.is_some(),
        "a German client never reached eu-west: {de}"
    );
    assert_eq!(de["region"], "eu-west", "{de}");
    assert_eq!(de["sni"], "localhost", "{de}");
    assert_eq!(de["tls_version"], "TLSv1_3", "{de}");
    let cn = ask("202.96.128.86").await.unwrap();
    assert_eq!(cn["region"], "cn-east", "{cn}");

    // The ops console it prints: the page, and its explain with the demo token.
    let base = format!("http://127.0.0.1:{control}");
    let page = client.get(format!("{base}/ui")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let x: serde_json::Value = client
        .get(format!("{base}/v1/explain?ip=202.96.128.86"))
        .bearer_auth(edgesteer::cli::DEMO_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(x["client"]["zone"], "cn", "{x}");
    assert_eq!(x["decision"]["region"], "cn-east", "{x}");

    // The proxy serves the version the service stored, its API keys hashed
    // on the way in (the admin view would show a plain one's hash cut short).
    let (_, t) = get_json(&client, &format!("http://127.0.0.1:{admin}/v1/table"))
        .await
        .unwrap();
    let keys = t["table"]["rate_limits"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["keys"].as_object())
        .flat_map(|k| k.keys().cloned())
        .collect::<Vec<_>>();
    assert!(!keys.is_empty(), "{t}");
    for k in &keys {
        assert!(
            k.starts_with("sha256:") && k.len() == 7 + 64,
            "{k} in {keys:?}"
        );
    }
}

/// `edgesteer control --listen LISTEN` with a token and a store, its
/// stderr in `log`.
fn control_on(wd: &Workdir, listen: &str, extra: &[&str], log: &str) -> std::process::Child {
    Command::new(binary())
        .args(["control", "--listen", listen, "--data"])
        .arg(wd.path(&format!("data-{log}")))
        .args(["--token", &format!("ops={OPS_TOKEN}")])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(wd.path(log)).unwrap())
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn the_config_service_refuses_plain_http_off_loopback_unless_told() {
    let wd = Workdir::new().unwrap();
    let port = free_port();
    let listen = format!("0.0.0.0:{port}");
    let mut refused = Demo(control_on(&wd, &listen, &[], "refused.log"));
    let status = wait_child(&mut refused.0, std::time::Duration::from_secs(10)).await;
    let err = std::fs::read_to_string(wd.path("refused.log")).unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{err}");
    assert!(
        err.contains("not a loopback address")
            && err.contains("--tls-cert")
            && err.contains("--insecure-plaintext"),
        "{err}"
    );
    let _started = Demo(control_on(
        &wd,
        &listen,
        &["--insecure-plaintext"],
        "plain.log",
    ));
    let (client, url) = (
        reqwest::Client::new(),
        format!("http://127.0.0.1:{port}/healthz"),
    );
    let up = wait_until(std::time::Duration::from_secs(15), || {
        answers(&client, &url)
    })
    .await;
    let err = std::fs::read_to_string(wd.path("plain.log")).unwrap();
    assert!(up.is_some(), "{err}");
    assert!(err.contains("--insecure-plaintext"), "{err}");
}

#[tokio::test]
async fn the_demo_keeps_its_origin_key_private_and_removes_its_files() {
    use std::os::unix::fs::PermissionsExt;
    let wd = Workdir::new().unwrap();
    let (listen, admin, control) = (free_port(), free_port(), free_port());
    // The demo binds its 20 backends at this port and the 19 after it.
    let backends = free_ports(20);
    let child = Command::new(binary())
        .args(["demo", "--listen", &format!("127.0.0.1:{listen}")])
        .args(["--admin", &format!("127.0.0.1:{admin}")])
        .args(["--control", &format!("127.0.0.1:{control}")])
        .args(["--backend-ports", &backends.to_string()])
        .args(["--dns-listen", &format!("127.0.0.1:{}", free_port())])
        .env("RUST_LOG", "warn")
        .stdout(std::fs::File::create(wd.path("demo.out")).unwrap())
        .spawn()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("edgesteer-demo-{}", child.id()));
    let mut demo = Demo(child);
    let (client, url) = (
        reqwest::Client::new(),
        format!("http://127.0.0.1:{admin}/healthz"),
    );
    let up = wait_until(std::time::Duration::from_secs(30), || {
        answers(&client, &url)
    })
    .await;
    let banner = std::fs::read_to_string(wd.path("demo.out")).unwrap();
    assert!(up.is_some(), "the demo did not start: {banner}");
    // The backends are where --backend-ports put them.
    assert!(
        banner.contains(&format!("//127.0.0.1:{backends}\n")),
        "{banner}"
    );
    let mode = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777);
    assert_eq!(mode(&dir).unwrap(), 0o700, "{}", dir.display());
    // The origins read their key at start; it is not left on disk (or, if
    // it were, only for this user).
    match mode(&dir.join("origin.key")) {
        Ok(m) => assert_eq!(m, 0o600),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
    }
    assert!(dir.join("ca.pem").exists());
    let _ = Command::new("kill")
        .args(["-TERM", &demo.0.id().to_string()])
        .status();
    let exited = wait_child(&mut demo.0, std::time::Duration::from_secs(15)).await;
    assert!(exited.is_some(), "the demo did not exit on SIGTERM");
    assert!(!dir.exists(), "{} is left behind", dir.display());
}
