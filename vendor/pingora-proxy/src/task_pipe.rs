// edgesteer patch (not part of Pingora 0.9.1).
//
//! The task pipe between the two halves of a request proxied to an HTTP/1
//! origin (`proxy_h1.rs`): a bounded queue with one sender and one receiver,
//! in place of `tokio::sync::mpsc` (the h2 path keeps tokio's).
//!
//! Each request opens two pipes (request body one way, response tasks the
//! other) of `TASK_BUFFER_SIZE` (4) tasks. tokio's channel allocates its
//! slots in blocks of 32 and pads its shared state to cache lines: about
//! 2.1 KB per channel, 4.3 KB per request in flight (heaptrack, 1000 slow
//! readers). This one is a `VecDeque` of exactly the capacity behind a
//! mutex, about 300 bytes. Both halves run in one task (`try_join!`), so the
//! mutex is never contended; it is there because the request's future must
//! be `Send`.
//!
//! The API is the part of tokio's that the proxy uses, with the same
//! semantics: `send` and `reserve` wait for room and fail once the receiver
//! is gone; a `Permit` holds one slot until it sends or is dropped; `recv`
//! returns `None` once the sender is gone and the queue is empty. Each half
//! has one waker slot: one task waits on each side at a time (the proxy's
//! halves each wait in their own loop), unlike tokio's, which queues any
//! number of waiting senders.

use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};

/// A pipe of `capacity` tasks (at least one).
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let capacity = capacity.max(1);
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::with_capacity(capacity),
            capacity,
            reserved: 0,
            sender_gone: false,
            receiver_gone: false,
            sender_waker: None,
            receiver_waker: None,
        }),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

struct Shared<T> {
    state: Mutex<State<T>>,
}

struct State<T> {
    queue: VecDeque<T>,
    capacity: usize,
    /// Slots held by permits not yet used.
    reserved: usize,
    sender_gone: bool,
    receiver_gone: bool,
    /// The sender waiting for room.
    sender_waker: Option<Waker>,
    /// The receiver waiting for a task.
    receiver_waker: Option<Waker>,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing that can panic runs under the lock (tasks are dropped and
        // wakers woken after it is released), so poison carries no meaning.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Wakes `waker` if there is one; called with the lock released.
fn wake(waker: Option<Waker>) {
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// Stores the task's waker in `slot` unless it is already there; returns
/// the waker it replaced, for the caller to drop once the lock is released.
#[must_use]
fn register(slot: &mut Option<Waker>, waker: &Waker) -> Option<Waker> {
    match slot {
        Some(w) if w.will_wake(waker) => None,
        _ => slot.replace(waker.clone()),
    }
}

/// The receiver is gone: what could not be sent is handed back.
pub struct SendError<T>(pub T);

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError { .. }")
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("task pipe closed: the receiving half is gone")
    }
}

impl<T> std::error::Error for SendError<T> {}

/// Why `try_reserve` gave no permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryReserveError {
    /// Every slot is taken.
    Full,
    /// The receiver is gone.
    Closed,
}

impl fmt::Display for TryReserveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TryReserveError::Full => "task pipe full",
            TryReserveError::Closed => "task pipe closed: the receiving half is gone",
        })
    }
}

impl std::error::Error for TryReserveError {}

/// Why `try_recv` gave no task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryRecvError {
    /// Nothing queued yet.
    Empty,
    /// Nothing queued and the sender is gone.
    Disconnected,
}

/// The sending half.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// One slot in the pipe, held until [`Permit::send`] or drop.
pub struct Permit<'a, T> {
    shared: &'a Shared<T>,
}

impl<T> Sender<T> {
    /// Waits for room, then queues `task`; fails (handing it back) once the
    /// receiver is gone.
    pub async fn send(&self, task: T) -> Result<(), SendError<T>> {
        match self.reserve().await {
            Ok(permit) => {
                permit.send(task);
                Ok(())
            }
            Err(SendError(())) => Err(SendError(task)),
        }
    }

    /// Waits for a slot and holds it; fails once the receiver is gone.
    pub async fn reserve(&self) -> Result<Permit<'_, T>, SendError<()>> {
        poll_fn(|cx| {
            let mut state = self.shared.lock();
            if state.receiver_gone {
                return Poll::Ready(Err(SendError(())));
            }
            if state.queue.len() + state.reserved < state.capacity {
                state.reserved += 1;
                return Poll::Ready(Ok(Permit {
                    shared: &self.shared,
                }));
            }
            let replaced = register(&mut state.sender_waker, cx.waker());
            drop(state);
            drop(replaced);
            Poll::Pending
        })
        .await
    }

    /// A slot now, if there is one.
    pub fn try_reserve(&self) -> Result<Permit<'_, T>, TryReserveError> {
        let mut state = self.shared.lock();
        if state.receiver_gone {
            return Err(TryReserveError::Closed);
        }
        if state.queue.len() + state.reserved < state.capacity {
            state.reserved += 1;
            return Ok(Permit {
                shared: &self.shared,
            });
        }
        Err(TryReserveError::Full)
    }

    /// Whether the receiver is gone.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().receiver_gone
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.shared.lock();
            state.sender_gone = true;
            state.receiver_waker.take()
        };
        wake(waker);
    }
}

impl<T> Permit<'_, T> {
    /// Queues `task` in the slot held (dropped at once if the receiver is
    /// gone, as tokio's does).
    pub fn send(self, task: T) {
        let shared = self.shared;
        // The slot is given up here, not by Drop.
        std::mem::forget(self);
        let (waker, undelivered) = {
            let mut state = shared.lock();
            state.reserved -= 1;
            if state.receiver_gone {
                (None, Some(task))
            } else {
                state.queue.push_back(task);
                (state.receiver_waker.take(), None)
            }
        };
        drop(undelivered);
        wake(waker);
    }
}

impl<T> Drop for Permit<'_, T> {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.shared.lock();
            state.reserved -= 1;
            state.sender_waker.take()
        };
        wake(waker);
    }
}

impl<T> fmt::Debug for Permit<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Permit")
    }
}

/// The receiving half.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Receiver<T> {
    /// The next task; `None` once the sender is gone and nothing is queued.
    pub async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| match self.take(Some(cx.waker())) {
            Ok(task) => Poll::Ready(Some(task)),
            Err(TryRecvError::Disconnected) => Poll::Ready(None),
            Err(TryRecvError::Empty) => Poll::Pending,
        })
        .await
    }

    /// The next task if one is queued now.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        self.take(None)
    }

    /// Takes the next task; with nothing queued, registers `waiter` to be
    /// woken by the next send (or by the sender leaving).
    fn take(&self, waiter: Option<&Waker>) -> Result<T, TryRecvError> {
        let (task, waker) = {
            let mut state = self.shared.lock();
            match state.queue.pop_front() {
                Some(task) => (task, state.sender_waker.take()),
                None if state.sender_gone => return Err(TryRecvError::Disconnected),
                None => {
                    let replaced = waiter.and_then(|w| register(&mut state.receiver_waker, w));
                    drop(state);
                    drop(replaced);
                    return Err(TryRecvError::Empty);
                }
            }
        };
        wake(waker);
        Ok(task)
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let (queued, waker) = {
            let mut state = self.shared.lock();
            state.receiver_gone = true;
            (std::mem::take(&mut state.queue), state.sender_waker.take())
        };
        drop(queued);
        wake(waker);
    }
}
