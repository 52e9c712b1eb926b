//! Per-agent report rate: a token bucket per node, kept across the node's reconnects (a
//! flooding agent cannot refill by reconnecting). An agent over its rate is paced, not cut
//! off: the gateway reads its next message only when the bucket allows, so HTTP/2 flow
//! control pushes back on the agent and nothing it sent is lost; an honest agent replaying
//! its spool after an outage drains at the rate, one flooding in its own name cannot crowd
//! the store writer. Paced reports are counted (`nodemedic_throttled_total`).

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Reports per second and burst allowed to one agent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AgentRate {
    /// Sustained reports per second.
    pub per_second: f64,
    /// Reports accepted at once before pacing starts.
    pub burst: u32,
}

impl Default for AgentRate {
    /// 20 reports/s, 200 at once: an agent reports every 10 s, so only a replay after an
    /// outage (or a flood) comes near it.
    fn default() -> Self {
        AgentRate {
            per_second: 20.0,
            burst: 200,
        }
    }
}

struct Bucket {
    /// Tokens left; negative while the node is in debt (paced).
    tokens: f64,
    at: Instant,
}

/// Sweep full buckets (nodes back under their rate) every this many takes.
const SWEEP_EVERY: u32 = 4096;

/// The buckets of every node that reported recently.
pub struct RateLimiter {
    rate: AgentRate,
    state: Mutex<(HashMap<String, Bucket>, u32)>,
}

impl RateLimiter {
    /// A limiter for `rate`.
    pub fn new(rate: AgentRate) -> Self {
        RateLimiter {
            rate,
            state: Mutex::new((HashMap::new(), 0)),
        }
    }

    fn refilled(&self, bucket: &Bucket, now: Instant) -> f64 {
        let earned = now.saturating_duration_since(bucket.at).as_secs_f64() * self.rate.per_second;
        (bucket.tokens + earned).min(f64::from(self.rate.burst))
    }

    /// Takes one report's token for `node` at `now`; answers how long to wait before
    /// reading the node's next message (zero while it is within its rate).
    pub fn take(&self, node: &str, now: Instant) -> Duration {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (buckets, takes) = &mut *state;
        *takes += 1;
        if *takes >= SWEEP_EVERY {
            *takes = 0;
            let burst = f64::from(self.rate.burst);
            buckets.retain(|_, b| self.refilled(b, now) < burst);
        }
        let tokens = match buckets.get(node) {
            Some(bucket) => self.refilled(bucket, now),
            None => f64::from(self.rate.burst),
        } - 1.0;
        buckets.insert(node.to_owned(), Bucket { tokens, at: now });
        if tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-tokens / self.rate.per_second)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_gets_its_burst_then_its_rate_and_others_are_not_affected() {
        let limiter = RateLimiter::new(AgentRate {
            per_second: 10.0,
            burst: 3,
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.take("a", t0), Duration::ZERO);
        }
        assert_eq!(limiter.take("a", t0), Duration::from_millis(100));
        assert_eq!(limiter.take("a", t0), Duration::from_millis(200));
        assert_eq!(limiter.take("b", t0), Duration::ZERO, "per node");
        // Paced reads come at the rate: each waits its turn, no debt builds up.
        let t1 = t0 + Duration::from_millis(200);
        assert_eq!(limiter.take("a", t1), Duration::from_millis(100));
        // After a quiet second the burst is back, whole, and no more.
        let t2 = t1 + Duration::from_secs(2);
        for _ in 0..3 {
            assert_eq!(limiter.take("a", t2), Duration::ZERO);
        }
        assert!(limiter.take("a", t2) > Duration::ZERO);
    }
}
