//! The process lifecycle under load: binary upgrades that hand the
//! listeners over (`--upgrade`), SIGTERM drains, a SIGQUIT with nobody to
//! take the listeners (or only a stale upgrade socket), `--upgrade` with
//! no proxy to take over from, and a geo database rewritten in place.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edgesteer_control_api::api::PatchRegion;
use edgesteer_tests::*;

/// What the load saw: answers by outcome, and any version that went back.
#[derive(Default)]
struct Seen {
    ok: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl Seen {
    fn fail(&self, what: String) {
        if let Ok(mut f) = self.failures.lock() {
            f.push(what);
        }
    }
}

/// One load stream: GETs at `every` until `stop`, through `client`. A
/// response must be 200 and carry a table version no older than `floor`
/// was when the request left.
async fn stream(
    name: &'static str,
    client: reqwest::Client,
    url: String,
    every: Duration,
    stop: Arc<AtomicBool>,
    floor: Arc<AtomicU64>,
    seen: Arc<Seen>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let least = floor.load(Ordering::Acquire);
        match client.get(&url).send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                let version = r
                    .headers()
                    .get("x-steer-version")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                let _ = r.bytes().await;
                if status != 200 {
                    seen.fail(format!("{name}: status {status}"));
                } else if version.is_none_or(|v| v < least) {
                    seen.fail(format!(
                        "{name}: version {version:?} after {least} was live"
                    ));
                } else {
                    seen.ok.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) => seen.fail(format!("{name}: {e:?}")),
        }
    }
}

/// h1 keep-alive, h1 with a fresh connection per request, and h2c: about
/// 300 requests/s in all.
fn start_load(
    url: &str,
    stop: &Arc<AtomicBool>,
    floor: &Arc<AtomicU64>,
    seen: &Arc<Seen>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let timeout = Duration::from_secs(5);
    let keepalive = reqwest::Client::builder().timeout(timeout).build().unwrap();
    let fresh = reqwest::Client::builder()
        .timeout(timeout)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let h2 = reqwest::Client::builder()
        .timeout(timeout)
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for (name, client, n) in [
        ("h1 keep-alive", keepalive, 4),
        ("h1 fresh", fresh, 2),
        ("h2c", h2, 4),
    ] {
        for _ in 0..n {
            tasks.push(tokio::spawn(stream(
                name,
                client.clone(),
                url.to_string(),
                Duration::from_millis(33),
                stop.clone(),
                floor.clone(),
                seen.clone(),
            )));
        }
    }
    tasks
}

/// Whether the process logging to `log` installed `version`.
fn installed(log: &Path, version: u64) -> bool {
    let want = format!(" version={version} ");
    std::fs::read_to_string(log).is_ok_and(|text| {
        text.lines()
            .any(|l| l.contains("routing table installed") && l.contains(&want))
    })
}

#[tokio::test]
async fn ten_upgrades_under_load_lose_no_request_and_never_go_back() {
    let _heavy = heavy().await;
    let wd = Workdir::new().unwrap();
    let (mut spec, _backends) = covergen_on_loopback().await.unwrap();
    fast_health(&mut spec);
    let seed = wd.write_table("seed.toml", &spec).unwrap();
    let control = ControlProc::start(&wd.path("control-data"), Some(&seed), &[])
        .await
        .unwrap();
    // A grace period, as in production: with none, Pingora drops what is
    // in flight the moment it stops accepting.
    let mut args = follow(&control, &wd.path("p.cache.json"), "p");
    args.extend(["--grace-period".into(), "2".into()]);
    // Each process logs to a file of its own: which versions it installed.
    let mut log = wd.path("p0.log");
    let mut proxy = Proxy::start(ProxyConfig {
        geo_db: Some(wd.geo_db().unwrap()),
        extra_args: args,
        log: Some(log.clone()),
        ..Default::default()
    })
    .await
    .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let floor = Arc::new(AtomicU64::new(1));
    let seen = Arc::new(Seen::default());
    let load = start_load(&proxy.url("/v1/covers"), &stop, &floor, &seen);
    let api = control.client();
    let mut olds: Vec<(std::process::Child, PathBuf)> = Vec::new();
    for i in 0..10 {
        // A new table between upgrades: once live, no answer may be older.
        let v = api
            .patch_region(
                "us-west",
                &PatchRegion {
                    drain: Some(i % 2 == 0),
                    reason: format!("upgrade test step {i}"),
                    ..PatchRegion::default()
                },
            )
            .await
            .unwrap();
        assert!(
            wait_until(Duration::from_secs(5), || async {
                proxy.table_version().await == Some(v.version)
            })
            .await
            .is_some(),
            "version {} never went live",
            v.version
        );
        // Processes of earlier upgrades may still be draining, and each
        // follows the service: the floor rises once every one still alive
        // has installed the version (a fixed 200 ms, then 500 ms, was once
        // too short on a loaded 2-core machine).
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let mut behind: Vec<String> = olds
                .iter_mut()
                .filter_map(|(c, l)| matches!(c.try_wait(), Ok(None)).then(|| l.clone()))
                .chain([log.clone()])
                .filter(|l| !installed(l, v.version))
                .map(|l| l.display().to_string())
                .collect();
            if behind.is_empty() {
                break;
            }
            behind.sort();
            assert!(
                std::time::Instant::now() < deadline,
                "version {} not installed by the processes logging to {behind:?}",
                v.version
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        floor.store(v.version, Ordering::Release);
        let old_log = std::mem::replace(&mut log, wd.path(&format!("p{}.log", i + 1)));
        let old = proxy.upgrade_logging_to(log.clone()).await.unwrap();
        olds.push((old, old_log));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    for (mut old, _) in olds {
        let status = wait_child(&mut old, Duration::from_secs(30)).await;
        assert!(
            status.is_some_and(|s| s.success()),
            "an upgraded-away process did not exit 0: {status:?}"
        );
    }
    let failures = seen.failures.lock().unwrap().clone();
    let ok = seen.ok.load(Ordering::Relaxed);
    assert!(
        failures.is_empty(),
        "{} of {} requests failed across 10 upgrades: {:?}",
        failures.len(),
        ok + failures.len() as u64,
        &failures[..failures.len().min(10)]
    );
    assert!(ok > 1000, "only {ok} requests were sent");
    // The admin listener moved too: the new process answers on it.
    assert!(proxy.table_version().await.is_some());
}

#[tokio::test]
async fn sigterm_answers_every_in_flight_request_and_exits_0() {
    let wd = Workdir::new().unwrap();
    let (spec, _backends) = covergen_on_loopback().await.unwrap();
    let table = wd.write_table("table.toml", &spec).unwrap();
    let mut proxy = Proxy::start(ProxyConfig {
        table,
        geo_db: Some(wd.geo_db().unwrap()),
        extra_args: vec!["--grace-period".into(), "3".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    // Slow requests (the demo backend answers /slow?ms=N after N ms) are
    // in flight when SIGTERM arrives.
    let client = reqwest::Client::new();
    let mut inflight = Vec::new();
    for _ in 0..20 {
        let req = client.get(proxy.url("/slow?ms=1500")).send();
        inflight.push(tokio::spawn(async move {
            match req.await {
                Ok(r) => r.status().as_u16(),
                Err(_) => 0,
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.signal("TERM");
    // The listeners close at once: a new connection is refused (not
    // accepted and then dropped).
    let refused = wait_until(Duration::from_secs(2), || async {
        tokio::net::TcpStream::connect(proxy.addr).await.is_err()
    })
    .await;
    assert!(refused.is_some(), "still accepting after SIGTERM");
    let mut statuses = Vec::new();
    for t in inflight {
        statuses.push(t.await.unwrap());
    }
    assert!(
        statuses.iter().all(|s| *s == 200),
        "in-flight requests were not all answered: {statuses:?}"
    );
    let status = proxy.wait_exit(Duration::from_secs(15)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "exit after SIGTERM: {status:?}"
    );
}

#[tokio::test]
async fn sigquit_with_nobody_to_take_the_listeners_keeps_serving() {
    let wd = Workdir::new().unwrap();
    let (spec, _backends) = covergen_on_loopback().await.unwrap();
    let mut proxy = wd.start_proxy(&spec, false, vec![]).await.unwrap();
    proxy.signal("QUIT");
    // The proxy waits 5 s for a successor, then says why and goes on.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(proxy.wait_exit(Duration::ZERO).await.is_none(), "it exited");
    let r = reqwest::get(proxy.url("/v1/covers")).await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn sigquit_with_a_stale_upgrade_socket_keeps_serving() {
    let wd = Workdir::new().unwrap();
    let (spec, _backends) = covergen_on_loopback().await.unwrap();
    let log = wd.path("proxy.log");
    let mut proxy = Proxy::start(ProxyConfig {
        table: wd.write_table("table.toml", &spec).unwrap(),
        geo_db: Some(wd.geo_db().unwrap()),
        log: Some(log.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    // What a killed `--upgrade` leaves: the socket file, nobody on it.
    let sock = proxy.runtime.path().join("rt/upgrade.sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    proxy.signal("QUIT");
    // 5 s looking for a successor, then (before the fix) Pingora's 5
    // tries a second apart to hand the sockets over, then its shutdown.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert!(proxy.wait_exit(Duration::ZERO).await.is_none(), "it exited");
    let r = reqwest::get(proxy.url("/v1/covers")).await.unwrap();
    assert_eq!(r.status(), 200);
    let text = std::fs::read_to_string(&log).unwrap();
    let warned = text
        .lines()
        .find(|l| l.contains("nobody listens on the upgrade socket"));
    assert!(
        warned.is_some_and(|l| l.contains("WARN") && l.contains(&*sock.to_string_lossy())),
        "no warning naming {}: {}",
        sock.display(),
        text.lines()
            .filter(|l| l.contains("SIGQUIT"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// `edgesteer proxy --upgrade` in `runtime` (holding `pid_file`, if any):
/// its exit code, how long it took, and what it printed.
fn upgrade_alone(
    wd: &Workdir,
    spec: &edgesteer_config::TableSpec,
    runtime: &std::path::Path,
    pid_file: Option<&str>,
) -> (Option<i32>, Duration, String) {
    std::fs::create_dir_all(runtime).unwrap();
    std::fs::set_permissions(runtime, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    if let Some(pid) = pid_file {
        std::fs::write(runtime.join("proxy.pid"), pid).unwrap();
    }
    let table = wd.write_table("table.toml", spec).unwrap();
    let start = std::time::Instant::now();
    let out = std::process::Command::new(binary())
        .args(["proxy", "--upgrade", "--threads", "1", "--config"])
        .arg(&table)
        .arg("--runtime-dir")
        .arg(runtime)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--admin", &format!("127.0.0.1:{}", free_port())])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.code(),
        start.elapsed(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn upgrade_with_no_running_proxy_says_so() {
    let wd = Workdir::new().unwrap();
    let (spec, _backends) = covergen_on_loopback().await.unwrap();
    // No pid file, then one naming a process that has exited.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    let stale = format!("{}\n", gone.id());
    for (dir, pid_file) in [("rt-empty", None), ("rt-stale", Some(stale.as_str()))] {
        let runtime = wd.path(dir);
        let (code, took, err) = upgrade_alone(&wd, &spec, &runtime, pid_file);
        assert_eq!(code, Some(1), "{err}");
        assert!(
            err.contains("no running proxy found in the runtime directory")
                && err.contains(&*runtime.to_string_lossy()),
            "{err}"
        );
        assert!(!err.contains("EAGAIN"), "{err}");
        assert!(took < Duration::from_secs(3), "took {took:?}: {err}");
    }
}

#[tokio::test]
async fn a_geo_database_rewritten_in_place_never_takes_the_proxy_down() {
    // Paced load: not at the same time as other heavy tests (2 cores).
    let _heavy = heavy().await;
    let wd = Workdir::new().unwrap();
    let (spec, _backends) = covergen_on_loopback().await.unwrap();
    let log = wd.path("proxy.log");
    let proxy = Proxy::start(ProxyConfig {
        table: wd.write_table("table.toml", &spec).unwrap(),
        geo_db: Some(wd.geo_db().unwrap()),
        trust_loopback: true,
        log: Some(log.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    let db = wd.path("geo.mmdb");
    let good = std::fs::read(&db).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let floor = Arc::new(AtomicU64::new(0));
    let seen = Arc::new(Seen::default());
    let load = start_load(&proxy.url("/v1/covers"), &stop, &floor, &seen);
    // Rewrite the file in place (same inode, as `cp` does), torn halfway
    // until the reloader (every 5 s) has read and refused the torn file,
    // then whole again, twice.
    let refusals = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("geo database not reloaded")
            .count()
    };
    for round in 0..2 {
        use std::io::{Seek, Write};
        let before = refusals();
        let mut f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
        f.set_len(0).unwrap();
        f.write_all(&good[..good.len() / 2]).unwrap();
        f.flush().unwrap();
        let refused = wait_until(Duration::from_secs(7), || async { refusals() > before }).await;
        assert!(
            refused.is_some(),
            "round {round}: the torn file was never read and refused"
        );
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        f.write_all(&good).unwrap();
        f.flush().unwrap();
        tokio::time::sleep(Duration::from_millis(2600)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    let failures = seen.failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{:?}",
        &failures[..failures.len().min(10)]
    );
    assert!(seen.ok.load(Ordering::Relaxed) > 500);
    // Still resolving countries from the database (now the whole file).
    let de = edgesteer_geo::testdb::sample_ip("DE");
    let client = reqwest::Client::new();
    let land = get_as(&client, &proxy.url("/v1/covers"), de, None)
        .await
        .unwrap();
    assert_eq!(land.region(), "eu-west");
    // A different database, written in place: DE's network now belongs to
    // Japan, and within one reload round (5 s) DE's address lands in
    // Asia-Pacific.
    let moved: Vec<(&str, &str, &str)> = edgesteer_geo::testdb::SAMPLE
        .iter()
        .map(|&(net, c, cont)| {
            if c == "DE" {
                (net, "JP", "AS")
            } else {
                (net, c, cont)
            }
        })
        .collect();
    let other = edgesteer_geo::testdb::build(edgesteer_geo::testdb::Schema::GeoIp2, &moved);
    assert_ne!(other, good);
    std::fs::write(&db, &other).unwrap();
    let reloaded = wait_until(Duration::from_secs(8), || async {
        get_as(&client, &proxy.url("/v1/covers"), de, None)
            .await
            .is_ok_and(|r| r.region() == "ap-southeast")
    })
    .await;
    assert!(
        reloaded.is_some(),
        "the rewritten database was never loaded"
    );
}
