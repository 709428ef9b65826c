// edgesteer patch (not part of Pingora 0.9.1).
//
//! A byte budget on the response body between the upstream half and the
//! downstream half of a proxied request.
//!
//! From an HTTP/1 origin the budget is taken before each read: the read is
//! sized to the room the pipe has (`grant`), into a buffer of its own that
//! becomes the chunk, so a client that keeps up gets large reads (few chunks,
//! little per-chunk work) and a slow one holds no more than the budget. An h2
//! origin's chunks are its DATA frames, charged once read (`charge`).
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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use pingora_core::protocols::http::held::{self, Holds};
use pingora_core::protocols::http::HttpTask;
use pingora_core::upstreams::peer::PeerOptions;
use pingora_error::{ErrorType::InternalError, OrErr, Result};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The budget of one proxied request's response body.
pub struct PipeBudget {
    permits: Arc<Semaphore>,
    size: usize,
    /// The most one read from an HTTP/1 origin may take.
    max_read: usize,
}

/// The least room a read from an HTTP/1 origin waits for (or the whole budget, if smaller):
/// a page, so a slow client's drain is not followed by reads of a few bytes each.
const MIN_READ: usize = 4096;

/// The most one read from an HTTP/1 origin takes (Pingora's `BODY_BUFFER_SIZE`), so a read's
/// buffer is always the size of its grant.
const MAX_READ: usize = 64 * 1024;

/// Room in the budget taken before a read from an HTTP/1 origin: the read takes at most
/// this many bytes, into a buffer of this size, and the chunk keeps the room until dropped.
pub struct Grant(OwnedSemaphorePermit);

impl Grant {
    /// How many bytes the read may take.
    #[allow(clippy::len_without_is_empty)] // never empty: at least one byte
    pub fn len(&self) -> usize {
        self.0.num_permits()
    }
}

/// Body bytes that hold their share of the budget until dropped.
struct Charged {
    data: Bytes,
    /// Always `Some` until dropped.
    permit: Option<OwnedSemaphorePermit>,
}

impl AsRef<[u8]> for Charged {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Charged {
    fn drop(&mut self) {
        // given back (that wakes a waiting read), or kept by `compact_chunk`'s copy
        if let Some(permit) = self.permit.take() {
            held::give_back(permit);
        }
    }
}

/// Chunks `compact_chunk` has shrunk to their rest, over the process's life.
static COMPACTED: AtomicU64 = AtomicU64::new(0);

/// How many body chunks have been shrunk to their unwritten rest because a client stopped
/// reading inside them (`compact_chunk`), over the process's life: how often clients stall
/// in the middle of an answer.
pub fn chunks_compacted() -> u64 {
    COMPACTED.load(Ordering::Relaxed)
}

/// The compactor a downstream HTTP/1 session is given with a budget
/// (`HttpSession::set_body_compactor`): when a client stops reading in the middle of a
/// chunk, the chunk's unwritten rest is copied into a buffer of its size and the chunk's
/// buffer (the whole read, up to half the limit) is freed. The rest keeps the chunk's whole
/// charge, and an h2 frame's whole window (`held`), so the origin is read no further ahead,
/// and sends no more, than before: the pipe's bound stands and a stalled client holds only
/// what it has yet to read. An uncharged chunk (the last of a body) is copied the same way.
pub fn compact_chunk(chunk: Bytes) -> Bytes {
    COMPACTED.fetch_add(1, Ordering::Relaxed);
    let rest = Bytes::copy_from_slice(&chunk);
    // the last reference (the session is the chunk's only holder): what it held, its charge
    // and, from an h2 origin, its flow-control window, is kept by the rest
    let holds = held::take_holds(chunk);
    if holds.is_empty() {
        rest
    } else {
        Bytes::from_owner(Rest {
            data: rest,
            _holds: holds,
        })
    }
}

/// A chunk's unwritten rest, holding what the chunk held.
struct Rest {
    data: Bytes,
    _holds: Holds,
}

impl AsRef<[u8]> for Rest {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

/// A body chunk that is not the last (its bytes, and whether the connection was upgraded), or
/// the task as it is: only such chunks are charged.
fn body_chunk(task: HttpTask) -> std::result::Result<(Bytes, bool), HttpTask> {
    match task {
        HttpTask::Body(Some(data), false) if !data.is_empty() => Ok((data, false)),
        HttpTask::UpgradedBody(Some(data), false) if !data.is_empty() => Ok((data, true)),
        other => Err(other),
    }
}

/// The chunk again, its bytes now holding `permit` until the last reference is dropped.
fn charged(data: Bytes, upgraded: bool, permit: OwnedSemaphorePermit) -> HttpTask {
    let data = Some(Bytes::from_owner(Charged {
        data,
        permit: Some(permit),
    }));
    if upgraded {
        HttpTask::UpgradedBody(data, false)
    } else {
        HttpTask::Body(data, false)
    }
}

impl PipeBudget {
    /// The budget the peer asks for when its chunks are h2 DATA frames, if any: three eighths
    /// of its response buffer limit (the chunks in flight; the frame being read and one waiting
    /// for room take the rest, see `PeerOptions`).
    pub fn for_peer(options: Option<&PeerOptions>) -> Option<Self> {
        let limit = options?.response_buffer_limit?;
        Some(Self::new(limit / 8 * 3))
    }

    /// The budget for an HTTP/1 peer, if it asks for one: half its response buffer limit,
    /// taken by reads of up to all of it. The other half is the last chunk of a body, which
    /// is not charged (nothing is read after it), or a chunked body's parsing buffer.
    /// (Reads of a quarter in a budget of three cost the same CPU on a 1 MiB answer, and a
    /// slow reader then holds three quarters of the limit instead of half.)
    pub fn for_h1_peer(options: Option<&PeerOptions>) -> Option<Self> {
        let limit = options?.response_buffer_limit?;
        let mut budget = Self::new(limit / 2);
        // a read's buffer is its grant, up to Pingora's largest body read
        budget.max_read = budget.size.min(MAX_READ);
        Some(budget)
    }

    fn new(size: usize) -> Self {
        let size = size.clamp(1024, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        PipeBudget {
            permits: Arc::new(Semaphore::new(size)),
            size,
            max_read: size,
        }
    }

    /// Wait for room for the next read from an HTTP/1 origin: at least `MIN_READ` bytes (or
    /// a whole read, if smaller), then all the room there is up to twice what the last read
    /// brought (`last_read`, 0 before the first), at most a whole read. Reads grow while they
    /// fill their buffers and shrink when an origin trickles, so a connection waiting on an
    /// origin that sends little (an idle upgraded connection, a stream of events) waits with a
    /// small buffer. Only the upstream half takes from the budget, so the room seen cannot
    /// shrink before it is taken.
    pub async fn grant(&self, last_read: usize) -> Result<Grant> {
        let floor = MIN_READ.min(self.max_read);
        let want = last_read.saturating_mul(2).clamp(floor, self.max_read);
        // at most `size`, which fits in u32 (clamped in new)
        let free = self.permits.available_permits().min(want);
        if free >= floor {
            if let Ok(permit) = self.permits.clone().try_acquire_many_owned(free as u32) {
                return Ok(Grant(permit));
            }
        }
        let mut permit = self
            .permits
            .clone()
            .acquire_many_owned(floor as u32)
            .await
            .or_err(InternalError, "response body budget closed")?;
        let more = self.permits.available_permits().min(want - floor);
        if more > 0 {
            if let Ok(extra) = self.permits.clone().try_acquire_many_owned(more as u32) {
                permit.merge(extra);
            }
        }
        Ok(Grant(permit))
    }

    /// Tie a task read under `grant` to it. A body chunk that is not the last keeps what its
    /// bytes take: the whole grant when it is the read's buffer (allocated at the grant's size),
    /// its length when the reader copied it out of a buffer it filled less than half of
    /// (`BodyReader::take_body`, the same rule), and more, waited for, when it is larger than
    /// the grant (a chunked body's chunk parsed out of what an earlier, larger read brought).
    /// Anything else gives the grant back.
    pub async fn charge_granted(&self, task: HttpTask, grant: Grant) -> Result<HttpTask> {
        let (data, upgraded) = match body_chunk(task) {
            Ok(chunk) => chunk,
            Err(other) => return Ok(other),
        };
        let mut permit = grant.0;
        let held = permit.num_permits();
        if data.len() * 2 < held {
            // dropping the split-off permits gives them back
            drop(permit.split(held - data.len()));
        } else if data.len() > held {
            // a chunk larger than the whole budget takes all of it, so it never waits forever;
            // at most `size`, which fits in u32
            let more = (data.len().min(self.size) - held) as u32;
            if more > 0 {
                let extra = self
                    .permits
                    .clone()
                    .acquire_many_owned(more)
                    .await
                    .or_err(InternalError, "response body budget closed")?;
                permit.merge(extra);
            }
        }
        Ok(charged(data, upgraded, permit))
    }

    /// Wait until the task's body bytes fit in the budget, then tie them to it (chunks read
    /// before they are charged: h2 DATA frames).
    /// A chunk larger than the whole budget takes all of it, so it never waits forever.
    /// The last chunk of a body is not charged: nothing is read after it, so it is the
    /// "one chunk read and waiting" the bound already allows for; an answer that comes
    /// in one chunk (most API answers) costs nothing here.
    pub async fn charge(&self, task: HttpTask) -> Result<HttpTask> {
        let (data, upgraded) = match body_chunk(task) {
            Ok(chunk) => chunk,
            Err(other) => return Ok(other),
        };
        // at most `size`, which fits in u32 (clamped in new)
        let n = data.len().min(self.size) as u32;
        let permit = self
            .permits
            .clone()
            .acquire_many_owned(n)
            .await
            .or_err(InternalError, "response body budget closed")?;
        Ok(charged(data, upgraded, permit))
    }
}
