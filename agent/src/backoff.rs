//! Reconnect backoff: exponential with jitter, so that agents disconnected together (a
//! collector restart) come back spread out instead of all at once.

use std::time::Duration;

/// Exponential backoff from 1 s to 60 s with up to 50% jitter, so that agents restarted
/// together do not reconnect together.
pub struct Backoff {
    attempt: u32,
    state: u64,
}

impl Backoff {
    /// A backoff whose jitter is seeded by `seed` (the node's name) and the clock.
    pub fn new(seed: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let state = seed
            .bytes()
            .fold(u64::from(nanos) | 1, |h, b| h.rotate_left(5) ^ u64::from(b));
        Backoff {
            attempt: 0,
            state: state | 1,
        }
    }

    /// The wait before the next attempt.
    pub fn next_wait(&mut self) -> Duration {
        let base = Duration::from_secs(1 << self.attempt.min(6)).min(Duration::from_secs(60));
        self.attempt += 1;
        // xorshift64
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let jitter = (self.state % 1000) as f64 / 2000.0;
        base.mul_f64(1.0 - jitter)
    }

    /// After a success: the next failure waits the shortest time again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_a_minute_with_jitter() {
        let mut b = Backoff::new("node-a");
        let waits: Vec<Duration> = (0..10).map(|_| b.next_wait()).collect();
        assert!(waits[0] <= Duration::from_secs(1) && waits[0] >= Duration::from_millis(500));
        assert!(waits[9] <= Duration::from_secs(60) && waits[9] >= Duration::from_secs(30));
        b.reset();
        assert!(b.next_wait() <= Duration::from_secs(1));
    }
}
