//! The kernel log probe on real kernel logs (`tests/fixtures/real/kernel/`), followed as a
//! log file through a fake host, with nodemedic's rules and node-problem-detector's own rule
//! files; and on the machine's real `/dev/kmsg`, with a real OOM kill in a pod's memory
//! cgroup. Needs root (tmpfs, cgroups); fails, never skips, without it.

use std::{
    collections::BTreeSet,
    path::PathBuf,
    time::{Duration, SystemTime},
};

use nodemedic_agent::{
    config::KernelConfig,
    host::HostRoot,
    probes::kernel::KernelProbe,
    probes::{Probe, ProbeContext, Section},
    testing::{FakeHost, MemoryCgroup, fixture, fixtures_dir},
};
use nodemedic_proto::v1::{Finding, KernelSection, Severity};

fn ctx(host: HostRoot, now: SystemTime) -> ProbeContext {
    ProbeContext { host, now }
}

fn run(probe: &KernelProbe, host: HostRoot, now: SystemTime) -> (KernelSection, Vec<Finding>) {
    let out = probe.run(&ctx(host, now)).expect("the kernel probe runs");
    let Section::Kernel(section) = out.section else {
        panic!("not a kernel section")
    };
    (section, out.findings)
}

fn file_config(rule_files: Vec<PathBuf>) -> KernelConfig {
    KernelConfig {
        log_file: Some("/var/log/kern.log".into()),
        rule_files,
        ..KernelConfig::default()
    }
}

/// For the real logs, written years ago: lines carry their own time, so the window
/// reaches back far enough to count them all.
fn old_log_config(rule_files: Vec<PathBuf>) -> KernelConfig {
    KernelConfig {
        window: Duration::from_secs(60 * 366 * 86_400),
        ..file_config(rule_files)
    }
}

fn npd_rules() -> Vec<PathBuf> {
    let dir = fixtures_dir().join("kernel");
    vec![
        dir.join("kernel-monitor.json"),
        dir.join("npd-readonly-monitor.json"),
        // Its one rule runs a program (the "custom" plugin): loaded, skipped.
        dir.join("npd-kernel-monitor-counter.json"),
    ]
}

/// The findings of one real log, as (check, subject, count).
fn findings_of(file: &str, rule_files: Vec<PathBuf>) -> BTreeSet<(String, String, u64)> {
    let host = FakeHost::new();
    host.write("/var/log/kern.log", &fixture(&format!("kernel/{file}")));
    let probe = KernelProbe::new(old_log_config(rule_files));
    let (_, findings) = run(&probe, host.root(), SystemTime::now());
    findings
        .iter()
        .map(|f| (f.check.clone(), f.subject.clone(), count(f)))
        .collect()
}

fn count(f: &Finding) -> u64 {
    f.number("count").unwrap() as u64
}

/// A finding expected from a log: check, subject, count.
type Expected = (&'static str, &'static str, u64);

fn set(items: &[Expected]) -> BTreeSet<(String, String, u64)> {
    items
        .iter()
        .map(|(c, s, n)| (c.to_string(), s.to_string(), *n))
        .collect()
}

#[test]
fn every_real_log_raises_what_it_shows_with_nodemedic_and_npd_rules_alike() {
    let pod_56891 = "pod 95387fa4-da9c-11e7-9d36-5254b24cbf5e";
    let pod_gpud = "pod eded8c65-6e8e-4c6e-a889-3e427565c740";
    let cases: &[(&str, &[Expected])] = &[
        // OOM kills: one per kill however many lines the kernel writes about it.
        (
            "hotsos-kernlog-oom-killer-global.log",
            &[("kernel.oom_kill", "", 1)],
        ),
        (
            "issue-db1000n-272-global-oom-syslog.log",
            &[("kernel.oom_kill", "", 1)],
        ),
        (
            "issue-install-docker-14-oom-kill-global-oom-docker-scope.log",
            &[("kernel.oom_kill", "", 1)],
        ),
        (
            // A container's own limit, the kernel not saying which cgroup: not the node.
            "issue-docker-for-linux-1001-memcg-oom-syslog.log",
            &[("kernel.oom_kill", "cgroup ?", 4)],
        ),
        (
            "issue-reportportal-203-memcg-oom-killed-uwsgi.log",
            &[("kernel.oom_kill", "cgroup ?", 1)],
        ),
        (
            "issue-k8s-56891-memcg-oom-rhel7-kubepods-dmesg-T.log",
            &[("kernel.oom_kill", pod_56891, 1)],
        ),
        (
            "issue-gpud-pr70-oom-kill-constraint-memcg-cri-containerd.log",
            &[("kernel.oom_kill", pod_gpud, 1)],
        ),
        (
            "issue-kubedirector-356-memcg-oom-kubepods-v1.log",
            &[("kernel.oom_kill", "cgroup ?", 1)],
        ),
        (
            "npd-problem-oom_kill.log",
            &[("kernel.oom_kill", "cgroup ?", 1)],
        ),
        // Hung tasks, by task.
        (
            "hotsos-kernlog-hung-task-fuse.log",
            &[("kernel.hung_task", "df", 1)],
        ),
        (
            "npd-problem-docker_hung.log",
            &[("kernel.hung_task", "docker", 1)],
        ),
        (
            "npd-problem-aufs_umount_hung.log",
            &[("kernel.hung_task", "umount.aufs", 1)],
        ),
        // Lockups and stalls.
        (
            "issue-kubeasz-300-nmi-soft-lockup-syslog.log",
            &[("kernel.soft_lockup", "", 11)],
        ),
        (
            "issue-fluent-bit-11093-soft-lockup-wall-message.log",
            &[("kernel.soft_lockup", "", 2)],
        ),
        (
            "issue-k8s-65142-soft-lockup-kubelet.log",
            &[("kernel.soft_lockup", "", 1)],
        ),
        (
            "issue-harvester-564-rcu-stall-soft-lockup-dmesg-T.log",
            &[("kernel.soft_lockup", "", 2)],
        ),
        // Filesystems, by device.
        (
            "issue-coreos-bugs-1309-ext4-aborted-journal-remount-ro.log",
            &[
                ("kernel.fs_error", "sda9", 4),
                ("kernel.readonly_remount", "sda9", 2),
            ],
        ),
        (
            "npd-problem-readonly_filesystem.log",
            &[("kernel.readonly_remount", "sda1", 1)],
        ),
        (
            "issue-npd-pr845-xfs-internal-error-shutdown.log",
            &[("kernel.fs_error", "dm-4", 3)],
        ),
        (
            "issue-coreos-bugs-1396-xfs-log-io-error-ebs-detach.log",
            &[("kernel.fs_error", "xvdb", 1)],
        ),
        (
            "issue-moby-34283-xfs-metadata-io-error.log",
            &[("kernel.fs_error", "dm-11", 6)],
        ),
        // Disks, by device.
        (
            "hotsos-kernlog-disk-io-error.log",
            &[("kernel.io_error", "sdk", 1)],
        ),
        (
            "hotsos-kernlog-disk-critical-medium-error.log",
            &[("kernel.io_error", "sdk", 1)],
        ),
        (
            "hotsos-kernlog-disk-medium-error-rfc5424.log",
            &[("kernel.io_error", "sdb", 2)],
        ),
        (
            "issue-appstream-90-print-req-error-io-error-k8snode.log",
            &[("kernel.io_error", "sdc", 4)],
        ),
        // Networking.
        (
            "hotsos-kernlog-nf-conntrack-full.log",
            &[("kernel.conntrack_full", "", 1)],
        ),
        (
            "issue-kube-aws-pr476-nf-conntrack-double-prefix.log",
            &[("kernel.conntrack_full", "", 4)],
        ),
        (
            "issue-k8s-71261-nf-conntrack-table-full-dmesg-T.log",
            &[("kernel.conntrack_full", "", 4)],
        ),
        (
            "npd-problem-unregister_netdevice.log",
            &[("kernel.unregister_netdevice", "lo", 1)],
        ),
        // Oopses.
        ("npd-problem-null_pointer.log", &[("kernel.oops", "", 1)]),
        ("npd-problem-divide_zero.log", &[("kernel.oops", "", 1)]),
        // Nothing wrong.
        ("hotsos-kernlog-over-mtu-dropped.log", &[]),
        ("npd-problem-au_opts_verify.log", &[]),
    ];
    for (file, want) in cases {
        let want = set(want);
        assert_eq!(findings_of(file, vec![]), want, "{file}, nodemedic's rules");
        assert_eq!(
            findings_of(file, npd_rules()),
            want,
            "{file}, with node-problem-detector's rule files too: a line both match counts once"
        );
    }
}

#[test]
fn the_long_benign_boot_log_raises_nothing() {
    // 813 lines of a real Kubernetes worker's dmesg, with its one harmless I/O error on a
    // snap loop device.
    for rules in [vec![], npd_rules()] {
        assert_eq!(
            findings_of("hotsos-k8s-node-dmesg-boot-baseline.log", rules),
            BTreeSet::new()
        );
    }
}

#[test]
fn an_oom_kill_names_pod_container_and_process() {
    let host = FakeHost::new();
    host.write(
        "/var/log/kern.log",
        &fixture("kernel/issue-gpud-pr70-oom-kill-constraint-memcg-cri-containerd.log"),
    );
    let probe = KernelProbe::new(old_log_config(vec![]));
    let (_, findings) = run(&probe, host.root(), SystemTime::now());
    let f = &findings[0];
    assert_eq!(f.severity, Severity::Warning as i32);
    assert_eq!(
        f.text("pod_uid").unwrap(),
        "eded8c65-6e8e-4c6e-a889-3e427565c740"
    );
    assert_eq!(
        f.text("container_id").unwrap(),
        "ec9ee26695deb4cc72bc665efff1cf3a03fdfb12f1303e02fe9252985e084a95"
    );
    assert_eq!(f.text("process").unwrap(), "pt_main_thread");
    assert_eq!(f.text("constraint").unwrap(), "memcg");
    assert_eq!(f.text("reason").unwrap(), "OOMKilling");
}

#[test]
fn new_lines_are_followed_counted_and_forgotten_after_the_window() {
    let host = FakeHost::new();
    // The log's lines are stamped 1,454,500 – 1,454,509 s after boot: logged a minute ago.
    host.write("/proc/uptime", "1454570.00 2000000.00\n");
    let probe = KernelProbe::new(file_config(vec![]));
    let now = SystemTime::now();
    let (section, findings) = run(&probe, host.root(), now);
    assert_eq!(
        (section.source.as_str(), section.lines_read),
        ("/var/log/kern.log", 0)
    );
    assert!(findings.is_empty());

    let lines = fixture("kernel/issue-k8s-18604-nf-conntrack-table-full.log");
    host.write("/var/log/kern.log", &lines);
    let (section, findings) = run(&probe, host.root(), SystemTime::now());
    assert_eq!(section.lines_read, lines.lines().count() as u64);
    let f = &findings[0];
    assert_eq!((f.check.as_str(), count(f)), ("kernel.conntrack_full", 14));
    assert_eq!(f.severity, Severity::Critical as i32);
    assert_eq!(
        f.text("first_line").unwrap(),
        "nf_conntrack: table full, dropping packet"
    );

    // The same lines appended again: counted on top.
    let mut more = lines.clone();
    more.push_str(&lines);
    host.write("/var/log/kern.log", &format!("{lines}{more}"));
    let (_, findings) = run(&probe, host.root(), SystemTime::now());
    assert_eq!(count(&findings[0]), 42);
    assert_eq!(findings[0].number("total"), Some(42.0));

    // An hour after the last line, the finding resolves.
    let later = SystemTime::now() + Duration::from_secs(3601 + 60);
    let (section, findings) = run(&probe, host.root(), later);
    assert!(findings.is_empty(), "{findings:?}");
    assert_eq!(section.lines_matched, 42, "the count since the start stays");
}

#[test]
fn a_missing_log_fails_the_probe_naming_it_and_recovers() {
    let host = FakeHost::new();
    let probe = KernelProbe::new(KernelConfig {
        log_file: Some("/var/log/nothing-here.log".into()),
        ..KernelConfig::default()
    });
    let err = probe
        .run(&ctx(host.root(), SystemTime::now()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("/var/log/nothing-here.log"), "{err}");
    host.write(
        "/var/log/nothing-here.log",
        "Killed process 7 (x) total-vm:1kB\n",
    );
    let (_, findings) = run(&probe, host.root(), SystemTime::now());
    assert_eq!(findings[0].check, "kernel.oom_kill");
}

/// A real OOM kill: a process in a pod's memory cgroup (the kubelet's cgroupfs layout)
/// allocates past the limit, the kernel kills it and says so in `/dev/kmsg`, and the probe,
/// reading the machine's real `/dev/kmsg`, names the pod and container.
#[test]
fn a_real_oom_kill_in_a_pod_cgroup_is_read_from_kmsg() {
    let uid = format!(
        "{:08x}-0000-4000-8000-{:012x}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            % (1 << 48)
    );
    let container = format!("{:0>64}", format!("{:x}", std::process::id()));
    let cgroup = MemoryCgroup::create(
        &format!("kubepods/burstable/pod{uid}/{container}"),
        32 << 20,
    );
    let probe = KernelProbe::new(KernelConfig::default());
    let host = HostRoot::new("/");
    // Start following before the kill.
    run(&probe, host.clone(), SystemTime::now());

    // `tail` keeps a line that never ends in memory: it grows until the kernel kills it.
    let status = cgroup.spawn("exec tail /dev/zero").wait().unwrap();
    assert!(!status.success(), "the allocation was killed");
    let subject = format!("pod {uid}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let f = loop {
        let (section, findings) = run(&probe, host.clone(), SystemTime::now());
        assert_eq!(section.source, "/dev/kmsg");
        if let Some(f) = findings.into_iter().find(|f| f.subject == subject) {
            break f;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no kernel.oom_kill for {subject}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(f.check, "kernel.oom_kill");
    assert_eq!(count(&f), 1);
    assert_eq!(f.text("container_id").unwrap(), container);
    assert_eq!(f.text("process").unwrap(), "tail");
    assert_eq!(f.text("constraint").unwrap(), "memcg");
}

/// One block of `kernel/corpus.txt`.
#[derive(Debug, Default)]
struct Case {
    name: String,
    sources: Vec<String>,
    expected: BTreeSet<(String, String, String)>,
    benign: bool,
    lines: String,
}

fn corpus() -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    for line in fixture("kernel/corpus.txt").lines() {
        if let Some(name) = line.strip_prefix("== ") {
            cases.push(Case {
                name: name.to_owned(),
                ..Case::default()
            });
            continue;
        }
        let Some(case) = cases.last_mut() else {
            assert!(line.is_empty() || line.starts_with('#'), "{line}");
            continue;
        };
        if let Some(url) = line.strip_prefix("source: ") {
            case.sources.push(url.to_owned());
        } else if line == "expect: nothing" {
            case.benign = true;
        } else if let Some(want) = line.strip_prefix("expect: ") {
            let words: Vec<&str> = want.split(' ').collect();
            let [check, severity, subject] = words[..] else {
                panic!("{}: expect CHECK SEVERITY SUBJECT: {line}", case.name)
            };
            let subject = if subject == "-" { "" } else { subject };
            case.expected
                .insert((check.into(), severity.into(), subject.into()));
        } else if !line.is_empty() {
            case.lines.push_str(line);
            case.lines.push('\n');
        }
    }
    cases
}

/// The findings of `lines` read as a log file, as (check, severity, subject).
fn judged(lines: &str, rule_files: Vec<PathBuf>) -> BTreeSet<(String, String, String)> {
    let host = FakeHost::new();
    host.write("/var/log/kern.log", lines);
    let probe = KernelProbe::new(old_log_config(rule_files));
    let (_, findings) = run(&probe, host.root(), SystemTime::now());
    findings
        .iter()
        .map(|f| {
            let severity = Severity::try_from(f.severity).unwrap().as_str_name();
            let severity = severity.trim_start_matches("SEVERITY_").to_lowercase();
            (f.check.clone(), severity, f.subject.clone())
        })
        .collect()
}

#[test]
fn the_corpus_of_real_lines_is_judged_right_with_nodemedic_and_npd_rules_alike() {
    let cases = corpus();
    assert!(cases.len() >= 30, "{} cases", cases.len());
    let mut wrong = Vec::new();
    for case in &cases {
        assert!(
            !case.sources.is_empty() && !case.lines.is_empty(),
            "{}: every case has a source and lines",
            case.name
        );
        assert!(
            case.benign == case.expected.is_empty(),
            "{}: expects findings or nothing",
            case.name
        );
        for rules in [vec![], npd_rules()] {
            let got = judged(&case.lines, rules.clone());
            if got != case.expected {
                wrong.push(format!(
                    "{} (npd rules: {}): want {:?}, got {got:?}",
                    case.name,
                    !rules.is_empty(),
                    case.expected
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn a_line_older_than_the_window_is_not_current_after_a_restart() {
    let now = SystemTime::now();
    let stamp = |ago: u64| {
        let t = jiff::Timestamp::try_from(now - Duration::from_secs(ago)).unwrap();
        t.strftime("%b %e %H:%M:%S").to_string()
    };
    let host = FakeHost::new();
    host.write(
        "/var/log/kern.log",
        &format!(
            "{} node-1 kernel: nf_conntrack: table full, dropping packet\n\
             {} node-1 kernel: nf_conntrack: table full, dropping packet\n\
             {} node-1 kernel: EXT4-fs error (device sdb1): ext4_lookup:1602: deleted inode referenced: 3186320\n",
            stamp(2 * 3600),
            stamp(300),
            stamp(3 * 3600),
        ),
    );
    // A new agent reads the file's last lines: only what was logged within the hour counts.
    let probe = KernelProbe::new(file_config(vec![]));
    let (section, findings) = run(&probe, host.root(), now);
    assert_eq!(section.lines_read, 3);
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(
        (findings[0].check.as_str(), count(&findings[0])),
        ("kernel.conntrack_full", 1)
    );
}

fn npd_file(name: &str) -> PathBuf {
    fixtures_dir().join("kernel").join(name)
}

#[test]
fn journal_rule_files_and_programs_are_skipped_with_a_reason_and_multi_line_rules_work() {
    use nodemedic_agent::logs::rules::{KERNEL, Recent, RuleSet};

    let set = RuleSet::load(
        KERNEL,
        &[
            npd_file("npd-systemd-monitor.json"),
            npd_file("npd-docker-monitor.json"),
            npd_file("npd-kernel-monitor-counter.json"),
            npd_file("npd-kernel-monitor-multiline.json"),
        ],
    )
    .unwrap();
    let skipped = set.skipped().join("\n");
    assert!(
        skipped.contains(
            "npd-systemd-monitor.json: its rules are for the systemd journal (source \"systemd\")"
        ),
        "{skipped}"
    );
    assert!(skipped.contains(
        "npd-docker-monitor.json: its rules are for the systemd journal (source \"dockerd\")"
    ));
    assert!(skipped.contains("npd-kernel-monitor-counter.json: rule 1"));
    assert!(skipped.contains("npd-kernel-monitor-counter.json: no rule in it applies"));
    // The journal's words do not match as kernel lines.
    assert!(
        set.matches("Started Kubernetes kubelet.", &Recent::default())
            .is_empty()
    );

    // The old kernel-monitor.json's OOM pattern spans two lines (alone here, so no
    // built-in rule matches first).
    let text = fixture("kernel/npd-kernel-monitor-multiline.json");
    let set = RuleSet::from_texts(
        KERNEL,
        &[("npd-kernel-monitor-multiline.json".into(), text)],
    )
    .unwrap();
    let mut recent = Recent::for_rules(&set);
    let first = "Kill process 1012 (heapster) score 1000 or sacrifice child";
    let second =
        "Killed process 1012 (heapster) total-vm:327128kB, anon-rss:306328kB, file-rss:11132kB";
    assert!(set.matches(first, &recent).is_empty());
    recent.push(first);
    let two = set.matches(second, &recent);
    assert_eq!(two.len(), 1, "{two:?}");
    // (Its reason is mapped by nodemedic's file, not loaded here.)
    assert_eq!(
        (two[0].rule.reason.as_str(), two[0].rule.lines),
        ("OOMKilling", 2)
    );
    // Only over the lines it spans, in their order.
    let mut reversed = Recent::for_rules(&set);
    reversed.push(second);
    assert!(set.matches(first, &reversed).is_empty());
    assert!(set.matches(second, &Recent::for_rules(&set)).is_empty());
}

#[test]
fn a_permanent_problem_of_a_users_file_is_not_lowered_by_a_built_in_rule() {
    // node-problem-detector's DockerHung (permanent, KernelDeadlock) against nodemedic's
    // TaskHung (warning) on the same line.
    let line = "INFO: task docker:3150 blocked for more than 120 seconds.\n";
    assert_eq!(
        judged(line, npd_rules()),
        BTreeSet::from([(
            "kernel.hung_task".to_owned(),
            "critical".to_owned(),
            "docker".to_owned()
        )])
    );
    assert_eq!(
        judged(line, vec![]),
        BTreeSet::from([(
            "kernel.hung_task".to_owned(),
            "warning".to_owned(),
            "docker".to_owned()
        )])
    );
}
