//! The GeoDNS flags of `edgesteer proxy` (`--dns-listen` and its limits).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use edgesteer_proxy::geodns::GeoDnsOptions;

#[derive(Args, Debug)]
pub(super) struct DnsArgs {
    /// Serve authoritative GeoDNS for the table's [dns] zone on ADDR (UDP
    /// and TCP), e.g. 0.0.0.0:53.
    #[arg(long = "dns-listen")]
    dns_listen: Option<SocketAddr>,
    /// Threads of the DNS server, each with its own UDP socket.
    #[arg(long = "dns-threads", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    dns_threads: u64,
    /// DNS-over-TCP connections open at once; more are closed at accept.
    #[arg(long = "dns-tcp-max-connections", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    dns_tcp_max_connections: u64,
    /// A DNS-over-TCP connection with no complete query for this long is closed.
    #[arg(long = "dns-tcp-idle-ms", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    dns_tcp_idle_ms: u64,
}

impl DnsArgs {
    /// The DNS service's options, when `--dns-listen` is given.
    pub(super) fn options(&self) -> Option<GeoDnsOptions> {
        let listen = self.dns_listen?;
        Some(GeoDnsOptions {
            listen,
            threads: usize::try_from(self.dns_threads).unwrap_or(1),
            tcp: edgesteer_dns::TcpLimits {
                max_connections: usize::try_from(self.dns_tcp_max_connections).unwrap_or(256),
                idle: Duration::from_millis(self.dns_tcp_idle_ms),
            },
        })
    }
}
