//! A per-worker heartbeat that keeps setting a timer free of syscalls.

/// How often each worker's runtime wakes by itself (see [`start`]).
const HEARTBEAT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Starts, once per worker thread, a task that only wakes every
/// [`HEARTBEAT_EVERY`]. On a single-threaded runtime, tokio's timer writes
/// the runtime's eventfd (a syscall) whenever a timer is set to fire
/// before the wake-up the runtime last planned; with nothing else pending
/// that is every request's upstream timeout. A nearer planned wake-up
/// makes setting a timer (every timeout here is a second or more) cost no
/// syscall, for four wake-ups a second.
pub fn start() {
    use std::cell::Cell;
    thread_local! {
        static STARTED: Cell<bool> = const { Cell::new(false) };
    }
    if STARTED.with(|s| s.replace(true)) {
        return;
    }
    tokio::spawn(async {
        let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
        }
    });
}
