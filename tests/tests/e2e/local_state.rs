//! A proxy's local state: the table cache it keeps (saved from the first
//! table on, so a restart during a config-service outage serves), what
//! `edgesteer validate` makes of that cache, and a table naming a file the
//! bounded loader refuses.

use std::process::{Command, Stdio};
use std::time::Duration;

use edgesteer_config::wire::UpstreamSpec;
use edgesteer_tests::*;

/// `edgesteer validate PATH`: exit code, stdout, stderr.
fn validate(path: &std::path::Path) -> (Option<i32>, String, String) {
    let out = Command::new(binary())
        .arg("validate")
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_proxy_restarted_while_the_config_service_is_away_serves_its_first_table() {
    let wd = Workdir::new().unwrap();
    let (spec, _backends) = covergen_on_loopback().await.unwrap();
    let seed = wd.write_table("seed.toml", &spec).unwrap();
    let mut control = ControlProc::start(&wd.path("control-data"), Some(&seed), &[])
        .await
        .unwrap();
    let cache = wd.path("p.cache.json");
    let geo = wd.geo_db().unwrap();
    let args = follow(&control, &cache, "p");
    let config = || ProxyConfig {
        geo_db: Some(geo.clone()),
        extra_args: args.clone(),
        ..Default::default()
    };
    let proxy = Proxy::start(config()).await.unwrap();
    assert_eq!(proxy.table_version().await, Some(1));
    // No later version comes: the first one must be saved all the same
    // (give a late save its chance).
    wait_until(Duration::from_secs(3), || async { cache.exists() }).await;

    // The proxy crashes, and restarts while the service is down.
    drop(proxy);
    control.kill9();
    let proxy = Proxy::start(config()).await;
    let proxy = match proxy {
        Ok(p) => p,
        Err(e) => panic!("the proxy did not start without its config service: {e:#}"),
    };
    let r = reqwest::get(proxy.url("/v1/covers")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(proxy.table_version().await, Some(1));
    // The cache as `edgesteer validate` reads it.
    let (code, out, err) = validate(&cache);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("a proxy's table cache, version 1"), "{out}");
}

#[test]
fn validate_reads_a_proxys_table_cache() {
    let wd = Workdir::new().unwrap();
    let mut spec = covergen();
    // Written as the proxy writes it; a cache need not end in .json.
    let cache = wd.path("last-good");
    edgesteer_proxy::watch::save_cache(&cache, 7, Some("e42".into()), &spec).unwrap();
    let (code, out, err) = validate(&cache);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("a proxy's table cache, version 7, store epoch e42")
            && out.contains("8 regions, 20 backends"),
        "{out}"
    );

    // A bad table inside a cache: every error with its field.
    spec.regions.get_mut("cn-east").unwrap().failover = vec!["ap-southeast".into()];
    let cache = wd.path("bad.cache.json");
    edgesteer_proxy::watch::save_cache(&cache, 8, None, &spec).unwrap();
    let (code, out, err) = validate(&cache);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains("a proxy's table cache, version 8")
            && err.contains("regions.cn-east.failover[0]: ap-southeast is outside zone cn"),
        "{err}"
    );
}

#[tokio::test]
async fn a_table_naming_dev_zero_as_a_ca_is_refused_at_start_with_its_field() {
    let wd = Workdir::new().unwrap();
    let mut spec = covergen();
    spec.regions.get_mut("us-east").unwrap().upstream = Some(UpstreamSpec {
        tls: Some(true),
        ca: Some("/dev/zero".into()),
        ..Default::default()
    });
    let table = wd.write_table("zero.toml", &spec).unwrap();
    let runtime = wd.path("rt");
    let mut child = Command::new(binary())
        .args(["proxy", "--threads", "1", "--config"])
        .arg(&table)
        .arg("--runtime-dir")
        .arg(&runtime)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--admin", &format!("127.0.0.1:{}", free_port())])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_child(&mut child, Duration::from_secs(5)).await;
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("a proxy on a table naming /dev/zero was still running after 5 s");
    }
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        e.read_to_string(&mut err).unwrap();
    }
    assert!(status.is_some_and(|s| !s.success()), "{err}");
    assert!(
        err.contains("regions.us-east.upstream.ca") && err.contains("regular file"),
        "{err}"
    );
}
