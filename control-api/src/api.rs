//! The wire types of the config service API: one definition of every
//! request and answer (see docs/api.md), shared by the service's handlers,
//! the `client` and `edgesteer ctl`.
//!
//! Field names and shapes are the API contract; `skip_serializing_if`
//! marks the fields a sender leaves out when it has nothing to say.

use std::collections::BTreeMap;

use edgesteer_config::model::RolloutState;
use edgesteer_config::wire::{RolloutSpec, RolloutStep};
use edgesteer_config::{FieldError, TableSpec};
use serde::{Deserialize, Serialize};

pub use crate::record::{etag, Audit, TableRecord, VersionRecord};
pub use crate::report::{RegionReport, StatsReport, TrackReport, LATENCY_BUCKETS_MS};

/// `PUT /v1/table`. The service reads `table` as a JSON value first
/// (`PutTable<serde_json::Value>`) so that errors name paths within the table.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutTable<T = TableSpec> {
    pub table: T,
    #[serde(default)]
    pub reason: String,
}

/// `PATCH /v1/regions/{region}`: any subset of the changes.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchRegion {
    /// Backend address -> new weight.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub weights: BTreeMap<String, u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_bps: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<bool>,
    #[serde(default)]
    pub reason: String,
}

/// `POST /v1/rollback`: version `to`'s table becomes a new version.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    pub to: u64,
    #[serde(default)]
    pub reason: String,
}

/// Query of `GET /v1/history`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HistoryQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// `GET /v1/history`: newest first.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub versions: Vec<HistoryEntry>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub version: u64,
    pub audit: Audit,
}

/// Query of `GET /v1/diff`; defaults to the last change.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DiffQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<u64>,
}

/// `GET /v1/diff`: one line per changed field.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diff {
    pub from: u64,
    pub to: u64,
    pub changes: Vec<String>,
}

/// Longest proxy name the service takes (`proxy` of a watch, an ack or a
/// stats report).
pub const MAX_PROXY_NAME: usize = 64;

/// Checks a proxy name: 1 to [`MAX_PROXY_NAME`] characters of
/// `[A-Za-z0-9._-]` (a host name or a certificate's DNS name fits). The
/// error says what is wrong, for a `400` naming the field `proxy`.
pub fn check_proxy_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a proxy name is needed (1 to 64 characters of A-Z a-z 0-9 . _ -)".into());
    }
    if name.len() > MAX_PROXY_NAME {
        return Err(format!(
            "a proxy name is at most {MAX_PROXY_NAME} characters; this one has {}",
            name.len()
        ));
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        Some(c) => Err(format!(
            "a proxy name holds only A-Z a-z 0-9 . _ - (found {c:?})"
        )),
        None => Ok(()),
    }
}

/// Query of the `GET /v1/watch` long-poll.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WatchQuery {
    /// Answer only with a version newer than this.
    #[serde(default)]
    pub after: u64,
    /// The watching proxy's name, for the fleet view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// The store epoch the proxy's version belongs to; a different one
    /// than the service's is answered at once with the current version,
    /// even when that is lower than `after`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
}

/// `POST /v1/fleet/ack`: a proxy applied or rejected a version.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    pub proxy: String,
    pub version: u64,
    /// [`Ack::APPLIED`] or [`Ack::REJECTED`]; anything else is refused
    /// with `bad_status`.
    pub status: String,
    #[serde(default)]
    pub reason: Option<String>,
    /// The store epoch of `version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    /// The proxy's software version (`edgesteer --version`), for the
    /// fleet view; at most 64 characters are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
}

impl Ack {
    pub const APPLIED: &'static str = "applied";
    pub const REJECTED: &'static str = "rejected";
}

/// `GET /v1/fleet`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Fleet {
    pub current_version: Option<u64>,
    /// Sorted by name.
    pub proxies: Vec<FleetEntry>,
}

/// One proxy the service has heard from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FleetEntry {
    pub proxy: String,
    pub applied_version: Option<u64>,
    /// `applied` or `rejected`, from its last ack.
    pub last_status: Option<String>,
    pub last_rejection: Option<String>,
    pub rejected_version: Option<u64>,
    pub last_seen_ms_ago: Option<u64>,
    /// It has held a watch open.
    pub watching: bool,
    /// The store epoch of its applied version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    /// Its software version, from its last ack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
}

/// `GET /v1/rollouts`: every region with a rollout.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Rollouts {
    /// The table version read; absent when nothing is stored yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    pub rollouts: Vec<RolloutStatus>,
}

/// Where one region's rollout stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RolloutStatus {
    pub region: String,
    #[serde(with = "state_name")]
    pub state: RolloutState,
    /// Index of the current step.
    pub step: usize,
    pub steps: Vec<RolloutStep>,
    pub canary_bps: u32,
    pub gates: Gates,
    /// This step's figures; absent until a proxy reports for it.
    pub figures: Option<Figures>,
    /// For a running rollout: time left in the step's hold.
    pub next_step_in_ms: Option<u64>,
    pub reason: Option<String>,
}

/// Gate settings with defaults applied.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gates {
    pub max_error_rate: f64,
    pub max_p99_ratio: f64,
    pub min_requests: u64,
}

/// The figures of a rollout's current step. A p99 beyond the largest
/// latency bucket has no finite bound and is `null`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    pub canary_requests: u64,
    pub canary_error_rate: f64,
    pub canary_p99_ms: Option<f64>,
    pub stable_requests: u64,
    pub stable_p99_ms: Option<f64>,
    pub unhealthy_canary_backends: u32,
}

/// What `POST /v1/rollouts/{region}` asks for. On the wire it is the
/// action's name; a name the service does not know stays [`Other`] so the
/// service can refuse it with `bad_action`.
///
/// [`Other`]: RolloutAction::Other
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum RolloutAction {
    Start,
    Pause,
    Resume,
    Abort,
    Other(String),
}

impl RolloutAction {
    pub fn as_str(&self) -> &str {
        match self {
            RolloutAction::Start => "start",
            RolloutAction::Pause => "pause",
            RolloutAction::Resume => "resume",
            RolloutAction::Abort => "abort",
            RolloutAction::Other(s) => s,
        }
    }
}

impl From<String> for RolloutAction {
    fn from(s: String) -> Self {
        match s.as_str() {
            "start" => RolloutAction::Start,
            "pause" => RolloutAction::Pause,
            "resume" => RolloutAction::Resume,
            "abort" => RolloutAction::Abort,
            _ => RolloutAction::Other(s),
        }
    }
}

impl From<RolloutAction> for String {
    fn from(a: RolloutAction) -> Self {
        a.as_str().to_string()
    }
}

/// `POST /v1/rollouts/{region}`. The plan fields go with `start` only.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutCommand {
    pub action: RolloutAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<RolloutStep>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p99_ratio: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<u64>,
    #[serde(default)]
    pub reason: String,
}

impl RolloutCommand {
    /// A command without a plan (pause, resume, abort, or start with the defaults).
    pub fn new(action: RolloutAction, reason: String) -> Self {
        RolloutCommand {
            action,
            steps: None,
            max_error_rate: None,
            max_p99_ratio: None,
            min_requests: None,
            reason,
        }
    }
}

/// The answer to a rollout command: the new version and the region's rollout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RolloutChange {
    pub version: u64,
    pub rollout: Option<RolloutSpec>,
}

/// Every error answer: a stable code, a message, and the fields at fault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    #[serde(default = "ErrorBody::unknown_code")]
    pub error: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub errors: Vec<ErrorField>,
}

impl ErrorBody {
    fn unknown_code() -> String {
        "error".into()
    }
}

impl Default for ErrorBody {
    fn default() -> Self {
        ErrorBody {
            error: ErrorBody::unknown_code(),
            message: String::new(),
            errors: Vec::new(),
        }
    }
}

/// A field at fault, as [`FieldError`] puts it on the wire.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorField {
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub reason: String,
}

impl From<FieldError> for ErrorField {
    fn from(e: FieldError) -> Self {
        ErrorField {
            path: e.path,
            reason: e.reason,
        }
    }
}

/// [`RolloutState`] by its table name (`running`, `rolled_back`, ...).
pub mod state_name {
    use edgesteer_config::model::RolloutState;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(s: &RolloutState, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(s.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<RolloutState, D::Error> {
        let name = String::deserialize(de)?;
        RolloutState::parse(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown rollout state `{name}`")))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn proxy_names_are_short_and_plain() {
        for ok in ["p1", "edge-1.fra_2", "proxy-7.fleet", &"a".repeat(64)] {
            assert!(check_proxy_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", &"a".repeat(65), "p 1", "p/1", "p\u{e9}", "a\nb"] {
            assert!(check_proxy_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_rollout_command_sends_only_what_it_has() {
        let pause = RolloutCommand::new(RolloutAction::Pause, "why".into());
        assert_eq!(
            serde_json::to_value(&pause).unwrap(),
            json!({ "action": "pause", "reason": "why" })
        );
        let start: RolloutCommand = serde_json::from_value(
            json!({ "action": "start", "steps": [{ "canary_bps": 500, "hold_ms": 1 }], "min_requests": 1 }),
        )
        .unwrap();
        assert_eq!(start.action, RolloutAction::Start);
        assert_eq!(start.min_requests, Some(1));
        let odd: RolloutCommand = serde_json::from_value(json!({ "action": "jump" })).unwrap();
        assert_eq!(odd.action, RolloutAction::Other("jump".into()));
        assert!(
            serde_json::from_value::<RolloutCommand>(json!({ "action": "start", "x": 1 })).is_err()
        );
    }

    #[test]
    fn rollout_states_travel_by_their_table_names() {
        let status = RolloutStatus {
            region: "us-east".into(),
            state: RolloutState::RolledBack,
            step: 1,
            steps: vec![],
            canary_bps: 0,
            gates: Gates {
                max_error_rate: 0.01,
                max_p99_ratio: 1.5,
                min_requests: 100,
            },
            figures: Some(Figures {
                canary_requests: 3,
                canary_error_rate: 0.5,
                canary_p99_ms: Some(f64::INFINITY).filter(|x| x.is_finite()),
                stable_requests: 0,
                stable_p99_ms: Some(0.0),
                unhealthy_canary_backends: 0,
            }),
            next_step_in_ms: None,
            reason: None,
        };
        let v = serde_json::to_value(&status).unwrap();
        assert_eq!(v["state"], "rolled_back");
        assert_eq!(v["figures"]["canary_p99_ms"], serde_json::Value::Null);
        assert_eq!(v["next_step_in_ms"], serde_json::Value::Null);
        let back: RolloutStatus = serde_json::from_value(v).unwrap();
        assert_eq!(back, status);
        assert!(serde_json::from_value::<RolloutStatus>(json!({ "state": "sideways" })).is_err());
    }

    #[test]
    fn answers_keep_their_shapes() {
        assert_eq!(
            serde_json::to_value(Rollouts::default()).unwrap(),
            json!({ "rollouts": [] })
        );
        let patch = PatchRegion {
            drain: Some(true),
            ..PatchRegion::default()
        };
        assert_eq!(
            serde_json::to_value(&patch).unwrap(),
            json!({ "drain": true, "reason": "" })
        );
        let err: ErrorBody = serde_json::from_value(json!({ "message": "m" })).unwrap();
        assert_eq!((err.error.as_str(), err.message.as_str()), ("error", "m"));
        let ack = Ack {
            proxy: "p".into(),
            version: 2,
            status: Ack::APPLIED.into(),
            reason: None,
            epoch: None,
            build: None,
        };
        assert_eq!(
            serde_json::to_value(&ack).unwrap(),
            json!({ "proxy": "p", "version": 2, "status": "applied", "reason": null })
        );
    }
}
