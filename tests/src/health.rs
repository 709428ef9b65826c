//! Reading the proxy's `/v1/health` document: the endpoints of a region
//! or of one backend, for assertions on their state and counters.

use serde_json::Value;

/// Every `(region, backend, endpoint)` of the document.
fn all(health: &Value) -> impl Iterator<Item = (&Value, &Value, &Value)> {
    health["regions"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| {
            r["backends"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(move |b| {
                    b["endpoints"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(move |e| (r, b, e))
                })
        })
}

/// The endpoints of every backend of `region`.
pub fn region_endpoints(health: &Value, region: &str) -> Vec<Value> {
    all(health)
        .filter(|(r, _, _)| r["region"] == region)
        .map(|(_, _, e)| e.clone())
        .collect()
}

/// The endpoints of the backend named `backend` (its address as written
/// in the table), in whichever region lists it.
pub fn backend_endpoints(health: &Value, backend: &str) -> Vec<Value> {
    all(health)
        .filter(|(_, b, _)| b["backend"] == backend)
        .map(|(_, _, e)| e.clone())
        .collect()
}
