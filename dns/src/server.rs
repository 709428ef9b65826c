//! The GeoDNS server state shared by every listener: the rendered zone
//! per table version, the merged client classes, response rate limiting,
//! edge health, and the TCP listener's loop (a connection cap and an idle
//! timeout). Each query is answered in place: reused buffers, no task per
//! query. [`crate::run`] binds the sockets and starts the listeners.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use edgesteer_config::model::{RegionSet, RoutingTable};
use edgesteer_config::route::HealthView;
use edgesteer_geo::GeoLookup;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

use crate::metrics::{DnsMetrics, QueryCounters};
use crate::render::Rendered;
use crate::respond::{respond, Env, Outcome, Transport};
use crate::rrl::{Limiter, Verdict};
use crate::scope::ClassMap;

/// Where the table and health come from: the proxy's current snapshot.
pub trait Plane: Send + Sync + 'static {
    /// Calls `f` with the current table version, table and health view.
    fn with_current<R>(&self, f: impl FnOnce(u64, &RoutingTable, &dyn HealthView) -> R) -> R;
}

/// TCP limits.
#[derive(Clone, Copy, Debug)]
pub struct TcpLimits {
    /// Open connections at most; more are closed at once.
    pub max_connections: usize,
    /// A connection with no complete query for this long is closed.
    pub idle: Duration,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            max_connections: 256,
            idle: Duration::from_secs(10),
        }
    }
}

/// One table version's rendered zone with its metric handles.
struct Current {
    rendered: Option<Rendered>,
    version: u64,
    counters: QueryCounters,
}

/// The GeoDNS server state shared by every listener task.
pub struct DnsServer<P, G: ?Sized> {
    plane: Arc<P>,
    geo: Arc<G>,
    current: ArcSwapOption<Current>,
    rrl: Limiter,
    metrics: DnsMetrics,
    /// Regions whose edges fail their health URL (a `RegionSet` in two halves).
    edges_down: [AtomicU64; 2],
    tcp: TcpLimits,
    /// Merged classes for the current (table version, geo generation).
    classes: Arc<ArcSwapOption<ClassMap>>,
    /// A class map is being built (one at a time).
    building: Arc<AtomicBool>,
}

impl<P: Plane, G: GeoLookup + ?Sized + 'static> DnsServer<P, G> {
    pub fn new(plane: Arc<P>, geo: Arc<G>, metrics: DnsMetrics, tcp: TcpLimits) -> Self {
        DnsServer {
            plane,
            geo,
            current: ArcSwapOption::empty(),
            rrl: Limiter::default(),
            metrics,
            edges_down: [AtomicU64::new(0), AtomicU64::new(0)],
            tcp,
            classes: Arc::new(ArcSwapOption::empty()),
            building: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Where the table comes from.
    pub fn plane(&self) -> &P {
        &self.plane
    }

    /// Marks a region's edges down (or up again), from its health URL.
    pub fn set_edges_down(&self, set: RegionSet) {
        self.edges_down[0].store(set.0 as u64, Ordering::Relaxed);
        self.edges_down[1].store((set.0 >> 64) as u64, Ordering::Relaxed);
    }

    fn edges_down(&self) -> RegionSet {
        let lo = u128::from(self.edges_down[0].load(Ordering::Relaxed));
        let hi = u128::from(self.edges_down[1].load(Ordering::Relaxed));
        RegionSet(lo | (hi << 64))
    }

    /// Answers one UDP query into `out`, rate limited; whether to send it.
    pub fn answer_udp(&self, msg: &[u8], src: IpAddr, out: &mut Vec<u8>) -> bool {
        match self.answer(msg, src, Transport::Udp, out) {
            Some(outcome) => self.rate_ok(src, outcome, out),
            None => false,
        }
    }

    /// Answers one message; `out` holds the answer when `Some`.
    pub fn answer(
        &self,
        msg: &[u8],
        src: IpAddr,
        transport: Transport,
        out: &mut Vec<u8>,
    ) -> Option<Outcome> {
        let started = Instant::now();
        let outcome = self.plane.with_current(|version, table, health| {
            // Guards, not clones: no shared reference count is touched per
            // query unless the table changed.
            let guard = self.current.load();
            let fresh;
            let cur: &Current = match guard.as_deref().filter(|c| c.version == version) {
                Some(c) => c,
                None => {
                    fresh = self.render(version, table);
                    &fresh
                }
            };
            let generation = self.geo.generation();
            let class_guard = self.classes.load();
            let classes = class_guard
                .as_deref()
                .filter(|c| c.version == version && c.generation == generation);
            if classes.is_none() {
                self.build_classes(version, table);
            }
            let env = Env {
                table,
                health,
                geo: &*self.geo,
                zone: cur.rendered.as_ref(),
                edges_down: self.edges_down(),
                classes,
            };
            let outcome = respond(&env, msg, src, transport, out);
            match outcome {
                Some(o) => cur
                    .counters
                    .count(o.qtype, o.rcode, o.region.map(|r| r.index())),
                None => self.metrics.malformed.inc(),
            }
            if outcome.is_some_and(|o| o.rcode == crate::respond::Rcode::FormErr) {
                self.metrics.malformed.inc();
            }
            outcome
        });
        self.metrics
            .latency
            .observe(started.elapsed().as_secs_f64());
        outcome
    }

    /// Renders the zone of table `version` (the table changed).
    fn render(&self, version: u64, table: &RoutingTable) -> Arc<Current> {
        let names: Vec<&str> = table.regions.iter().map(|r| r.name.as_str()).collect();
        let cur = Arc::new(Current {
            rendered: table.dns.clone().map(|z| Rendered::new(z, version)),
            version,
            counters: self.metrics.bind(&names),
        });
        if cur.rendered.is_none() {
            tracing::warn!(
                version,
                "the routing table has no [dns] section; every DNS query is refused"
            );
        }
        self.current.store(Some(cur.clone()));
        cur
    }

    /// Builds the merged class map for this table version and the current
    /// geo database on the blocking pool, unless one is being built
    /// (answers look the database up meanwhile).
    fn build_classes(&self, version: u64, table: &RoutingTable) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.building.swap(true, Ordering::AcqRel) {
            return;
        }
        let (geo, table, slot, building) = (
            self.geo.clone(),
            table.clone(),
            self.classes.clone(),
            self.building.clone(),
        );
        handle.spawn_blocking(move || {
            let started = Instant::now();
            let built = ClassMap::build(&table, version, |f| {
                geo.networks(f).unwrap_or_else(|| Err("the geo source cannot list its networks".into()))
            });
            match built {
                Ok(map) => {
                    tracing::info!(version, networks = ?map.len(), took_ms = started.elapsed().as_millis() as u64, "GeoDNS client classes merged");
                    slot.store(Some(Arc::new(map)));
                }
                Err(e) => tracing::warn!(error = %e, "GeoDNS could not merge client classes; answering from direct lookups, with the database's network as the scope"),
            }
            building.store(false, Ordering::Release);
        });
    }

    /// Response rate limiting; may turn `out` into its truncated form.
    fn rate_ok(&self, src: IpAddr, outcome: Outcome, out: &mut Vec<u8>) -> bool {
        let cur = self.current.load();
        let Some(r) = cur.as_ref().and_then(|c| c.rendered.as_ref()) else {
            return true;
        };
        match self
            .rrl
            .check(&r.zone.rrl, src, outcome.name_hash, outcome.class)
        {
            Verdict::Send => true,
            Verdict::Slip => {
                self.metrics.rrl_slipped.inc();
                crate::respond::slip(out, &outcome);
                true
            }
            Verdict::Drop => {
                self.metrics.rrl_dropped.inc();
                false
            }
        }
    }

    pub(crate) async fn tcp_loop(self: Arc<Self>, listener: tokio::net::TcpListener) {
        let slots = Arc::new(Semaphore::new(self.tcp.max_connections));
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "DNS TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                self.metrics.tcp_refused.inc();
                drop(stream);
                continue;
            };
            // Answers are written whole as they are made; Nagle would
            // hold one back for the client's delayed ACK (RFC 7766 8).
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, "DNS TCP: TCP_NODELAY not set");
            }
            let me = self.clone();
            tokio::spawn(async move {
                me.metrics.tcp_open.inc();
                me.tcp_conn(stream, peer.ip()).await;
                me.metrics.tcp_open.dec();
                drop(permit);
            });
        }
    }

    /// Queries on one connection, each within the idle timeout.
    async fn tcp_conn(&self, mut stream: tokio::net::TcpStream, peer: IpAddr) {
        let mut msg = Vec::new();
        let mut out = Vec::new();
        loop {
            let read = async {
                let len = usize::from(stream.read_u16().await?);
                msg.resize(len, 0);
                stream.read_exact(&mut msg).await?;
                Ok::<_, std::io::Error>(())
            };
            match tokio::time::timeout(self.tcp.idle, read).await {
                Ok(Ok(())) => {}
                _ => return,
            }
            if self.answer(&msg, peer, Transport::Tcp, &mut out).is_none() {
                return;
            }
            let len = u16::try_from(out.len()).unwrap_or(u16::MAX);
            // The length and the message in one write (one segment).
            let prefix = len.to_be_bytes();
            let mut frame = bytes::Buf::chain(&prefix[..], &out[..usize::from(len)]);
            let write = stream.write_all_buf(&mut frame);
            match tokio::time::timeout(self.tcp.idle, write).await {
                Ok(Ok(())) => {}
                _ => return,
            }
        }
    }
}
