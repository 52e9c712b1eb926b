//! Runs a set of probes together, each on a blocking thread under a deadline; a failure or
//! a timeout becomes a `probe.failed` finding (status unknown) and the rest of the report
//! still goes out. A probe stuck in the kernel is not started again until it returns.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use nodemedic_proto::checks;
use nodemedic_proto::v1::{Evidence, Finding, NodeReport, ProbeRun, Severity};
use tracing::warn;

use super::{Probe, ProbeContext, ProbeError, ProbeOutput};

/// A probe with the flag that says a run of it is under way.
struct Slot {
    probe: Arc<dyn Probe>,
    busy: Arc<AtomicBool>,
}

/// The agent's probes, run together into one report.
pub struct ProbeSet {
    slots: Vec<Slot>,
    timeout: Duration,
}

impl ProbeSet {
    /// Adds a probe (one that needs more than the configuration to be made, such as the
    /// pods probe with its Kubernetes watches).
    pub fn add(&mut self, probe: Arc<dyn Probe>) {
        self.slots.push(Slot {
            probe,
            busy: Arc::default(),
        });
    }

    /// Probes that each get `timeout` per run.
    pub fn new(probes: Vec<Arc<dyn Probe>>, timeout: Duration) -> Self {
        let slots = probes
            .into_iter()
            .map(|probe| Slot {
                probe,
                busy: Arc::default(),
            })
            .collect();
        ProbeSet { slots, timeout }
    }

    /// The deadline of each probe run.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The ids of the probes, for the agent's Hello.
    pub fn ids(&self) -> Vec<String> {
        self.slots.iter().map(|s| s.probe.id().to_owned()).collect()
    }

    /// Runs every probe concurrently and fills `report`'s sections, findings and probe runs.
    /// Never fails: a probe that cannot measure adds a `probe.failed` finding instead.
    pub async fn collect(&self, ctx: &ProbeContext, report: &mut NodeReport) {
        let runs = self
            .slots
            .iter()
            .map(|slot| self.run_one(slot, ctx.clone()));
        for (slot, (result, elapsed)) in
            self.slots.iter().zip(futures::future::join_all(runs).await)
        {
            let id = slot.probe.id();
            let mut run = ProbeRun {
                probe: id.to_owned(),
                ok: result.is_ok(),
                error: String::new(),
                duration_micros: elapsed.as_micros() as u64,
                checks: slot.probe.checks().iter().map(|c| c.to_string()).collect(),
            };
            match result {
                Ok(output) => {
                    output.section.store(report);
                    report.findings.extend(output.findings);
                }
                Err(error) => {
                    warn!(message = "Probe failed.", probe = id, %error);
                    run.error = error.to_string();
                    report.findings.push(probe_failed(id, &error));
                }
            }
            report.probes.push(run);
        }
        for finding in &mut report.findings {
            finding.node.clone_from(&report.node);
        }
    }

    async fn run_one(
        &self,
        slot: &Slot,
        ctx: ProbeContext,
    ) -> (Result<ProbeOutput, ProbeError>, Duration) {
        let started = Instant::now();
        if slot.busy.swap(true, Ordering::AcqRel) {
            return (Err(ProbeError::StillRunning), started.elapsed());
        }
        let probe = Arc::clone(&slot.probe);
        let busy = Arc::clone(&slot.busy);
        let task = tokio::task::spawn_blocking(move || {
            let result = probe.run(&ctx);
            busy.store(false, Ordering::Release);
            result
        });
        let result = match tokio::time::timeout(self.timeout, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join_error)) => {
                slot.busy.store(false, Ordering::Release);
                Err(ProbeError::Panicked(join_error.to_string()))
            }
            Err(_) => Err(ProbeError::Timeout(self.timeout)),
        };
        (result, started.elapsed())
    }
}

/// The finding for a probe that could not measure: unknown, never healthy.
fn probe_failed(probe: &str, error: &ProbeError) -> Finding {
    Finding::unknown(
        checks::PROBE_FAILED,
        Severity::Warning,
        probe,
        format!("The {probe} probe could not measure: {error}. Its checks are unknown until it runs again."),
    )
    .with(Evidence::text("error", error.to_string()))
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use nodemedic_proto::v1::{DiskSection, SystemSection};

    use super::*;
    use crate::{host::HostRoot, probes::Section};

    struct Slow;
    impl Probe for Slow {
        fn id(&self) -> &'static str {
            "slow"
        }
        fn run(&self, _: &ProbeContext) -> Result<ProbeOutput, ProbeError> {
            std::thread::sleep(Duration::from_millis(400));
            Ok(ProbeOutput {
                section: Section::Disk(DiskSection::default()),
                findings: vec![],
            })
        }
    }

    struct Broken;
    impl Probe for Broken {
        fn id(&self) -> &'static str {
            "broken"
        }
        fn run(&self, ctx: &ProbeContext) -> Result<ProbeOutput, ProbeError> {
            ctx.host.read("/proc/does-not-exist")?;
            unreachable!("the file does not exist")
        }
    }

    struct Fine;
    impl Probe for Fine {
        fn id(&self) -> &'static str {
            "fine"
        }
        fn run(&self, _: &ProbeContext) -> Result<ProbeOutput, ProbeError> {
            Ok(ProbeOutput {
                section: Section::System(SystemSection {
                    pid_max: 7,
                    ..Default::default()
                }),
                findings: vec![Finding::fail("fine.thing", Severity::Info, "", "x".into())],
            })
        }
    }

    fn ctx() -> ProbeContext {
        ProbeContext {
            host: HostRoot::new(tempfile::tempdir().unwrap().keep()),
            now: SystemTime::now(),
        }
    }

    #[tokio::test]
    async fn failures_and_timeouts_become_unknown_findings_and_the_rest_goes_on() {
        let set = ProbeSet::new(
            vec![Arc::new(Slow), Arc::new(Broken), Arc::new(Fine)],
            Duration::from_millis(100),
        );
        let mut report = NodeReport {
            node: "n1".into(),
            ..Default::default()
        };
        set.collect(&ctx(), &mut report).await;

        assert_eq!(report.system.as_ref().unwrap().pid_max, 7);
        let failed: Vec<_> = report
            .findings
            .iter()
            .filter(|f| f.check == "probe.failed")
            .collect();
        assert_eq!(failed.len(), 2);
        assert!(
            failed
                .iter()
                .all(|f| f.status == nodemedic_proto::v1::FindingStatus::Unknown as i32)
        );
        assert!(
            failed
                .iter()
                .any(|f| f.subject == "slow" && f.message.contains("timed out"))
        );
        assert!(
            failed
                .iter()
                .any(|f| f.subject == "broken" && f.message.contains("does-not-exist"))
        );
        assert!(report.findings.iter().all(|f| f.node == "n1"));
        let runs: Vec<_> = report
            .probes
            .iter()
            .map(|r| (r.probe.as_str(), r.ok))
            .collect();
        assert_eq!(runs, [("slow", false), ("broken", false), ("fine", true)]);

        // The slow probe is still stuck: the next cycle does not pile up another thread.
        let mut second = NodeReport::default();
        set.collect(&ctx(), &mut second).await;
        assert!(
            second.probes[0].error.contains("previous run"),
            "{:?}",
            second.probes[0]
        );
    }
}
