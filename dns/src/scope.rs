//! Client classes by network, merged: every network of the geo database
//! is mapped to the class the table gives its country (zone and home), and
//! sibling networks of the same class are merged, as gdnsd does. A query's
//! client subnet then gets the widest scope whose every address steers
//! alike, so resolvers cache one answer for as much of the Internet as is
//! exact; and locating a client is one binary search, with no database
//! record to decode.
//!
//! Built off the answer path (a blocking-pool thread) for each (table
//! version, geo generation); until it is ready the answer path looks the
//! database up directly and answers with the database network's scope.

use std::net::IpAddr;

use edgesteer_config::model::{ClientClass, RoutingTable};
use edgesteer_geo::GeoNetwork;

/// One merged network: its first address, prefix length and class index.
type Entry<A> = (A, u8, u16);

/// Merged networks of one table version and one geo database.
#[derive(Debug)]
pub struct ClassMap {
    pub version: u64,
    pub generation: u64,
    v4: Vec<Entry<u32>>,
    v6: Vec<Entry<u128>>,
    classes: Vec<ClientClass>,
}

impl ClassMap {
    /// Walks the database's networks (`walk` calls its argument for each,
    /// in address order) and merges them under `table`'s classes.
    pub fn build(
        table: &RoutingTable,
        version: u64,
        walk: impl FnOnce(&mut dyn FnMut(GeoNetwork)) -> Result<u64, String>,
    ) -> Result<ClassMap, String> {
        let mut classes: Vec<ClientClass> = Vec::new();
        let mut v4: Vec<Entry<u32>> = Vec::new();
        let mut v6: Vec<Entry<u128>> = Vec::new();
        let generation = walk(&mut |n: GeoNetwork| {
            let class = table.classify(n.result.country, n.result.continent);
            // The class as far as steering goes: zone and home (the
            // allowed set follows from the zone).
            let idx = match classes
                .iter()
                .position(|c| c.zone == class.zone && c.home == class.home)
            {
                Some(i) => i,
                None => {
                    classes.push(class);
                    classes.len() - 1
                }
            };
            let idx = u16::try_from(idx).unwrap_or(u16::MAX);
            match n.addr {
                IpAddr::V4(a) => push_merged(&mut v4, (u32::from(a), n.prefix, idx), 32),
                IpAddr::V6(a) => push_merged(&mut v6, (u128::from(a), n.prefix, idx), 128),
            }
        })?;
        v4.sort_unstable_by_key(|e| e.0);
        v6.sort_unstable_by_key(|e| e.0);
        Ok(ClassMap {
            version,
            generation,
            v4,
            v6,
            classes,
        })
    }

    /// The class of `ip` and the prefix length of its merged network.
    pub fn lookup(&self, ip: IpAddr) -> Option<(ClientClass, u8)> {
        let (idx, prefix) = match edgesteer_config::model::canonical_ip(ip) {
            IpAddr::V4(a) => find(&self.v4, u32::from(a), 32)?,
            IpAddr::V6(a) => find(&self.v6, u128::from(a), 128)?,
        };
        Some((*self.classes.get(usize::from(idx))?, prefix))
    }

    /// Merged networks (IPv4, IPv6), for logs and tests.
    pub fn len(&self) -> (usize, usize) {
        (self.v4.len(), self.v6.len())
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }
}

/// Address arithmetic over u32 and u128.
trait Bits: Copy + Ord {
    fn bit(width: u8, prefix: u8) -> Self;
    fn add(self, other: Self) -> Self;
    fn and(self, other: Self) -> Self;
    fn is_zero(self) -> bool;
    fn mask(width: u8, prefix: u8) -> Self;
}

macro_rules! bits {
    ($t:ty) => {
        impl Bits for $t {
            /// The size of a /prefix network (0 for a /0, which has no sibling).
            fn bit(width: u8, prefix: u8) -> Self {
                if prefix == 0 {
                    0
                } else {
                    1 << (width - prefix)
                }
            }
            fn add(self, other: Self) -> Self {
                self.wrapping_add(other)
            }
            fn and(self, other: Self) -> Self {
                self & other
            }
            fn is_zero(self) -> bool {
                self == 0
            }
            fn mask(width: u8, prefix: u8) -> Self {
                if prefix == 0 {
                    0
                } else {
                    <$t>::MAX << (width - prefix)
                }
            }
        }
    };
}
bits!(u32);
bits!(u128);

/// Appends a network in address order and merges it with its sibling while
/// both hold the same class: two /n that make one /(n-1) become it.
fn push_merged<A: Bits>(list: &mut Vec<Entry<A>>, e: Entry<A>, width: u8) {
    list.push(e);
    while list.len() >= 2 {
        let (b, a) = (list[list.len() - 1], list[list.len() - 2]);
        let size = A::bit(width, a.1);
        let mergeable = a.1 == b.1
            && a.1 > 0
            && a.2 == b.2
            // `a` is the first half of its parent, `b` the second.
            && a.0.and(A::bit(width, a.1)).is_zero()
            && a.0.add(size) == b.0;
        if !mergeable {
            break;
        }
        list.pop();
        list.pop();
        list.push((a.0, a.1 - 1, a.2));
    }
}

/// The merged network holding `ip`: its class index and prefix.
fn find<A: Bits>(list: &[Entry<A>], ip: A, width: u8) -> Option<(u16, u8)> {
    let i = list.partition_point(|e| e.0 <= ip).checked_sub(1)?;
    let (start, prefix, idx) = list[i];
    (ip.and(A::mask(width, prefix)) == start).then_some((idx, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siblings_of_one_class_merge_and_others_do_not() {
        let mut l: Vec<Entry<u32>> = Vec::new();
        let net = |a: [u8; 4]| u32::from(std::net::Ipv4Addr::from(a));
        // 10.0.0.0/9 + 10.128.0.0/9 (class 1) -> 10.0.0.0/8; then
        // 11.0.0.0/9 class 1, 11.128.0.0/9 class 2: no merge.
        for e in [
            (net([10, 0, 0, 0]), 9, 1),
            (net([10, 128, 0, 0]), 9, 1),
            (net([11, 0, 0, 0]), 9, 1),
            (net([11, 128, 0, 0]), 9, 2),
        ] {
            push_merged(&mut l, e, 32);
        }
        assert_eq!(
            l,
            vec![
                (net([10, 0, 0, 0]), 8, 1),
                (net([11, 0, 0, 0]), 9, 1),
                (net([11, 128, 0, 0]), 9, 2)
            ]
        );
        assert_eq!(find(&l, net([10, 200, 1, 1]), 32), Some((1, 8)));
        assert_eq!(find(&l, net([11, 129, 0, 0]), 32), Some((2, 9)));
        assert_eq!(find(&l, net([12, 0, 0, 0]), 32), None);
        assert_eq!(find(&l, net([9, 0, 0, 0]), 32), None);
        // Not siblings (10.128/9 then 11.0/9 share no parent): no merge.
        let mut l: Vec<Entry<u32>> = Vec::new();
        push_merged(&mut l, (net([10, 128, 0, 0]), 9, 1), 32);
        push_merged(&mut l, (net([11, 0, 0, 0]), 9, 1), 32);
        assert_eq!(l.len(), 2);
        // A /0 has no parent: a database that lists it twice is kept as
        // written (and nothing underflows).
        let mut l: Vec<Entry<u32>> = Vec::new();
        push_merged(&mut l, (0, 0, 1), 32);
        push_merged(&mut l, (0, 0, 1), 32);
        assert_eq!(l, vec![(0, 0, 1), (0, 0, 1)]);
    }
}
