#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The task pipe between the two halves of a proxied request (Pingora patch
//! part 10, `pingora_proxy::task_pipe`): it holds exactly its capacity,
//! wakes whichever half waits, and closes as tokio's channel does.

use std::future::Future;
use std::task::{Context, Waker};

use pingora_proxy::task_pipe::{channel, TryRecvError, TryReserveError};

/// Whether `f` is still waiting after one poll.
fn waits<F: Future>(f: F) -> bool {
    let mut f = std::pin::pin!(f);
    f.as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
        .is_pending()
}

#[tokio::test]
async fn holds_exactly_its_capacity_then_waits() {
    let (tx, mut rx) = channel::<u32>(2);
    tx.send(1).await.unwrap();
    let permit = tx.try_reserve().unwrap();
    assert_eq!(tx.try_reserve().unwrap_err(), TryReserveError::Full);
    assert!(waits(tx.send(3)), "a full pipe waits");
    permit.send(2);
    assert_eq!(rx.recv().await, Some(1));
    tx.send(3).await.unwrap();
    assert_eq!(rx.try_recv(), Ok(2));
    assert_eq!(rx.recv().await, Some(3));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
}

#[tokio::test]
async fn a_dropped_permit_gives_its_slot_back() {
    let (tx, _rx) = channel::<u32>(1);
    let permit = tx.reserve().await.unwrap();
    assert_eq!(tx.try_reserve().unwrap_err(), TryReserveError::Full);
    drop(permit);
    assert!(tx.try_reserve().is_ok());
}

#[tokio::test]
async fn the_receiver_drains_what_was_sent_before_the_sender_left() {
    let (tx, mut rx) = channel::<u32>(4);
    tx.send(1).await.unwrap();
    drop(tx);
    assert_eq!(rx.recv().await, Some(1));
    assert_eq!(rx.recv().await, None);
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
}

#[tokio::test]
async fn without_a_receiver_sends_fail_and_queued_tasks_are_dropped() {
    let (tx, rx) = channel::<std::sync::Arc<()>>(4);
    let task = std::sync::Arc::new(());
    tx.send(task.clone()).await.unwrap();
    assert!(!tx.is_closed());
    drop(rx);
    assert_eq!(
        std::sync::Arc::strong_count(&task),
        1,
        "the queued task is dropped"
    );
    assert!(tx.is_closed());
    assert!(tx.send(task.clone()).await.is_err());
    assert_eq!(tx.try_reserve().unwrap_err(), TryReserveError::Closed);
    assert!(tx.reserve().await.is_err());
}

#[tokio::test]
async fn waiting_halves_are_woken() {
    let (tx, mut rx) = channel::<u32>(1);
    // The receiver waits in a task of its own; each send must wake it.
    let receiver = tokio::spawn(async move {
        let first = rx.recv().await;
        let second = rx.recv().await;
        (first, second, rx.recv().await)
    });
    // Bounded, so a lost wake-up fails the test instead of hanging it.
    let got = tokio::time::timeout(std::time::Duration::from_secs(5), async move {
        tokio::task::yield_now().await;
        tx.send(1).await.unwrap();
        // The pipe holds one: this send waits for the receiver's take to wake it.
        tx.send(2).await.unwrap();
        drop(tx);
        receiver.await.unwrap()
    })
    .await
    .expect("each waiting half was woken by the other");
    assert_eq!(got, (Some(1), Some(2), None));
}
