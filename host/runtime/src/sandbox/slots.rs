//! Instance slots: a counting semaphore in front of instantiation, so that a
//! full instance pool makes calls wait in a bounded queue for a bounded time
//! and then fail as the host's own `busy`, instead of failing at once with
//! an allocator error that reads like the plugin's trap.
//!
//! Every top-level call takes its slots before it builds a store and gives
//! them back after the store (and with it the instance) is gone, so the
//! pooling allocator never sees more live instances than there are slots.
//!
//! Nesting: a validator's `candidate` calls run while the validator's own
//! instance is live, so each needs a second instance. If a validator took
//! one slot and its probe then waited for another, `n` validators could hold
//! all `n` slots while every probe waits: a deadlock that only the queue
//! timeout would break. Instead, a validator call that has a candidate
//! attached takes **two** slots at once (all or nothing, so no call ever
//! holds some slots while it waits for more), and its candidate calls, which
//! run one at a time on the validator's thread, use the second slot without
//! queueing. The pool therefore holds at least two slots.
//!
//! Waiters are served first come, first served (a call needing two slots
//! is not overtaken forever by calls needing one).

use crate::error::{FailureKind, PluginFailure};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The fewest slots a pool may have: a validator and the candidate it
/// probes.
pub const MIN_SLOTS: u32 = 2;

/// The instance slots of one sandbox and the queue of calls waiting for
/// them.
pub(crate) struct Slots {
    capacity: u32,
    max_queued: usize,
    timeout: Duration,
    state: Mutex<SlotState>,
    freed: Condvar,
    waited: AtomicU64,
    refused: AtomicU64,
}

struct SlotState {
    free: u32,
    /// Tickets of the waiting calls, oldest first.
    queue: VecDeque<u64>,
    next_ticket: u64,
}

/// Slots held by one call; given back when dropped.
pub(crate) struct SlotGuard {
    slots: Arc<Slots>,
    count: u32,
}

/// A snapshot of a sandbox's instance slots, for operators' metrics and
/// for tests that need to know a call is waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SlotStats {
    /// How many instances may be live at once.
    pub capacity: u32,
    /// Slots taken right now.
    pub in_use: u32,
    /// Calls waiting for a slot right now.
    pub waiting: usize,
    /// Calls since the sandbox started that had to wait for a slot.
    pub waited_total: u64,
    /// Calls since the sandbox started that failed as `busy`.
    pub busy_total: u64,
}

impl Slots {
    /// `capacity` slots (at least [`MIN_SLOTS`]); at most `max_queued`
    /// calls wait, each for at most `timeout`.
    pub(crate) fn new(capacity: u32, max_queued: usize, timeout: Duration) -> Slots {
        let capacity = capacity.max(MIN_SLOTS);
        Slots {
            capacity,
            max_queued,
            timeout,
            state: Mutex::new(SlotState {
                free: capacity,
                queue: VecDeque::new(),
                next_ticket: 0,
            }),
            freed: Condvar::new(),
            waited: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `count` slots at once, waiting in line for at most the queue
    /// timeout; fails as `busy` when the queue is full or the wait runs out.
    pub(crate) fn acquire(self: &Arc<Self>, count: u32) -> Result<SlotGuard, PluginFailure> {
        debug_assert!(count <= self.capacity);
        let mut state = self.lock();
        if state.queue.is_empty() && state.free >= count {
            state.free -= count;
            return Ok(self.guard(count));
        }
        if state.queue.len() >= self.max_queued || self.timeout.is_zero() {
            let waiting = state.queue.len();
            drop(state);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(busy(format!(
                "all {} instance slots are taken and {waiting} calls are already waiting (max_queued_calls = {})",
                self.capacity, self.max_queued
            )));
        }
        self.waited.fetch_add(1, Ordering::Relaxed);
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.queue.push_back(ticket);
        let deadline = Instant::now() + self.timeout;
        loop {
            if state.queue.front() == Some(&ticket) && state.free >= count {
                state.queue.pop_front();
                state.free -= count;
                drop(state);
                // The next in line may fit in what is left.
                self.freed.notify_all();
                return Ok(self.guard(count));
            }
            let now = Instant::now();
            if now >= deadline {
                state.queue.retain(|t| *t != ticket);
                drop(state);
                // Whoever was behind this call may now be first in line.
                self.freed.notify_all();
                self.refused.fetch_add(1, Ordering::Relaxed);
                return Err(busy(format!(
                    "all {} instance slots stayed taken for the whole queue timeout of {} ms (queue_timeout_ms)",
                    self.capacity,
                    self.timeout.as_millis()
                )));
            }
            state = self
                .freed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn guard(self: &Arc<Self>, count: u32) -> SlotGuard {
        SlotGuard {
            slots: self.clone(),
            count,
        }
    }

    fn release(&self, count: u32) {
        let mut state = self.lock();
        state.free += count;
        let anyone_waiting = !state.queue.is_empty();
        drop(state);
        if anyone_waiting {
            self.freed.notify_all();
        }
    }

    /// The current counts.
    pub(crate) fn stats(&self) -> SlotStats {
        let state = self.lock();
        SlotStats {
            capacity: self.capacity,
            in_use: self.capacity - state.free,
            waiting: state.queue.len(),
            waited_total: self.waited.load(Ordering::Relaxed),
            busy_total: self.refused.load(Ordering::Relaxed),
        }
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.slots.release(self.count);
    }
}

/// The `busy` failure: the host was at capacity, not the plugin at fault.
pub(crate) fn busy(why: String) -> PluginFailure {
    PluginFailure::new(
        FailureKind::Busy,
        format!("the host is at capacity: {why}; retry later"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_two_slot_call_is_not_overtaken_by_later_one_slot_calls() {
        let slots = Arc::new(Slots::new(2, 8, Duration::from_secs(10)));
        let first = slots.acquire(1).unwrap();
        let pair = {
            let s = slots.clone();
            std::thread::spawn(move || s.acquire(2).map(|g| g.count))
        };
        while slots.stats().waiting == 0 {
            std::thread::yield_now();
        }
        // One slot is free, but the two-slot call is first in line.
        let late = {
            let s = slots.clone();
            std::thread::spawn(move || s.acquire(1).map(|g| g.count))
        };
        while slots.stats().waiting < 2 {
            std::thread::yield_now();
        }
        assert_eq!(slots.stats().in_use, 1);
        drop(first);
        assert_eq!(pair.join().unwrap(), Ok(2));
        assert_eq!(late.join().unwrap(), Ok(1));
        assert_eq!(slots.stats().in_use, 0);
        assert_eq!(slots.stats().waited_total, 2);
    }

    #[test]
    fn a_full_queue_refuses_at_once_and_names_the_key() {
        let slots = Arc::new(Slots::new(2, 0, Duration::from_secs(10)));
        let _held = slots.acquire(2).unwrap();
        let f = slots.acquire(1).err().unwrap();
        assert_eq!(f.kind, FailureKind::Busy);
        assert_eq!(
            f.message,
            "the host is at capacity: all 2 instance slots are taken and 0 calls are already waiting (max_queued_calls = 0); retry later"
        );
        assert_eq!(slots.stats().busy_total, 1);
    }

    #[test]
    fn an_uncontended_slot_costs_two_lock_round_trips() {
        // Not a timing assertion: prints the cost a call pays for its slot
        // when the pool is not full (run with --nocapture).
        let slots = Arc::new(Slots::new(64, 256, Duration::from_secs(5)));
        const N: u32 = 200_000;
        let start = Instant::now();
        for _ in 0..N {
            drop(slots.acquire(1).unwrap());
        }
        println!("slot acquire + release: {:?} each", start.elapsed() / N);
        let stats = slots.stats();
        assert_eq!(
            (stats.in_use, stats.waited_total, stats.busy_total),
            (0, 0, 0)
        );
    }

    #[test]
    fn a_timed_out_waiter_leaves_the_line_for_the_one_behind_it() {
        let slots = Arc::new(Slots::new(2, 8, Duration::from_millis(30)));
        let held = slots.acquire(1).unwrap();
        // Needs both slots: times out while one is held.
        let f = slots.acquire(2).err().unwrap();
        assert_eq!(f.kind, FailureKind::Busy);
        assert!(
            f.message.contains("queue timeout of 30 ms"),
            "{}",
            f.message
        );
        assert_eq!(slots.stats().waiting, 0);
        // The free slot is still usable at once.
        let one = slots.acquire(1).unwrap();
        drop((held, one));
        assert_eq!(slots.stats().in_use, 0);
    }
}
