//! Bundles end to end: a collector and an agent as real processes; `nodemedic bundle`
//! writes a file only when complete, `bundle inspect` verifies it and catches damage, and
//! the HTTP endpoint serves the same format to curl users.

use std::{process::Command, time::Duration};

use nodemedic_agent::testing::FakeHost;
use nodemedic_tests::{CollectorProcess, agent, binary, cli, eventually, http_get};

const GIB_KB: u64 = 1024 * 1024;

#[test]
fn download_inspect_and_http() {
    let host = FakeHost::new();
    host.set_memory(8 * GIB_KB, 50 * 1024, 0, 0);
    let data = tempfile::tempdir().unwrap();
    let collector = CollectorProcess::start(data.path(), "127.0.0.1:0");
    let url = collector.grpc_url.clone();
    let _agent = agent(&url, "node-b", host.root().dir(), &[]);
    eventually(Duration::from_secs(30), "an incident", || {
        let (_, out) = cli(&["--collector", &url, "incidents"]);
        out.contains("memory-pressure").then_some(())
    });

    let out_dir = tempfile::tempdir().unwrap();
    let file = out_dir.path().join("b.tar.zst");
    let file_arg = file.to_string_lossy().into_owned();
    let run = Command::new(binary("nodemedic"))
        .args([
            "--collector",
            &url,
            "bundle",
            "-f",
            &file_arg,
            "--node",
            "node-b",
            "--since",
            "1h",
        ])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(String::from_utf8_lossy(&run.stderr).contains("wrote"));
    assert!(file.exists());
    assert!(!out_dir.path().join("b.tar.zst.partial").exists());

    let (code, shown) = cli(&["bundle", "inspect", &file_arg]);
    assert_eq!(code, 0, "{shown}");
    assert!(
        shown.contains("files verified")
            && shown.contains("nodes/node-b/history.json")
            && shown.contains("The node is short of memory"),
        "{shown}"
    );
    let (code, json) = cli(&["bundle", "inspect", &file_arg, "-o", "json"]);
    assert_eq!(code, 0);
    let manifest: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(manifest["format"], 2);
    assert_eq!(manifest["filters"]["nodes"][0], "node-b");

    // The node's reports, a JSON document a line, as the collector has them.
    let (code, lines) = cli(&["bundle", "history", &file_arg, "--node", "node-b"]);
    assert_eq!(code, 0, "{lines}");
    let reports: Vec<nodemedic_proto::v1::NodeReport> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!reports.is_empty());
    assert!(reports.iter().all(|r| r.node == "node-b"));
    assert!(
        reports.windows(2).all(|w| w[0].seq < w[1].seq),
        "oldest first"
    );
    let run = Command::new(binary("nodemedic"))
        .args(["bundle", "history", &file_arg, "--node", "node-z"])
        .output()
        .unwrap();
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("no reports of node node-z"), "{err}");

    // Damage is caught, naming what is wrong.
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.truncate(bytes.len() - 100);
    let damaged = out_dir.path().join("damaged.tar.zst");
    std::fs::write(&damaged, &bytes).unwrap();
    let run = Command::new(binary("nodemedic"))
        .args(["bundle", "inspect"])
        .arg(&damaged)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("corrupt or truncated"),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    // The summary page renders in a real browser (headless Chromium) with the incident.
    let page = out_dir.path().join("summary.html");
    std::fs::write(&page, checked_summary(&file)).unwrap();
    let (dom, png) = chromium(&page, out_dir.path());
    assert!(dom.contains("The node is short of memory"), "{dom}");
    assert!(dom.contains("<svg"), "the charts are in the page");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a screenshot of {} bytes",
        png.len()
    );

    // The same over HTTP.
    let (status, body) = http_get(&collector.http_addr, "/api/v1/bundle?node=node-b&since=1h");
    assert_eq!(status, 200);
    let checked = nodemedic_collector::bundle::inspect(body.as_slice(), |_| true).unwrap();
    assert!(checked.files.contains_key("nodes/node-b/latest.json"));
    let (status, body) = http_get(&collector.http_addr, "/api/v1/bundle?node=../etc");
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));

    // No collector: an error, and no file under the final name.
    let missing = out_dir.path().join("none.tar.zst");
    let run = Command::new(binary("nodemedic"))
        .args(["--collector", "http://127.0.0.1:1", "bundle", "-f"])
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    assert!(!missing.exists());
}

#[test]
fn doctor_writes_a_one_node_bundle_without_a_collector() {
    let host = FakeHost::new();
    host.set_memory(8 * GIB_KB, 50 * 1024, 0, 0);
    let out_dir = tempfile::tempdir().unwrap();
    let file = out_dir.path().join("doctor.tar.zst");
    let root = host.root().dir().display().to_string();
    let run = Command::new(binary("nodemedic"))
        .args([
            "doctor",
            "--host-root",
            &root,
            "--node-name",
            "lonely",
            "--bundle",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(
        run.status.code(),
        Some(3),
        "critical: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let checked =
        nodemedic_collector::bundle::inspect(std::fs::File::open(&file).unwrap(), |_| true)
            .unwrap();
    assert!(checked.files.contains_key("nodes/lonely/latest.json"));
    let incidents = String::from_utf8_lossy(&checked.files["incidents.json"]).into_owned();
    assert!(incidents.contains("memory-pressure"), "{incidents}");
}

/// summary.html of a bundle file.
fn checked_summary(file: &std::path::Path) -> Vec<u8> {
    let checked =
        nodemedic_collector::bundle::inspect(std::fs::File::open(file).unwrap(), |_| true).unwrap();
    checked.files["summary.html"].clone()
}

/// Opens `page` in headless Chromium (Debian's; scripts/test installs it): the DOM it
/// built and a screenshot. The flags keep it off the network and out of any profile.
fn chromium(page: &std::path::Path, dir: &std::path::Path) -> (String, Vec<u8>) {
    let browser = |profile: &str| {
        let mut c = Command::new("chromium");
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1200,1600",
        ])
        .arg(format!("--user-data-dir={}", dir.join(profile).display()));
        c
    };
    let url = format!("file://{}", page.display());
    let dom = browser("profile-dom")
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .expect("chromium is installed (scripts/test installs it)");
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let shot = dir.join("summary.png");
    let run = browser("profile-shot")
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    (
        String::from_utf8_lossy(&dom.stdout).into_owned(),
        std::fs::read(&shot).unwrap(),
    )
}
