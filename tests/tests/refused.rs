//! A report the collector refuses as invalid is dropped by the agent, not sent again and
//! again: the reports after it still arrive. Made real with a collector that accepts no
//! findings (`--max-findings 0`) and a host that is short of memory for a while.

use std::time::Duration;

use nodemedic_agent::testing::FakeHost;
use nodemedic_collector::store::Reader;
use nodemedic_tests::{CollectorProcess, agent, eventually, last_seq};

const NODE: &str = "node-refused";

#[test]
fn a_report_refused_as_invalid_is_dropped_and_the_next_ones_arrive() {
    let host = FakeHost::new();
    host.set_memory(8 << 20, 6 << 20, 0, 0);
    let data = tempfile::tempdir().unwrap();
    let collector = CollectorProcess::start_with(
        data.path(),
        "127.0.0.1:0",
        &["--insecure", "--max-findings", "0"],
    );
    let url = collector.grpc_url.clone();
    let _agent = agent(&url, NODE, host.root().dir(), &[]);
    let healthy = eventually(Duration::from_secs(30), "healthy reports", || {
        last_seq(&url, NODE).filter(|s| *s >= 2)
    });

    // Short of memory: every report now carries a finding, which this collector refuses.
    host.set_memory(8 << 20, 40 << 10, 0, 0);
    std::thread::sleep(Duration::from_secs(4));
    host.set_memory(8 << 20, 6 << 20, 0, 0);
    let stored = eventually(
        Duration::from_secs(30),
        "reports after the refused ones",
        || {
            let reports = Reader::open(data.path()).unwrap().history(NODE, 0).unwrap();
            let last = reports.last()?;
            (last.reports_dropped > 0).then_some(reports)
        },
    );
    let seqs: Vec<u64> = stored.iter().map(|r| r.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "each stored once, in order: {seqs:?}"
    );
    let gap = seqs.windows(2).find(|w| w[1] > w[0] + 1);
    assert!(
        gap.is_some_and(|w| w[0] >= healthy),
        "the refused reports are missing, after the healthy ones: {seqs:?}"
    );
    let last = stored.last().unwrap();
    assert!(last.findings.is_empty());
    assert_eq!(
        last.reports_dropped,
        gap.map(|w| w[1] - w[0] - 1).unwrap(),
        "the agent counts what it dropped: {seqs:?}"
    );
}
