//! An agent keeps collecting while its collector is down, and delivers every report once
//! the collector is back: the stored seqs have no gap. Its health endpoint stays ready
//! through the outage and says the collector is away.

use std::time::Duration;

use nodemedic_agent::testing::FakeHost;
use nodemedic_collector::store::Reader;
use nodemedic_tests::{
    CollectorProcess, agent, assert_each_once, eventually, http_get, last_seq, stored_seqs,
};

#[test]
fn reports_collected_while_the_collector_is_down_arrive_after_it_returns() {
    let host = FakeHost::new();
    let data = tempfile::tempdir().unwrap();
    let collector = CollectorProcess::start(data.path(), "127.0.0.1:0");
    let url = collector.grpc_url.clone();
    let health = nodemedic_tests::free_loopback_addr();
    let _agent = agent(
        &url,
        "node-r",
        host.root().dir(),
        &["--health-listen", &health],
    );
    let before = eventually(Duration::from_secs(30), "three reports", || {
        last_seq(&url, "node-r").filter(|s| *s >= 3)
    });
    let readyz = || {
        let (status, body) = http_get(&health, "/readyz");
        (status, String::from_utf8(body).unwrap())
    };
    assert_eq!(readyz().0, 200);
    collector.kill();
    let body = eventually(Duration::from_secs(10), "the outage on /readyz", || {
        let (status, body) = readyz();
        (status == 200 && body.contains("collector: not connected")).then_some(body)
    });
    assert!(body.contains("unacknowledged reports:"), "{body}");
    let (status, _) = http_get(&health, "/healthz");
    assert_eq!(
        status, 200,
        "a collector outage is no reason to restart the agent"
    );
    std::thread::sleep(Duration::from_secs(3));

    let addr = url.trim_start_matches("http://");
    let collector = CollectorProcess::start(data.path(), addr);
    let after = eventually(Duration::from_secs(60), "reports after the restart", || {
        last_seq(&collector.grpc_url, "node-r").filter(|s| *s >= before + 6)
    });
    let seqs = stored_seqs(data.path(), "node-r");
    assert_each_once(&seqs, "while the collector was down");
    assert!(seqs.len() as u64 >= after);
    eventually(Duration::from_secs(10), "connected on /readyz", || {
        readyz().1.contains("collector: connected").then_some(())
    });
}

#[test]
fn spooled_reports_survive_an_agent_restart_and_arrive_in_order() {
    let host = FakeHost::new();
    let data = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let spool_dir = spool.path().display().to_string();
    let collector = CollectorProcess::start(data.path(), "127.0.0.1:0");
    let url = collector.grpc_url.clone();
    let first = agent(
        &url,
        "node-r",
        host.root().dir(),
        &["--spool-dir", &spool_dir],
    );
    let before = eventually(Duration::from_secs(30), "two reports", || {
        last_seq(&url, "node-r").filter(|s| *s >= 2)
    });

    // The collector goes away; the agent spools, is killed, and a new one starts on the
    // same spool while the collector is still away.
    collector.kill();
    std::thread::sleep(Duration::from_secs(3));
    drop(first);
    let spooled = std::fs::read_dir(spool.path()).unwrap().count();
    assert!(
        spooled >= 2,
        "{spooled} reports spooled while the collector was down"
    );
    let _second = agent(
        &url,
        "node-r",
        host.root().dir(),
        &["--spool-dir", &spool_dir],
    );
    std::thread::sleep(Duration::from_secs(2));

    let collector = CollectorProcess::start(data.path(), url.trim_start_matches("http://"));
    eventually(
        Duration::from_secs(60),
        "the spooled reports and new ones",
        || last_seq(&collector.grpc_url, "node-r").filter(|s| *s >= before + spooled as u64 + 3),
    );
    let reports = Reader::open(data.path())
        .unwrap()
        .history("node-r", 0)
        .unwrap();
    let seqs: Vec<u64> = reports.iter().map(|r| r.seq).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "no gap, no duplicate"
    );
    let collected: Vec<i64> = reports
        .iter()
        .map(|r| nodemedic_proto::time::timestamp_millis(r.collected_at.as_ref().unwrap()))
        .collect();
    assert!(
        collected.windows(2).all(|w| w[0] < w[1]),
        "stored in the order they were collected: {collected:?}"
    );
    eventually(
        Duration::from_secs(10),
        "an empty spool once acknowledged",
        || (std::fs::read_dir(spool.path()).unwrap().count() <= 1).then_some(()),
    );
}
