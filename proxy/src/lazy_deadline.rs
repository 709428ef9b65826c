//! A connection's one timer for its waits between requests, re-armed
//! lazily.
//!
//! Deadlines only move later from one request to the next (each wait's
//! deadline is its start plus the keep-alive time), so a timer armed for
//! an earlier wait is left as it is when a new wait begins. When it fires
//! before the current wait's deadline it is re-armed to that deadline:
//! once per idle period, not once per request. Only a deadline earlier
//! than the one armed (a lowered keep-alive time) re-arms it at once.
//! Setting and cancelling a timer per request cost more than the request's
//! steering (BENCHMARKS.md).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};

/// The connection's timer, borrowed for one wait.
pub struct LazyDeadline<'a> {
    timer: Pin<&'a mut Sleep>,
}

impl<'a> LazyDeadline<'a> {
    pub fn new(timer: Pin<&'a mut Sleep>) -> Self {
        LazyDeadline { timer }
    }

    /// Makes sure the timer fires no later than `by`: it is reset only if
    /// it is armed for later than that.
    pub fn arm(&mut self, by: Instant) {
        if self.timer.deadline() > by {
            self.timer.as_mut().reset(by);
        }
    }

    /// Ready once `by` has passed. A timer that fires earlier (armed for an
    /// earlier wait) is moved on to `by`, and the wait goes on.
    pub fn poll_passed(&mut self, cx: &mut Context<'_>, by: Instant) -> Poll<()> {
        while self.timer.as_mut().poll(cx).is_ready() {
            if self.timer.deadline() >= by {
                return Poll::Ready(());
            }
            self.timer.as_mut().reset(by);
        }
        Poll::Pending
    }

    /// When the timer fires next.
    pub fn armed_for(&self) -> Instant {
        self.timer.deadline()
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::pin::pin;
    use std::time::Duration;

    use super::*;

    /// Polls once: whether `by` has passed by the timer's account.
    fn passed(d: &mut LazyDeadline<'_>, by: Instant) -> bool {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        d.poll_passed(&mut cx, by).is_ready()
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_deadline_leaves_the_armed_timer_alone() {
        let start = Instant::now();
        let mut timer = pin!(tokio::time::sleep_until(start + Duration::from_secs(10)));
        let mut d = LazyDeadline::new(timer.as_mut());
        d.arm(start + Duration::from_secs(60));
        assert_eq!(d.armed_for(), start + Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_re_arms_at_once() {
        let start = Instant::now();
        let mut timer = pin!(tokio::time::sleep_until(start + Duration::from_secs(60)));
        let mut d = LazyDeadline::new(timer.as_mut());
        d.arm(start + Duration::from_secs(5));
        assert_eq!(d.armed_for(), start + Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn an_early_fire_moves_on_to_the_deadline_and_never_back() {
        let start = Instant::now();
        let by = start + Duration::from_secs(30);
        let mut timer = pin!(tokio::time::sleep_until(start + Duration::from_secs(10)));
        let mut d = LazyDeadline::new(timer.as_mut());
        d.arm(by);
        assert!(!passed(&mut d, by), "nothing has fired yet");
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(
            !passed(&mut d, by),
            "fired for an earlier wait: not this one's deadline"
        );
        assert_eq!(d.armed_for(), by, "re-armed to this wait's deadline");
        tokio::time::advance(Duration::from_secs(18)).await;
        assert!(!passed(&mut d, by), "one second before the deadline");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(passed(&mut d, by), "the deadline has passed");
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_ends_exactly_at_its_deadline() {
        let start = Instant::now();
        let by = start + Duration::from_millis(1500);
        let mut timer = pin!(tokio::time::sleep_until(start + Duration::from_secs(3600)));
        let mut d = LazyDeadline::new(timer.as_mut());
        d.arm(by);
        poll_fn(|cx| d.poll_passed(cx, by)).await;
        assert_eq!(Instant::now(), by);
    }
}
