//! The sticky key of a request: which value pins a user to a release
//! track. The logic lives in `edgesteer_config::sticky` (pure, fuzzed
//! there); these paths stay for the data plane and `/v1/explain`.

pub use edgesteer_config::sticky::{cookie, sticky_for, sticky_key, sticky_of};
