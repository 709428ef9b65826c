//! The scratch directory of a test: the sample geo database, table files,
//! and proxies started on them.

use std::path::PathBuf;

use edgesteer_config::{parse, TableSpec};
use edgesteer_geo::testdb::{self, Schema};

use crate::control::{follow, ControlProc};
use crate::pki::{make_pki, TestPki};
use crate::proxy::{Proxy, ProxyConfig};

/// A scratch directory holding the test geo database and table files.
pub struct Workdir {
    pub dir: tempfile::TempDir,
}

impl Workdir {
    pub fn new() -> anyhow::Result<Workdir> {
        Ok(Workdir {
            dir: tempfile::tempdir()?,
        })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes the sample GeoIP2-schema database and returns its path.
    pub fn geo_db(&self) -> anyhow::Result<PathBuf> {
        let p = self.path("geo.mmdb");
        std::fs::write(&p, testdb::build(Schema::GeoIp2, testdb::SAMPLE))?;
        Ok(p)
    }

    pub fn write_table(&self, name: &str, spec: &TableSpec) -> anyhow::Result<PathBuf> {
        let p = self.path(name);
        std::fs::write(&p, parse::to_toml(spec)?)?;
        Ok(p)
    }
}

impl Workdir {
    /// A proxy named `name` following `control` (table cache
    /// `NAME.cache.json` here), on the sample geo database, trusting
    /// loopback's `X-Forwarded-For`.
    pub async fn follower(&self, control: &ControlProc, name: &str) -> anyhow::Result<Proxy> {
        Proxy::start(ProxyConfig {
            geo_db: Some(self.geo_db()?),
            trust_loopback: true,
            extra_args: follow(control, &self.path(&format!("{name}.cache.json")), name),
            ..Default::default()
        })
        .await
    }

    /// Writes `spec` and the sample geo database here and starts a proxy on them.
    pub async fn start_proxy(
        &self,
        spec: &TableSpec,
        trust_loopback: bool,
        extra_args: Vec<String>,
    ) -> anyhow::Result<Proxy> {
        Proxy::start(ProxyConfig {
            table: self.write_table("table.toml", spec)?,
            geo_db: Some(self.geo_db()?),
            trust_loopback,
            extra_args,
            ..Default::default()
        })
        .await
    }

    /// [`Workdir::start_proxy`] with a TLS listener too, serving a
    /// certificate per entry of `leaves` (its DNS names), all signed by
    /// the returned test CA; loopback is trusted.
    pub async fn start_tls_proxy(
        &self,
        spec: &TableSpec,
        leaves: &[&[&str]],
    ) -> anyhow::Result<(Proxy, TestPki)> {
        let pki = make_pki(self.dir.path(), leaves)?;
        let proxy = Proxy::start(ProxyConfig {
            table: self.write_table("table.toml", spec)?,
            geo_db: Some(self.geo_db()?),
            trust_loopback: true,
            tls_certs: pki.leaves.clone(),
            ..Default::default()
        })
        .await?;
        Ok((proxy, pki))
    }
}
