//! The last N outcomes of one (nameserver, name, protocol), and what they add up to.

use std::{collections::VecDeque, time::Duration};

use hickory_proto::op::ResponseCode;
use nodemedic_proto::v1::DnsProbeStats;

use super::client::Outcome;

#[derive(Debug, Clone)]
struct Sample {
    latency: Option<Duration>,
    rcode: Option<ResponseCode>,
    timeout: bool,
    unreachable: bool,
    truncated: bool,
    answer_changed: bool,
}

/// A rolling window of outcomes.
#[derive(Debug, Clone)]
pub struct Window {
    samples: VecDeque<Sample>,
    capacity: usize,
    last_answers: Option<Vec<String>>,
    last_outcome: String,
}

impl Window {
    /// A window of at most `capacity` samples.
    pub fn new(capacity: usize) -> Self {
        Window {
            samples: VecDeque::new(),
            capacity: capacity.max(1),
            last_answers: None,
            last_outcome: String::new(),
        }
    }

    /// Adds an outcome, dropping the oldest past the capacity.
    pub fn record(&mut self, outcome: &Outcome) {
        let mut sample = Sample {
            latency: None,
            rcode: None,
            timeout: false,
            unreachable: false,
            truncated: false,
            answer_changed: false,
        };
        match outcome {
            Outcome::Answered {
                latency,
                rcode,
                truncated,
                answers,
            } => {
                sample.latency = Some(*latency);
                sample.rcode = Some(*rcode);
                sample.truncated = *truncated;
                if *rcode == ResponseCode::NoError && !answers.is_empty() {
                    sample.answer_changed = self
                        .last_answers
                        .as_ref()
                        .is_some_and(|last| last != answers);
                    self.last_answers = Some(answers.clone());
                }
            }
            Outcome::Timeout => sample.timeout = true,
            Outcome::Unreachable(_) => sample.unreachable = true,
            Outcome::Failed(_) => {}
        }
        self.last_outcome = outcome.label();
        self.samples.push_back(sample);
        if self.samples.len() > self.capacity {
            self.samples.pop_front();
        }
    }

    /// The last `n` samples all timed out.
    pub fn last_timed_out(&self, n: usize) -> bool {
        self.samples.len() >= n && self.samples.iter().rev().take(n).all(|s| s.timeout)
    }

    /// The latest query got an answer (any response code).
    pub fn last_answered(&self) -> bool {
        self.samples.back().is_some_and(|s| s.rcode.is_some())
    }

    /// The latest sample was refused (nothing listens).
    pub fn last_unreachable(&self) -> bool {
        self.samples.back().is_some_and(|s| s.unreachable)
    }

    /// The latest answer's response code.
    pub fn last_rcode(&self) -> Option<ResponseCode> {
        self.samples.back().and_then(|s| s.rcode)
    }

    /// The window's figures.
    pub fn stats(&self, nameserver: &str, name: &str, protocol: &str) -> DnsProbeStats {
        let mut latencies: Vec<Duration> = self.samples.iter().filter_map(|s| s.latency).collect();
        latencies.sort();
        let pct = |p: f64| {
            latencies
                .get(((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1))
                .map_or(0.0, |d| d.as_secs_f64() * 1e3)
        };
        let count = |f: fn(&Sample) -> bool| self.samples.iter().filter(|s| f(s)).count() as u32;
        DnsProbeStats {
            nameserver: nameserver.to_owned(),
            name: name.to_owned(),
            protocol: protocol.to_owned(),
            samples: self.samples.len() as u32,
            answered: latencies.len() as u32,
            timeouts: count(|s| s.timeout),
            unreachable: count(|s| s.unreachable),
            servfail: count(|s| s.rcode == Some(ResponseCode::ServFail)),
            nxdomain: count(|s| s.rcode == Some(ResponseCode::NXDomain)),
            truncated: count(|s| s.truncated),
            p50_ms: pct(0.50),
            p95_ms: pct(0.95),
            max_ms: latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
            answer_changes: count(|s| s.answer_changed),
            last_outcome: self.last_outcome.clone(),
            last_answers: self.last_answers.clone().unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(ms: u64, answers: &[&str]) -> Outcome {
        Outcome::Answered {
            latency: Duration::from_millis(ms),
            rcode: ResponseCode::NoError,
            truncated: false,
            answers: answers.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    #[test]
    fn percentiles_counts_and_changes() {
        let mut w = Window::new(20);
        for ms in 1..=18 {
            w.record(&answered(ms, &["10.0.0.1"]));
        }
        w.record(&answered(100, &["10.0.0.2"]));
        w.record(&Outcome::Timeout);
        let s = w.stats("127.0.0.1:53", "a.", "udp");
        assert_eq!(
            (s.samples, s.answered, s.timeouts, s.answer_changes),
            (20, 19, 1, 1)
        );
        // Nearest rank: the 95th percentile of 19 answers is the 19th.
        assert_eq!((s.p50_ms, s.p95_ms, s.max_ms), (10.0, 100.0, 100.0));
        assert_eq!(s.last_outcome, "timeout");
        assert_eq!(s.last_answers, ["10.0.0.2"]);
        w.record(&Outcome::Timeout);
        assert!(w.last_timed_out(2) && !w.last_timed_out(3));
        assert_eq!(w.stats("", "", "").samples, 20, "capped");
    }
}
