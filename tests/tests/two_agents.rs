//! A collector and two agents as real processes on loopback; their findings seen through
//! the `nodemedic` CLI.

use std::{process::Command, time::Duration};

use nodemedic_agent::testing::FakeHost;
use nodemedic_tests::{CollectorProcess, agent, binary, cli, collector_command, eventually};
use serde_json::Value;

const GIB_KB: u64 = 1024 * 1024;

fn open_findings(url: &str) -> Vec<(String, String, String)> {
    let (code, out) = cli(&["--collector", url, "findings", "-o", "json"]);
    assert_eq!(code, 0, "{out}");
    let v: Value = serde_json::from_str(&out).expect("JSON");
    let mut found: Vec<_> = v["findings"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| {
                    (
                        f["node"].as_str().unwrap().to_owned(),
                        f["check"].as_str().unwrap().to_owned(),
                        f["severity"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

#[test]
fn two_agents_report_and_the_cli_sees_their_findings() {
    // node-a is out of memory (critical), node-b swaps (warning).
    let a = FakeHost::new();
    a.set_memory(8 * GIB_KB, 50 * 1024, 0, 0);
    let b = FakeHost::new();
    b.set_memory(8 * GIB_KB, 4 * GIB_KB, 2 * GIB_KB, GIB_KB / 2);

    let data = tempfile::tempdir().unwrap();
    let collector = CollectorProcess::start(data.path(), "127.0.0.1:0");
    let _agent_a = agent(&collector.grpc_url, "node-a", a.root().dir(), &[]);
    let _agent_b = agent(&collector.grpc_url, "node-b", b.root().dir(), &[]);

    let expected = vec![
        (
            "node-a".to_owned(),
            "memory.available".to_owned(),
            "SEVERITY_CRITICAL".to_owned(),
        ),
        (
            "node-b".to_owned(),
            "memory.swap".to_owned(),
            "SEVERITY_WARNING".to_owned(),
        ),
    ];
    eventually(Duration::from_secs(30), "both agents' findings", || {
        (open_findings(&collector.grpc_url) == expected).then_some(())
    });

    let (code, table) = cli(&["--collector", &collector.grpc_url, "nodes"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("CRITICAL"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("node-a") && lines[1].contains("critical"),
        "{table}"
    );
    assert!(
        lines[2].starts_with("node-b") && lines[2].contains("warning"),
        "{table}"
    );

    // Each finding persists past the hold: one incident per node, with what to run.
    let incidents = eventually(Duration::from_secs(30), "two incidents", || {
        let (code, out) = cli(&[
            "--collector",
            &collector.grpc_url,
            "incidents",
            "-o",
            "json",
        ]);
        assert_eq!(code, 0, "{out}");
        let v: Value = serde_json::from_str(&out).unwrap();
        let mut found: Vec<(String, String, String)> = v["incidents"]
            .as_array()?
            .iter()
            .map(|i| {
                (
                    i["nodes"][0].as_str().unwrap().to_owned(),
                    i["rule"].as_str().unwrap().to_owned(),
                    i["id"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        found.sort();
        (found.len() == 2).then_some(found)
    });
    assert_eq!(
        incidents
            .iter()
            .map(|(n, r, _)| (n.as_str(), r.as_str()))
            .collect::<Vec<_>>(),
        [("node-a", "memory-pressure"), ("node-b", "swap-in-use")]
    );
    let (code, table) = cli(&["--collector", &collector.grpc_url, "incidents"]);
    assert_eq!(code, 0);
    assert!(
        table.starts_with("ID ") && table.contains("memory-pressure") && table.contains("node-a"),
        "{table}"
    );
    let (code, node) = cli(&["--collector", &collector.grpc_url, "node", "node-a"]);
    assert_eq!(code, 0);
    assert!(
        node.contains("memory.available")
            && node.contains("what to do (memory-pressure:")
            && node.contains("$ kubectl top pods -A --sort-by=memory"),
        "{node}"
    );
    let (code, one) = cli(&[
        "--collector",
        &collector.grpc_url,
        "incident",
        &incidents[0].2,
    ]);
    assert_eq!(code, 0);
    assert!(
        one.contains("[critical, node, open]")
            && one.contains("timeline:")
            && one.contains("+ memory.available on node-a"),
        "{one}"
    );
    let (code, _) = cli(&["--collector", &collector.grpc_url, "incident", "999999"]);
    assert_eq!(code, 1, "an unknown incident is an error");

    // The problem goes away on node-b: the next report resolves its finding.
    b.set_memory(8 * GIB_KB, 4 * GIB_KB, 0, 0);
    eventually(Duration::from_secs(30), "node-b's finding resolved", || {
        (open_findings(&collector.grpc_url) == expected[..1]).then_some(())
    });
    let (_, resolved) = cli(&[
        "--collector",
        &collector.grpc_url,
        "findings",
        "--state",
        "resolved",
        "--node",
        "node-b",
    ]);
    assert!(
        resolved.contains("memory.swap") && resolved.contains("resolved"),
        "{resolved}"
    );
    // Its incident resolves once the swap has stayed off for the hold.
    eventually(
        Duration::from_secs(30),
        "node-b's incident resolved",
        || {
            let (_, resolved) = cli(&[
                "--collector",
                &collector.grpc_url,
                "incidents",
                "--state",
                "resolved",
            ]);
            (resolved.contains("swap-in-use") && resolved.contains("resolved")).then_some(())
        },
    );

    let (code, out) = cli(&["--collector", &collector.grpc_url, "collect", "-o", "json"]);
    assert_eq!(code, 0);
    let asked: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(asked["nodes"], serde_json::json!(["node-a", "node-b"]));
}

#[test]
fn doctor_exit_codes_follow_the_worst_finding() {
    let healthy = FakeHost::new();
    let warning = FakeHost::new();
    warning.set_memory(8 * GIB_KB, 4 * GIB_KB, 2 * GIB_KB, 0);
    let critical = FakeHost::new();
    critical.set_memory(8 * GIB_KB, 10 * 1024, 0, 0);
    for (host, code) in [(&healthy, 0), (&warning, 4), (&critical, 3)] {
        let root = host.root().dir().display().to_string();
        let (got, out) = cli(&["doctor", "--host-root", &root, "--node-name", "n1"]);
        assert_eq!(got, code, "{out}");
        let (got, json) = cli(&[
            "doctor",
            "--host-root",
            &root,
            "--node-name",
            "n1",
            "-o",
            "json",
        ]);
        assert_eq!(got, code);
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["node"], "n1");
        assert_eq!(
            v["report"]["memory"]["totalBytes"],
            (8 * GIB_KB * 1024).to_string()
        );
    }
    let root = critical.root().dir().display().to_string();
    let (_, out) = cli(&["doctor", "--host-root", &root, "-o", "yaml"]);
    assert!(
        out.contains("check: memory.available") && out.contains("rule: memory-pressure"),
        "{out}"
    );
    let (_, out) = cli(&["doctor", "--host-root", &root, "--node-name", "n1"]);
    assert!(
        out.contains("Incident 1 [critical, node, open]: The node is short of memory")
            && out.contains("what to do (memory-pressure:"),
        "{out}"
    );
    let (code, _) = cli(&["--collector", "http://127.0.0.1:1", "nodes"]);
    assert_eq!(code, 1, "an unreachable collector is an error");
}

#[test]
fn once_delivers_one_report_or_fails_clearly() {
    let host = FakeHost::new();
    let data = tempfile::tempdir().unwrap();
    let collector = CollectorProcess::start(data.path(), "127.0.0.1:0");
    let run = |url: &str| {
        Command::new(binary("nodemedic-agent"))
            .args([
                "--collector",
                url,
                "--node-name",
                "node-once",
                "--once",
                "--once-timeout",
                "3s",
                "--host-root",
            ])
            .arg(host.root().dir())
            .output()
            .unwrap()
    };
    let out = run(&collector.grpc_url);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, node) = cli(&[
        "--collector",
        &collector.grpc_url,
        "node",
        "node-once",
        "-o",
        "json",
    ]);
    let v: Value = serde_json::from_str(&node).unwrap();
    assert_eq!(v["node"]["lastSeq"], "1");
    assert_eq!(
        v["latest"]["memory"]["totalBytes"],
        (8 * GIB_KB * 1024).to_string()
    );

    let out = run("http://127.0.0.1:1");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("could not deliver the report") && stderr.contains("Connection refused"),
        "{stderr}"
    );
}

#[test]
fn runbook_validate_names_the_file_and_line_of_a_broken_rule() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("team.yaml"),
        "rules:\n  - id: disk-full\n    title: Ours\n    match:\n      checks: [disk.space]\n    remediation:\n      steps:\n        - text: Page storage about {{node}}\n      recovery: an hour\n      data_loss: none\n      verify: it resolves\n",
    )
    .unwrap();
    let d = dir.path().display().to_string();
    let (code, out) = cli(&["runbook", "validate", &d]);
    assert_eq!(code, 0, "{out}");
    let (_, shown) = cli(&["runbook", "--dir", &d, "show", "disk-full"]);
    assert!(
        shown.contains("Ours") && shown.contains("team.yaml"),
        "{shown}"
    );

    std::fs::write(dir.path().join("zz-broken.yaml"), "rules:\n  - id: x\n    title: t\n    match:\n      checks: [disk.space]\n    remedation: {}\n").unwrap();
    let out = Command::new(binary("nodemedic"))
        .args(["runbook", "validate", &d])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("zz-broken.yaml")
            && stderr.contains("line 6")
            && stderr.contains("remedation"),
        "{stderr}"
    );
}

#[test]
fn a_collector_with_a_broken_runbook_refuses_to_start_and_names_the_line() {
    let rules = tempfile::tempdir().unwrap();
    std::fs::write(
        rules.path().join("team.yaml"),
        "rules:\n  - id: ours\n    title: t\n    match:\n      checks: [disk.space]\n      sujbect: /var\n",
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let out = collector_command(data.path(), "127.0.0.1:0")
        .arg("--runbook-dir")
        .arg(rules.path())
        .arg("--insecure")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("team.yaml") && err.contains("line 6") && err.contains("sujbect"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "it never listened");
}
