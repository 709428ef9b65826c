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
}
