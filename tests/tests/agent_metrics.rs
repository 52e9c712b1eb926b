//! The agent's `/metrics` on its health listener: a real agent reporting to a real
//! collector is scraped as Prometheus would scrape it, and its figures follow what it did.

use std::time::Duration;

use nodemedic_agent::testing::FakeHost;
use nodemedic_tests::{CollectorProcess, agent, eventually, free_loopback_addr, http_get, sample};

#[test]
fn the_agent_serves_its_cycle_probe_and_queue_metrics() {
    let host = FakeHost::new();
    let data = tempfile::tempdir().unwrap();
    let collector = CollectorProcess::start(data.path(), "127.0.0.1:0");
    let listen = free_loopback_addr();
    let _agent = agent(
        &collector.grpc_url,
        "node-metrics",
        host.root().dir(),
        &["--health-listen", &listen],
    );
    let text = eventually(
        Duration::from_secs(30),
        "three acknowledged reports",
        || {
            let (status, body) = std::panic::catch_unwind(|| http_get(&listen, "/metrics")).ok()?;
            let text = String::from_utf8(body).ok()?;
            (status == 200
                && sample(&text, "nodemedic_agent_reports_acknowledged_total")
                    .is_some_and(|n| n >= 3.0))
            .then_some(text)
        },
    );
    assert!(sample(&text, "nodemedic_agent_collections_total").unwrap() >= 3.0);
    assert_eq!(
        sample(&text, "nodemedic_agent_collector_connected"),
        Some(1.0)
    );
    assert!(sample(&text, "nodemedic_agent_pending_reports").unwrap() <= 1.0);
    assert_eq!(
        sample(
            &text,
            "nodemedic_agent_probe_failures_total{probe=\"memory\"}"
        ),
        Some(0.0),
        "{text}"
    );
    assert!(
        sample(&text, "nodemedic_agent_collection_duration_seconds_count").unwrap() >= 3.0,
        "{text}"
    );
    assert!(
        sample(&text, "process_cpu_seconds_total").unwrap() > 0.0,
        "{text}"
    );
    assert!(sample(&text, "process_resident_memory_bytes").unwrap() > 1e6);

    // A probe that cannot read its files is counted as failing.
    std::fs::remove_file(host.root().path("/proc/meminfo")).unwrap();
    eventually(
        Duration::from_secs(30),
        "a counted memory probe failure",
        || {
            let (_, body) = http_get(&listen, "/metrics");
            let text = String::from_utf8(body).ok()?;
            sample(
                &text,
                "nodemedic_agent_probe_failures_total{probe=\"memory\"}",
            )
            .filter(|n| *n >= 1.0)
        },
    );
    let (status, body) = http_get(&listen, "/healthz");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
}
