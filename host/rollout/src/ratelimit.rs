//! Per-caller request budgets for the prediction endpoints: one token
//! bucket per key (a token id), refilled at a steady rate up to a burst.
//!
//! Why: the in-flight cap protects the server, not the analysis. One
//! client sending most of the traffic shapes the windows a canary is
//! judged on, and can starve the others; a budget per token bounds both.
//! Pure: the caller passes the time, so the rules are tested directly.

use std::collections::HashMap;

/// How much one key may send: `rate` requests per second on average, up to
/// `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// Requests per second refilled.
    pub rate: f64,
    /// The most requests admitted back to back.
    pub burst: f64,
}

/// Why a request was not admitted, and when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverBudget {
    /// Whole seconds until one request fits again (at least 1), for a
    /// `Retry-After` header.
    pub retry_after_s: u64,
}

/// The buckets of every key seen.
#[derive(Debug, Clone)]
pub struct Buckets {
    budget: Budget,
    /// key -> (requests available, when that was computed, ns).
    state: HashMap<String, (f64, u64)>,
}

impl Buckets {
    /// Empty buckets under `budget` (a key starts full).
    pub fn new(budget: Budget) -> Buckets {
        Buckets {
            budget,
            state: HashMap::new(),
        }
    }

    /// Admits one request of `key` at `now_ns` (a monotonic clock in
    /// nanoseconds), or says how long to wait. A clock that goes backwards
    /// refills nothing.
    pub fn take(&mut self, key: &str, now_ns: u64) -> Result<(), OverBudget> {
        let Budget { rate, burst } = self.budget;
        let entry = self.state.entry(key.to_string()).or_insert((burst, now_ns));
        let elapsed_s = now_ns.saturating_sub(entry.1) as f64 / 1e9;
        let available = (entry.0 + elapsed_s * rate).min(burst);
        entry.1 = entry.1.max(now_ns);
        if available >= 1.0 {
            entry.0 = available - 1.0;
            Ok(())
        } else {
            entry.0 = available;
            let wait_s = if rate > 0.0 {
                (1.0 - available) / rate
            } else {
                f64::INFINITY
            };
            Err(OverBudget {
                retry_after_s: (wait_s.ceil() as u64).clamp(1, 3600),
            })
        }
    }

    /// Keys currently tracked.
    pub fn len(&self) -> usize {
        self.state.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.state.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_burst_is_admitted_then_the_rate_and_keys_do_not_share() {
        let mut b = Buckets::new(Budget {
            rate: 2.0,
            burst: 3.0,
        });
        for _ in 0..3 {
            assert!(b.take("a", 0).is_ok());
        }
        assert_eq!(b.take("a", 0), Err(OverBudget { retry_after_s: 1 }));
        // Another key has its own bucket.
        assert!(b.take("b", 0).is_ok());
        // Half a second at 2/s refills one request, not more.
        assert!(b.take("a", S / 2).is_ok());
        assert!(b.take("a", S / 2).is_err());
        // Idle time refills only up to the burst.
        for _ in 0..3 {
            assert!(b.take("a", 100 * S).is_ok());
        }
        assert!(b.take("a", 100 * S).is_err());
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn retry_after_rounds_up_and_a_backwards_clock_refills_nothing() {
        let mut b = Buckets::new(Budget {
            rate: 0.25,
            burst: 1.0,
        });
        assert!(b.take("k", 10 * S).is_ok());
        // One request every 4 s: the wait is said in whole seconds.
        assert_eq!(b.take("k", 10 * S), Err(OverBudget { retry_after_s: 4 }));
        assert_eq!(b.take("k", 11 * S), Err(OverBudget { retry_after_s: 3 }));
        assert!(b.take("k", 5 * S).is_err(), "time went backwards");
        assert!(b.take("k", 14 * S).is_ok());
    }
}
