//! The admin and metrics listeners as Pingora services, so that an upgrade
//! hands them to the new process with the proxy's own listeners: the
//! socket is registered with Pingora's listener set under
//! `NAME@ADDR`, sent over the upgrade socket on SIGQUIT, and taken back
//! from it by the new process. Each runs on its own one-thread runtime, so
//! admin traffic never competes with the data plane's workers, behind the
//! same accept loop as the config service, [`edgesteer_listener`] (head
//! and idle timeouts, connection cap).

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::server::{ListenFds, ShutdownWatch};
use pingora_core::services::Service;

use crate::admin::AdminApp;

/// Connections the admin (or metrics) listener holds at most.
const ADMIN_MAX_CONNECTIONS: usize = 256;

/// How long a listener that was not handed over waits for its port to be
/// released (an older process that did not register it still holds it).
const REBIND_FOR: Duration = Duration::from_secs(30);

/// Admin and metrics listeners serving or draining: a graceful shutdown
/// waits for their drain (at most a second) as for the proxy's requests.
static SERVING: AtomicUsize = AtomicUsize::new(0);

/// How many admin and metrics listeners are still serving or draining.
pub fn serving() -> usize {
    SERVING.load(Ordering::Acquire)
}

/// Counts one listener in [`SERVING`] until dropped.
struct Serving;

impl Serving {
    fn start() -> Serving {
        SERVING.fetch_add(1, Ordering::AcqRel);
        Serving
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        SERVING.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `/healthz`, `/metrics` and the admin API (or only the first two) on one
/// address.
pub struct AdminService {
    name: &'static str,
    addr: SocketAddr,
    /// Bound at start-up (so a taken port fails the start), unless this
    /// process takes the listener over from the one it upgrades.
    bound: Mutex<Option<std::net::TcpListener>>,
    app: AdminApp,
}

impl AdminService {
    /// Binds now, so a taken port is reported at start-up, not later.
    /// With `inherit`, binds nothing: the socket comes from the process
    /// being upgraded (or is bound when that one had none).
    pub fn new(
        name: &'static str,
        addr: SocketAddr,
        app: AdminApp,
        inherit: bool,
    ) -> std::io::Result<AdminService> {
        let bound = if inherit { None } else { Some(bind(addr)?) };
        Ok(AdminService {
            name,
            addr,
            bound: Mutex::new(bound),
            app,
        })
    }

    /// The key of this socket in Pingora's listener set.
    fn key(&self) -> String {
        format!("{}@{}", self.name, self.addr)
    }

    /// The listening socket: bound at start, handed over, or bound now.
    async fn listener(&self, fds: Option<&ListenFds>) -> Option<std::net::TcpListener> {
        let key = self.key();
        let bound = self.bound.lock().ok().and_then(|mut b| b.take());
        if let Some(l) = bound {
            if let Some(fds) = fds {
                fds.lock().add(key, l.as_raw_fd());
            }
            return Some(l);
        }
        if let Some(fd) = fds.and_then(|f| f.lock().get(&key).copied()) {
            tracing::info!(listener = self.name, addr = %self.addr, "listener taken over from the previous process");
            return Some(adopt(fd));
        }
        // Upgrading from a process that did not hand this one over: its
        // port frees up when that process exits.
        let deadline = tokio::time::Instant::now() + REBIND_FOR;
        loop {
            match bind(self.addr) {
                Ok(l) => {
                    if let Some(fds) = fds {
                        fds.lock().add(key, l.as_raw_fd());
                    }
                    return Some(l);
                }
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(listener = self.name, addr = %self.addr, error = %e, "waiting for the port");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => {
                    tracing::error!(listener = self.name, addr = %self.addr, error = %e, "cannot bind; this listener is off");
                    return None;
                }
            }
        }
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Owns a listening socket received from the previous process.
#[allow(unsafe_code)]
fn adopt(fd: RawFd) -> std::net::TcpListener {
    // SAFETY: `fd` arrived with SCM_RIGHTS in Pingora's upgrade hand-off
    // under this listener's own key, so it is an open listening TCP socket
    // that nothing else in this process owns: Pingora keeps only its
    // number, to send it on at the next upgrade (before this listener is
    // dropped at shutdown). It is already non-blocking (the flag lives on
    // the shared open file).
    unsafe { std::net::TcpListener::from_raw_fd(fd) }
}

#[async_trait]
impl Service for AdminService {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        mut shutdown: ShutdownWatch,
        _listeners_per_fd: usize,
    ) {
        let _serving = Serving::start();
        let Some(std_listener) = self.listener(fds.as_ref()).await else {
            return;
        };
        let listener = match tokio::net::TcpListener::from_std(std_listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(listener = self.name, error = %e, "listener unusable");
                return;
            }
        };
        let transport = edgesteer_listener::Transport {
            name: self.name,
            tls: None,
            limits: edgesteer_listener::Limits {
                max_connections: ADMIN_MAX_CONNECTIONS,
                grace_period: Duration::from_secs(1),
                ..Default::default()
            },
        };
        let serve = edgesteer_listener::serve_with(
            listener,
            self.app.clone(),
            transport,
            Arc::default(),
            || {},
            async move {
                let _ = shutdown.changed().await;
            },
        );
        if let Err(e) = serve.await {
            tracing::error!(listener = self.name, error = %e, "listener stopped");
        }
    }

    fn name(&self) -> &str {
        self.name
    }

    fn threads(&self) -> Option<usize> {
        Some(1)
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        Some(vec![self.key()])
    }
}
