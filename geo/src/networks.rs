//! Every network of the loaded database with its answer, for consumers
//! that precompute over the whole address space (GeoDNS merges networks
//! that steer alike, to answer with the widest client-subnet scope that
//! is still exact).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use maxminddb::WithinOptions;

use crate::decode::{decode_record, Record};
use crate::{GeoDb, GeoResult, LookupStatus};

/// One network and the database's answer for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GeoNetwork {
    /// The network address (IPv4 networks as IPv4).
    pub addr: IpAddr,
    pub prefix: u8,
    pub result: GeoResult,
}

impl GeoDb {
    /// Calls `f` for every network of the database, networks without data
    /// included (answered `NotFound`), so together they cover the address
    /// space. IPv4 networks of an IPv6 database come as IPv4 (its
    /// IPv4-mapped and other aliases are skipped). Returns the database's
    /// generation, or why it could not be read.
    pub fn for_each_network(&self, mut f: impl FnMut(GeoNetwork)) -> Result<u64, String> {
        let cur = self.current.load();
        let opts = WithinOptions::default().include_networks_without_data();
        let iter = cur.reader.networks(opts).map_err(|e| e.to_string())?;
        let v6 = cur.reader.metadata.ip_version == 6;
        for item in iter {
            let looked = item.map_err(|e| e.to_string())?;
            let net = looked.network().map_err(|e| e.to_string())?;
            let result = if looked.has_data() {
                decode_record(looked.decode::<Record<'_>>())
            } else {
                GeoResult {
                    country: None,
                    continent: None,
                    status: LookupStatus::NotFound,
                }
            };
            match (net.network(), net.prefix()) {
                // The IPv4 subtree of an IPv6 database: ::a.b.c.d/96+n.
                (IpAddr::V6(a), p) if v6 && p >= 96 && u128::from(a) >> 32 == 0 => f(GeoNetwork {
                    addr: IpAddr::V4(Ipv4Addr::from(u128::from(a) as u32)),
                    prefix: p - 96,
                    result,
                }),
                // A network wider than /96 holding the IPv4 subtree whole.
                (IpAddr::V6(a), p) if v6 && u128::from(a) == 0 && p < 96 => {
                    f(GeoNetwork {
                        addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                        prefix: 0,
                        result,
                    });
                    f(GeoNetwork {
                        addr: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                        prefix: p,
                        result,
                    });
                }
                (addr, prefix) => f(GeoNetwork {
                    addr,
                    prefix,
                    result,
                }),
            }
        }
        Ok(cur.generation)
    }

    /// The generation of the loaded database (changes on every reload).
    pub fn generation(&self) -> u64 {
        self.current.load().generation
    }
}
