//! The table's downstream limits that Pingora lets a request set for its
//! own connection, applied live on every request (the rest apply at start,
//! in `server.rs`).

use edgesteer_config::limits::DownstreamLimits;
use pingora_proxy::Session;

/// Keep-alive idle time, body-read and write idle timeouts, and the
/// minimum send rate, for this request's connection.
pub(super) fn apply(session: &mut Session, limits: &DownstreamLimits) {
    let d = session.as_downstream_mut();
    if crate::lifecycle::draining() {
        // Handing over to a new process: answer this request, then close,
        // said in the response (`Connection: close`), so the client's next
        // request opens a connection to the new process instead of racing
        // the close of an idle one.
        d.set_keepalive(None);
    } else if d.get_keepalive().is_some() {
        // Only a connection the client keeps (Pingora has read its
        // version and `Connection` header: HTTP/1.0 only with an explicit
        // `keep-alive`, HTTP/1.1 unless `close`) gets the table's time; an
        // HTTP/1.0 request without it is answered, then closed.
        d.set_keepalive(Some(limits.keepalive_secs()));
    }
    d.set_read_timeout(Some(limits.body_read_idle));
    d.set_write_timeout(Some(limits.write_idle));
    d.set_min_send_rate(limits.min_send_rate);
}
