//! What the binary prints on its own: help and argument errors never show
//! a secret taken from the environment, and normal traffic logs no error.

use std::process::Command;
use std::time::Duration;

use edgesteer_tests::*;

/// Secrets the environment may carry, and the part that must never show.
const SECRETS: &[(&str, &str, &str)] = &[
    (
        "EDGESTEER_ADMIN_TOKENS",
        "ops:admin=AdminS3cret-4711,read:ro=ReadS3cret-4711",
        "S3cret-4711",
    ),
    (
        "EDGESTEER_REDIS",
        "redis://:RedisPa55-4711@127.0.0.1:6379",
        "RedisPa55-4711",
    ),
    (
        "EDGESTEER_CONTROL_TOKEN",
        "ControlS3cret-4711",
        "S3cret-4711",
    ),
    ("EDGESTEER_ETCD_USER", "root:EtcdPa55-4711", "EtcdPa55-4711"),
];

/// `edgesteer ARGS` with `env`: exit code and everything it printed.
fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = Command::new(binary())
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

#[test]
fn secrets_in_the_environment_never_show_in_help_or_argument_errors() {
    let env: Vec<(&str, &str)> = SECRETS.iter().map(|(k, v, _)| (*k, *v)).collect();
    for args in [
        &["proxy", "--help"][..],
        &["proxy", "--no-such-flag"],
        &["proxy", "--threads", "many"],
        &["control", "--help"],
        &["control", "--no-such-flag"],
        &["help", "proxy"],
    ] {
        let (code, text) = run(args, &env);
        assert_ne!(code, None, "{args:?}");
        for (var, _, secret) in SECRETS {
            assert!(
                !text.contains(secret),
                "`edgesteer {}` shows {var}'s secret:\n{text}",
                args.join(" ")
            );
        }
    }
    // The help still says which variables are read.
    let (_, help) = run(&["proxy", "--help"], &env);
    for var in ["EDGESTEER_ADMIN_TOKENS", "EDGESTEER_REDIS"] {
        assert!(help.contains(var), "{var} not in the help:\n{help}");
    }

    // A malformed admin token is refused without being echoed.
    let (code, text) = run(
        &["proxy", "--config", "/nonexistent.toml"],
        &[(
            "EDGESTEER_ADMIN_TOKENS",
            "ops:admin=good-secret-1,Leak3dS3cret",
        )],
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("EDGESTEER_ADMIN_TOKENS") && text.contains("entry 2"),
        "{text}"
    );
    assert!(
        !text.contains("Leak3dS3cret") && !text.contains("good-secret-1"),
        "{text}"
    );
}

#[tokio::test]
async fn normal_traffic_logs_no_error() {
    let _heavy = heavy().await;
    let wd = Workdir::new().unwrap();
    let (spec, _backends) = covergen_on_loopback().await.unwrap();
    let log = wd.path("proxy.log");
    // Two worker threads: the pool's idle watch and the request that takes
    // a pooled connection can then be on different threads.
    let proxy = Proxy::start(ProxyConfig {
        table: wd.write_table("table.toml", &spec).unwrap(),
        geo_db: Some(wd.geo_db().unwrap()),
        extra_args: vec!["--threads".into(), "2".into()],
        log: Some(log.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let url = proxy.url("/v1/covers");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..400 {
                let status = match client.get(&url).send().await {
                    Ok(r) => {
                        let s = r.status().as_u16();
                        let _ = r.bytes().await;
                        s
                    }
                    Err(_) => 0,
                };
                statuses.push(status);
            }
            statuses
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.extend(t.await.unwrap());
    }
    let bad: Vec<_> = statuses.iter().filter(|s| **s != 200).collect();
    assert!(
        bad.is_empty(),
        "{} of 3200 not 200: {:?}",
        bad.len(),
        &bad[..bad.len().min(10)]
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = std::fs::read_to_string(&log).unwrap();
    let errors: Vec<&str> = text.lines().filter(|l| l.contains(" ERROR ")).collect();
    assert!(
        errors.is_empty(),
        "{} ERROR lines in 3200 all-200 requests, e.g. {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
}
