//! Binding the DNS sockets and running the listeners: each UDP socket on
//! its own thread ([`crate::udp`], one per socket, `SO_REUSEPORT`, so the
//! kernel spreads queries and an upgraded process can bind beside the old
//! one), the TCP listener and the edge probes ([`crate::probe`]) on the
//! caller's runtime.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use edgesteer_geo::GeoLookup;

use crate::server::{DnsServer, Plane};

/// Sockets bound before serving, so a taken port fails the start.
pub struct Bound {
    pub(crate) udp: Vec<std::net::UdpSocket>,
    pub(crate) tcp: std::net::TcpListener,
}

impl Bound {
    /// `udp_sockets` UDP sockets (each served by its own task) and one TCP
    /// listener on `addr`.
    pub fn bind(addr: SocketAddr, udp_sockets: usize) -> std::io::Result<Bound> {
        use socket2::{Domain, Protocol, Socket, Type};
        let domain = Domain::for_address(addr);
        let mut udp = Vec::new();
        for _ in 0..udp_sockets.max(1) {
            let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
            s.set_reuse_port(true)?;
            s.set_nonblocking(true)?;
            s.bind(&addr.into())?;
            udp.push(s.into());
        }
        let t = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
        t.set_reuse_address(true)?;
        t.set_reuse_port(true)?;
        t.set_nonblocking(true)?;
        t.bind(&addr.into())?;
        t.listen(1024)?;
        Ok(Bound { udp, tcp: t.into() })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// Serves until `shutdown` resolves: each UDP socket on its own thread,
/// TCP and the edge probes on this runtime.
pub async fn serve<P: Plane, G: GeoLookup + ?Sized + 'static>(
    server: Arc<DnsServer<P, G>>,
    bound: Bound,
    shutdown: impl Future<Output = ()>,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let handle = tokio::runtime::Handle::current();
    let mut threads = Vec::new();
    for (i, sock) in bound.udp.into_iter().enumerate() {
        let (me, stop, handle) = (server.clone(), stop.clone(), handle.clone());
        let t = std::thread::Builder::new()
            .name(format!("dns-udp-{i}"))
            .spawn(move || {
                // Class maps are built on the runtime's blocking pool.
                let _rt = handle.enter();
                crate::udp::serve(&me, &sock, &stop);
            });
        match t {
            Ok(t) => threads.push(t),
            Err(e) => tracing::error!(error = %e, "cannot start a DNS UDP thread"),
        }
    }
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(crate::probe::run(server.clone()));
    match tokio::net::TcpListener::from_std(bound.tcp) {
        Ok(l) => {
            tasks.spawn(server.clone().tcp_loop(l));
        }
        Err(e) => tracing::error!(error = %e, "cannot serve the DNS TCP listener"),
    }
    shutdown.await;
    stop.store(true, Ordering::Relaxed);
    tasks.shutdown().await;
    for t in threads {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
}
