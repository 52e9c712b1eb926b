use std::time::SystemTime;

use nodemedic_proto::v1::Severity;

use super::*;
use crate::testing::{FakeHost, JournalEntry, fixtures_dir, write_journal};

/// The machine's journal directory in the fake tree, as journald lays it out.
const DIR: &str = "/var/log/journal/0f1e2d3c4b5a69788796a5b4c3d2e1f0";

fn at(secs_ago: u64) -> SystemTime {
    SystemTime::now() - Duration::from_secs(secs_ago)
}

fn systemd(message: &str, secs_ago: u64) -> JournalEntry {
    JournalEntry::new("systemd", "init.scope", message, at(secs_ago))
}

fn kubelet(message: &str, secs_ago: u64) -> JournalEntry {
    JournalEntry::new("kubelet", "kubelet.service", message, at(secs_ago))
}

fn write(host: &FakeHost, file: &str, entries: &[JournalEntry]) {
    write_journal(&host.root().path(&format!("{DIR}/{file}")), entries);
}

fn run(probe: &JournalProbe, host: &FakeHost) -> (JournalSection, Vec<(String, String, Severity)>) {
    let out = probe
        .run(&ProbeContext {
            host: host.root(),
            now: SystemTime::now(),
        })
        .unwrap();
    let Section::Journal(s) = out.section else {
        panic!("not a journal section")
    };
    let found = out
        .findings
        .iter()
        .map(|f| (f.check.clone(), f.subject.clone(), f.severity()))
        .collect();
    (s, found)
}

#[test]
fn five_kubelet_starts_in_twenty_minutes_are_a_restart_loop() {
    let host = FakeHost::new();
    // Four starts, in systemd's two message formats (before and after systemd 250).
    let mut entries: Vec<JournalEntry> = (0..4)
        .map(|i| {
            let m = if i % 2 == 0 {
                "Started kubelet.service - kubelet: The Kubernetes Node Agent."
            } else {
                "Started kubelet: The Kubernetes Node Agent."
            };
            systemd(m, 900 - i * 120)
        })
        .collect();
    // The kubelet saying the words is not systemd starting it.
    entries.push(kubelet(
        "Started kubelet.service - kubelet: The Kubernetes Node Agent.",
        100,
    ));
    write(&host, "system.journal", &entries);
    let probe = JournalProbe::new(JournalConfig::default());
    let (s, found) = run(&probe, &host);
    assert_eq!((s.entries_read, s.files), (5, 1));
    assert_eq!(found, [], "four starts are not a loop");
    assert_eq!(s.events[0].count, 4);

    // A fifth: systemd restarting it after it failed to start.
    write(
        &host,
        "system.journal",
        &[systemd(
            "Failed to start kubelet.service - kubelet: The Kubernetes Node Agent.",
            30,
        )],
    );
    let (s, found) = run(&probe, &host);
    assert_eq!(s.entries_read, 6, "read on from the cursor, nothing twice");
    assert_eq!(
        found,
        [(
            checks::JOURNAL_KUBELET_RESTARTS.into(),
            "kubelet.service".into(),
            Severity::Warning
        )]
    );
}

#[test]
fn kubelet_problems_by_their_words_and_only_from_the_kubelet() {
    let host = FakeHost::new();
    write(
        &host,
        "system.journal",
        &[
            kubelet(
                r#"E1207 06:10:01.000000    2114 kubelet.go:2359] "Skipping pod synchronization" err="PLEG is not healthy: pleg was last seen active 3m5.3s ago; threshold is 3m0s""#,
                300,
            ),
            kubelet(
                r#"I1207 06:11:00.000000    2114 eviction_manager.go:346] "Eviction manager: attempting to reclaim" resourceName="ephemeral-storage""#,
                240,
            ),
            kubelet(
                r#"E1207 06:12:00.000000    2114 certificate_manager.go:488] "Failed while requesting a signed certificate from the control plane" err="cannot create certificate signing request: Unauthorized""#,
                200,
            ),
            kubelet(
                r#"E1207 06:13:00.000000    2114 kubelet.go:1418] "Image garbage collection failed once. Stats initialization may not have completed yet" err="invalid capacity 0 on image filesystem""#,
                150,
            ),
            JournalEntry::new(
                "dockerd",
                "docker.service",
                "PLEG is not healthy: pleg was last seen active 9m ago",
                at(100),
            ),
        ],
    );
    let (_, found) = run(&JournalProbe::new(JournalConfig::default()), &host);
    assert_eq!(
        found,
        [
            (
                checks::JOURNAL_KUBELET_CERTIFICATE.into(),
                String::new(),
                Severity::Warning
            ),
            (
                checks::JOURNAL_KUBELET_EVICTION.into(),
                "ephemeral-storage".into(),
                Severity::Warning
            ),
            (
                checks::JOURNAL_KUBELET_PLEG.into(),
                String::new(),
                Severity::Critical
            ),
        ],
        "image GC's start-up message is not a failure; dockerd's words are not the kubelet's"
    );
}

#[test]
fn node_problem_detectors_own_journal_files_apply() {
    let host = FakeHost::new();
    write(
        &host,
        "system.journal",
        &[
            JournalEntry::new(
                "dockerd",
                "docker.service",
                r#"time="2026-12-07T06:00:00Z" level=error msg="Handler for GET /containers/json returned error: readlink /var/lib/docker/overlay2/l: invalid argument""#,
                at(60),
            ),
            systemd("Starting containerd container runtime...", 50),
        ],
    );
    let npd = |name: &str| fixtures_dir().join("kernel").join(name);
    let probe = JournalProbe::new(JournalConfig {
        rule_files: vec![
            npd("npd-systemd-monitor.json"),
            npd("npd-docker-monitor.json"),
        ],
        ..JournalConfig::default()
    });
    let (s, found) = run(&probe, &host);
    assert!(s.rules_skipped.is_empty(), "{:?}", s.rules_skipped);
    assert!(
        found.contains(&(
            checks::JOURNAL_DOCKER_OVERLAY2.into(),
            String::new(),
            Severity::Critical
        )),
        "{found:?}"
    );
    // node-problem-detector's ContainerdStart counts towards the restart check (one start:
    // no finding yet).
    let starts = s
        .events
        .iter()
        .find(|e| e.check == checks::JOURNAL_CONTAINERD_RESTARTS)
        .expect("counted");
    assert_eq!(
        (starts.count, starts.reason.as_str()),
        (1, "ContainerdStart")
    );
}

#[test]
fn rotation_is_followed_with_the_cursor() {
    let host = FakeHost::new();
    let probe = JournalProbe::new(JournalConfig::default());
    let pleg = |secs_ago| {
        kubelet(
            "PLEG is not healthy: pleg has yet to be successful",
            secs_ago,
        )
    };
    write(&host, "system.journal", &[pleg(600), pleg(590), pleg(580)]);
    let (s, _) = run(&probe, &host);
    assert_eq!(s.entries_read, 3);
    let cursor = s.cursor.clone();
    assert!(!cursor.is_empty());

    // journald rotates: the active file is archived under a new name, a new one begun.
    let dir = host.root().path(DIR);
    std::fs::rename(
        dir.join("system.journal"),
        dir.join(
            "system@6c2d0f6a9e1b4d3c8f7a5b4c3d2e1f00-0000000000000001-0005f0a1b2c3d4e5.journal",
        ),
    )
    .unwrap();
    write(&host, "system.journal", &[pleg(120), pleg(60)]);
    let (s, found) = run(&probe, &host);
    assert_eq!(
        (s.entries_read, s.files),
        (5, 2),
        "the archived entries are not read again"
    );
    assert_ne!(s.cursor, cursor);
    let e = &s.events[0];
    assert_eq!((e.count, e.total), (5, 5));
    assert_eq!(found.len(), 1);
}

#[test]
fn a_storm_is_read_in_bounded_runs_and_counted_exactly() {
    let host = FakeHost::new();
    let storm: Vec<JournalEntry> = (0..12_000)
        .map(|i| {
            kubelet(
                &format!("PLEG is not healthy: pleg was last seen active {i}s ago"),
                500,
            )
        })
        .collect();
    write(&host, "system.journal", &storm);
    let probe = JournalProbe::new(JournalConfig {
        max_entries: 5_000,
        ..JournalConfig::default()
    });
    let reads: Vec<(u64, bool)> = (0..3)
        .map(|_| {
            let (s, _) = run(&probe, &host);
            (s.entries_read, s.behind)
        })
        .collect();
    assert_eq!(reads, [(5_000, true), (10_000, true), (12_000, false)]);
    let (s, found) = run(&probe, &host);
    assert_eq!((s.events.len(), s.events[0].count), (1, 12_000));
    assert_eq!(found.len(), 1);
}

#[test]
fn no_journal_is_a_failed_probe_not_a_healthy_one() {
    let host = FakeHost::new();
    std::fs::remove_dir(host.root().path("/var/log/journal")).unwrap();
    let err = JournalProbe::new(JournalConfig::default())
        .run(&ProbeContext {
            host: host.root(),
            now: SystemTime::now(),
        })
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no journal") && err.contains("/var/log/journal"),
        "{err}"
    );
}

#[test]
fn a_match_brings_the_kubelets_lines_before_it_and_a_quiet_run_none() {
    let host = FakeHost::new();
    let mut entries: Vec<JournalEntry> = (0..25)
        .map(|i| kubelet(&format!(r#"I1207 06:00:{i:02}.000000    2114 kubelet.go:2421] "SyncLoop (PLEG): event for pod" pod="default/web-{i}""#), 400 - i))
        .collect();
    // Another service's lines are no part of the kubelet's excerpt.
    entries.push(JournalEntry::new(
        "sshd",
        "ssh.service",
        "Accepted publickey for admin",
        at(300),
    ));
    entries.push(kubelet(
        "PLEG is not healthy: pleg was last seen active 3m1s ago; threshold is 3m0s",
        200,
    ));
    write(&host, "system.journal", &entries);
    let probe = JournalProbe::new(JournalConfig::default());
    let (s, _) = run(&probe, &host);
    assert_eq!(s.excerpt.len(), 21, "20 lines before, and the match");
    assert!(s.excerpt[0].message.contains("web-5"), "{:?}", s.excerpt[0]);
    assert!(s.excerpt[20].message.starts_with("PLEG is not healthy"));
    assert!(s.excerpt.iter().all(|l| l.unit == "kubelet.service"));
    let (s, _) = run(&probe, &host);
    assert!(s.excerpt.is_empty(), "nothing new, nothing sent");
}
