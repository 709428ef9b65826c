//! A demo backend in a process of its own, to kill, stop and resume.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use anyhow::Context;

use crate::binary::binary;

/// A demo backend running as its own process, so tests can SIGKILL,
/// SIGSTOP and SIGCONT it like a real server.
pub struct BackendProc {
    child: Child,
    pub addr: SocketAddr,
}

impl BackendProc {
    pub fn spawn(region: &str, name: &str, listen: SocketAddr) -> anyhow::Result<BackendProc> {
        use std::io::BufRead;
        let mut child = Command::new(binary())
            .args(["backend", "--region", region, "--name", name, "--listen"])
            .arg(listen.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().context("backend stdout")?;
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .with_context(|| format!("backend said {line:?}"))?;
        Ok(BackendProc { child, addr })
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .arg(sig)
            .arg(self.child.id().to_string())
            .stderr(Stdio::null())
            .status();
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }
}

impl Drop for BackendProc {
    fn drop(&mut self) {
        self.resume();
        self.kill();
    }
}
