//! The block list's data: one entry ([`Block`]) and one change to share
//! with the fleet ([`BlockEvent`]), shared by the limiter, the block-list
//! operations and the syncer.

use std::net::IpAddr;
use std::time::SystemTime;

use serde::Serialize;

/// An address on the block list.
#[derive(Clone, Debug, Serialize)]
pub struct Block {
    pub ip: IpAddr,
    pub policy: String,
    pub reason: String,
    #[serde(with = "epoch_ms")]
    pub since: SystemTime,
    #[serde(with = "epoch_ms")]
    pub until: SystemTime,
    #[serde(skip)]
    pub(crate) until_ns: u64,
}

/// Milliseconds since the Unix epoch (0 before it).
pub(crate) fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

mod epoch_ms {
    use std::time::SystemTime;
    pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(super::epoch_ms(*t))
    }
}

/// A block-list change to share with the fleet through the store.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BlockEvent {
    Block {
        ip: IpAddr,
        policy: String,
        reason: String,
        until: SystemTime,
    },
    Unblock {
        ip: IpAddr,
        /// When the lift was made: each lift is its own event.
        at: SystemTime,
    },
}
