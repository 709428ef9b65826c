//! TLS for the test Redis servers: a CA, a server certificate for
//! 127.0.0.1 and a client certificate signed by it, another CA that signed
//! neither (the wrong one), as files; and the settings that hand them to
//! `redis-server` and `redis-cli`.

use std::path::PathBuf;

use crate::pki::make_pki;

/// The files, in a scratch directory removed on drop.
pub struct RedisPki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A CA that signed none of these.
    pub other_ca: PathBuf,
    _dir: tempfile::TempDir,
}

/// What a server (or a cluster's nodes) is started with.
#[derive(Clone, Debug)]
pub struct ServerTls {
    /// `redis.conf` lines (`tls-port` aside).
    pub conf: Vec<(String, String)>,
    /// `redis-cli` flags to reach it.
    pub cli: Vec<String>,
}

impl RedisPki {
    pub fn new() -> anyhow::Result<RedisPki> {
        let dir = tempfile::tempdir()?;
        let (good, bad) = (dir.path().join("good"), dir.path().join("bad"));
        std::fs::create_dir_all(&good)?;
        std::fs::create_dir_all(&bad)?;
        let pki = make_pki(&good, &[&["127.0.0.1", "localhost"], &["edgesteer-proxy"]])?;
        let other = make_pki(&bad, &[&["127.0.0.1"]])?;
        let (ca, other_ca) = (good.join("ca.pem"), bad.join("ca.pem"));
        std::fs::write(&ca, &pki.ca_pem)?;
        std::fs::write(&other_ca, &other.ca_pem)?;
        let [(server_cert, server_key), (client_cert, client_key)] =
            <[(PathBuf, PathBuf); 2]>::try_from(pki.leaves)
                .map_err(|_| anyhow::anyhow!("make_pki made the wrong number of leaves"))?;
        Ok(RedisPki {
            ca,
            server_cert,
            server_key,
            client_cert,
            client_key,
            other_ca,
            _dir: dir,
        })
    }

    /// The server's settings; `auth_clients`: it asks for (and checks) a
    /// client certificate. Cluster bus and replication in TLS too.
    pub fn server(&self, auth_clients: bool) -> ServerTls {
        let path = |p: &PathBuf| p.display().to_string();
        let conf = [
            ("tls-cert-file", path(&self.server_cert)),
            ("tls-key-file", path(&self.server_key)),
            ("tls-ca-cert-file", path(&self.ca)),
            (
                "tls-auth-clients",
                if auth_clients { "yes" } else { "no" }.into(),
            ),
            ("tls-replication", "yes".into()),
        ];
        ServerTls {
            conf: conf.map(|(k, v)| (k.to_string(), v)).to_vec(),
            cli: vec![
                "--tls".into(),
                "--cacert".into(),
                path(&self.ca),
                "--cert".into(),
                path(&self.client_cert),
                "--key".into(),
                path(&self.client_key),
            ],
        }
    }
}
