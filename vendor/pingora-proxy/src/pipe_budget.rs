// edgesteer patch (not part of Pingora 0.9.1).
//
//! A byte budget on the response body between the upstream half and the
//! downstream half of a proxied request.
//!
//! Without it, the pipe queues `TASK_BUFFER_SIZE` chunks of up to 64 KiB and
//! the downstream half writes a batch of as many, so a client that reads
//! slowly leaves about 640 KiB per connection in user space while the origin
//! keeps sending. With `PeerOptions::response_buffer_limit` set, each body
//! chunk read from the upstream is charged to a semaphore of 3/8 of the limit
//! before it enters the pipe, and the charge is returned when the last
//! reference to the chunk's bytes is dropped, that is once the downstream
//! has written it (or the request ended). The upstream half waits for room,
//! so the origin's TCP window closes instead of the proxy's memory growing.

use std::sync::Arc;

use bytes::Bytes;
use pingora_core::protocols::http::HttpTask;
use pingora_core::upstreams::peer::PeerOptions;
use pingora_error::{ErrorType::InternalError, OrErr, Result};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The budget of one proxied request's response body.
pub(crate) struct PipeBudget {
    permits: Arc<Semaphore>,
    size: usize,
}

/// Body bytes that hold their share of the budget until dropped.
struct Charged {
    data: Bytes,
    _permit: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Charged {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl PipeBudget {
    /// The budget the peer asks for, if any: three eighths of its response buffer limit
    /// (the chunks in flight, and the downstream's copy of a batch of them; the read buffer and
    /// a chunk waiting for room take the other quarter, see `PeerOptions`).
    pub(crate) fn for_peer(options: Option<&PeerOptions>) -> Option<Self> {
        let limit = options?.response_buffer_limit?;
        let size = (limit / 8 * 3).clamp(1024, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        Some(PipeBudget {
            permits: Arc::new(Semaphore::new(size)),
            size,
        })
    }

    /// Wait until the task's body bytes fit in the budget, then tie them to it.
    /// A chunk larger than the whole budget takes all of it, so it never waits forever.
    /// The last chunk of a body is not charged: nothing is read after it, so it is the
    /// "one chunk read and waiting" the bound already allows for; an answer that comes
    /// in one chunk (most API answers) costs nothing here.
    pub(crate) async fn charge(&self, task: HttpTask) -> Result<HttpTask> {
        let (data, end, upgraded) = match task {
            HttpTask::Body(Some(data), false) if !data.is_empty() => (data, false, false),
            HttpTask::UpgradedBody(Some(data), false) if !data.is_empty() => (data, false, true),
            other => return Ok(other),
        };
        // at most `size`, which fits in u32 (clamped in for_peer)
        let n = data.len().min(self.size) as u32;
        let permit = self
            .permits
            .clone()
            .acquire_many_owned(n)
            .await
            .or_err(InternalError, "response body budget closed")?;
        let data = Some(Bytes::from_owner(Charged {
            data,
            _permit: permit,
        }));
        Ok(if upgraded {
            HttpTask::UpgradedBody(data, end)
        } else {
            HttpTask::Body(data, end)
        })
    }
}
