//! The ops console (`/ui` on the config service), driven in Debian's
//! headless Chromium through chromedriver (WebDriver, via `fantoccini`)
//! against a real config service, two real proxies and demo backends:
//! log in, see the fleet, drain a region and roll it back by clicking,
//! with real client requests checking where traffic lands; explain; and a
//! `read` token that sees everything and can change nothing.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use edgesteer::demo::DemoBackend;
use edgesteer_tests::*;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// chromedriver and the Chromium session it drives; both end on drop
/// (chromedriver runs in a process group of its own, and the whole group
/// is killed: killing chromedriver alone would orphan Chromium).
struct Browser {
    driver: Child,
    client: Client,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver (scripts/setup.sh installs Debian's chromium-driver)");
        let status = format!("http://127.0.0.1:{port}/status");
        let http = reqwest::Client::new();
        wait_until(Duration::from_secs(15), || answers(&http, &status))
            .await
            .expect("chromedriver did not start");
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                    "--window-size=1400,2200",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session");
        Browser {
            driver,
            client,
            port,
            _profile: profile,
        }
    }

    /// Runs `script` in the page and returns its value.
    async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    /// Waits (up to 20 s) until `script` returns `true`.
    async fn wait_js(&self, what: &str, script: &str) {
        for _ in 0..200 {
            if self.js(script).await == Value::Bool(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let page = self.js("return document.body.innerText").await;
        panic!("timed out waiting for {what}; the page shows:\n{page}");
    }

    /// Clicks `css`. The page redraws its live sections every 2 s, so an
    /// element found a moment ago may be gone: find it again and retry.
    async fn click(&self, css: &str) {
        let mut last = String::new();
        for _ in 0..5 {
            let e = self
                .client
                .wait()
                .at_most(Duration::from_secs(20))
                .for_element(Locator::Css(css))
                .await
                .unwrap_or_else(|e| panic!("no element {css}: {e}"));
            match e.click().await {
                Ok(()) => return,
                Err(e) => last = e.to_string(),
            }
        }
        panic!("cannot click {css}: {last}");
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.client.find(Locator::Css(css)).await.unwrap();
        e.clear().await.unwrap();
        e.send_keys(text).await.unwrap();
    }

    async fn login(&self, url: &str, token: &str) {
        self.client.goto(url).await.unwrap();
        self.type_into("#token", token).await;
        self.click("#login-btn").await;
        self.wait_js(
            "the console after login",
            "return !document.getElementById('main').hidden",
        )
        .await;
    }

    /// Confirms the open dialog with `reason`.
    async fn confirm(&self, reason: &str) {
        self.wait_js(
            "the confirm dialog",
            "return document.getElementById('confirm').open",
        )
        .await;
        self.type_into("#confirm-reason", reason).await;
        self.click("#confirm-ok").await;
        self.wait_js(
            "the dialog to close",
            "return !document.getElementById('confirm').open",
        )
        .await;
    }

    /// Errors the page recorded, and the browser console's SEVERE entries
    /// (chromedriver's log endpoint).
    async fn console_errors(&self) -> Vec<String> {
        let mut errors: Vec<String> = self
            .js("return window.__edgesteerErrors || ['console script not loaded']")
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.to_string())
            .collect();
        if let Ok(Some(id)) = self.client.session_id().await {
            let url = format!("http://127.0.0.1:{}/session/{id}/se/log", self.port);
            if let Ok(resp) = reqwest::Client::new()
                .post(url)
                .json(&json!({ "type": "browser" }))
                .send()
                .await
            {
                let logs: Value = resp.json().await.unwrap_or(Value::Null);
                for entry in logs["value"].as_array().into_iter().flatten() {
                    if entry["level"] == "SEVERE" {
                        errors.push(entry["message"].to_string());
                    }
                }
            }
        }
        errors
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.driver.id()) {
            let group = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

struct Fleet {
    wd: Workdir,
    _backends: Vec<DemoBackend>,
    control: ControlProc,
}

async fn fleet() -> Fleet {
    let wd = Workdir::new().unwrap();
    let (mut spec, backends) = covergen_on_loopback().await.unwrap();
    fast_health(&mut spec);
    let seed = wd.write_table("seed.toml", &spec).unwrap();
    let geo = wd.geo_db().unwrap();
    let control = ControlProc::start(
        &wd.path("control-data"),
        Some(&seed),
        &["--geo-db", geo.to_str().unwrap()],
    )
    .await
    .unwrap();
    Fleet {
        wd,
        _backends: backends,
        control,
    }
}

impl Fleet {
    async fn proxy(&self, name: &str) -> Proxy {
        self.wd.follower(&self.control, name).await.unwrap()
    }
}

/// Waits until every proxy serves `version`.
async fn all_at(proxies: &[&Proxy], version: u64) {
    let ok = wait_until(Duration::from_secs(15), || async {
        for p in proxies {
            if p.table_version().await != Some(version) {
                return false;
            }
        }
        true
    })
    .await;
    assert!(ok.is_some(), "the proxies did not reach version {version}");
}

/// Where the docs' screenshot goes when `EDGESTEER_UPDATE_SCREENSHOT=1`;
/// otherwise it is written under the target directory only.
fn screenshot_path() -> PathBuf {
    if std::env::var_os("EDGESTEER_UPDATE_SCREENSHOT").is_some() {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/console.png")
    } else {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console.png")
    }
}

#[tokio::test]
async fn ops_drain_and_roll_back_by_clicking_and_traffic_follows() {
    let f = fleet().await;
    let (p1, p2) = (f.proxy("edge-1").await, f.proxy("edge-2").await);
    all_at(&[&p1, &p2], 1).await;
    let http = reqwest::Client::new();
    let us = sample_ip("US");
    let lands = |p: &Proxy| {
        let url = p.url("/v1/covers");
        let http = http.clone();
        async move { get_as(&http, &url, us, None).await }
    };
    assert_eq!(lands(&p1).await.unwrap().region(), "us-east");

    // Light traffic from six countries through both proxies, for the charts.
    let traffic = {
        let (urls, http) = ([p1.url("/v1/covers"), p2.url("/v1/covers")], http.clone());
        tokio::spawn(async move {
            let who = ["US", "BR", "DE", "GB", "JP", "CN"];
            for i in 0usize.. {
                let ip = sample_ip(who[i % who.len()]);
                let _ = get_as(&http, &urls[i % 2], ip, None).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let b = Browser::start().await;
    b.login(&f.control.url("/ui"), OPS_TOKEN).await;
    assert_eq!(
        b.js("return document.getElementById('who-role').textContent")
            .await,
        "ops"
    );

    // All 8 regions, and both proxies at the current version.
    b.wait_js(
        "8 regions",
        "return document.querySelectorAll('#regions .region').length === 8",
    )
    .await;
    b.wait_js(
        "both proxies at the current version",
        "const rows = document.querySelectorAll('#fleet tr[data-proxy]'); \
         return rows.length === 2 && [...rows].every(r => r.classList.contains('current') && r.dataset.version === '1')",
    )
    .await;
    let names = b
        .js("return [...document.querySelectorAll('#fleet tr[data-proxy]')].map(r => r.dataset.proxy)")
        .await;
    assert_eq!(names, json!(["edge-1", "edge-2"]));
    // Live health from the proxies' reports: every backend up.
    b.wait_js(
        "region health from the proxies",
        "const r = document.querySelector('#regions [data-region=\"us-east\"] .health'); \
         return r && /^(\\d+)\\/\\1 healthy$/.test(r.textContent)",
    )
    .await;

    // Drain us-east by clicking; a US client's next request goes to us-west.
    b.click("#regions button[data-action='drain'][data-region='us-east']")
        .await;
    // Before the reason is typed, the dialog shows the preview: us-east's
    // traffic (US and BR clients) moving to us-west, and nothing else.
    b.wait_js(
        "the drain's preview in the confirm dialog",
        "const p = document.getElementById('confirm-preview'); \
         return !p.hidden && p.dataset.state === 'ready' && p.dataset.moves === 'us-east>us-west' \
           && document.getElementById('confirm-reason').value === ''",
    )
    .await;
    let preview = b
        .js("return document.getElementById('confirm-preview').textContent")
        .await;
    assert!(
        preview
            .as_str()
            .unwrap_or("")
            .contains("us-east \u{2192} us-west: "),
        "{preview}"
    );
    b.confirm("console e2e: drain us-east for maintenance")
        .await;
    all_at(&[&p1, &p2], 2).await;
    for p in [&p1, &p2] {
        assert_eq!(lands(p).await.unwrap().region(), "us-west");
    }
    b.wait_js(
        "us-east shown drained",
        "return document.querySelector('#regions [data-region=\"us-east\"]').dataset.state === 'drained'",
    )
    .await;
    // What DNS answers us-east's clients now: us-west's edges.
    b.wait_js(
        "us-east's DNS answer moved to us-west",
        "const d = document.querySelector('#regions [data-region=\"us-east\"] .dns-answer'); \
         return !!d && d.dataset.dnsTarget === 'us-west' && d.innerText.includes('198.51.100.20')",
    )
    .await;

    // Roll back to version 1 from the history; the request lands in us-east again.
    b.click("#history tr[data-version='1'] button[data-action='rollback']")
        .await;
    b.confirm("console e2e: maintenance over, roll back").await;
    all_at(&[&p1, &p2], 3).await;
    for p in [&p1, &p2] {
        assert_eq!(lands(p).await.unwrap().region(), "us-east");
    }

    // The history shows both actions with the reasons typed.
    b.wait_js(
        "both actions in the history",
        "const t = document.getElementById('history').innerText; \
         return t.includes('console e2e: drain us-east for maintenance') \
             && t.includes('console e2e: maintenance over, roll back') \
             && t.includes('shift') && t.includes('rollback')",
    )
    .await;
    let audit = f.control.client().history(10).await.unwrap();
    let actions: Vec<(&str, &str)> = audit
        .versions
        .iter()
        .map(|v| (v.audit.action.as_str(), v.audit.reason.as_str()))
        .collect();
    assert_eq!(
        &actions[..2],
        &[
            ("rollback", "console e2e: maintenance over, roll back"),
            ("shift", "console e2e: drain us-east for maintenance"),
        ]
    );

    // Explain a mainland-China address.
    b.type_into("#explain-ip", &sample_ip("CN").to_string())
        .await;
    b.click("#explain-btn").await;
    b.wait_js(
        "the explanation",
        "const h = document.querySelector('#explain-out .explain-head'); \
         return !!h && h.dataset.zone === 'cn' && h.dataset.region === 'cn-east'",
    )
    .await;
    let text = b
        .js("return document.getElementById('explain-out').innerText")
        .await;
    let text = text.as_str().unwrap_or_default();
    assert!(
        text.contains("zone cn") && text.contains("cn-east"),
        "{text}"
    );
    // The DNS answer for the same client, beside the HTTP decision.
    b.wait_js(
        "the DNS answer in the explanation",
        "const d = document.querySelector('#explain-out .explain-dns'); \
         return !!d && d.dataset.region === 'cn-east' && d.dataset.agrees === 'true'",
    )
    .await;

    // Wait for a chart point from the proxies' stats, then the picture.
    b.wait_js(
        "a traffic chart point",
        "return document.querySelectorAll('#regions .chart path.line').length > 0",
    )
    .await;
    traffic.abort();
    let png = b.client.screenshot().await.unwrap();
    let path = screenshot_path();
    std::fs::write(&path, &png).unwrap();
    assert!(png.len() > 10_000, "screenshot of {} bytes", png.len());

    let errors = b.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:?}");
}

#[tokio::test]
async fn a_read_token_sees_everything_and_changes_nothing() {
    let f = fleet().await;
    let p = f.proxy("edge-r").await;
    all_at(&[&p], 1).await;
    let b = Browser::start().await;
    b.login(&f.control.url("/ui"), READ_TOKEN).await;
    assert_eq!(
        b.js("return document.getElementById('who-role').textContent")
            .await,
        "read"
    );
    b.wait_js(
        "8 regions",
        "return document.querySelectorAll('#regions .region').length === 8",
    )
    .await;
    b.wait_js(
        "the fleet and the history",
        "return document.querySelectorAll('#fleet tr[data-proxy]').length === 1 \
             && document.querySelectorAll('#history tr[data-version]').length >= 1",
    )
    .await;
    // No action control anywhere on the page (diff is a read).
    let actions = b
        .js("return [...document.querySelectorAll('[data-action]')].map(e => e.dataset.action).filter(a => a !== 'diff')")
        .await;
    assert_eq!(actions, json!([]));

    // A write forged from the page with the read token is refused.
    let status = b
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1]; \
             fetch('/v1/regions/us-east', { method: 'PATCH', \
               headers: { 'Authorization': 'Bearer ' + sessionStorage.getItem('edgesteer.token'), 'Content-Type': 'application/json' }, \
               body: JSON.stringify({ drain: true, reason: 'forged' }) }).then(r => done(r.status), e => done(String(e)))",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, json!(403));
    assert_eq!(f.control.client().get().await.unwrap().version, 1);

    // The page itself carries a CSP without inline script or other origins.
    let resp = reqwest::get(f.control.url("/ui")).await.unwrap();
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(resp.headers().get("set-cookie").is_none());
    let errors: Vec<String> = b
        .console_errors()
        .await
        .into_iter()
        .filter(|e| !e.contains("403"))
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");
}
