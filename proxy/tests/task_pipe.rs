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

/// Runs `f` for at most 5 s, so a lost wake-up fails instead of hanging.
async fn within<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(std::time::Duration::from_secs(5), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: not woken within 5 s"))
}

#[tokio::test]
async fn a_waiting_receiver_hears_the_sender_leave() {
    let (tx, mut rx) = channel::<u32>(1);
    let receiver = tokio::spawn(async move { rx.recv().await });
    // The receiver runs until it waits on the empty pipe.
    tokio::task::yield_now().await;
    drop(tx);
    let got = within("the receiver, after the sender left", receiver).await;
    assert_eq!(got.unwrap(), None);
}

#[tokio::test]
async fn a_sender_waiting_for_room_hears_the_receiver_leave() {
    let (tx, rx) = channel::<u32>(1);
    tx.send(1).await.unwrap();
    let sender = tokio::spawn(async move { tx.send(2).await.is_err() });
    // The sender runs until it waits for room in the full pipe.
    tokio::task::yield_now().await;
    drop(rx);
    let failed = within("the sender, after the receiver left", sender).await;
    assert!(failed.unwrap(), "a send to a pipe without a receiver fails");
}

#[tokio::test]
async fn a_dropped_permit_wakes_a_sender_waiting_for_room() {
    let (tx, _rx) = channel::<u32>(1);
    let tx = std::sync::Arc::new(tx);
    let permit = tx.try_reserve().unwrap();
    let waiting = tx.clone();
    let sender = tokio::spawn(async move { waiting.reserve().await.is_ok() });
    // The other task runs until it waits for the slot the permit holds.
    tokio::task::yield_now().await;
    drop(permit);
    let reserved = within("the sender, after the permit was dropped", sender).await;
    assert!(reserved.unwrap());
}

#[tokio::test]
async fn a_permit_used_after_the_receiver_left_drops_its_task() {
    let (tx, rx) = channel::<std::sync::Arc<()>>(1);
    let permit = tx.reserve().await.unwrap();
    drop(rx);
    let task = std::sync::Arc::new(());
    permit.send(task.clone());
    assert_eq!(
        std::sync::Arc::strong_count(&task),
        1,
        "the task is dropped"
    );
    // Its slot is given back: the pipe reports closed, not full.
    assert_eq!(tx.try_reserve().unwrap_err(), TryReserveError::Closed);
}

/// As the proxy runs them: both halves in one task (`try_join!`), each
/// waking the other through the one waker they share.
#[tokio::test]
async fn both_halves_in_one_task_pass_every_task_in_order() {
    let (tx, mut rx) = channel::<u32>(1);
    let send = async move {
        for i in 0..100 {
            tx.send(i).await.unwrap();
        }
    };
    let receive = async move {
        let mut got = Vec::new();
        while let Some(i) = rx.recv().await {
            got.push(i);
        }
        got
    };
    let ((), got) = within("both halves in one task", async {
        tokio::join!(send, receive)
    })
    .await;
    assert_eq!(got, (0..100).collect::<Vec<_>>());
}
