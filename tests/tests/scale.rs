//! Scale, the short version that runs with every test: 1,000 simulated agents
//! (`nodemedic-loadgen`, one connection and stream each) against a real collector process
//! for 20 s at a 1 s interval, the collector killed (SIGKILL) and restarted on its port
//! midway. Asserts correctness, not speed: every report the generator sent is acknowledged,
//! and stored exactly once (each node's seqs in the store are 1..n: no gap, no repeat);
//! every node is back after the restart. The full-scale figures are in BENCHMARKS.md.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use nodemedic_tests::{CollectorProcess, assert_each_once, binary, stored_seqs};

const NODES: usize = 1000;

#[test]
fn a_thousand_agents_through_a_collector_restart() {
    let data = tempfile::tempdir().unwrap();
    let collector = CollectorProcess::start(data.path(), "127.0.0.1:0");
    let url = collector.grpc_url.clone();
    let mut loadgen = Command::new(binary("nodemedic-loadgen"))
        .args(["--collector", &url, "--nodes", &NODES.to_string()])
        .args(["--interval", "1s", "--duration", "20s", "--ramp", "4s"])
        .args(["--drain", "60s", "--report-every", "5s"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();

    std::thread::sleep(Duration::from_secs(8));
    collector.kill();
    std::thread::sleep(Duration::from_secs(2));
    let collector = CollectorProcess::start(data.path(), url.trim_start_matches("http://"));

    let lines: Vec<String> = BufReader::new(loadgen.stdout.take().unwrap())
        .lines()
        .map(Result::unwrap)
        .collect();
    assert!(loadgen.wait().unwrap().success(), "{lines:#?}");
    let summary: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    let sent = summary["sent"].as_u64().unwrap();
    assert_eq!(summary["nodes"], NODES, "{lines:#?}");
    assert_eq!(summary["unacknowledged"], 0, "{lines:#?}");
    assert_eq!(summary["acknowledged"], sent, "{lines:#?}");
    assert!(sent >= (NODES * 10) as u64, "{lines:#?}");

    let mut stored = 0;
    for i in 0..NODES {
        let node = format!("loadgen-{i}");
        let seqs = stored_seqs(data.path(), &node);
        assert_each_once(&seqs, &node);
        assert!(
            seqs.len() > 12,
            "{node} came back after the restart: {seqs:?}"
        );
        stored += seqs.len() as u64;
    }
    assert_eq!(
        stored, sent,
        "every report sent is stored, and nothing else"
    );
    drop(collector);
}

/// A collector started with a low soft open-file limit (as some runtimes give) raises it to
/// the hard one: a thousand agents need a thousand descriptors.
#[test]
fn the_collector_raises_its_open_file_limit_to_the_hard_one() {
    let data = tempfile::tempdir().unwrap();
    // prlimit sets the limits, then executes the collector in its own process.
    let mut child = Command::new("prlimit")
        .args(["--nofile=256:4096", "--"])
        .arg(binary("nodemedic-collector"))
        .args([
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data.path())
        .arg("--insecure")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("prlimit (util-linux) runs the collector");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("grpc="), "the collector started: {line:?}");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let open_files: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line")
        .split_whitespace()
        .collect();
    assert_eq!(
        open_files[3..5],
        ["4096", "4096"],
        "soft raised to hard: {limits}"
    );
}
