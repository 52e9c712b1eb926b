//! The follower thread: reads the kernel log as it grows, runs each line through the rules
//! once, and counts the matches; a probe run asks it to catch up and reads the counts.

use std::{
    sync::{Arc, Condvar, Mutex, MutexGuard},
    time::{Duration, SystemTime},
};

use nodemedic_proto::checks;
use nodemedic_proto::v1::KernelSection;

use super::config::KernelConfig;
use super::{oom::OomTracker, source::Source};
use crate::{
    host::HostError,
    logs::{
        rules::{Recent, RuleSet},
        tally::{Hit, Tally},
    },
    parse::kmsg,
    probes::ProbeError,
};

/// How long a probe run waits for the follower to read what was logged before it.
const CATCH_UP: Duration = Duration::from_secs(2);
/// How long the follower sleeps at the end of a log file (a run wakes it at once).
const FILE_POLL: Duration = Duration::from_millis(250);
/// How long the follower waits in `poll` on `/dev/kmsg` before looking for a run's request.
const KMSG_POLL: Duration = Duration::from_millis(100);

#[derive(Debug)]
struct State {
    tally: Tally,
    /// Catch-up requests made and served: a run waits until its request is served.
    requested: u64,
    served: u64,
    error: Option<std::io::Error>,
    stopped: bool,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running follower; dropping it stops the thread.
#[derive(Debug)]
pub struct Follower {
    name: String,
    shared: Arc<Shared>,
}

impl Follower {
    /// Starts following `source` (named `name` in the section).
    pub fn start(name: String, source: Source, rules: RuleSet, config: &KernelConfig) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                tally: Tally::new(config.window, config.max_subjects),
                requested: 0,
                served: 0,
                error: None,
                stopped: false,
            }),
            changed: Condvar::new(),
        });
        let thread_shared = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name("kernel-log".into())
            .spawn(move || follow(source, rules, &thread_shared));
        if let Err(e) = spawned {
            shared.lock().error = Some(e);
        }
        Follower { name, shared }
    }

    /// The counts, once everything logged before this call has been read (or after
    /// [`CATCH_UP`], with what has been read by then).
    pub fn catch_up(&self, now: SystemTime) -> Result<KernelSection, ProbeError> {
        let mut state = self.shared.lock();
        state.requested += 1;
        let request = state.requested;
        self.shared.changed.notify_all();
        let (mut state, _) = self
            .shared
            .changed
            .wait_timeout_while(state, CATCH_UP, |s| s.served < request && s.error.is_none())
            .unwrap_or_else(|p| p.into_inner());
        if let Some(source) = state.error.take() {
            return Err(HostError::Io {
                path: self.name.clone().into(),
                source,
            }
            .into());
        }
        let tally = &mut state.tally;
        Ok(KernelSection {
            source: self.name.clone(),
            lines_read: tally.lines_read,
            lines_matched: tally.lines_matched,
            records_missed: tally.records_missed,
            subjects_folded: tally.subjects_folded,
            events: tally.events(now),
        })
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.shared.lock().stopped = true;
        self.shared.changed.notify_all();
    }
}

fn follow(mut source: Source, rules: RuleSet, shared: &Shared) {
    let mut oom = OomTracker::default();
    let mut recent = Recent::for_rules(&rules);
    loop {
        let mut state = shared.lock();
        if state.stopped {
            return;
        }
        let request = state.requested;
        let tally = &mut state.tally;
        let drained =
            source.drain(&mut |line, at| count(tally, &rules, &mut recent, &mut oom, line, at));
        match drained {
            Ok(missed) => state.tally.records_missed += missed,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the kernel log; the next run reopens it");
                state.error = Some(e);
                shared.changed.notify_all();
                return;
            }
        }
        state.served = request;
        shared.changed.notify_all();
        match &source {
            Source::Kmsg(kmsg) => {
                drop(state);
                kmsg.wait(KMSG_POLL);
            }
            Source::File(_) => {
                // Sleep until the next poll or until a run asks.
                let _ = shared
                    .changed
                    .wait_timeout_while(state, FILE_POLL, |s| s.requested == request && !s.stopped);
            }
        }
    }
}

/// Runs one line through the rules and counts what matched.
fn count(
    tally: &mut Tally,
    rules: &RuleSet,
    recent: &mut Recent,
    oom: &mut OomTracker,
    line: &str,
    at: SystemTime,
) {
    tally.lines_read += 1;
    let message = kmsg::message(line);
    oom.context(message);
    let mut matched = false;
    let matches = rules.matches(message, recent);
    recent.push(message);
    for m in matches {
        let (subject, fields) = if m.rule.check == checks::KERNEL_OOM_KILL {
            // The second line of a kill already counted is not another kill.
            let Some(kill) = oom.kill(message) else {
                continue;
            };
            (kill.subject(), kill.fields())
        } else {
            (m.subject, m.fields)
        };
        matched = true;
        tally.add(
            Hit {
                check: &m.rule.check,
                subject,
                reason: &m.rule.reason,
                severity: m.severity,
                fields,
            },
            message,
            at,
        );
    }
    if matched {
        tally.lines_matched += 1;
    }
}
