//! The index types of a compiled table: regions, zones and backends by
//! position, and sets of regions as a bitmask. A leaf: the model, the
//! DNS zone and `decide()` all use them, and they use nothing.

/// Index of a region in `RoutingTable::regions`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegionId(pub u8);

/// Index of a zone in `RoutingTable::zones`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ZoneId(pub u8);

/// Index of a backend in `RoutingTable::backends`. Only meaningful for the
/// table that issued it; state that must outlive a table is keyed by
/// `Backend::key` instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendId(pub u32);

impl BackendId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl RegionId {
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// A set of regions as a bitmask; copying it is free and membership is one AND.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegionSet(pub u128);

impl RegionSet {
    pub const EMPTY: RegionSet = RegionSet(0);

    pub fn contains(self, r: RegionId) -> bool {
        self.0 & (1u128 << r.0) != 0
    }

    pub fn insert(&mut self, r: RegionId) {
        self.0 |= 1u128 << r.0;
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn len(self) -> u32 {
        self.0.count_ones()
    }

    /// Regions in index order.
    pub fn iter(self) -> impl Iterator<Item = RegionId> {
        let mut bits = self.0;
        std::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            // trailing_zeros of a non-zero u128 is < 128, so it fits in u8.
            let i = bits.trailing_zeros() as u8;
            bits &= bits - 1;
            Some(RegionId(i))
        })
    }
}
