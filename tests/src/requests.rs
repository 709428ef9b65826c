//! HTTP requests through a proxy as a given client, and what a demo
//! backend said about them.

use std::net::IpAddr;

/// A GET of `url`: its status and its body as JSON (`Null` when it is not).
pub async fn get_json(
    client: &reqwest::Client,
    url: &str,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let r = client.get(url).send().await?;
    let status = r.status().as_u16();
    let body = r
        .json::<serde_json::Value>()
        .await
        .unwrap_or(serde_json::Value::Null);
    Ok((status, body))
}

/// Whether a GET of `url` answers 2xx.
pub async fn answers(client: &reqwest::Client, url: &str) -> bool {
    client
        .get(url)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// What a demo backend said about a proxied request.
#[derive(Debug, Clone)]
pub struct Landed {
    pub status: u16,
    pub region_header: Option<String>,
    pub body: serde_json::Value,
    pub version: reqwest::Version,
}

impl Landed {
    /// The region the backend says it is in.
    pub fn region(&self) -> &str {
        self.body
            .get("region")
            .and_then(|v| v.as_str())
            .unwrap_or("")
    }
}

/// GETs `url` as a client at `client` (sent as X-Forwarded-For), optionally with a Host.
pub async fn get_as(
    client: &reqwest::Client,
    url: &str,
    ip: IpAddr,
    host: Option<&str>,
) -> anyhow::Result<Landed> {
    let mut req = client.get(url).header("x-forwarded-for", ip.to_string());
    if let Some(h) = host {
        req = req.header("host", h);
    }
    landed(req.send().await?).await
}

/// Reads a demo backend's answer (status, region header, JSON body).
pub(crate) async fn landed(resp: reqwest::Response) -> anyhow::Result<Landed> {
    let status = resp.status().as_u16();
    let version = resp.version();
    let region_header = resp
        .headers()
        .get("x-steer-region")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = resp.text().await?;
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    Ok(Landed {
        status,
        region_header,
        body,
        version,
    })
}
