//! A real `redis-server` for the rate-limit tests.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::ports::free_port;
use crate::redis_tls::ServerTls;

/// A real `redis-server` on a free loopback port, with persistence off;
/// killed on drop. `scripts/setup.sh` installs it.
pub struct RedisProc {
    child: Option<Child>,
    pub port: u16,
    /// Only a TLS port (`rediss://`).
    tls: Option<ServerTls>,
}

impl RedisProc {
    pub async fn start() -> anyhow::Result<RedisProc> {
        Self::start_with(None).await
    }

    /// A server with only a TLS port (`--port 0 --tls-port PORT`).
    pub async fn start_tls(tls: ServerTls) -> anyhow::Result<RedisProc> {
        Self::start_with(Some(tls)).await
    }

    async fn start_with(tls: Option<ServerTls>) -> anyhow::Result<RedisProc> {
        let mut r = RedisProc {
            child: None,
            port: free_port(),
            tls,
        };
        r.restart().await?;
        Ok(r)
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port and waits for PONG.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let mut cmd = Command::new("redis-server");
        match &self.tls {
            Some(t) => {
                cmd.args(["--port", "0", "--tls-port", &self.port.to_string()]);
                for (k, v) in &t.conf {
                    cmd.arg(format!("--{k}")).arg(v);
                }
            }
            None => {
                cmd.args(["--port", &self.port.to_string()]);
            }
        }
        let child = cmd
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting redis-server (scripts/setup.sh installs it)")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.ping().await {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("redis-server did not answer PING on port {}", self.port);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn ping(&self) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        if self.tls.is_some() {
            return self.cli(&["PING"]).await.is_ok_and(|r| r.trim() == "PONG");
        }
        let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        let mut buf = [0u8; 16];
        s.write_all(b"PING\r\n").await.is_ok()
            && s.read(&mut buf)
                .await
                .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
    }

    /// `redis-cli ARGS` against this server (over TLS with the client
    /// certificate, for a TLS server): its output.
    pub async fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut cmd = tokio::process::Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(t) = &self.tls {
            cmd.args(&t.cli);
        }
        let out = tokio::time::timeout(
            Duration::from_secs(10),
            cmd.args(args).stdin(Stdio::null()).output(),
        )
        .await
        .context("redis-cli did not finish in 10 s")??;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Sends one command (RESP) and returns the first line of the reply.
    pub async fn command(&self, args: &[&str]) -> anyhow::Result<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).await?;
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await?;
        Ok(String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()
            .unwrap_or_default()
            .to_string())
    }

    /// SIGSTOP: the port stays open but nothing answers (a hung Redis).
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .arg(sig)
                .arg(c.id().to_string())
                .stderr(Stdio::null())
                .status();
        }
    }

    pub fn kill(&mut self) {
        self.resume();
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisProc {
    fn drop(&mut self) {
        self.kill();
    }
}
