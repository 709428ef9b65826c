// edgesteer patch (not part of Pingora 0.9.1).
//
//! What a body chunk's bytes hold until they are dropped, and how a copy of
//! the chunk takes it over.
//!
//! A response body chunk can hold something that is given back when the last
//! reference to its bytes is dropped, that is once the client has been sent
//! them: its share of a pipe's budget (pingora-proxy's `pipe_budget`), and,
//! from an h2 origin, its flow-control window (`Http2Session::hold_window`).
//! Each owner gives what it holds back through [`give_back`].
//!
//! A chunk a stalled client is inside is copied to a buffer the size of its
//! rest and the chunk is dropped (pingora-proxy's `compact_chunk`). Its holds
//! must not be given back then, or the origin would be read, or would send,
//! further ahead while the client still reads nothing. [`take_holds`] drops
//! the chunk with a catch armed on this thread: every [`give_back`] its drop
//! makes lands in the returned [`Holds`] instead, which the copy then keeps.

use std::cell::RefCell;

use bytes::Bytes;

thread_local! {
    /// `Some` while `take_holds` drops a chunk on this thread.
    static CATCH: RefCell<Option<Vec<Box<dyn Send + Sync>>>> = const { RefCell::new(None) };
}

/// Give `hold` back (drop it), unless [`take_holds`] is dropping a chunk on this thread: then it
/// is kept in what that returns. Called by a chunk's owner as it drops.
pub fn give_back<T: Send + Sync + 'static>(hold: T) {
    // Boxed only when caught (the common path allocates nothing). Dropped outside the borrow:
    // giving back may wake a task or take a lock. A thread that is exiting has no slot, and the
    // hold is given back with the closure.
    let back = CATCH
        .try_with(move |catch| match &mut *catch.borrow_mut() {
            Some(caught) => {
                caught.push(Box::new(hold));
                None
            }
            None => Some(hold),
        })
        .ok()
        .flatten();
    drop(back);
}

/// What a dropped chunk held, given back when this is dropped: through [`give_back`], so a
/// copy that holds them and is itself copied (a rest compacted again) hands them on too.
#[derive(Default)]
pub struct Holds(Vec<Box<dyn Send + Sync>>);

impl std::fmt::Debug for Holds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Holds").field(&self.0.len()).finish()
    }
}

impl Drop for Holds {
    fn drop(&mut self) {
        self.give_back_all();
    }
}

impl Holds {
    /// Whether the chunk held nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many holds were taken.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Give every hold back now (keeping the room for the next ones).
    pub fn give_back_all(&mut self) {
        for hold in self.0.drain(..) {
            give_back(hold);
        }
    }
}

/// Drop `chunk` and return what it gave back as it dropped, if this was its last reference.
/// Nothing is caught on a thread that is exiting (it is given back).
pub fn take_holds(chunk: Bytes) -> Holds {
    let mut holds = Holds::default();
    take_holds_into(&mut holds, chunk);
    holds
}

/// [`take_holds`], adding what `chunk` gives back to `holds` (in its room, so a caller that
/// keeps one `Holds` allocates only for the holds themselves).
pub fn take_holds_into(holds: &mut Holds, chunk: Bytes) {
    if CATCH
        .try_with(|catch| *catch.borrow_mut() = Some(std::mem::take(&mut holds.0)))
        .is_err()
    {
        return;
    }
    // Disarmed when dropped, also by a panic in the chunk's drop, so no later chunk's holds are
    // caught (what was caught then is given back).
    let armed = Armed;
    drop(chunk);
    *holds = armed.disarm();
}

/// The catch armed by `take_holds`.
struct Armed;

impl Armed {
    fn disarm(self) -> Holds {
        take_caught()
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        drop(take_caught());
    }
}

/// Empty and disarm the catch, returning what it held.
fn take_caught() -> Holds {
    Holds(
        CATCH
            .try_with(|catch| catch.borrow_mut().take())
            .ok()
            .flatten()
            .unwrap_or_default(),
    )
}
